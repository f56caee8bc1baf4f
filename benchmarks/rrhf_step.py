"""RRHF training step: labcore vs the reference formulation (GanjinZero/RRHF train.py), same model, same data.

    reference : one query per forward (8 GPUs x 1 x accumulation in train.sh), labels pre-shifted in the collator,
                ``log_softmax`` over the full vocabulary at every position, a clone, gather, padded-row SFT mean;
                the B queries of an optimiser step are accumulated one by one (loss / B each).
    labcore   : ``rrhf_forward`` over Q queries x K responses per forward (flattened to Q*K rows), the LM head
                applied only where response tokens are predicted, ``token_logprobs`` (gather - logsumexp),
                masked-mean SFT; B / Q forwards per optimiser step. Rows: "flat" runs the K copies of each query
                through the model; "shared prefix" (``share_query_prefix=True``) runs each query once and its K
                responses on top of its cached keys/values.

Model: a GPT-2-architecture LM (default 6 layers x 256 dims, 8 heads) with GPT-2's real vocabulary size 50257,
because the output layer is where the two formulations differ: per token it holds V = 50257 logits against
~20 x 256 floats of activations per layer. Data: random token ids, queries 32-128 tokens, responses 16-64 tokens
(EOS included), K responses per query, max length 192 (train.sh), random rewards. Both variants see the same
batches and start from the same weights (checked: their initial scores must agree).

Memory. CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. CPU: torch has no CPU peak
counter and tracemalloc does not see its allocations, so each variant runs in its own subprocess with
``MALLOC_MMAP_THRESHOLD_=65536`` (every tensor over 64 KiB is its own mmap and goes back to the OS when freed, so
the resident set follows the live tensors); after the warm-up steps (which also allocate the AdamW state) the
kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs``), and the peak of a step is
VmHWM - VmRSS(before the timed steps): the extra memory a training step needs above weights + optimiser state.
Where clear_refs is not writable, the fallback is ru_maxrss of the fresh process minus the RSS before the first
step (then the AdamW state is included in both). Throughput: queries per second of the best timed optimiser step
(the median is printed too), after warm-up; the variants' steps are interleaved in one process, so that other load
on a shared machine hits all of them alike.

    python benchmarks/rrhf_step.py                      # CPU, fp32
    python benchmarks/rrhf_step.py --model smollm2-135m --queries 2 --k 4 --steps 2   # SmolLM2, full fine-tuning
    python benchmarks/rrhf_step.py --device cuda        # bf16 autocast
    LABCORE_FAST=1 python benchmarks/rrhf_step.py       # tiny sizes, seconds

Last line: ``throughput_ratio=...x memory_ratio=... scores_match=...``: labcore at --per-forward queries per
forward (shared prefix unless --no-share-prefix) over the reference, then the one-query-per-forward variants;
memory_ratio = labcore peak / reference peak (lower is better). ``--threads`` pins torch's CPU threads.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labcore.rrhf import collate_rrhf, reference_inputs, reference_rrhf_step_loss, rrhf_forward, rrhf_loss  # noqa: E402
from labcore import fast_mode  # noqa: E402
from labcore.utils import resolve_device, set_seed  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    fast = fast_mode()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (cuda uses bf16 autocast)")
    ap.add_argument("--model", default=None, help="a real model preset instead of the random GPT-2 (e.g. "
                    "smollm2-135m: its weights and vocabulary 49152; full fine-tuning as the reference)")
    ap.add_argument("--vocab", type=int, default=2048 if fast else 50257, help="vocabulary size (GPT-2: 50257)")
    ap.add_argument("--layers", type=int, default=2 if fast else 6)
    ap.add_argument("--dim", type=int, default=64 if fast else 256)
    ap.add_argument("--heads", type=int, default=4 if fast else 8)
    ap.add_argument("--k", type=int, default=6, help="responses per query (DP sampling in the paper: 6)")
    ap.add_argument("--queries", type=int, default=4 if fast else 8, help="queries per optimiser step (B)")
    ap.add_argument("--per-forward", type=int, default=0,
                    help="labcore queries per forward (0 = default: 1 on CPU, all --queries on CUDA)")
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--warmup", type=int, default=1, help="untimed optimiser steps first")
    ap.add_argument("--steps", type=int, default=2 if fast else 4, help="timed optimiser steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--no-share-prefix", dest="share_prefix", action="store_false",
                    help="labcore at --per-forward without share_query_prefix (flattened rows only)")
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = ap.parse_args(argv)
    if args.model:  # the real model's vocabulary (random token ids below it)
        from labcore.models import load_tokenizer

        args.vocab = len(load_tokenizer(args.model))
    if not args.per_forward:  # batching rows pays on a GPU; on a CPU longer padded rows only cost
        args.per_forward = args.queries if resolve_device(args.device).type == "cuda" else 1
    if args.queries % args.per_forward:
        ap.error("--queries must be a multiple of --per-forward")
    return args


def make_batches(args, n: int) -> list[dict[str, torch.Tensor]]:
    """n optimiser-step batches of ``args.queries`` queries x K responses of random tokens (eos = pad = V - 1)."""
    g = torch.Generator().manual_seed(args.seed)
    eos = args.vocab - 1
    out = []
    for _ in range(n):
        q_len = torch.randint(32, 129, (args.queries,), generator=g).tolist()
        queries = [torch.randint(0, eos, (L,), generator=g).tolist() for L in q_len]
        responses = [[torch.randint(0, eos, (int(torch.randint(15, 64, (1,), generator=g)),), generator=g).tolist()
                      for _ in range(args.k)] for _ in range(args.queries)]  # + EOS = 16..64 tokens
        rewards = torch.randn(args.queries, args.k, generator=g).tolist()
        out.append(collate_rrhf(queries, responses, args.max_length, pad_token_id=eos, eos_token_id=eos,
                                rewards=rewards))
    return out


def make_model(args, device: torch.device):
    from transformers import GPT2Config, GPT2LMHeadModel

    set_seed(args.seed)
    if args.model:
        from labcore.models import load_model

        model, _ = load_model(args.model, device=device, dtype="fp32")
        return model.train()
    cfg = GPT2Config(n_layer=args.layers, n_embd=args.dim, n_head=args.heads, vocab_size=args.vocab,
                     n_positions=max(256, args.max_length), bos_token_id=args.vocab - 1, eos_token_id=args.vocab - 1)
    return GPT2LMHeadModel(cfg).to(device).train()


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class Variant:
    """One formulation with its own copy of the model and optimiser, stepping through the shared batches."""

    def __init__(self, name: str, per_forward: int, share: bool, args, batches, device: torch.device):
        self.name, self.per_forward, self.share, self.args, self.batches = name, per_forward, share, args, batches
        self.device = device
        self.model = make_model(args, device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=2e-5, weight_decay=0.0)
        self.refs = [[reference_inputs(b, i) for i in range(args.queries)] for b in batches]
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                         else nullcontext())

    @torch.no_grad()
    def initial_scores(self) -> list[list[float]]:
        """Scores of the first batch before training (eval mode): equal across variants if both are right."""
        self.model.eval()
        with self.autocast:
            if self.name == "reference":
                scores = []
                for r in self.refs[0]:
                    logits = self.model(input_ids=r["input_ids"], attention_mask=r["attention_mask"]).logits
                    mask = (r["labels"] != -100).float()  # (K, T)
                    logp = torch.log_softmax(logits.float(), -1)  # (K, T, V)
                    ll = logp.gather(-1, r["labels"].clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask  # (K, T)
                    scores.append((ll.sum(-1) / mask.sum(-1)).tolist())
            else:
                scores = rrhf_forward(self.model, self.batches[0], share_query_prefix=self.share).scores.tolist()
        self.model.train()
        return scores

    def step(self, i: int) -> float:
        """One optimiser step over batch i (B queries); returns its wall time in seconds."""
        args, model = self.args, self.model
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with self.autocast:
            if self.name == "reference":
                for r in self.refs[i]:  # one query per forward, gradients accumulated (loss / B)
                    out = reference_rrhf_step_loss(model, r["input_ids"], r["attention_mask"], r["labels"],
                                                   r["rewards"])
                    (out.loss / args.queries).backward()
            else:
                b = self.batches[i]
                for s in range(0, args.queries, self.per_forward):
                    part = {k: v[s:s + self.per_forward] for k, v in b.items()}  # (Q, K, ...)
                    fwd = rrhf_forward(model, part, share_query_prefix=self.share)
                    out = rrhf_loss(fwd.scores, fwd.token_logp, part["response_mask"], part["rewards"],
                                    batch_reduction="sum")
                    (out.loss / args.queries).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def measure_memory(args) -> dict:
    """Peak extra memory of one variant's training step, measured alone in this (fresh) process."""
    device = resolve_device(args.device)
    rss_at_start = _status_kib("VmRSS") if device.type == "cpu" else 0
    batches = [{k: v.to(device) for k, v in b.items()} for b in make_batches(args, args.warmup + 1)]
    v = Variant(args.variant, args.per_forward, args.share_prefix, args, batches, device)
    for i in range(args.warmup):
        v.step(i)
    method = "cuda.max_memory_allocated"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the kernel's RSS high-water mark (Linux >= 4.0)
            base, method = _status_kib("VmRSS") * 1024, "VmHWM after clear_refs (mmap threshold 64 KiB)"
        except OSError:
            base, method = rss_at_start * 1024, "ru_maxrss - RSS at start (includes AdamW state)"
    v.step(args.warmup)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    elif method.startswith("VmHWM"):
        peak = _status_kib("VmHWM") * 1024 - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return dict(variant=args.variant, peak_bytes=peak, memory_method=method)


def spawn(args, variant: str, per_forward: int, share: bool) -> dict:
    """Measure one variant's peak memory in a fresh interpreter; return its JSON result."""
    argv = [sys.executable, __file__, "--variant", variant, "--device", args.device, "--vocab", str(args.vocab),
            "--layers", str(args.layers), "--dim", str(args.dim), "--heads", str(args.heads), "--k", str(args.k),
            "--queries", str(args.queries), "--per-forward", str(per_forward), "--max-length", str(args.max_length),
            "--warmup", str(args.warmup), "--seed", str(args.seed),
            "--threads", str(args.threads)] + ([] if share else ["--no-share-prefix"])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", HF_HUB_OFFLINE="1")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(measure_memory(args)))
        return
    device = resolve_device(args.device)
    args.device = device.type
    print(f"device={device} ({'bf16 autocast' if device.type == 'cuda' else 'fp32'}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    arch = f"GPT-2 architecture, {args.layers} layers x {args.dim} dims" if not args.model else \
        f"{args.model} (its weights; full fine-tuning)"
    print(f"model: {arch}, vocab {args.vocab}; "
          f"{args.queries} queries x K={args.k} per optimiser step, max length {args.max_length}; "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    configs = [("reference", 1, False), ("labcore", 1, False), ("labcore", 1, True)]
    if ("labcore", args.per_forward, args.share_prefix) not in configs:
        configs.append(("labcore", args.per_forward, args.share_prefix))
    labels = [f"{n} ({q} quer{'y' if q == 1 else 'ies'}/fwd{', shared prefix' if sh else ''})"
              for n, q, sh in configs]
    # Throughput: all variants in this process, same batches, steps interleaved so that load drifts on a shared
    # machine hit every variant alike; best (and median) step time.
    batches = [{k: v.to(device) for k, v in b.items()} for b in make_batches(args, args.warmup + args.steps)]
    variants = [Variant(n, q, sh, args, batches, device) for n, q, sh in configs]
    scores = [torch.tensor(v.initial_scores()) for v in variants]  # (B, K) each
    times: list[list[float]] = [[] for _ in variants]
    for i in range(args.warmup + args.steps):
        for v, t in zip(variants, times):
            dt = v.step(i)
            if i >= args.warmup:
                t.append(dt)
    del variants
    # Memory: each variant alone in a fresh interpreter.
    mems = [spawn(args, n, q, sh) for n, q, sh in configs]
    qps = [args.queries / min(t) for t in times]  # best step: other load on the machine only ever adds time
    peak = [m["peak_bytes"] for m in mems]
    b0 = batches[0]
    print(f"tokens per optimiser step: {int(b0['attention_mask'].sum())} in rows, "
          f"{int(b0['response_mask'].sum())} of them response tokens; memory: {mems[0]['memory_method']}")
    print(f"{'variant':44s} {'best s':>7s} {'median s':>8s} {'queries/s':>10s} {'peak MiB':>9s} {'x thrpt':>8s} "
          f"{'mem ratio':>9s}")
    for name, t, q, p in zip(labels, times, qps, peak):
        print(f"{name:44s} {min(t):7.2f} {statistics.median(t):8.2f} {q:10.2f} {p / 2**20:9.0f} {q / qps[0]:7.2f}x "
              f"{p / peak[0]:9.2f}")
    tol = 5e-2 if device.type == "cuda" else 1e-4  # bf16 logits: ~1e-2 per token
    match = all(torch.allclose(s, scores[0], atol=tol) for s in scores[1:])
    print(f"throughput_ratio={qps[-1] / qps[0]:.2f}x memory_ratio={peak[-1] / peak[0]:.2f} "
          f"throughput_ratio_flat_1q={qps[1] / qps[0]:.2f}x memory_ratio_flat_1q={peak[1] / peak[0]:.2f} "
          f"throughput_ratio_shared_1q={qps[2] / qps[0]:.2f}x memory_ratio_shared_1q={peak[2] / peak[0]:.2f} "
          f"per_forward={args.per_forward} share_prefix={args.share_prefix} vocab={args.vocab} "
          f"model={args.model or 'random-gpt2'} "
          f"threads={torch.get_num_threads()} device={device.type} scores_match={match}")


if __name__ == "__main__":
    main()
