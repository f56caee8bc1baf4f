"""The app's two chat panes: one batched forward pass per token (mixed adapters) vs one pass per pane.

The chat tab answers one message twice, with the base model (adapter off) and an aligned LoRA adapter, both from one
copy of the base weights. This compares, for the same two prompts, sampling settings and seeds,

    batched  : ``labcore.generation.stream_batch`` — the two panes are two rows of ONE forward pass per token; peft's
               mixed-adapter batches give each row its adapter (``adapter_names=["__base__", adapter]``);
    per pane : two ``labcore.generation.stream_generate`` streams advanced in turn (the app before), one forward
               pass per pane per token, the adapter switched off / on around each pass.

Throughput = new tokens of both panes per second of wall time (what a user waits for). The two variants alternate
for ``--repeats`` rounds in one process, so that load hits both alike; the best round of each is reported, median
too. Greedy decoding by default, so both variants produce the same tokens (checked; printed as ``same_tokens``).

Model: SmolLM2-135M-Instruct (``--model smollm2-135m``, the app's default) with its shipped adapter
``data/models/smol-raft-arithmetic`` when present, else a fresh LoRA with random B (the cost is the same); the tiny
model with ``--model tiny``.

    python benchmarks/chat_batch.py                       # SmolLM2, CPU
    python benchmarks/chat_batch.py --model tiny
    LABCORE_FAST=1 python benchmarks/chat_batch.py        # seconds

Last line: ``speedup=...x batched_tok_s=... per_pane_tok_s=... model=...``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ADAPTERS = {"smollm2-135m": "smol-raft-arithmetic", "tiny": "raft-helpful"}
MESSAGES = ("How do I keep basil alive?", "hi! can you help me bake muffins?")


def load(model_name: str, device: str):
    """(peft model with one adapter named 'aligned', tokenizer, where the adapter came from)."""
    from labcore import DATA_DIR
    from labcore.models import add_lora, load_model

    model, tok = load_model(model_name, device=device)
    shipped = DATA_DIR / "models" / ADAPTERS.get(model_name, "")
    if (shipped / "adapter_config.json").exists():
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(shipped), adapter_name="aligned").eval(), tok, str(shipped)
    torch.manual_seed(0)
    model = add_lora(model, r=8)  # peft names it "default"
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.02)
    return model.eval(), tok, "a fresh LoRA r=8 (random B)"


def per_pane(model, tok, prompts, max_new_tokens, temperature):
    from labcore.generation import stream_generate

    streams = [stream_generate(model, tok, p, max_new_tokens=max_new_tokens, temperature=temperature, seed=i,
                               use_adapter=i == 1) for i, p in enumerate(prompts)]
    last = [None, None]
    live = list(range(len(streams)))
    while live:
        for i in list(live):  # one step of each pane in turn, as the app did
            try:
                last[i] = next(streams[i])
            except StopIteration:
                live.remove(i)
    return [s.text for s in last], sum(s.num_tokens for s in last)


def batched(model, tok, prompts, max_new_tokens, temperature, names):
    from labcore.generation import stream_batch

    states = None
    for states in stream_batch(model, tok, prompts, adapter_names=names, max_new_tokens=max_new_tokens,
                               temperature=temperature, seeds=[0, 1]):
        pass
    return [s.text for s in states], sum(s.num_tokens for s in states)


def main() -> None:
    from labcore import fast_mode
    from labcore.formats import prompt_format

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-new-tokens", type=int, default=8 if fast_mode() else 64)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--repeats", type=int, default=1 if fast_mode() else 3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model, tok, source = load(a.model, a.device)
    fmt = prompt_format(tok)
    prompts = [fmt.prompt(m) for m in MESSAGES]
    names = ["__base__", "aligned" if "aligned" in model.peft_config else "default"]
    print(f"model {a.model} ({fmt.name} prompts), adapter: {source}; {a.max_new_tokens} new tokens per pane, "
          f"temperature {a.temperature}, torch threads {torch.get_num_threads()}")
    rates = {"batched": [], "per_pane": []}
    texts = {}
    with torch.no_grad():
        batched(model, tok, prompts, 2, a.temperature, names)  # warm-up
        for _ in range(a.repeats):
            for kind in ("batched", "per_pane"):
                t0 = time.perf_counter()
                out, n = (batched(model, tok, prompts, a.max_new_tokens, a.temperature, names) if kind == "batched"
                          else per_pane(model, tok, prompts, a.max_new_tokens, a.temperature))
                rates[kind].append(n / (time.perf_counter() - t0))
                texts[kind] = out
    for kind, r in rates.items():
        print(f"{kind:9s} best {max(r):7.1f} tok/s   median {statistics.median(r):7.1f} tok/s")
    same = texts["batched"] == texts["per_pane"]
    print(f"same_tokens={same}")
    print(f"speedup={max(rates['batched']) / max(rates['per_pane']):.2f}x batched_tok_s={max(rates['batched']):.1f} "
          f"per_pane_tok_s={max(rates['per_pane']):.1f} model={a.model}")


if __name__ == "__main__":
    main()
