"""Datasheet numbers of the tiny world, measured on the files in ``data/``.

    python -m labcore.tinyworld.build --stats [--out data]

Prints markdown tables (counts per split/topic/style/task/source, lengths, VADER means, distinct n-grams, the
gold score per style on held-out requests, the realised pretraining mix and leakage checks); every number in
``data/README.md`` comes from this output.
"""
from __future__ import annotations

import random
import statistics as st
from collections import Counter
from pathlib import Path

from labcore.datasets import read_jsonl
from labcore.tinyworld import STYLES_SAFE, STYLES_UNSAFE, load_instructions, load_paraphrases, load_requests, load_reviews, pretraining_texts, review_prompts
from labcore.tinyworld.build import FILES
from labcore.tinyworld.dialogues import pretraining_dialogues
from labcore.tinyworld.gold import gold_score
from labcore.tinyworld.lexicon import words


def distinct_ngrams(texts: list[str], n: int) -> tuple[int, float]:
    """(number of distinct word n-grams, distinct-n = distinct / total) over ``texts``."""
    grams: set[tuple[str, ...]] = set()
    total = 0
    for t in texts:
        w = words(t)
        g = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
        total += len(g)
        grams.update(g)
    return len(grams), (len(grams) / total if total else 0.0)


def _table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def stats_markdown(data_dir: str | Path = "data") -> str:
    """All datasheet numbers as markdown (see the module docstring)."""
    d = Path(data_dir)
    out: list[str] = []
    recs = {rel: read_jsonl(d / rel) for rel in FILES}
    out.append("### Files\n\n" + _table(["file", "records", "KiB"],
                                        [[rel, len(recs[rel]), round((d / rel).stat().st_size / 1024)] for rel in FILES]))

    req = {s: load_requests(s, d) for s in ("train", "test")}
    para = load_paraphrases(d)
    rows = [[s, len(r), sum(not x["unsafe"] for x in r), sum(x["unsafe"] for x in r)]
            for s, r in [("train", req["train"]), ("test", req["test"]), ("paraphrase_test", para)]]
    out.append("### Requests\n\n" + _table(["split", "requests", "safe", "unsafe"], rows))
    topics = sorted({x["topic"] for x in req["train"]})
    tc = {s: Counter((x["topic"], x["unsafe"]) for x in req[s]) for s in req}
    out.append(f"Topics: {len(topics)}.\n\n" + _table(
        ["topic", "train safe", "train unsafe", "test safe", "test unsafe"],
        [[t, tc["train"][(t, False)], tc["train"][(t, True)], tc["test"][(t, False)], tc["test"][(t, True)]]
         for t in topics]))

    allreq = req["train"] + req["test"]
    rows = []
    for styles, unsafe in ((STYLES_SAFE, False), (STYLES_UNSAFE, True)):
        for s in styles:
            lens = [len(x["responses"][s]) for x in allreq if x["unsafe"] == unsafe]
            rows.append(["unsafe" if unsafe else "safe", s, len(lens), st.mean(lens), max(lens),
                         sum(n <= 200 for n in lens) / len(lens)])
    out.append("### Responses per style (train + test)\n\n"
               + _table(["requests", "style", "n", "mean chars", "max chars", "share <= 200 chars"], rows))

    rows = []
    for name, rs in (("test", req["test"]), ("paraphrase_test", para), ("train", req["train"])):
        for styles, unsafe in ((STYLES_SAFE, False), (STYLES_UNSAFE, True)):
            sub = [x for x in rs if x["unsafe"] == unsafe]
            means = [st.mean(gold_score([x["request"] for x in sub], [x["responses"][s] for x in sub])) for s in styles]
            rows.append([name, "unsafe" if unsafe else "safe", len(sub),
                         " > ".join(f"{s} {m:+.3f}" for s, m in zip(styles, means)),
                         all(a > b for a, b in zip(means, means[1:]))])
    out.append("### Gold score per style (mean)\n\n" + _table(["split", "requests", "n", "mean gold by style",
                                                               "strictly decreasing"], rows))

    for s in ("train", "test"):
        hh = recs[f"dialogues/hh_{s}.jsonl.gz"]
        two = sum(x["chosen"].count("\n\nHuman:") > 1 for x in hh)
        out.append(f"HH {s}: {len(hh)} pairs, {two} two-turn ({two / len(hh):.1%}); "
                   f"RRHF {s}: {len(recs[f'dialogues/rrhf_{s}.jsonl.gz'])} queries.")

    rev = {s: load_reviews(s, d) for s in ("train", "test")}
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    vader = SentimentIntensityAnalyzer()
    rows = []
    for s in ("train", "test"):
        for lab in ("pos", "neg", "mixed"):
            sub = [x for x in rev[s] if x["label"] == lab]
            comp = [vader.polarity_scores(x["text"])["compound"] for x in sub]
            rows.append([s, lab, len(sub), st.mean(x["stars"] for x in sub), st.mean(comp),
                         st.mean(len(x["text"]) for x in sub)])
    stars = Counter(x["stars"] for s in rev for x in rev[s])
    prompts = review_prompts("train", data_dir=d)
    pvader = [vader.polarity_scores(p)["compound"] for p in prompts]
    out.append("### Reviews\n\n" + _table(["split", "label", "n", "mean stars", "mean VADER compound", "mean chars"], rows)
               + "\n\nStars histogram: " + ", ".join(f"{k}: {stars[k]}" for k in range(1, 11))
               + f"\n\nReview prompts: train {len(prompts)} ({len(set(prompts))} distinct), test "
               f"{len(review_prompts('test', data_dir=d))}; mean {st.mean(map(len, prompts)):.1f} chars; "
               f"mean VADER compound of the prompts {st.mean(pvader):+.3f}.")

    ins = load_instructions(None, d)
    c = Counter((x["task"], x["source"], x["split"]) for x in ins)
    keys = sorted({(t, s) for t, s, _ in c})
    rows = [[t, s, c[(t, s, "train")], c[(t, s, "test")]] for t, s in keys]
    tasks = sorted({t for t, _ in keys})
    out.append(f"### Instructions\n\n{len(ins)} examples, {len(tasks)} tasks, {len(keys)} sources.\n\n"
               + _table(["task", "source", "train", "test"], rows))

    corpora = {
        "requests": [x["request"] for x in allreq],
        "responses": [v for x in allreq for v in x["responses"].values()],
        "reviews": [x["text"] for s in rev for x in rev[s]],
        "instructions": [x["instruction"] for x in ins],
    }
    rows = []
    for name, texts in corpora.items():
        row: list = [name, len(texts)]
        for n in (1, 2, 3):
            k, dn = distinct_ngrams(texts, n)
            row += [k, dn]
        rows.append(row)
    out.append("### Distinct word n-grams\n\n" + _table(
        ["corpus", "texts", "distinct 1-grams", "distinct-1", "distinct 2-grams", "distinct-2", "distinct 3-grams",
         "distinct-3"], rows))

    styles: list[str] = []
    dlg = pretraining_dialogues(random.Random("pretrain-0-train"), req["train"], styles)
    sc = Counter(styles)
    n_safe, n_unsafe = sum(v for k, v in sc.items() if k.startswith("safe/")), sum(
        v for k, v in sc.items() if k.startswith("unsafe/"))
    rows = [[k.split("/")[0], k.split("/")[1], v, v / (n_safe if k.startswith("safe/") else n_unsafe)]
            for k, v in sorted(sc.items())]
    pt = {s: pretraining_texts(s, 0, d) for s in ("train", "test")}
    chars = sum(map(len, pt["train"]))
    out.append(f"### Pretraining mix (`pretraining_texts('train', seed=0)`)\n\n{len(pt['train'])} texts "
               f"({len(dlg)} dialogues, {len(pt['train']) - len(dlg)} reviews, {chars} characters); test: "
               f"{len(pt['test'])} texts.\n\n" + _table(["requests", "style", "responses drawn", "share"], rows))

    tr_text = {x["request"].lower() for x in req["train"]}
    leaks = {
        "request ids train&test": len({x["id"] for x in req["train"]} & {x["id"] for x in req["test"]}),
        "request texts train&test": len(tr_text & {x["request"].lower() for x in req["test"]}),
        "paraphrase texts in train": len(tr_text & {x["request"].lower() for x in para}),
        "review ids train&test": len({x["id"] for x in rev["train"]} & {x["id"] for x in rev["test"]}),
        "instruction items train&test": len({x["id"].rsplit(":", 1)[0] for x in ins if x["split"] == "train"}
                                            & {x["id"].rsplit(":", 1)[0] for x in ins if x["split"] == "test"}),
        "instruction texts train&test": len({x["instruction"] for x in ins if x["split"] == "train"}
                                            & {x["instruction"] for x in ins if x["split"] == "test"}),
    }
    out.append("### Leakage checks\n\n" + _table(["check", "overlap"], [[k, v] for k, v in leaks.items()]))
    return "\n\n".join(out) + "\n"


def print_stats(data_dir: str | Path = "data") -> None:
    """Print :func:`stats_markdown`."""
    print(stats_markdown(data_dir))
