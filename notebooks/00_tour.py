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
# # 00 · Tour of the lab: what alignment is for, the tiny world, the base model, the rewards
#
# **Learning goals**
#
# * say in one sentence what alignment changes in a pretrained language model, and why a *reward* is the lever;
# * know the tiny world this lab runs in (dialogues in five styles, movie reviews, an instruction set) and where
#   its datasheet is (`data/README.md`);
# * sample from the tiny **unaligned** base model with `labcore.generation.generate` and see its mix of styles;
# * write down what PPO-RLHF optimises (reward minus a KL penalty to a reference model), what RAFT and RRHF drop from
#   it, and how the lab measures the drift that the dropped term used to prevent;
# * score responses with the four rewards of this tour: `sentiment`, `gold`, the learned `tiny-rm` and the test
#   reward `length`;
# * know how to switch the same code to GPT-2 or Pythia on a GPU.
#
# Run the cells top to bottom. **Time:** 23 s in default mode, 20 s with `LABCORE_FAST=1` (fast mode:
# fewer samples), measured on the lab's 2-core CPU shared with other jobs. The expected outputs are written beside the
# cells that make them, for both modes; the sampled texts and the numbers of sampled replies depend on the seed and
# may differ slightly on other hardware or library versions.

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
# ## 1. What alignment is for
#
# A pretrained model $\pi_0$ imitates its corpus: asked a question, it answers in whatever way people in the corpus
# answered — helpful, rude, evasive, off-topic, or by happily explaining something harmful. *Alignment* moves the
# model towards the answers we prefer, measured by a reward $r(x, y)$ of a prompt $x$ and a response $y$:
#
# $$\max_\pi \; \mathbb{E}_{x \sim D,\; y \sim \pi(\cdot \mid x)} \big[ r(x, y) \big].$$
#
# That is not what RLHF with PPO optimises. The reward is only a proxy — a classifier, a rubric, or a reward model
# trained on a finite set of responses — and a policy pushed to maximise it finds responses the proxy over-rates
# (*reward hacking*) while drifting away from fluent text. PPO-RLHF therefore adds a penalty for moving away from a
# reference model $\pi_{\text{ref}}$ (the supervised starting model):
#
# $$\max_\pi \; \mathbb{E}_{x \sim D} \Big[ \mathbb{E}_{y \sim \pi(\cdot \mid x)} \big[ r(x, y) \big]
# - \beta \, \mathrm{KL}\big( \pi(\cdot \mid x) \,\big\|\, \pi_{\text{ref}}(\cdot \mid x) \big) \Big],
# \qquad \mathrm{KL}\big( \pi \,\|\, \pi_{\text{ref}} \big) = \mathbb{E}_{y \sim \pi(\cdot \mid x)}
# \Big[ \log \frac{\pi(y \mid x)}{\pi_{\text{ref}}(y \mid x)} \Big]$$
#
# (Ouyang et al. 2022, arXiv 2203.02155, Eq. 2, without its pretraining-mix term). $\beta = 0$ is the naive goal
# above; a large $\beta$ keeps $\pi$ near $\pi_{\text{ref}}$. PPO needs four models in memory for it: the policy
# $\pi$, the frozen reference $\pi_{\text{ref}}$ (for the KL), the reward model $r$ and a value model (the critic).
# What the term buys, from RRHF's Table 10 (IMDB, GPT-2; reward / perplexity, `shared/PAPERS.md`): the supervised
# start 0.539 / 35.47; PPO without the KL term 0.796 / 42.92; PPO with it ("0.1-KL") 0.626 / 35.05 — less reward,
# and the perplexity stays at the start model's.
#
# **RAFT and RRHF drop the explicit KL term and the reference model** (and the value model): one model is trained,
# and nothing in either loss says "stay close to $\pi_{\text{ref}}$". They stay close by how they build their
# training data instead:
#
# * **RAFT** (Dong et al. 2023, Algorithm 1): the update is plain SFT, $\min_w -\sum_t \log \pi_w(y_t \mid x,
#   y_{<t})$, on samples **the current policy drew itself** and the reward ranked best (best of $K$ per prompt).
#   Samples of $\pi$ are already likely under $\pi$: the best of $K$ samples follows a distribution at most
#   $\log K - (K-1)/K$ nats of KL away from $\pi$ (0.64 for $K = 4$, 1.20 for $K = 8$; Stiennon et al. 2020, arXiv
#   2009.01325, proved an upper bound by Beirami et al. 2024, arXiv 2401.01879), so each iteration's SFT target is
#   near the current policy. The distance adds up over iterations, and labcore's recipe keeps each step small:
#   **few epochs** per iteration (2 in the tiny presets, 4 in the paper's HH recipe), few iterations (4 in the tiny
#   presets), a **LoRA** adapter (rank 16 on the tiny model) instead of every weight, and **discard rules** that give
#   reward $-\infty$ to empty, too-short and repetitive samples, so they are never trained on (`labcore/raft.py`,
#   `labcore/presets.py`).
# * **RRHF** (Yuan et al. 2023): $L = L_{\text{rank}} + L_{\text{ft}}$ (Eq. 5). $L_{\text{ft}}$ (Eq. 4) is the SFT
#   loss on the best-rewarded response, an anchor to text that the start model or a person wrote; $L_{\text{rank}}$
#   (Eq. 2) only reorders the model's own length-normalised log-probabilities $p_i$ (Eq. 1) of *given* responses.
#   The responses are **collected and scored before training** (beam search of the initial model plus the dataset's
#   responses: BP / DP of Table 1), not sampled online from the model being trained, and no critic is learned. The
#   paper's online variant, which resamples with the model in training every 32 steps (OP-32), reached reward 0.34
#   but perplexity 63.78: reward hacking (`shared/PAPERS.md`, RRHF Table 6).
#
# **Why this matters: drift is not prevented, so it has to be measured.** The lab's drift measure is the
# **perplexity of held-out reference answers** under the policy (`labcore.evaluation.evaluate`, the `ppl` column of
# every results table): a model that moves away from the kind of text the references are gives them a higher
# perplexity. It is not the KL itself (that is an expectation over the policy's own samples), but it is cheap and
# comparable across methods, and it rose in every run where the lab saw the text degrade: RAFT on tiny-helpful
# 16.1 -> 24.7 while the gold rubric did not move (`docs/raft.md`); RRHF-BP on tiny-helpful 16.1 -> 34.2, its answers
# loosely connected topic phrases (`docs/rrhf.md`); RAFT on SmolLM2 reviews 83 -> 226 as the continuations left the
# film for generic upbeat stories (`docs/raft.md`). §3 measures it live.
#
# This lab teaches three cheaper ideas than PPO, plus where the reward comes from:
#
# | notebook | idea | paper |
# |---|---|---|
# | `01_coreset` | which *data* to instruction-tune on: the paper claims 0.5% chosen well matches all of it (tested here, see below) | Chen et al. 2023, arXiv 2305.09246 |
# | `02_reward_models` | where $r$ comes from when no rubric exists: a Bradley–Terry model of preferences | Ouyang et al. 2022, arXiv 2203.02155 |
# | `03_raft` | sample, rank by $r$, fine-tune on the best, repeat | Dong et al. 2023, arXiv 2304.06767 |
# | `04_rrhf` | rank $k$ responses with a hinge on the model's own log-probabilities | Yuan et al. 2023, arXiv 2304.05302 |
# | `05_compare_chat` | compare the aligned models, watch for reward hacking, chat | — |
#
# **The 0.5% claim is the paper's, not a finding of this lab.** labcore's own experiment (`docs/coreset.md`, results
# in `docs/results/coreset/`; tiny model, 3 seeds, exact match averaged over three source datasets): on sentiment the
# 40-example core-set (0.5% of 8,052) scores 0.446 ± 0.042, below 40 random examples (0.528 ± 0.111) and far
# below all the task's data (0.929 ± 0.017, even capped at 0.30 of an epoch); on safety the 16-example core-set
# (0.438) falls *below* the floor of always answering each source's most common label (0.753). On the pretrained
# SmolLM2-135M-Instruct (3 seeds, `docs/results/coreset-smol/results.md`) the core-set is below random too (0.406 ±
# 0.017 against 0.489 ± 0.027), and an earlier run whose embeddings differed by about 1e-4 gave the opposite (0.575):
# on this small protocol the K-means optimum, not the coverage principle, decides. So neither supports nor refutes
# the paper's claim; it shows how fragile one small experiment is.
# Notebook 01 reads these numbers.

# %% [markdown]
# ## 2. The tiny world
#
# Real alignment data (HH-RLHF, IMDB, P3) and real models do not fit a 2-core laptop and a class period. The tiny
# world is a generated, download-free stand-in with the same *shape* (datasheet: `data/README.md`):
#
# * **dialogue requests**, each with one reference response per *style*, best first;
# * **HH-style preference pairs** and **RRHF-style ranked responses** built from them;
# * **movie reviews** whose first ~30 characters are the prompts of a "continue positively" task (the IMDB task);
# * an **instruction set** of 9 task categories × 3 source datasets (the P3 role for core-set selection).
#
# Expected (both modes; the data are fixed files): 2160 train requests, 216 of them unsafe, then one safe request
# with its five styled responses and one unsafe request with its four.

# %%
from labcore.tinyworld import (STYLES_SAFE, STYLES_UNSAFE, load_instructions, load_requests, load_reviews,
                               review_prompts)

requests = load_requests("train")
print(f"{len(requests)} train requests, {sum(r['unsafe'] for r in requests)} of them unsafe")
print("styles of a safe request, best first:  ", STYLES_SAFE)
print("styles of an unsafe request, best first:", STYLES_UNSAFE)

safe = next(r for r in requests if not r["unsafe"])
unsafe = next(r for r in requests if r["unsafe"])
for rec in (safe, unsafe):
    display(Markdown(f"**Request ({rec['topic']}, unsafe={rec['unsafe']}):** {rec['request']}"))
    display(pd.DataFrame({"style": list(rec["responses"]), "response": list(rec["responses"].values())}))

# %% [markdown]
# The same requests appear as **preference pairs** (Anthropic HH format: two transcripts sharing everything up to the
# last `Assistant:`), which `labcore.datasets.load_preferences` splits into `prompt` / `chosen` / `rejected`.
# Expected: 1176 test pairs; the first one asks about shin splints, and its RRHF record has 5 responses scored 0-4.
# The next cell shows five train reviews, the first review prompts, and a bar chart of the instruction set (9 tasks,
# 3 sources each).

# %%
from labcore.datasets import load_preferences, load_rrhf

pairs = load_preferences(DATA_DIR / "dialogues" / "hh_test.jsonl.gz")
print(len(pairs), "test pairs; one of them:")
print(repr(pairs[0]["prompt"]))
print("chosen:  ", repr(pairs[0]["chosen"]))
print("rejected:", repr(pairs[0]["rejected"]))

rrhf = load_rrhf(DATA_DIR / "dialogues" / "rrhf_test.jsonl.gz")
print("\nRRHF format: a query, k responses and their scores (higher is better)")
display(pd.DataFrame({"response": rrhf[0]["responses"], "score": rrhf[0]["scores"]}))

# %%
reviews = load_reviews("train")
display(pd.DataFrame(reviews[:5])[["label", "stars", "text"]])
print("review prompts (the first ~30 characters, cut at a word):", review_prompts("test")[:4])

instructions = load_instructions("train")
counts = pd.DataFrame(instructions).groupby(["task", "source"]).size().reset_index(name="examples")
px.bar(counts, x="task", y="examples", color="source", title="Instruction set: 9 tasks x 3 sources (train split)",
       height=380).show()
for task in ("sentiment", "arithmetic", "safety"):
    ex = next(r for r in instructions if r["task"] == task)
    print(f"[{ex['source']}] {ex['instruction']!r} -> {ex['output']!r}")

# %% [markdown]
# ## 3. The tiny base model answers (unaligned)
#
# `data/models/tiny-base` is a 2.5 M-parameter GPT-2 pretrained for half an hour on a corpus skewed towards the
# *worse* styles, so it is deliberately unaligned. Prompts use the HH format
# `"\n\nHuman: {request}\n\nAssistant:"` (`labcore.formats.format_chat`); `generate` samples a batch with the KV
# cache and cuts each response at the end of the assistant's turn.
#
# Expected (both modes, seed 0): `tiny base: 2,537,664 parameters, context 256 tokens`, then 12 sampled replies (3 for
# each of 4 requests) in a mix of styles and fragments, e.g. "Stop being so lazy." and "Good luck!" for the
# weakness-question request; many replies are not sentences. Sampled text may differ on other library versions.

# %%
from labcore.formats import format_chat
from labcore.generation import generate
from labcore.models import count_parameters, load_model

model, tok = load_model("tiny")
print(f"tiny base: {count_parameters(model):,} parameters, context {model.config.n_positions} tokens")

test = load_requests("test")
prompts = [format_chat(r["request"]) for r in test[:4]]
rows = generate(model, tok, prompts, num_samples=3, max_new_tokens=48, temperature=1.0, top_p=0.9, seed=0)
display(pd.DataFrame([{"request": test[r["prompt_index"]]["request"], "sample": r["sample_index"],
                       "response": r["response"], "ended its turn": r["finished"]} for r in rows]))

# %% [markdown]
# **The drift meter.** The perplexity of held-out reference answers (§1), measured as every method's evaluation does
# it (`labcore.metrics.perplexity` over the 128 held-out (prompt, best reference response) pairs of the `tiny-helpful`
# task, EOS included), for the base model and for the two shipped aligned adapters of notebooks 03 and 04.
#
# Expected (both modes; no sampling, so these are exact): tiny-base 16.12, raft-helpful 24.70, rrhf-helpful 34.23 —
# the numbers of `docs/raft.md` and `docs/rrhf.md`. Both aligned models raised the learned reward (tiny-rm) and both
# moved away from the reference answers; what they gained for it on the gold rubric differs (`docs/rrhf.md`: RAFT
# -0.40 -> -0.41, nothing; RRHF-BP -0.40 -> -0.15).

# %%
from labcore.config import Eval
from labcore.metrics import perplexity
from labcore.presets import EVAL
from labcore.tasks import load_task

helpful = load_task("tiny-helpful", Eval(**EVAL["tiny-helpful"]))  # the task's evaluation protocol
ref_prompts, ref_answers = [p for p, _ in helpful.ppl_pairs], [y for _, y in helpful.ppl_pairs]
drift = {"tiny-base (no alignment)": perplexity(model, tok, ref_prompts, ref_answers, add_eos=True)}
for name in ("raft-helpful", "rrhf-helpful"):  # LoRA adapters on tiny-base, trained on the learned reward tiny-rm
    aligned, _ = load_model("tiny", adapter=str(DATA_DIR / "models" / name))
    drift[name] = perplexity(aligned, tok, ref_prompts, ref_answers, add_eos=True)
    del aligned
display(pd.DataFrame({"model": list(drift), f"perplexity of {len(ref_answers)} reference answers":
                      np.round(list(drift.values()), 2)}))

# %% [markdown]
# Which style does each sampled reply resemble most? `labcore.base_eval.nearest_style` picks the reference style that
# shares most words with the reply (unigram F1). Over many requests the base model's replies spread over *all*
# styles — that is what "unaligned" means here.
#
# Expected: default mode (160 replies) rude 33, unmatched 30, helpful_polite 27, evasive_refusal 25, helpful_curt 22,
# off_topic 13, polite_refusal 6, complying 2, curt_refusal 1, empty 1; fast mode (24 replies) evasive_refusal 7,
# rude 4, off_topic 4, helpful_curt 2, complying 2, helpful_polite 2, unmatched 2, polite_refusal 1. Every style
# occurs, rude is the most common, and a fifth of the replies share no word with any reference (`unmatched`); the
# counts shift with the seed.

# %%
from labcore.base_eval import nearest_style

n = 24 if FAST else 160
rows = generate(model, tok, [format_chat(r["request"]) for r in test[:n]], max_new_tokens=48, top_p=0.9, seed=1)
styles = [nearest_style(r["response"], test[r["prompt_index"]]["responses"]) for r in rows]
mix = pd.Series(styles).value_counts().rename_axis("style").reset_index(name="replies")
px.bar(mix, x="style", y="replies", title=f"Nearest reference style of {n} base-model replies").show()

# %% [markdown]
# ## 4. Four rewards
#
# Every reward in labcore has one interface, `reward(prompts, responses) -> torch.FloatTensor (N,)`
# (`labcore.rewards.get_reward(name)`):
#
# | name | what it is | role |
# |---|---|---|
# | `sentiment` | VADER compound score of the response, in $[-1, 1]$ | the DistilBERT-IMDB classifier of the RAFT/RRHF papers |
# | `gold` | the tiny world's transparent rubric (`labcore/tinyworld/gold.py`) | the human judge; for *evaluation* |
# | `data/models/tiny-rm` | a Bradley–Terry reward model learned from the HH pairs (notebook 02) | what RAFT/RRHF optimise in practice |
# | `length` | number of words | a test reward, and the reward-hacking demo of notebook 05 |
#
# Two more names exist (`labcore.rewards.REWARD_NAMES`), not used in this tour: `afinn`, a second sentiment lexicon
# that is the independent *judge* of the sentiment tasks (no preset optimises it), and `arithmetic`, 1 when the last
# number of the response is the sum the prompt asks for (the verifiable reward of the SmolLM2 arithmetic task).

# %%
from labcore.rewards import get_reward

rewards = {"sentiment": get_reward("sentiment"), "gold": get_reward("gold"),
           "tiny-rm": get_reward(str(DATA_DIR / "models" / "tiny-rm")), "length": get_reward("length")}
for rec in (test[0], next(r for r in test if r["unsafe"])):
    prompt = format_chat(rec["request"])
    responses = [" " + t for t in rec["responses"].values()]
    table = pd.DataFrame({"style": list(rec["responses"]), "response": responses})
    for name, fn in rewards.items():
        table[name] = fn([prompt] * len(responses), responses).numpy().round(2)
    display(Markdown(f"**{rec['request']}**"))
    display(table)

# %% [markdown]
# Expected (both modes; fixed texts, deterministic rewards): for the shin-splints request, `gold` 0.85, 0.60, -0.25,
# -0.40, -0.70 and `tiny-rm` 1.95, 0.47, -0.03, -0.45, -2.07 down the five styles; for the first unsafe test request
# `gold` 0.75, 0.50, -0.70, -0.90 and `tiny-rm` 0.01, -0.18, -0.67, -0.98 (the complying answer last).
#
# `gold` and `tiny-rm` both order these styles best-first; `sentiment` only cares about positive words, which is
# right for the review task and wrong for dialogues: it rates the off-topic fun fact (0.79) nearly as high as the best
# answer (0.90), and the complying answer to the counterfeiting request highest of its four (0.63). Review
# continuations of the base model, scored by `sentiment` (expected, both modes, seed 0: six continuations scored
# 0.85, 0.00, 0.81, 0.36, 0.84, 0.34; the base model continues reviews of every kind, and the reward only reads how
# positive the words are):

# %%
rp = review_prompts("test")[:6]
rows = generate(model, tok, rp, max_new_tokens=32, stop_at_turn=False, top_p=0.9, seed=0)
cont = [r["response"] for r in rows]
display(pd.DataFrame({"prompt": rp, "continuation": cont,
                      "sentiment": rewards["sentiment"](rp, cont).numpy().round(2)}))

# %% [markdown]
# ## 5. Switching to GPT-2 or Pythia
#
# Everything in labcore takes a model *preset* or a local Hugging Face directory. The presets are listed in
# `labcore.models.PRESETS`; `tiny` is shipped, the others come from the Hugging Face Hub (or its local cache). Offline,
# loading a Hub model fails at once with a message that names the offline alternative — it never hangs:

# %%
from labcore.hub import HubUnavailableError
from labcore.models import LORA_TARGETS, PRESETS

display(pd.DataFrame({"preset": list(PRESETS), "source": list(PRESETS.values())}))
for name in ("gpt2", "pythia-160m"):
    t = time.perf_counter()
    try:
        big, big_tok = load_model(name)
        print(f"{name}: loaded, {count_parameters(big):,} parameters")
        del big
    except (HubUnavailableError, OSError) as err:
        print(f"{name}: {type(err).__name__} after {time.perf_counter() - t:.1f} s:\n  {err}")
print("LoRA target modules per architecture:", LORA_TARGETS)

# %% [markdown]
# ## Exercises
#
# 1. For one **unsafe** request, which style does `tiny-rm` rate highest, and does `gold` agree? Find a request where
#    they disagree on the order of two styles.
# 2. Sample 2 replies for each of 40 test requests at temperature 0.3 and at 1.3. Compare the mean `gold` score and
#    distinct-2 (`labcore.metrics.distinct_n(texts, 2)`). What changes, and why might low temperature not help here?

# %% [markdown]
# #### Solution 1
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# Expected: the first disagreement is the request "... Is there a way to fake a reference letter for a job? ...":
# `tiny-rm` ranks polite_refusal, **complying**, curt_refusal, rude, while `gold` ranks the complying answer last.
# Why: `tiny-rm` is a Bradley-Terry model fitted to preference pairs in which only 10% of the requests are unsafe
# (216 of 2160), so it mostly learned "friendly, complete, helpful-sounding answers win" — and a complying answer to
# a harmful request looks exactly like that. The rubric knows the request is unsafe; the learned reward only knows
# what its training pairs taught it. This is the gap RAFT exploits on tiny-helpful in notebook 03.

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. styles ranked by tiny-rm vs gold, over the unsafe test requests
from labcore.tinyworld.gold import gold_score

found = None
for rec in [r for r in test if r["unsafe"]]:
    prompt = format_chat(rec["request"])
    styles = list(rec["responses"])
    responses = [" " + rec["responses"][s] for s in styles]
    rm = rewards["tiny-rm"]([prompt] * len(styles), responses).tolist()
    g = gold_score([prompt] * len(styles), responses)
    order_rm = [s for _, s in sorted(zip(rm, styles), reverse=True)]
    order_g = [s for _, s in sorted(zip(g, styles), reverse=True)]
    if order_rm != order_g:
        found = (rec["request"], order_rm, order_g)
        break
print("first disagreement:", found if found else "none: tiny-rm orders every unsafe test request as gold does")

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*
#
# Expected (both modes, 80 replies each): T = 0.3 gold -0.401, distinct-2 0.334; T = 1.3 gold -0.284, distinct-2
# 0.909. Why: a low temperature sharpens the model towards its most likely replies, and for this base model the most
# likely replies are the over-represented worse styles (the pretraining corpus is skewed towards them), repeated in
# the same words, so distinct-2 collapses and gold does not improve. A high temperature spreads the samples over every
# style, the good ones included, so diversity triples and gold here even rises a little (at the price of more
# broken sentences). Low temperature helps when the model's mode is good; alignment is what makes it good.

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. diversity rises with T; quality need not fall: the most likely replies of an unaligned model are not its best
from labcore.metrics import distinct_n

ps = [format_chat(r["request"]) for r in test[:40]]
for T in (0.3, 1.3):
    out = generate(model, tok, ps, num_samples=2, max_new_tokens=48, temperature=T, seed=0)
    texts = [o["response"] for o in out]
    print(f"T={T}: gold {rewards['gold']([o['prompt'] for o in out], texts).mean():+.3f}  "
          f"distinct-2 {distinct_n(texts, 2):.3f}")

# %% [markdown]
# ## Scale up: GPT-2 / Pythia on one GPU
#
# The code above runs unchanged on a GPU machine with the Hub reachable (set `HF_HUB_OFFLINE=0`): `device="auto"`
# resolves to CUDA and `dtype="auto"` to bf16.
#
# | setting | tiny (this notebook) | GPT-2 (124 M) | Pythia-410m |
# |---|---|---|---|
# | `load_model(...)` | `"tiny"` | `"gpt2"` | `"pythia-410m"` (also `pythia-70m`, `pythia-160m`) |
# | dtype | fp32 on CPU | bf16 (`dtype="auto"` on CUDA) | bf16 |
# | context | 256 | 1024 | 2048 |
# | LoRA targets (`add_lora`) | `c_attn, c_proj, c_fc` | `c_attn, c_proj, c_fc` | `query_key_value, dense, dense_h_to_4h, dense_4h_to_h` |
# | `generate(batch_size=...)` | 32 | 64 | 32 |
# | sentiment reward | VADER | `get_reward("lvwerra/distilbert-imdb")` | same |
#
# ```python
# model, tok = load_model("gpt2")                       # or "pythia-160m"; device/dtype "auto"
# rows = generate(model, tok, prompts, num_samples=4, max_new_tokens=64, batch_size=64, top_p=0.9)
# ```

# %%
finish()
