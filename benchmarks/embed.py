"""Encoder paths for core-set embeddings, side by side on one sample of the shipped instruction set.

Three ways to embed the same ``--n`` texts (seeded sample of the training split) with all-MiniLM-L6-v2, no cache:
  * baseline: the previous labcore path: texts sorted by characters, fixed batches of 64, padded to the longest;
  * buckets:  ``labcore.embed.embed_texts`` (sorted by token count, batches of at most 8,192 padded tokens);
  * int8:     the same with ``quantize="int8"`` (torch dynamic quantisation of the attention and FFN-input layers),
              and, for the record, int8 on every linear layer (what a one-line ``quantize_dynamic`` gives).
Prints seconds, texts/s, the time extrapolated to the 35,307 training texts, and agreement with the float32
embeddings: cosine (min / mean) and, for int8, how many of a 40-pick KCenterGreedy selection on the sample agree.

    python benchmarks/embed.py [--n 1500]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labcore import DATA_DIR  # noqa: E402
from labcore.coreset import example_text, load_instruction_set  # noqa: E402
from labcore.embed import embed_texts, l2_normalise, load_encoder, mean_pool  # noqa: E402
from labcore.kcenter import KCenterGreedy  # noqa: E402


@torch.no_grad()
def baseline(texts: list[str], encoder, tokenizer, batch_size: int = 64) -> np.ndarray:
    """The previous path: sort by characters, fixed batches, pad to the batch's longest text."""
    out = np.empty((len(texts), 384), np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        b = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
        out[idx] = l2_normalise(mean_pool(encoder(**b).last_hidden_state, b["attention_mask"])).numpy()
    return out


@torch.no_grad()
def all_linear_int8(texts: list[str], encoder, tokenizer) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)
    return baseline(texts, q, tokenizer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1500, help="texts in the sample")
    a = ap.parse_args()
    records = [r for r in load_instruction_set(DATA_DIR / "instructions.jsonl.gz") if r["split"] == "train"]
    rng = np.random.default_rng(0)
    texts = [example_text(records[i]) for i in rng.choice(len(records), a.n, replace=False)]
    tokenizer, encoder = load_encoder("minilm", "cpu")
    embed_texts(texts[:8], cache=False, progress=False)
    embed_texts(texts[:8], cache=False, progress=False, quantize="int8")  # load both once, untimed
    runs = {}
    for name, fn in (("baseline (char sort, batch 64)", lambda: baseline(texts, encoder, tokenizer)),
                     ("buckets (token sort, 8192 tokens)", lambda: embed_texts(texts, cache=False, progress=False)),
                     ("int8 (attention + FFN-in)", lambda: embed_texts(texts, cache=False, progress=False,
                                                                       quantize="int8")),
                     ("int8 (every linear layer)", lambda: all_linear_int8(texts, encoder, tokenizer))):
        t = time.perf_counter()
        runs[name] = (fn(), time.perf_counter() - t)
    ref, t_ref = runs["baseline (char sort, batch 64)"]
    picks = set(KCenterGreedy(40, device="cpu").fit(ref, initial=0).selected_indices_.tolist())
    print(f"{a.n} texts, {torch.get_num_threads()} threads; 35,307 = the shipped training split")
    print(f"{'path':<34} {'s':>6} {'texts/s':>8} {'35k est. s':>10} {'speed-up':>8} | {'cos min':>8} {'cos mean':>8} "
          f"{'same picks':>10}")
    for name, (e, t) in runs.items():
        cos = (e * ref).sum(1)
        same = len(picks & set(KCenterGreedy(40, device="cpu").fit(e, initial=0).selected_indices_.tolist()))
        print(f"{name:<34} {t:>6.2f} {a.n / t:>8.1f} {35307 * t / a.n:>10.0f} {t_ref / t:>7.2f}x | "
              f"{cos.min():>8.5f} {cos.mean():>8.5f} {same:>7}/40")


if __name__ == "__main__":
    main()
