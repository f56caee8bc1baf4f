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
# * score responses with the three rewards used throughout the lab: `sentiment`, `gold` and the learned `tiny-rm`;
# * know how to switch the same code to GPT-2 or Pythia on a GPU.
#
# Run the cells top to bottom. With `LABCORE_FAST=1` every notebook uses tiny sizes and finishes in about two
# minutes on a laptop CPU; without it, a few minutes.

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
# PPO optimises this with reinforcement learning (four models in memory). This lab teaches three cheaper ideas:
#
# | notebook | idea | paper |
# |---|---|---|
# | `01_coreset` | which *data* to instruction-tune on: 0.5% chosen well can match all of it | Chen et al. 2023, arXiv 2305.09246 |
# | `02_reward_models` | where $r$ comes from when no rubric exists: a Bradley–Terry model of preferences | Ouyang et al. 2022, arXiv 2203.02155 |
# | `03_raft` | sample, rank by $r$, fine-tune on the best, repeat | Dong et al. 2023, arXiv 2304.06767 |
# | `04_rrhf` | rank $k$ responses with a hinge on the model's own log-probabilities | Yuan et al. 2023, arXiv 2304.05302 |
# | `05_compare_chat` | compare the aligned models, watch for reward hacking, chat | — |

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
# last `Assistant:`), which `labcore.datasets.load_preferences` splits into `prompt` / `chosen` / `rejected`:

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
# Which style does each sampled reply resemble most? `labcore.base_eval.nearest_style` picks the reference style that
# shares most words with the reply (unigram F1). Over many requests the base model's replies spread over *all*
# styles — that is what "unaligned" means here.

# %%
from labcore.base_eval import nearest_style

n = 24 if FAST else 160
rows = generate(model, tok, [format_chat(r["request"]) for r in test[:n]], max_new_tokens=48, top_p=0.9, seed=1)
styles = [nearest_style(r["response"], test[r["prompt_index"]]["responses"]) for r in rows]
mix = pd.Series(styles).value_counts().rename_axis("style").reset_index(name="replies")
px.bar(mix, x="style", y="replies", title=f"Nearest reference style of {n} base-model replies").show()

# %% [markdown]
# ## 4. Three rewards
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
# `gold` and `tiny-rm` both order the styles roughly best-first; `sentiment` only cares about positive words, which is
# right for the review task and wrong for dialogues. Review continuations of the base model, scored by `sentiment`:

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
