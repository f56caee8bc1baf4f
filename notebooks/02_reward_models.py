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
# arXiv 2203.02155 (Eq. 1). Code: `labcore/reward_model.py`, `labcore/reward_analysis.py`, `labcore/rewards.py`.
#
# **Learning goals**
#
# * read preference data: a prompt, a chosen and a rejected response;
# * write the Bradley–Terry loss and find it in `labcore.reward_model.bt_loss`;
# * train a small reward model (a head on a frozen sentence encoder) in seconds and measure its pair accuracy;
# * find what a learned reward model gets **wrong** by comparing it with the tiny world's `gold` rubric — the cracks
#   that RAFT and RRHF will later push on.

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
# ## 1. Preference data
#
# `labcore.datasets.load_preferences` reads Anthropic HH files (two transcripts that share everything up to the last
# `Assistant:`) or TRL files (`prompt` / `chosen` / `rejected`) into one format:

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
print(f"this notebook trains on {N_TRAIN} pairs and evaluates on {N_EVAL} (the shipped model used all of them)")

# %% [markdown]
# ## 2. The Bradley–Terry model
#
# The probability that a labeller prefers $y_w$ to $y_l$ is modelled as a logistic function of a reward difference,
# and the reward model is fitted by maximum likelihood (Ouyang et al. 2022, Eq. 1):
#
# $$P(y_w \succ y_l \mid x) = \sigma\big(r_\theta(x, y_w) - r_\theta(x, y_l)\big), \qquad
# \mathcal{L}(\theta) = -\,\mathbb{E}_{(x, y_w, y_l)} \Big[\log \sigma\big(r_\theta(x, y_w) - r_\theta(x, y_l)\big)\Big].$$
#
# Only *differences* matter: adding a constant to $r$ changes nothing. `bt_loss(r_w, r_l)` is this loss; check it on
# hand-picked numbers — a margin of 2 costs $\log(1 + e^{-2}) \approx 0.127$, a margin of 0 costs $\log 2$, a margin of
# $-2$ costs $\log(1 + e^{2}) \approx 2.127$:

# %%
from labcore.reward_model import bt_loss

r_w = torch.tensor([2.0, 0.0, -2.0])
r_l = torch.tensor([0.0, 0.0, 0.0])
for a, b in zip(r_w, r_l):
    print(f"margin {float(a - b):+.0f}: bt_loss = {float(bt_loss(a[None], b[None])):.4f}   "
          f"by hand log(1 + e^-m) = {np.log1p(np.exp(-float(a - b))):.4f}")
print("mean over the three:", float(bt_loss(r_w, r_l)))

# %% [markdown]
# **The model.** Prompt and response are embedded separately by the frozen MiniLM encoder ($e_x, e_y \in
# \mathbb{R}^{384}$, notebook 01), and a small MLP scores the features
#
# $$\phi(x, y) = [\,e_x,\; e_y,\; e_x \odot e_y\,], \qquad r_\theta(x, y) = w_2^\top \operatorname{GELU}(W_1 \phi + b_1) + b_2,$$
#
# (`pair_features`, `RewardHead`); the product $e_x \odot e_y$ carries "is this response about this prompt?". The
# encoder stays frozen, so embeddings are computed once and cached, and training takes seconds.

# %%
from labcore.reward_model import train_reward_model

t = time.perf_counter()
rm, fit = train_reward_model(train_pairs, eval_pairs=eval_pairs, epochs=10 if FAST else 30, progress=False)
print(f"trained in {time.perf_counter() - t:.0f} s (embedding {fit['seconds_embed']:.0f} s, head {fit['seconds_train']:.1f} s)")
hist = pd.DataFrame(fit["history"])
px.line(hist, x="epoch", y=["loss", "train_acc", "eval_acc"], markers=True,
        title="Bradley-Terry training: loss and pair accuracy").show()

# %% [markdown]
# ## 3. Accuracy
#
# **Pair accuracy** = share of held-out pairs with $r(x, y_w) > r(x, y_l)$ (`labcore.reward_model.pair_accuracy`). The
# same measure for the shipped `tiny-rm` (trained on all 10,584 pairs), for the `gold` rubric and for two naive
# "reward models":

# %%
from labcore.reward_model import pair_accuracy
from labcore.rewards import get_reward

shipped = get_reward(str(DATA_DIR / "models" / "tiny-rm"))
candidates = {"this notebook's RM": rm, "shipped tiny-rm": shipped, "gold rubric": get_reward("gold"),
              "sentiment (VADER)": get_reward("sentiment"), "length (#words)": get_reward("length")}
acc = pd.DataFrame([{"reward": name, "pair accuracy": round(pair_accuracy(fn, eval_pairs), 3)}
                    for name, fn in candidates.items()])
display(acc)

# %% [markdown]
# ## 4. What a reward model gets wrong
#
# A high pair accuracy on data like the training data says little about responses the policy will produce *later*.
# `labcore.reward_analysis.analyse_reward` scores every style of held-out requests and compares with `gold`, and runs
# **probes**: edited responses that *sound* good but are worse for the rubric —
#
# * `polite_compliance`: a harmful "sure, here's how" wrapped in polite phrases, vs a curt refusal;
# * `padded_long`: the helpful answer repeated to > 60 words, vs the answer once;
# * `polite_off_topic`: an off-topic answer with polite phrases, vs the curt helpful answer;
# * `polite_rude`: a rude answer with polite phrases, vs the curt helpful answer.
#
# A policy optimised against the reward model will find exactly these cracks (reward hacking, notebook 05).

# %%
from labcore.reward_analysis import analyse_reward
from labcore.tinyworld import load_requests

requests = load_requests("test")[: (16 if FAST else 80)]
report = analyse_reward(shipped, requests)
print(f"Spearman(reward, gold) over {report['n_responses']} responses: {report['spearman_gold']:+.3f}")
by_style = pd.DataFrame(report["by_style"]).T.reset_index(names="style")
px.scatter(by_style, x="gold", y="reward", text="style", size="n",
           title="tiny-rm vs gold: mean per style (a perfect RM would be monotone)").update_traces(
    textposition="top center").show()
probes = pd.DataFrame(report["probes"]).T[["n", "reward_prefers_edit", "gold_prefers_edit", "reward_margin",
                                            "gold_margin"]]
display(probes)
display(pd.DataFrame(report["disagreements"]))

# %% [markdown]
# Read the probe table row by row: where `reward_prefers_edit` is well above `gold_prefers_edit`, the reward model
# rewards how a response *sounds* (politeness markers, length) over what it *does*. The `disagreements` are the
# responses whose rank under the reward model is furthest from their rank under gold.
#
# ## Exercises
#
# 1. Train the reward model on **half** as many pairs. How much pair accuracy do you lose? And with 3 epochs?
# 2. `length` gets a surprisingly high pair accuracy. Why, in this dataset? (Hint: `data/README.md`, mean characters
#    per style.) Would that survive a policy that learns to pad its answers?
# 3. Write a new probe: the helpful answer followed by a rude line (`" Figure it out yourself."`). Does `tiny-rm`
#    prefer it to the plain helpful answer? Does `gold`?

# %% [markdown]
# #### Solution 1
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. data and epochs
for n, ep in ((N_TRAIN // 2, 10 if FAST else 30), (N_TRAIN, 3)):
    m, f = train_reward_model(train_pairs[:n], epochs=ep, progress=False)
    print(f"{n} pairs, {ep} epochs: held-out pair accuracy {pair_accuracy(m, eval_pairs):.3f}")

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. chosen responses are longer on average (polite answers add an opener/closer; refusals and rude lines are short)
words = lambda s: len(s.split())
longer = np.mean([words(p["chosen"]) > words(p["rejected"]) for p in eval_pairs])
print(f"chosen is longer than rejected in {longer:.0%} of the pairs: length is a proxy here, and a hackable one")

# %% [markdown]
# #### Solution 3
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 3. a rude tail
from labcore.formats import format_chat

safe = [r for r in requests if not r["unsafe"]]
ps = [format_chat(r["request"]) for r in safe]
plain = [" " + r["responses"]["helpful_polite"] for r in safe]
rude = [p + " Figure it out yourself." for p in plain]
gold = get_reward("gold")
print("tiny-rm prefers the rude tail:", float((shipped(ps, rude) > shipped(ps, plain)).float().mean()))
print("gold prefers the rude tail:   ", float((gold(ps, rude) > gold(ps, plain)).float().mean()))

# %% [markdown]
# ## Scale up: GPT-2 / Pythia on one GPU
#
# * Train the tiny-world reward model on a GPU: `labcore train-rm --device cuda` (all 10,584 pairs, 30 epochs:
#   seconds). With the Hub reachable, `--encoder sentence-transformers/all-mpnet-base-v2` swaps in a larger frozen
#   encoder.
# * Use an off-the-shelf Hugging Face reward model anywhere a reward is expected — `get_reward(name)` loads any
#   sequence-classification model and scores `prompt + response`:
#
# ```python
# rm_hh   = get_reward("OpenAssistant/reward-model-deberta-v3-large-v2")   # HH-style dialogue reward, ~0.4 B
# rm_imdb = get_reward("lvwerra/distilbert-imdb")                            # the IMDB sentiment reward of the papers
# pair_accuracy(rm_hh, load_preferences("hh-rlhf/helpful-base/test.jsonl.gz"))
# ```

# %%
finish()
