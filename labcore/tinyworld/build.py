"""Build every data file of the tiny world, byte-identically for a given seed.

    python -m labcore.tinyworld.build [--seed 0] [--out data]     # write the files
    python -m labcore.tinyworld.build --stats                      # print the datasheet numbers (markdown)

Each generator draws from its own ``random.Random`` stream seeded by a string ("{seed}-requests", ...), so adding
records to one file never changes another. Files are gzip JSONL written with mtime 0 and no file name in the
header, so the bytes depend only on the records.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import random
from pathlib import Path

from labcore.tinyworld import dialogues as D
from labcore.tinyworld import lexicon as L
from labcore.tinyworld.instructions import build_instructions
from labcore.tinyworld.reviews import make_reviews

TEST_FRACTION = 0.10

FILES = ("dialogues/requests.jsonl.gz", "dialogues/hh_train.jsonl.gz", "dialogues/hh_test.jsonl.gz",
         "dialogues/rrhf_train.jsonl.gz", "dialogues/rrhf_test.jsonl.gz", "dialogues/paraphrase_test.jsonl.gz",
         "reviews.jsonl.gz", "instructions.jsonl.gz")


def _split_ids(rng: random.Random, n: int, frac: float = TEST_FRACTION) -> list[str]:
    """Random split labels for ``n`` items: round(frac * n) of them "test"."""
    idx = list(range(n))
    rng.shuffle(idx)
    test = set(idx[: round(frac * n)])
    return ["test" if i in test else "train" for i in range(n)]


def build_requests(seed: int = 0) -> list[dict]:
    """Requests with all responses and the train/test split (stratified by safe/unsafe). Internal fields
    ("task") are kept in memory and dropped when written."""
    rng = random.Random(f"{seed}-requests")
    reqs = D.make_requests(rng)
    splits: dict[int, str] = {}
    for unsafe in (False, True):
        idx = [i for i, r in enumerate(reqs) if r["unsafe"] == unsafe]
        for i, s in zip(idx, _split_ids(rng, len(idx))):
            splits[i] = s
    order = list(range(len(reqs)))
    rng.shuffle(order)  # interleave topics in the file
    out = []
    for k, i in enumerate(order):
        r = reqs[i]
        out.append({"id": f"req-{k:05d}", "topic": r["topic"], "task": r["task"], "request": r["request"],
                    "unsafe": r["unsafe"], "split": splits[i], "responses": D.responses_for(rng, r)})
    return out


def build_paraphrases(seed: int, requests: list[dict]) -> list[dict]:
    """Held-out phrasings (templates never used for train/test requests), split "test"."""
    rng = random.Random(f"{seed}-paraphrase")
    reqs = D.make_requests(rng, n_safe=230, n_unsafe=24, templates=D.PARAPHRASE_TEMPLATES,
                           unsafe_templates=D.PARAPHRASE_UNSAFE_TEMPLATES, use_context=False,
                           exclude={r["request"].lower() for r in requests})
    return [{"id": f"para-{k:04d}", "topic": r["topic"], "task": r["task"], "request": r["request"],
             "unsafe": r["unsafe"], "split": "test", "responses": D.responses_for(rng, r)} for k, r in enumerate(reqs)]


def build_reviews(seed: int = 0) -> list[dict]:
    """Reviews with ids and split; keeps the internal fields (title, genre, actor, sentences) in memory."""
    rng = random.Random(f"{seed}-reviews")
    revs = make_reviews(rng)
    for k, (r, s) in enumerate(zip(revs, _split_ids(rng, len(revs)))):
        r["id"], r["split"] = f"rev-{k:05d}", s
    return revs


def build_tips(seed: int = 0) -> list[dict]:
    """Tip items (task tips and general tips), each assigned to a split (for the instruction set)."""
    rng = random.Random(f"{seed}-tips")
    tips = []
    for topic, (_, tasks, general) in L.TOPICS.items():
        for task, _, ts in tasks:
            tips += [{"topic": topic, "task": task, "tip": t} for t in ts]
        tips += [{"topic": topic, "task": None, "tip": t} for t in general]
    for k, (t, s) in enumerate(zip(tips, _split_ids(rng, len(tips)))):
        t["id"], t["split"] = f"tip-{k:03d}", s
    return tips


REQUEST_KEYS = ("id", "topic", "request", "unsafe", "split", "responses")
REVIEW_KEYS = ("id", "text", "label", "stars", "split")


def build_world(seed: int = 0) -> dict[str, list[dict]]:
    """Every file's records, keyed by path relative to the data folder (see :data:`FILES`)."""
    requests = build_requests(seed)
    paraphrases = build_paraphrases(seed, requests)
    reviews = build_reviews(seed)
    tips = build_tips(seed)
    files: dict[str, list[dict]] = {
        "dialogues/requests.jsonl.gz": [{k: r[k] for k in REQUEST_KEYS} for r in requests],
        "dialogues/paraphrase_test.jsonl.gz": [{k: r[k] for k in REQUEST_KEYS} for r in paraphrases],
        "reviews.jsonl.gz": [{k: r[k] for k in REVIEW_KEYS} for r in reviews],
    }
    for split in ("train", "test"):
        recs = [r for r in requests if r["split"] == split]
        files[f"dialogues/hh_{split}.jsonl.gz"] = D.hh_pairs(random.Random(f"{seed}-hh-{split}"), recs)
        files[f"dialogues/rrhf_{split}.jsonl.gz"] = D.rrhf_records(random.Random(f"{seed}-rrhf-{split}"), recs)
    files["instructions.jsonl.gz"] = build_instructions(random.Random(f"{seed}-instructions"), requests, reviews, tips)
    return {p: files[p] for p in FILES}


def encode(records: list[dict]) -> bytes:
    """gzip JSONL bytes with a fixed header (mtime 0, no file name), compresslevel 9."""
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(raw)
    return buf.getvalue()


def write_world(out: str | Path = "data", seed: int = 0) -> dict[str, int]:
    """Write every file under ``out``; returns path -> number of records."""
    out = Path(out)
    counts = {}
    for rel, recs in build_world(seed).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(recs))
        counts[rel] = len(recs)
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    ap.add_argument("--out", default="data", help="output folder")
    ap.add_argument("--stats", action="store_true", help="print the datasheet numbers of the files in --out")
    args = ap.parse_args(argv)
    if args.stats:
        from labcore.tinyworld.stats import print_stats
        print_stats(args.out)
        return
    for rel, n in write_world(args.out, args.seed).items():
        print(f"{rel}: {n} records, {(Path(args.out) / rel).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
