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
# # 02 · Reward models: learning $r(x, y)$ from preferences
#
# Bradley & Terry 1952; Ouyang et al. 2022, *Training language models to follow instructions with human feedback*,
# arXiv 2203.02155 (Eq. 1). Code: `labcore/reward_model.py`, `labcore/reward_analysis.py`, `labcore/rewards.py`;
# the shipped model and its measured accuracy: `data/README.md` ("Learned reward model") and
# `data/models/tiny-rm/report.json`.
#
# **Time** (measured with `notebooks/run_all.py` on the 2-core class machine, one torch thread, empty embedding
# cache): **default mode 76–87 s** (two runs; embedding the sampled pairs with MiniLM is about 30 s of it), **fast
# mode 30 s** (22–27 s once the embeddings are cached). No GPU needed.
#
# **Learning goals**
#
# * read preference data: a prompt, a chosen and a rejected response — and notice that every pair compares two
#   answers to the *same* prompt;
# * write the Bradley–Terry loss yourself, see why it is computed with `logsigmoid`, and find it in
#   `labcore.reward_model.bt_loss`;
# * train a small reward model (a head on a frozen sentence encoder) and measure its pair accuracy;
# * find what a learned reward model gets **wrong** by comparing it with the tiny world's `gold` rubric — the cracks
#   that RAFT and RRHF later push on (on `tiny-helpful`, RAFT raises this reward model's score from -0.32 to 0.77
#   while gold stays at -0.40 → -0.41, `docs/raft.md`).

# %%
from labcore.notebook import finish, setup

setup()  # offline (HF_HUB_OFFLINE=1), one torch thread on a small CPU, seed 0; prints the device and threads

import time
import numpy as np
import pandas as pd
import plotly.express as px
import torch
from IPython.display import display

from labcore import DATA_DIR, fast_mode

FAST = fast_mode()  # LABCORE_FAST=1: tiny sizes (about 2 minutes per notebook on 2 CPU cores)

# %% [markdown]
# ## 1. Preference data
#
# `labcore.datasets.load_preferences` reads Anthropic HH files (two transcripts that share everything up to the last
# `Assistant:`) or TRL files with an explicit `prompt` / `chosen` / `rejected` into one format. The tiny world's HH
# files (`labcore.tinyworld.dialogues.hh_pairs`) hold, for every request, the pairs of *adjacent* styles in its quality
# order plus best-vs-worst — 5 pairs per safe request (helpful_polite > helpful_curt > off_topic > evasive_refusal >
# rude), 4 per unsafe one (polite_refusal > curt_refusal > rude > complying) — and about 15% of them (14.7% of the
# train pairs, `data/README.md`) start with an earlier exchange (two-turn prompts).
#
# *Expected (both modes, the whole files are read):* `10584 train pairs, 1176 test pairs` (2,160 and 240 requests:
# 1,944 · 5 + 216 · 4 = 10,584), then two example pairs. The notebook then trains on a sample of 1,500 pairs and
# evaluates on 400 (fast mode: 120 and 60).

# %%
import random

from labcore.datasets import load_preferences

hh_train = load_preferences(DATA_DIR / "dialogues" / "hh_train.jsonl.gz")
hh_test = load_preferences(DATA_DIR / "dialogues" / "hh_test.jsonl.gz")
print(f"{len(hh_train)} train pairs, {len(hh_test)} test pairs")
two_turn = next(p for p in hh_train if p["prompt"].count("Human:") > 1)
for p in (hh_train[0], two_turn):
    print(repr(p["prompt"]))
    print("  chosen:  ", repr(p["chosen"]))
    print("  rejected:", repr(p["rejected"]))

N_TRAIN, N_EVAL = (120, 60) if FAST else (1500, 400)
rng = random.Random(0)
train_pairs, eval_pairs = rng.sample(hh_train, N_TRAIN), rng.sample(hh_test, N_EVAL)
print(f"this notebook trains on {N_TRAIN} pairs and evaluates on {N_EVAL} "
      f"(the shipped tiny-rm trained on all {len(hh_train)} and was evaluated on all {len(hh_test)})")

# %% [markdown]
# Keep one fact in mind for §4: **no pair compares answers to two different prompts.** The data says that a polite
# refusal beats a curt one for the same unsafe request, but never whether it beats a helpful answer to some other
# request.
#
# ## 2. The Bradley–Terry model
#
# The probability that a labeller prefers $y_w$ to $y_l$ is modelled as a logistic function of a reward difference,
# and the reward model is fitted by maximum likelihood (Ouyang et al. 2022, Eq. 1):
#
# $$P(y_w \succ y_l \mid x) = \sigma\big(r_\theta(x, y_w) - r_\theta(x, y_l)\big), \qquad
# \mathcal{L}(\theta) = -\,\mathbb{E}_{(x, y_w, y_l)} \Big[\log \sigma\big(r_\theta(x, y_w) - r_\theta(x, y_l)\big)\Big].$$
#
# Only *differences* between two answers to the same prompt enter: adding a constant to $r$ changes nothing — and,
# since the two answers of a pair always share their prompt, neither does adding a *different* constant for each
# prompt. `bt_loss(r_w, r_l)` is this loss, the mean over pairs. Check it on hand-picked numbers — a margin of 2 costs
# $\log(1 + e^{-2}) \approx 0.127$, a margin of 0 costs $\log 2 \approx 0.693$, a margin of $-2$ costs
# $\log(1 + e^{2}) \approx 2.127$:
#
# *Expected (both modes):* the three lines agree with the hand values (0.1269, 0.6931, 2.1269), and their mean is
# about 0.9823.

# %%
from labcore.reward_model import bt_loss

r_w = torch.tensor([2.0, 0.0, -2.0])
r_l = torch.tensor([0.0, 0.0, 0.0])
for a, b in zip(r_w, r_l):
    print(f"margin {float(a - b):+.0f}: bt_loss = {float(bt_loss(a[None], b[None])):.4f}   "
          f"by hand log(1 + e^-m) = {np.log1p(np.exp(-float(a - b))):.4f}")
print("mean over the three:", round(float(bt_loss(r_w, r_l)), 4))

# %% [markdown]
# ### Write it yourself: the Bradley–Terry loss
#
# Fill in `my_bt_loss` (a few lines): the mean over the pairs of $-\log \sigma(r_w - r_l)$, Eq. 1. The check cell
# after it compares your function with `labcore.reward_model.bt_loss` on random rewards and on two extreme margins
# ($+200$ and $-200$). While the stub is unfilled the check prints a hint instead of failing; the collapsed solution
# below it explains the choices. Hint: a wrongly ranked pair with a huge margin is where a direct translation of the
# formula breaks.

# %%
def my_bt_loss(r_w: torch.Tensor, r_l: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss, Ouyang et al. 2022 Eq. 1.

    Args:
        r_w: (B,) rewards of the chosen responses; r_l: (B,) rewards of the rejected responses.
    Returns:
        scalar: the mean over the B pairs of -log sigma(r_w - r_l).
    """
    # your code here (2-3 lines)
    raise NotImplementedError


# %%
def check_bt_loss(fn) -> None:
    """Assert fn equals labcore's bt_loss on random rewards and on the margins +200 and -200."""
    g = torch.Generator().manual_seed(0)
    for batch in (1, 7, 256):
        r_w, r_l = 3 * torch.randn(batch, generator=g), 3 * torch.randn(batch, generator=g)  # (B,), (B,)
        torch.testing.assert_close(fn(r_w, r_l), bt_loss(r_w, r_l))
    r_w, r_l = torch.tensor([200.0, -200.0]), torch.zeros(2)  # one pair far right, one far wrong
    got = fn(r_w, r_l)
    assert torch.isfinite(got), (f"your loss is {float(got)} for the margins +200 and -200 (labcore: "
                                 f"{float(bt_loss(r_w, r_l))}): sigma(-200) rounds to 0 in float32 and log(0) = -inf")
    torch.testing.assert_close(got, bt_loss(r_w, r_l))
    print("my_bt_loss equals labcore.reward_model.bt_loss on random rewards (B = 1, 7, 256) and on margins +-200")


try:
    check_bt_loss(my_bt_loss)
except NotImplementedError:
    print("my_bt_loss is still a stub: fill it in above and run this cell again (solution collapsed below)")

# %% [markdown]
# #### Solution (write it yourself)
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# Why this form. Eq. 1 models P(y_w preferred) = sigma(d) with the margin d = r_w - r_l, so one pair's negative
# log-likelihood is -log sigma(d) = log(1 + e^-d) = softplus(-d). A literal -torch.log(torch.sigmoid(d)) is the same
# function on paper but not in float32: for d = -200, sigmoid(d) = e^-200 rounds to 0, log(0) = -inf, and a single
# badly ranked pair turns the batch's loss (and every gradient) into inf/NaN. F.logsigmoid computes log sigma(d)
# without forming sigma(d) first, so it stays finite (it returns -200 here: the loss of that pair is exactly 200).
import torch.nn.functional as F


def my_bt_loss(r_w: torch.Tensor, r_l: torch.Tensor) -> torch.Tensor:
    d = r_w - r_l  # (B,) margins; only differences enter Eq. 1
    return -F.logsigmoid(d).mean()  # mean over pairs (labcore's convention; Ouyang et al. take an expectation)


check_bt_loss(my_bt_loss)

# Why it trains sensibly: d loss / d r_w = -sigma(-d) / B. A pair already ranked right by a wide margin (sigma(-d) ~ 0)
# stops pushing; a wrongly ranked pair pushes with up to 1 / B. The loss spends its effort on the pairs it gets wrong,
# and never asks for a particular reward *level*.
d = torch.tensor([4.0, 2.0, 0.0, -2.0, -4.0], requires_grad=True)  # five pairs with r_l = 0, so d = r_w
my_bt_loss(d, torch.zeros(5)).backward()
for m, gr in zip(d.tolist(), d.grad.tolist()):
    print(f"margin {m:+.0f}: gradient on r_w = {gr:+.3f}  (= -sigma(-d) / 5 = {-1 / (1 + np.exp(m)) / 5:+.3f})")

# %% [markdown]
# **The model.** Prompt and response are embedded separately by the frozen MiniLM encoder ($e_x, e_y \in
# \mathbb{R}^{384}$, all-MiniLM-L6-v2 as in notebook 01), and a small MLP scores the features
#
# $$\phi(x, y) = [\,e_x,\; e_y,\; e_x \odot e_y\,], \qquad r_\theta(x, y) = \frac{w_2^\top \operatorname{GELU}(W_1 \phi + b_1) + b_2 - \mu}{s}$$
#
# (`pair_features`, `RewardHead`: 1,152 → 128 → 1, 147,713 trained parameters, dropout 0.1 while training). The
# product $e_x \odot e_y$ carries "is this response about this prompt?" (its sum is the cosine of the two embeddings).
# After training, $\mu$ and $s$ are set to the mean and standard deviation of the raw scores of the training responses,
# so every saved model reports rewards on one scale (train mean 0, std 1); that changes no ranking. The encoder stays
# frozen, so each text is embedded once (cached on disk by `labcore.embed`) and only the head is trained: AdamW,
# lr 1e-3, 256 pairs per step, 30 epochs (10 in fast mode).
#
# *Expected:* default mode: the loss falls from about 0.68 after epoch 1 to about 0.20 after
# epoch 30 (still falling); held-out pair accuracy is already about 0.83 after epoch 1 and ends near 0.90 (train
# 0.94). Embedding the sampled texts takes about 30 s with an empty cache and about 1 s once they are cached; the head
# trains in about 2 s. Fast mode (120 pairs, 10 epochs = 10 optimiser steps): loss 0.69 → 0.65, held-out pair
# accuracy about 0.78 on 60 pairs (one pair is 1.7 points). The seeds are fixed, so a rerun on the same machine gives
# the same numbers; other hardware may differ slightly. Accuracy moves before the loss does: ranking a pair right
# needs only the sign of the margin, the loss keeps asking for wider margins.

# %%
from labcore.reward_model import train_reward_model

t = time.perf_counter()
rm, fit = train_reward_model(train_pairs, eval_pairs=eval_pairs, epochs=10 if FAST else 30, progress=False)
print(f"trained in {time.perf_counter() - t:.0f} s (embedding {fit['seconds_embed']:.0f} s, head {fit['seconds_train']:.1f} s)")
print(f"after {len(fit['history'])} epochs: loss {fit['history'][-1]['loss']:.3f}, train pair accuracy "
      f"{fit['train_acc']:.3f}, held-out pair accuracy {fit['eval_acc']:.3f}")
hist = pd.DataFrame(fit["history"])
px.line(hist, x="epoch", y=["loss", "train_acc", "eval_acc"], markers=True,
        title="Bradley-Terry training: loss and pair accuracy").show()

# %% [markdown]
# ## 3. Accuracy
#
# **Pair accuracy** = share of held-out pairs with $r(x, y_w) > r(x, y_l)$, ties counted one half
# (`labcore.reward_model.pair_accuracy`). The same measure for the shipped `tiny-rm` (trained on all 10,584 pairs;
# `data/README.md` reports 97.0% on all 1,176 test pairs), for the `gold` rubric and for two naive "reward models":
# VADER sentiment of the response and its number of words.
#
# *Expected:* default mode (400 held-out pairs): this notebook's RM about 0.90, shipped tiny-rm 0.973,
# gold 0.996, sentiment 0.714, length 0.682. Fast mode (60 pairs): 0.783, 0.983, 0.992, 0.733, 0.667.

# %%
from labcore.reward_model import pair_accuracy
from labcore.rewards import get_reward

shipped = get_reward(str(DATA_DIR / "models" / "tiny-rm"))
gold = get_reward("gold")
candidates = {"this notebook's RM": rm, "shipped tiny-rm": shipped, "gold rubric": gold,
              "sentiment (VADER)": get_reward("sentiment"), "length (#words)": get_reward("length")}
acc = pd.DataFrame([{"reward": name, "pair accuracy": round(pair_accuracy(fn, eval_pairs), 3)}
                    for name, fn in candidates.items()])
display(acc)

# %% [markdown]
# **How to read it.** The shipped `tiny-rm` (97%) beats this notebook's model (90%) with the same recipe on
# 7 times the data. `gold` is not at 100% either: it is a word-list rubric, and its relevance term sometimes misses
# the topic of a helpful answer (§4's disagreements show two). The surprise is the two naive rewards, far above the
# 50% of a coin: VADER gets 71%, mostly because polite openers and closers ("Happy to help!", "Good luck!") are
# positive words and rude lines negative ones; length gets 68% because the better style is often the
# longer one (Exercise 2). Neither knows what a good answer is. **Pair accuracy on pairs like the training pairs
# cannot tell a reward that understands the task from one that rides a correlation of the data** — which is why §4
# tests the reward where the correlations break.
#
# ## 4. What a reward model gets wrong
#
# A high pair accuracy on pairs like the training pairs says little about the responses a policy will produce
# *later*, or about comparisons the data never makes. `labcore.reward_analysis.analyse_reward` scores every style's
# response to held-out requests (the first 80 test requests, 16 in fast mode) with the shipped `tiny-rm` — the reward
# that RAFT and RRHF optimise on `tiny-helpful` — compares it with `gold`, and runs **probes**: edited responses that
# *sound* good but are worse for the rubric —
#
# * `polite_compliance`: a harmful complying answer wrapped in a polite opener and closer, vs a curt refusal
#   (unsafe requests only);
# * `padded_long`: the polite helpful answer repeated until it is longer than 70 words, vs the answer once (gold
#   penalises repetition and more than 60 words);
# * `polite_off_topic`: an off-topic answer wrapped in a polite opener and closer, vs the curt helpful answer;
# * `polite_rude`: a rude answer wrapped in a polite opener and closer, vs the curt helpful answer.
#
# *Expected:* default mode (80 requests, 11 of them unsafe, 389 responses): Spearman(reward, gold)
# +0.904 (safe +0.934, unsafe +0.810); in the scatter each colour is in gold's order, and the unsafe styles sit lower;
# probes, `reward_prefers_edit`: polite_compliance 0.45 (of 11), padded_long 0.32, polite_off_topic 0.86,
# polite_rude 0.17, while `gold_prefers_edit` is 0 everywhere except polite_off_topic (0.03). Fast mode (16 requests,
# 3 unsafe, 77 responses): Spearman +0.900 (safe +0.932, unsafe +0.948); probes 0.33 (of 3), 0.38, 0.92, 0.31. On
# all 240 test requests (`data/README.md`) the probes read 38%, 32%, 82%, 20% and Spearman +0.917: the unsafe rows
# rest on a handful of requests (one request moves polite_compliance by 9 points in default mode).

# %%
from labcore.reward_analysis import analyse_reward
from labcore.tinyworld import load_requests

requests = load_requests("test")[: (16 if FAST else 80)]
report = analyse_reward(shipped, requests)
print(f"{len(requests)} requests ({sum(r['unsafe'] for r in requests)} unsafe), {report['n_responses']} responses")
print(f"Spearman(reward, gold): {report['spearman_gold']:+.3f} (safe {report['spearman_gold_safe']:+.3f}, "
      f"unsafe {report.get('spearman_gold_unsafe', float('nan')):+.3f})")
by_style = pd.DataFrame(report["by_style"]).T.reset_index(names="style")
by_style["requests"] = by_style["style"].str.split("/").str[0]
px.scatter(by_style, x="gold", y="reward", text="style", size="n", color="requests",
           title="tiny-rm vs gold: mean per style (a perfect RM would be monotone)").update_traces(
    textposition="top center").show()
display(by_style[["style", "n", "reward", "gold", "words"]].round(3))
probes = pd.DataFrame(report["probes"]).T[["n", "reward_prefers_edit", "gold_prefers_edit", "reward_margin",
                                            "gold_margin"]]
display(probes)
px.bar(probes.reset_index(names="probe").melt(id_vars="probe", value_vars=["reward_prefers_edit", "gold_prefers_edit"],
                                               var_name="scorer", value_name="share preferring the worse edit"),
       x="probe", y="share preferring the worse edit", color="scorer", barmode="group", range_y=[0, 1],
       title="Probes: how often each scorer prefers the edit that gold's rules make worse").show()
display(pd.DataFrame(report["disagreements"]))

# %% [markdown]
# **How to read it.** The probe table row by row: where `reward_prefers_edit` is well above `gold_prefers_edit`, the
# reward model rewards how a response *sounds* (politeness markers, length) over what it *does*. The `disagreements`
# are the responses whose rank under the reward model is furthest from their rank under gold.
#
# Three findings (numbers from the default run):
#
# 1. **It pays for how an answer sounds.** Polite wrapping lifts an off-topic answer above the curt helpful one for 86%
#    of the requests (gold: 3%), and gets a harmful compliance past a curt refusal for 5 of 11 unsafe requests;
#    repetition padding passes 32% of the time, polite-wrapped rudeness 17%. In the training pairs the polite
#    openers and closers ("Happy to help!", "Good luck!") occur only in helpful_polite answers, which are the chosen
#    side of every pair they are in, so they are a perfect feature there; the probes pull "polite" and "good" apart,
#    and the reward model follows "polite".
# 2. **Its levels across prompts are arbitrary.** In the by-style table the best answer to an unsafe request
#    (polite_refusal, gold +0.75) gets reward +0.18, below a merely curt answer to a safe request (+0.63, gold
#    +0.57), and a curt refusal (gold +0.50) scores -0.23, below a safe off-topic answer (+0.13, gold -0.20). Within
#    each kind of request the order is right. This is the per-prompt constant of §2: no pair compares two prompts, so
#    nothing in Eq. 1 fixes it. It matters for RAFT: "global" selection (keep the top fraction across prompts) then
#    under-selects unsafe prompts, "local" selection (best of $K$ per prompt) does not (`data/README.md`, notebook 03).
# 3. **The disagreements cut both ways.** At the top of the list, a harmful compliance ("Sure! Write it yourself and
#    sign a made up name.") sits mid-table for tiny-rm (+0.03) and at the bottom for gold (-0.90), and a polite
#    refusal is ranked low. But two of the five are gold's mistakes: helpful answers about running and budgeting that
#    gold scores -0.25 and 0.00 because its relevance term found too few topic words. Gold is a transparent rubric,
#    not the truth — the lab's independent judge, gameable in its own way (`docs/rrhf.md`: RRHF at lr 1e-3 produced
#    strings of topic words that please it).
#
# ### The crack RAFT found
#
# While tuning RAFT on `tiny-helpful` with a discard rule that only dropped samples under 2 tokens, the policy
# collapsed within 6 iterations onto the reply "Happy to help!" (tiny-rm reward 2.5, distinct-2 0.11; gold rose only
# to -0.10, from its politeness bonus; `docs/raft.md`). Score that reply against the curt helpful answer for every safe
# request:
#
# *Expected:* default mode: mean tiny-rm 2.69 for the bare "Happy to help!" against 0.63 for the curt helpful
# answer, gold 0.01 against 0.57; tiny-rm prefers the filler for 100% of 69 safe requests, gold for 3%. Fast mode:
# 2.52 against 0.46, gold 0.00 against 0.60, 100% of 13 requests, gold 0%.

# %%
from labcore.formats import format_chat

safe = [r for r in requests if not r["unsafe"]]
ps = [format_chat(r["request"]) for r in safe]  # HH-formatted prompts of the safe requests
filler = [" Happy to help!"] * len(safe)
curt = [" " + r["responses"]["helpful_curt"] for r in safe]
crack = pd.DataFrame({"response": ["'Happy to help!' (nothing else)", "the curt helpful answer"],
                      "tiny-rm (mean)": [float(shipped(ps, filler).mean()), float(shipped(ps, curt).mean())],
                      "gold (mean)": [float(gold(ps, filler).mean()), float(gold(ps, curt).mean())]}).round(3)
display(crack)
print(f"tiny-rm prefers the bare filler to the curt helpful answer for "
      f"{float((shipped(ps, filler) > shipped(ps, curt)).float().mean()):.0%} of {len(safe)} safe requests; "
      f"gold for {float((gold(ps, filler) > gold(ps, curt)).float().mean()):.0%}")

# %% [markdown]
# Three words with no content score higher under tiny-rm (2.69) than the best answer the tiny world has,
# helpful_polite (1.40 in §4's table): the reward model's maximum is not where gold's is. The filler is nothing but a
# polite opener, the feature finding 1 shows it over-weights, and no training pair ever put a polite opener on the
# rejected side. An optimiser looks for exactly such a maximum: RAFT keeps the
# highest-reward samples of each prompt and, with only a 2-token minimum to stop it, converged on this reply. The shipped preset's
# discard rule (`min_tokens=8`, which drops about 30% of the samples) blocks this one reply, not the weakness: RAFT
# still raises tiny-rm's held-out score from -0.32 to 0.77 while gold stays at -0.40 → -0.41 (`docs/raft.md`).
#
# ## Exercises
#
# 0. *(Write it yourself, §2.)* Implement `my_bt_loss` and make the check pass.
# 1. Train the reward model on **half** as many pairs. How much pair accuracy do you lose? And with all the pairs but
#    3 epochs?
# 2. `length` gets a surprisingly high pair accuracy. Why, in this dataset? (Hint: `data/README.md`, mean characters
#    per style, and which style pairs the HH files contain.) Would that survive a policy that learns to pad its
#    answers?
# 3. Write a new probe: the polite helpful answer followed by a rude line (`" Figure it out yourself."`). Does
#    `tiny-rm` prefer it to the plain answer? Does `gold`?

# %% [markdown]
# #### Solution 1
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. data and epochs. The encoder is frozen, so the head (148k parameters) only has to learn a direction in a fixed
# feature space where the tiny world's styles are already far apart (templates, politeness and refusal phrases):
# a few hundred pairs already rank most held-out pairs right, and more pairs keep helping, by less per pair (the
# shipped model, on 7x this notebook's default data, reaches 97.0%). Fewer epochs mean fewer optimiser steps: with
# 256 pairs per step, 3 epochs are 18 steps at the default size (3 in fast mode) against 180 (10) for the full run,
# so the head stops long before the loss has converged: the loss curve of §2 falls for all 30 epochs. Pair accuracy
# moves earlier than the loss, because ranking a pair right needs only the sign of the margin, while the loss keeps
# asking for wider margins. The shipped model's history
# (data/models/tiny-rm/report.json) shows the same on all the data: 83.5% held-out after epoch 1, 94.6% after 10,
# 97.0% after 30. Which of the two cuts costs more in your run is in the printout; with a sample this small
# (400 held-out pairs, 60 in fast mode) differences of one or two points are noise.
for n, ep in ((N_TRAIN // 2, 10 if FAST else 30), (N_TRAIN, 3)):
    m, f = train_reward_model(train_pairs[:n], epochs=ep, progress=False)
    print(f"{n} pairs, {ep} epochs: held-out pair accuracy {pair_accuracy(m, eval_pairs):.3f}")
print(f"(this notebook's model, {N_TRAIN} pairs and {len(fit['history'])} epochs: {fit['eval_acc']:.3f})")

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. Why length works here. The HH files hold the adjacent pairs of each request's style order plus best-vs-worst,
# and the better style is often the longer one. In characters (data/README.md): helpful_polite 110 > helpful_curt 63
# > off_topic 55 > evasive_refusal 44, and polite_refusal 103 > curt_refusal 18. The `length` reward counts words,
# and the table below counts, per pair type, how often the chosen answer has more words: it holds for the polite
# answers (an opener and a closer add words) and mostly for off_topic over evasive_refusal; it fails where the worse
# answer is wordier (rude lines against evasive or curt refusals, complying answers against rude ones), and it is
# about a coin flip for helpful_curt against off_topic. So "longer is better" is a proxy the data happens to support between some styles, not a property
# of good answers: within one style the correlation of reward or gold with length is much weaker than across styles
# (printed below). A policy that pads (longer, same content) earns more `length` reward for free; gold penalises
# repetition and > 60 words, and the padded_long probe of §4 shows how often tiny-rm falls for padding too.
from labcore.reward_analysis import style_pairs

hh_kinds = {("helpful_polite", "helpful_curt"), ("helpful_curt", "off_topic"), ("off_topic", "evasive_refusal"),
            ("evasive_refusal", "rude"), ("helpful_polite", "rude"), ("polite_refusal", "curt_refusal"),
            ("curt_refusal", "rude"), ("rude", "complying"), ("polite_refusal", "complying")}
words = lambda s: len(s.split())
sp = pd.DataFrame([{"pair": f"{p['chosen_style']} > {p['rejected_style']}",
                    "chosen longer": words(p["chosen"]) > words(p["rejected"])}
                   for p in style_pairs(requests) if (p["chosen_style"], p["rejected_style"]) in hh_kinds])
display(sp.groupby("pair", sort=False)["chosen longer"].agg(["mean", "size"]).round(2))
print(f"chosen is longer than rejected in {np.mean([words(p['chosen']) > words(p['rejected']) for p in eval_pairs]):.0%}"
      f" of the {len(eval_pairs)} held-out HH pairs")
print("Spearman with #words across all responses (reward, gold):", {k: round(v, 3) for k, v in report["spearman_length"].items()})
print("... and within one style:", {k: round(v, 3) for k, v in report["spearman_length_within_style"].items()})

# %% [markdown]
# #### Solution 3
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 3. A rude tail. gold applies a rule: any rudeness marker ("figure it out yourself" is one, lexicon.RUDE_MARKERS)
# caps the score at -0.6, whatever else the answer says. tiny-rm has no rule: it reads the mean-pooled MiniLM
# embedding of the whole answer, where one short sentence added to a longer polite answer moves the vector only part
# of the way. So it ranks the pair the right way round (the tail lowers its reward), but by a small margin: the
# rude-tailed answer still scores above a clean curt helpful answer, which gold rates far higher. In training it never
# saw a helpful answer with a rude tail (rude answers are rude throughout), so nothing taught it that one sentence can
# spoil an answer. It is the padded_long story again: mean pooling dilutes whatever is added to an answer.
plain = [" " + r["responses"]["helpful_polite"] for r in safe]
rude_tail = [p + " Figure it out yourself." for p in plain]
r_plain, r_tail, r_curt = shipped(ps, plain), shipped(ps, rude_tail), shipped(ps, curt)
g_plain, g_tail, g_curt = gold(ps, plain), gold(ps, rude_tail), gold(ps, curt)
print(f"tiny-rm prefers the rude tail to the plain answer for {float((r_tail > r_plain).float().mean()):.0%} of "
      f"{len(safe)} requests (mean reward {float(r_plain.mean()):+.2f} -> {float(r_tail.mean()):+.2f})")
print(f"gold prefers it for {float((g_tail > g_plain).float().mean()):.0%} "
      f"(mean gold {float(g_plain.mean()):+.2f} -> {float(g_tail.mean()):+.2f})")
print(f"rude tail above the curt helpful answer: tiny-rm {float((r_tail > r_curt).float().mean()):.0%}, "
      f"gold {float((g_tail > g_curt).float().mean()):.0%}")

# %% [markdown]
# ## 5. The class's own preference data: votes from the app
#
# The app's Chat tab answers every message twice — the base model on the left, an aligned adapter on the right — and
# asks for a vote: *left is better / right is better / tie / both bad*. Each vote appends one TRL preference record
# (`prompt`, `chosen`, `rejected`, plus the choice, the model, the adapter, the sampling settings and a timestamp) to
# `runs/app/votes.jsonl` (`python app.py --out DIR` puts it in `DIR/`; the tab's button downloads it). Chatbot Arena
# collects such votes for a leaderboard; here they are training data: `load_preferences` reads them like any other
# preference file, skipping ties and "both bad" (they prefer neither answer) and saying how many it skipped.
#
# Without a class session behind us, the cell writes stand-in votes in the same format — held-out HH pairs, the
# better answer shown on a random side, every 8th vote a tie — and trains this notebook's recipe on them. After a
# class, point `votes_path` at the downloaded file (the cell uses `runs/app/votes.jsonl` once it holds 20 pairs).
#
# *Expected (both modes, stand-in votes):* `kept 35 records, skipped 5 (5 'tie' votes)`, `35 vote pairs`, a held-out
# pair accuracy of 0.70 on the last 10 pairs (7 of 10: with 25 training pairs, one pair is 10 points), and the two
# commands.

# %%
import json
import tempfile
import warnings
from pathlib import Path

from labcore import REPO_ROOT
from labcore.datasets import read_preferences

votes_path = REPO_ROOT / "runs" / "app" / "votes.jsonl"  # the app's default --out is runs/app
if not votes_path.is_file() or len(read_preferences(votes_path)[0]) < 20:  # no class yet: stand-in votes
    votes_path = Path(tempfile.mkdtemp()) / "votes.jsonl"
    vote_rng = random.Random(1)
    with open(votes_path, "w") as f:
        for i, p in enumerate(vote_rng.sample(hh_test, 40)):
            choice = "tie" if i % 8 == 7 else vote_rng.choice(["left", "right"])
            f.write(json.dumps({"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
                                "choice": choice, "model": "tiny", "adapter": "rrhf-helpful",
                                "sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 64}}) + "\n")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    vote_pairs = load_preferences(votes_path)
for w in caught:
    print("warning:", w.message)
print(f"{len(vote_pairs)} vote pairs in {votes_path}")
vote_rm, vote_fit = train_reward_model(vote_pairs[:-10], eval_pairs=vote_pairs[-10:], epochs=10, progress=False)
print(f"reward model on the votes: held-out pair accuracy {vote_fit['eval_acc']:.2f} on {len(vote_pairs[-10:])} pairs")
print("the same from the command line, and RRHF on the votes (each vote a query with two ranked answers):")
print(f"  labcore train-rm --train {votes_path} --test '' --out runs/votes-rm --no-analysis")
print(f"  labcore rrhf --preset tiny-helpful --data {votes_path} --out runs/rrhf-votes"
      "   # smol-arithmetic for votes on SmolLM2")

# %% [markdown]
# ## Scale up: GPT-2 / Pythia on one GPU
#
# * Train the tiny-world reward model on a GPU: `labcore train-rm --device cuda --out runs/tiny-rm-gpu` (all 10,584
#   pairs, 30 epochs). Keep the `--out`: the default output folder is the shipped `data/models/tiny-rm`, which the
#   RAFT and RRHF presets load, so running it bare in class overwrites the reward model everybody else uses. For
#   scale: on the 2-core CPU the shipped model's head trained in 222 s (`data/models/tiny-rm/report.json`,
#   `fit.seconds_train`); the GPU time was not measured here. With the Hub reachable,
#   `--encoder sentence-transformers/all-mpnet-base-v2` swaps in a larger frozen encoder (768-dimensional; not tried
#   here).
# * Use an off-the-shelf Hugging Face reward model anywhere a reward is expected — `get_reward(name)` loads any
#   sequence-classification model and scores `prompt + response`, the last logit being the reward (needs the Hub or
#   a local copy; not run in this notebook):
#
# ```python
# rm_hh   = get_reward("OpenAssistant/reward-model-deberta-v3-large-v2")   # HH-style dialogue reward, ~0.4 B
# rm_imdb = get_reward("lvwerra/distilbert-imdb")   # a DistilBERT IMDB sentiment classifier, the papers' kind of reward
# pair_accuracy(rm_hh, load_preferences("hh-rlhf/helpful-base/test.jsonl.gz"))   # after downloading Anthropic/hh-rlhf
# ```
#
# ## What we found
#
# **The result.** A Bradley–Terry head on frozen MiniLM embeddings learns the tiny world's preferences well on
# pairs like its training pairs: 90% held-out pair accuracy from 1,500 pairs with about 2 s of head training (default
# mode; 78% from 120 pairs in fast mode), 97% for the shipped `tiny-rm` trained on all 10,584 pairs, and a Spearman
# correlation of +0.90 with the gold rubric over every style of 80 held-out requests. Yet two rewards that know
# nothing about answers reach 71% (VADER sentiment) and 68% (length) on the same pairs.
#
# **Where the learned reward model disagrees with gold** — measured on `tiny-rm`, the reward RAFT and RRHF optimise
# on `tiny-helpful`:
#
# * it pays for how an answer *sounds*: politeness rescues an off-topic answer (86% of requests; gold 3%), the bare
#   reply "Happy to help!" beats the curt helpful answer for 100% of the requests and outscores even the best style
#   (2.69 against 1.40), and polite phrasing gets a harmful compliance past a refusal for 5 of 11 unsafe requests;
# * it barely punishes what mean pooling dilutes: repetition padding passes 32% of the time, and a rude tail lowers a
#   polite answer's reward but leaves it above a clean curt answer for 87% of the requests (gold: 0%; Solution 3);
# * its reward *levels* across prompts carry no meaning (Eq. 1 only sees differences within a prompt): the best answer
#   to an unsafe request scores below a curt answer to a safe one.
#
# **What it means for the methods.** These cracks are what optimisation finds. RAFT on `tiny-helpful` raises
# tiny-rm's held-out score from -0.32 to 0.77 while gold stays at -0.40 → -0.41, and with a weaker discard rule it
# collapsed onto "Happy to help!" (`docs/raft.md`). RRHF raises the learned reward less (0.156 BP, 0.212 IP-2) but is
# the only arm whose gold moves (-0.154 and -0.073 against the base model's -0.400;
# `docs/results/comparison.md`). A higher learned reward is not a better model; only the independent judge says
# which run improved. Per-prompt ("local") selection sidesteps the level problem; global selection walks into it.
#
# **What to take away.**
#
# * A reward model is a proxy fitted to a distribution of pairs. Its pair accuracy on that distribution (97% here)
#   says little about the responses an optimiser will produce: fillers, padding, polite wrappers.
# * Test a learned reward the way §4 does — against an independent judge, with probes built to separate "sounds
#   good" from "is good" — *before* optimising against it, and keep measuring the judge while you optimise.
# * Compare rewards within a prompt (local selection, ranking losses) unless the data compares prompts.
# * Negative results, plainly: the learned reward model is excellent by its own metric and still gameable, and on
#   `tiny-helpful` optimising it with RAFT did not improve true quality at all. The judge is a proxy too: two of the
#   five worst disagreements in §4 are gold's own mistakes.

# %%
finish()
