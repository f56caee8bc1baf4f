"""Write the class notebooks (``notebooks/NN_*.ipynb``) from the cell lists below, without outputs.

The notebooks are generated so that they can be reviewed as code: edit this file, then run

    .venv/bin/python notebooks/_build.py          # rewrites every notebook
    .venv/bin/python notebooks/_build.py --check  # exit 1 if a committed notebook differs from this file

Conventions: every notebook opens with learning goals; the paper's equations sit in LaTeX next to the labcore
function that implements them (notebooks import, they never define an algorithm); figures are plotly; exercises
end with a "Solution" heading and a code cell whose source is collapsed (cell metadata
``"jupyter": {"source_hidden": true}``); a "Scale up" section gives the exact settings for GPT-2 / Pythia on one GPU.
Sizes come from ``labcore.utils.fast_mode()`` (``LABCORE_FAST=1``: a couple of minutes on 2 CPU cores).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------------------------
# Cell helpers
# ---------------------------------------------------------------------------------------------------------------


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


def solution(text: str, title: str = "Solution") -> list:
    """A "Solution" heading and a code cell whose source is collapsed in Jupyter (click to expand)."""
    cell = new_code_cell(text.strip("\n"))
    cell.metadata["jupyter"] = {"source_hidden": True}
    cell.metadata["tags"] = ["solution"]
    return [md(f"#### {title}\n\n*(the code below is collapsed: click the bar or the `...` to show it)*"), cell]


SETUP = '''
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # class machines have no Hugging Face Hub; set it to 0 to allow it
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import time
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

from labcore.utils import DATA_DIR, REPO_ROOT, fast_mode, resolve_device, set_seed

FAST = fast_mode()  # LABCORE_FAST=1: tiny sizes (about 2 minutes per notebook on 2 CPU cores)
if (os.cpu_count() or 1) <= 4:
    torch.set_num_threads(1)  # tiny models on a few shared cores: one thread is faster than two
pd.set_option("display.max_colwidth", 120)
set_seed(0)
T0 = time.perf_counter()
print(f"fast mode: {FAST}   device: {resolve_device('auto')}   torch threads: {torch.get_num_threads()}")
'''

FOOTER = '''
print(f"notebook ran in {time.perf_counter() - T0:.0f} s (fast mode: {FAST})")
'''

# ---------------------------------------------------------------------------------------------------------------
# 00 — tour and set-up
# ---------------------------------------------------------------------------------------------------------------
NB00 = [
    md(r"""
# 00 · Tour of the lab: what alignment is for, the tiny world, the base model, the rewards

**Learning goals**

* say in one sentence what alignment changes in a pretrained language model, and why a *reward* is the lever;
* know the tiny world this lab runs in (dialogues in five styles, movie reviews, an instruction set) and where
  its datasheet is (`data/README.md`);
* sample from the tiny **unaligned** base model with `labcore.generation.generate` and see its mix of styles;
* score responses with the three rewards used throughout the lab: `sentiment`, `gold` and the learned `tiny-rm`;
* know how to switch the same code to GPT-2 or Pythia on a GPU.

Run the cells top to bottom. With `LABCORE_FAST=1` every notebook uses tiny sizes and finishes in about two
minutes on a laptop CPU; without it, a few minutes.
"""),
    code(SETUP),
    md(r"""
## 1. What alignment is for

A pretrained model $\pi_0$ imitates its corpus: asked a question, it answers in whatever way people in the corpus
answered — helpful, rude, evasive, off-topic, or by happily explaining something harmful. *Alignment* moves the
model towards the answers we prefer, measured by a reward $r(x, y)$ of a prompt $x$ and a response $y$:

$$\max_\pi \; \mathbb{E}_{x \sim D,\; y \sim \pi(\cdot \mid x)} \big[ r(x, y) \big].$$

PPO optimises this with reinforcement learning (four models in memory). This lab teaches three cheaper ideas:

| notebook | idea | paper |
|---|---|---|
| `01_coreset` | which *data* to instruction-tune on: 0.5% chosen well can match all of it | Chen et al. 2023, arXiv 2305.09246 |
| `02_reward_models` | where $r$ comes from when no rubric exists: a Bradley–Terry model of preferences | Ouyang et al. 2022, arXiv 2203.02155 |
| `03_raft` | sample, rank by $r$, fine-tune on the best, repeat | Dong et al. 2023, arXiv 2304.06767 |
| `04_rrhf` | rank $k$ responses with a hinge on the model's own log-probabilities | Yuan et al. 2023, arXiv 2304.05302 |
| `05_compare_chat` | compare the aligned models, watch for reward hacking, chat | — |
"""),
    md(r"""
## 2. The tiny world

Real alignment data (HH-RLHF, IMDB, P3) and real models do not fit a 2-core laptop and a class period. The tiny
world is a generated, download-free stand-in with the same *shape* (datasheet: `data/README.md`):

* **dialogue requests**, each with one reference response per *style*, best first;
* **HH-style preference pairs** and **RRHF-style ranked responses** built from them;
* **movie reviews** whose first ~30 characters are the prompts of a "continue positively" task (the IMDB task);
* an **instruction set** of 9 task categories × 3 source datasets (the P3 role for core-set selection).
"""),
    code(r'''
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
'''),
    md(r"""
The same requests appear as **preference pairs** (Anthropic HH format: two transcripts sharing everything up to the
last `Assistant:`), which `labcore.datasets.load_preferences` splits into `prompt` / `chosen` / `rejected`:
"""),
    code(r'''
from labcore.datasets import load_preferences, load_rrhf

pairs = load_preferences(DATA_DIR / "dialogues" / "hh_test.jsonl.gz")
print(len(pairs), "test pairs; one of them:")
print(repr(pairs[0]["prompt"]))
print("chosen:  ", repr(pairs[0]["chosen"]))
print("rejected:", repr(pairs[0]["rejected"]))

rrhf = load_rrhf(DATA_DIR / "dialogues" / "rrhf_test.jsonl.gz")
print("\nRRHF format: a query, k responses and their scores (higher is better)")
display(pd.DataFrame({"response": rrhf[0]["responses"], "score": rrhf[0]["scores"]}))
'''),
    code(r'''
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
'''),
    md(r"""
## 3. The tiny base model answers (unaligned)

`data/models/tiny-base` is a 2.5 M-parameter GPT-2 pretrained for half an hour on a corpus skewed towards the
*worse* styles, so it is deliberately unaligned. Prompts use the HH format
`"\n\nHuman: {request}\n\nAssistant:"` (`labcore.models.format_chat`); `generate` samples a batch with the KV
cache and cuts each response at the end of the assistant's turn.
"""),
    code(r'''
from labcore.generation import generate
from labcore.models import count_parameters, format_chat, load_model

model, tok = load_model("tiny")
print(f"tiny base: {count_parameters(model):,} parameters, context {model.config.n_positions} tokens")

test = load_requests("test")
prompts = [format_chat(r["request"]) for r in test[:4]]
rows = generate(model, tok, prompts, num_samples=3, max_new_tokens=48, temperature=1.0, top_p=0.9, seed=0)
display(pd.DataFrame([{"request": test[r["prompt_index"]]["request"], "sample": r["sample_index"],
                       "response": r["response"], "ended its turn": r["finished"]} for r in rows]))
'''),
    md(r"""
Which style does each sampled reply resemble most? `labcore.pretrain.nearest_style` picks the reference style that
shares most words with the reply (unigram F1). Over many requests the base model's replies spread over *all*
styles — that is what "unaligned" means here.
"""),
    code(r'''
from labcore.pretrain import nearest_style

n = 24 if FAST else 160
rows = generate(model, tok, [format_chat(r["request"]) for r in test[:n]], max_new_tokens=48, top_p=0.9, seed=1)
styles = [nearest_style(r["response"], test[r["prompt_index"]]["responses"]) for r in rows]
mix = pd.Series(styles).value_counts().rename_axis("style").reset_index(name="replies")
px.bar(mix, x="style", y="replies", title=f"Nearest reference style of {n} base-model replies").show()
'''),
    md(r"""
## 4. Three rewards

Every reward in labcore has one interface, `reward(prompts, responses) -> torch.FloatTensor (N,)`
(`labcore.rewards.get_reward(name)`):

| name | what it is | role |
|---|---|---|
| `sentiment` | VADER compound score of the response, in $[-1, 1]$ | the DistilBERT-IMDB classifier of the RAFT/RRHF papers |
| `gold` | the tiny world's transparent rubric (`labcore/tinyworld/gold.py`) | the human judge; for *evaluation* |
| `data/models/tiny-rm` | a Bradley–Terry reward model learned from the HH pairs (notebook 02) | what RAFT/RRHF optimise in practice |
| `length` | number of words | a test reward, and the reward-hacking demo of notebook 05 |
"""),
    code(r'''
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
'''),
    md(r"""
`gold` and `tiny-rm` both order the styles roughly best-first; `sentiment` only cares about positive words, which is
right for the review task and wrong for dialogues. Review continuations of the base model, scored by `sentiment`:
"""),
    code(r'''
rp = review_prompts("test")[:6]
rows = generate(model, tok, rp, max_new_tokens=32, stop_at_turn=False, top_p=0.9, seed=0)
cont = [r["response"] for r in rows]
display(pd.DataFrame({"prompt": rp, "continuation": cont,
                      "sentiment": rewards["sentiment"](rp, cont).numpy().round(2)}))
'''),
    md(r"""
## 5. Switching to GPT-2 or Pythia

Everything in labcore takes a model *preset* or a local Hugging Face directory. The presets are listed in
`labcore.models.PRESETS`; `tiny` is shipped, the others come from the Hugging Face Hub (or its local cache). Offline,
loading a Hub model fails at once with a message that names the offline alternative — it never hangs:
"""),
    code(r'''
from labcore.models import LORA_TARGETS, PRESETS, HubUnavailableError

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
'''),
    md(r"""
## Exercises

1. For one **unsafe** request, which style does `tiny-rm` rate highest, and does `gold` agree? Find a request where
   they disagree on the order of two styles.
2. Sample 2 replies for each of 40 test requests at temperature 0.3 and at 1.3. Compare the mean `gold` score and
   distinct-2 (`labcore.metrics.distinct_n(texts, 2)`). What changes, and why might low temperature not help here?
"""),
    *solution(r'''
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
''', "Solution 1"),
    *solution(r'''
# 2. diversity rises with T; quality need not fall: the most likely replies of an unaligned model are not its best
from labcore.metrics import distinct_n

ps = [format_chat(r["request"]) for r in test[:40]]
for T in (0.3, 1.3):
    out = generate(model, tok, ps, num_samples=2, max_new_tokens=48, temperature=T, seed=0)
    texts = [o["response"] for o in out]
    print(f"T={T}: gold {rewards['gold']([o['prompt'] for o in out], texts).mean():+.3f}  "
          f"distinct-2 {distinct_n(texts, 2):.3f}")
''', "Solution 2"),
    md(r"""
## Scale up: GPT-2 / Pythia on one GPU

The code above runs unchanged on a GPU machine with the Hub reachable (set `HF_HUB_OFFLINE=0`): `device="auto"`
resolves to CUDA and `dtype="auto"` to bf16.

| setting | tiny (this notebook) | GPT-2 (124 M) | Pythia-410m |
|---|---|---|---|
| `load_model(...)` | `"tiny"` | `"gpt2"` | `"pythia-410m"` (also `pythia-70m`, `pythia-160m`) |
| dtype | fp32 on CPU | bf16 (`dtype="auto"` on CUDA) | bf16 |
| context | 256 | 1024 | 2048 |
| LoRA targets (`add_lora`) | `c_attn, c_proj, c_fc` | `c_attn, c_proj, c_fc` | `query_key_value, dense, dense_h_to_4h, dense_4h_to_h` |
| `generate(batch_size=...)` | 32 | 64 | 32 |
| sentiment reward | VADER | `get_reward("lvwerra/distilbert-imdb")` | same |

```python
model, tok = load_model("gpt2")                       # or "pythia-160m"; device/dtype "auto"
rows = generate(model, tok, prompts, num_samples=4, max_new_tokens=64, batch_size=64, top_p=0.9)
```
"""),
    code(FOOTER),
]

# ---------------------------------------------------------------------------------------------------------------
# 01 — core-set selection
# ---------------------------------------------------------------------------------------------------------------
NB01 = [
    md(r"""
# 01 · Core-set selection: maybe only 0.5% of the data is needed

Chen et al. 2023, *Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training Data Instruction
Tuning*, arXiv 2305.09246. Code: `labcore/embed.py`, `labcore/coreset.py`, `labcore/kcenter.py`,
`labcore/viz.py`, `labcore/coreset_experiment.py`.

**Learning goals**

* embed instructions with masked **mean pooling** + L2 normalisation, and read the pooling line by line;
* cluster **all** tasks with K-means and find a task's **distribution centre** and **task centre**;
* run **KCenterGreedy** step by step and see why it covers a task better than random sampling (the covering radius);
* read the 0.5% experiment: core-set vs random vs the full task, at equal compute.

**Subset.** Embedding all 35,307 train instructions takes 20+ minutes on 2 CPU cores (seconds on a GPU), so this
notebook works on a seeded random subset: 3,000 examples by default, 400 in fast mode. Embeddings are cached on disk
(`$LABCORE_CACHE`, default `~/.cache/labcore`), so a second run is fast.
"""),
    code(SETUP),
    code(r'''
import random

from labcore.coreset import example_text
from labcore.tinyworld import load_instructions

N_SUB = 400 if FAST else 3000
TARGET = "sentiment"
train_all = load_instructions("train")
sub = random.Random(0).sample(train_all, N_SUB)  # the same subset on every run
texts = [example_text(r) for r in sub]  # the embedded text is the instruction (the task input)
tasks = np.array([r["task"] for r in sub])
sources = [r["source"] for r in sub]
print(f"{N_SUB} of {len(train_all)} train examples; {int((tasks == TARGET).sum())} of them in task {TARGET!r}")
display(pd.Series(tasks).value_counts().rename("examples").to_frame().T)
'''),
    md(r"""
## 1. Embeddings: mean pooling, written out

Step 1 of the paper: encode each example with a sentence encoder and average its last hidden states over the
real (non-padding) tokens, then normalise:

$$e = \frac{\bar h}{\lVert \bar h \rVert_2}, \qquad \bar h = \frac{\sum_t m_t\, h_t}{\sum_t m_t},$$

with $h_t \in \mathbb{R}^d$ the encoder's last hidden state at token $t$ and $m_t \in \{0, 1\}$ the attention mask.
`labcore.embed.mean_pool` and `l2_normalise` implement it; the encoder is all-MiniLM-L6-v2 ($d = 384$), shipped
inside a PyPI package so it works offline. Here are the two functions, then the same computation by hand on three
texts, compared with `embed_texts`:
"""),
    code(r'''
import inspect

from labcore.embed import embed_texts, l2_normalise, load_encoder, mean_pool

print(inspect.getsource(mean_pool))
print(inspect.getsource(l2_normalise))

enc_tok, encoder = load_encoder("minilm", "cpu")
three = texts[:3]
batch = enc_tok(three, padding=True, truncation=True, max_length=256, return_tensors="pt")
with torch.no_grad():
    h = encoder(**batch).last_hidden_state  # (B, T, d)
print("hidden states", tuple(h.shape), "  attention mask (1 = real token):\n", batch["attention_mask"])
by_hand = l2_normalise(mean_pool(h, batch["attention_mask"])).numpy()  # (B, d)
library = embed_texts(three, cache=False, progress=False)
print("max |by hand - embed_texts| =", float(np.abs(by_hand - library).max()))
'''),
    code(r'''
t = time.perf_counter()
emb = embed_texts(texts, progress=False)  # (N, 384), cached on disk by text
print(f"embedded {emb.shape} in {time.perf_counter() - t:.1f} s;  row norms = 1: {np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)}")
'''),
    md(r"""
## 2. K-means over all tasks, distribution centre and task centre

Step 2: K-means over *all* examples of *all* tasks, labels unused (task boundaries are fuzzy).
Step 3: count the target task's examples per cluster; the centroid of the most frequent cluster is the task's
**distribution centre** $c$ — it need not be an example. Step 4: the **task centre** is the task example most similar
to it,

$$k^\star = \arg\max_k \big|\{ i \in \text{task} : \text{cluster}(i) = k \}\big|, \quad c = \mu_{k^\star}, \quad
i_0 = \arg\max_{i \in \text{task}} \cos(e_i, c).$$

`labcore.coreset.fit_kmeans`, `distribution_centre`, `task_centre`:
"""),
    code(r'''
from labcore.coreset import distribution_centre, fit_kmeans, task_centre

K = 16 if FAST else 32
km = fit_kmeans(emb, n_clusters=K, random_state=0)
crosstab = pd.crosstab(pd.Series(tasks, name="task"), pd.Series(km.labels, name="cluster"))
px.imshow(crosstab, text_auto=True, aspect="auto", color_continuous_scale="Blues",
          title=f"Examples per (task, cluster): K-means with K={K} never saw the task labels").show()

task_idx = np.flatnonzero(tasks == TARGET)  # (n,) positions of the target task in the subset
c, centre, counts = distribution_centre(km.labels[task_idx], km.centroids)
start = task_centre(emb[task_idx], centre)
print(f"distribution centre: cluster {c}, holding {counts[c]} of the {len(task_idx)} {TARGET!r} examples")
print(f"task centre: [{sources[task_idx[start]]}] {texts[task_idx[start]]!r}")
'''),
    md(r"""
## 3. KCenterGreedy, step by step

Step 5 (Sener & Savarese 2018, arXiv 1708.00489, Algorithm 1): start from the task centre and repeatedly add the
example *farthest* from everything chosen so far,

$$u = \arg\max_{i \notin S} \; \min_{j \in S} \lVert x_i - x_j \rVert, \qquad S \leftarrow S \cup \{u\},$$

which greedily shrinks the **covering radius** $r(S) = \max_i \min_{j \in S} \lVert x_i - x_j \rVert$ (a
2-approximation of the best possible). On 2-D toy points — press *play* or drag the slider; the red dashed segment
is the current radius, and its far end is the next pick (`labcore.viz.plot_kcenter_steps`):
"""),
    code(r'''
from labcore.viz import plot_kcenter_steps, toy_points

plot_kcenter_steps(toy_points(n=60, n_blobs=4, random_state=0), budget=6).show()
'''),
    md(r"""
Two implementations: `kcenter_greedy_reference` is Algorithm 1 in ten readable lines of float64 numpy
($O(\text{budget} \cdot N \cdot d)$); `KCenterGreedy` is the fast scikit-learn-style estimator (lazy bounds,
triangle-inequality pruning, fp32 screening with exact float64 verification). They must choose **the same
examples** — check it on the task's embeddings:
"""),
    code(r'''
from labcore.kcenter import KCenterGreedy, kcenter_greedy_reference

BUDGET = 12 if FAST else 40  # 40 = 0.5% of the 8,052 sentiment examples of the full train set
X_task = emb[task_idx]  # (n, d)
ref_sel, ref_min, ref_radius = kcenter_greedy_reference(X_task, BUDGET, initial=start)
kc = KCenterGreedy(BUDGET, device="cpu").fit(X_task, initial=start)
print("same picks:", list(kc.selected_indices_) == ref_sel, "  same radii:", np.array_equal(kc.radius_history_, ref_radius))
print("first picks:", ref_sel[:8])
print("work:", kc.stats_)
'''),
    md(r"""
## 4. The whole pipeline, the map and the radius curve

`labcore.coreset.select_coreset` runs steps 2–5 and the two baselines at the same budget (uniform random and
cluster-stratified random). The map is a 2-D UMAP of the embeddings (for the eye only: every distance above is in
384-D), one colour per cluster, the core-set as stars (`labcore.viz.umap_2d`, `plot_clusters`):
"""),
    code(r'''
from labcore.coreset import select_coreset
from labcore.viz import plot_clusters, plot_radius_curve, umap_2d

res = select_coreset(emb, tasks, TARGET, BUDGET, kmeans=km, device="cpu")
picked = pd.DataFrame({"rank": range(res.budget), "source": [sources[i] for i in res.selected_indices],
                       "instruction": [texts[i] for i in res.selected_indices]})
display(picked.head(8))
print("sources in the core-set:", picked["source"].value_counts().to_dict())

t = time.perf_counter()
xy = umap_2d(emb)  # cached on disk
print(f"UMAP of {len(emb)} points: {time.perf_counter() - t:.1f} s")
plot_clusters(xy, res.labels, texts, res, tasks=tasks, sources=sources, embeddings=emb, show_baselines=True).show()
'''),
    code(r'''
plot_radius_curve(res).show()
print(f"covering radius with {res.budget} examples: core-set {res.radius_curve[-1]:.3f}, "
      f"random {res.random_radius_curve[-1]:.3f}, stratified {res.stratified_radius_curve[-1]:.3f}")
'''),
    md(r"""
## 5. The 0.5% experiment

The paper's claim is about *training*: instruction-tune on the core-set only, and match (or beat) training on the
whole task. `labcore.coreset_experiment.run_experiment` trains a fresh copy of the tiny base for each arm —
`coreset`, `random`, `stratified`, `full` — with the **same number of optimiser steps** (a fair, compute-matched
rule), then scores exact-match accuracy per source dataset on held-out test examples:

$$\text{acc}_s = \frac{1}{|T_s|} \sum_{(x, y) \in T_s} \big[\operatorname{norm}(\hat y(x)) = \operatorname{norm}(y)\big].$$

The full run (all 35k train examples, 3 seeds, 150 steps per arm) is a command:

```bash
python -m labcore.coreset_experiment --task sentiment --out docs/results/coreset   # ~20 min on 2 CPU cores
```

Its results, if they have been produced in this checkout:
"""),
    code(r'''
import json

from labcore.coreset_experiment import default_config, results_markdown, run_experiment

shipped = REPO_ROOT / "docs" / "results" / "coreset" / "results.json"
if shipped.is_file():
    display(Markdown(results_markdown(json.loads(shipped.read_text()))))
else:
    display(Markdown(f"> **No results yet** at `{shipped.relative_to(REPO_ROOT)}`: run the command above to "
                     "produce them. Below is the same experiment in miniature on this notebook's subset."))
'''),
    md(r"""
The same function in miniature on our subset (its embeddings are passed in, so nothing is re-embedded). With this
few steps and test examples the numbers are noisy — the point is to see the pieces, not to settle the question:
"""),
    code(r'''
import tempfile

test_task = [r for r in load_instructions("test") if r["task"] == TARGET]
cfg = default_config(fast=FAST, task=TARGET, budget=BUDGET, n_clusters=K, seeds=(0,),
                     arms=("coreset", "random", "full"), steps=5 if FAST else 40,
                     eval_per_source=8 if FAST else 30, num_threads=1)
out_dir = tempfile.mkdtemp(prefix="labcore-nb01-")
t = time.perf_counter()
results = run_experiment(cfg, out_dir, records=sub + test_task, embeddings=emb, progress=False)
print(f"mini experiment: {time.perf_counter() - t:.0f} s, written to {out_dir}")
display(Markdown(results_markdown(results)))
'''),
    md(r"""
## Exercises

1. Select a core-set for the task `safety` instead. Is its covering-radius advantage over random larger or smaller
   than for `sentiment`? Why might that be (look at the cluster/task table)?
2. On L2-normalised vectors $\lVert a - b \rVert^2 = 2 - 2\cos(a, b)$. Check that `KCenterGreedy(metric="cosine")`
   picks exactly the same examples as the Euclidean one.
3. What share of the core-set lies in the distribution-centre cluster, compared with the task's share in it?
   Explain the difference in one sentence.
"""),
    *solution(r'''
# 1. another task
res_s = select_coreset(emb, tasks, "safety", BUDGET, kmeans=km, device="cpu")
for name, r in (("sentiment", res), ("safety", res_s)):
    print(f"{name:10s} radius at k={r.budget}: core-set {r.radius_curve[-1]:.3f}  random {r.random_radius_curve[-1]:.3f}"
          f"  ratio {r.radius_curve[-1] / r.random_radius_curve[-1]:.2f}")
''', "Solution 1"),
    *solution(r'''
# 2. cosine vs Euclidean picks
kc_cos = KCenterGreedy(BUDGET, metric="cosine", device="cpu").fit(X_task, initial=start)
print("identical picks:", np.array_equal(kc_cos.selected_indices_, kc.selected_indices_))
''', "Solution 2"),
    *solution(r'''
# 3. KCenterGreedy spreads out: it under-samples the dense distribution-centre cluster
in_c = np.mean(res.labels[res.selected_indices] == res.distribution_cluster)
share = res.cluster_counts[res.distribution_cluster] / res.cluster_counts.sum()
print(f"core-set in cluster {res.distribution_cluster}: {in_c:.0%};  the task's share there: {share:.0%}")
''', "Solution 3"),
    md(r"""
## Scale up: GPT-2 / Pythia on one GPU

* Embed the **whole** instruction set: `embed_texts(texts, device="cuda", batch_size=256)` (35k texts in well under a
  minute on a GPU; cached for every later run). Any Hugging Face encoder id works as `model=` when the Hub is
  reachable, e.g. a larger sentence encoder.
* Select: `labcore select --data data/instructions.jsonl.gz --task sentiment --budget 0.005 --out coreset.jsonl`.
* The experiment with a real base model (LoRA; more steps because GPT-2 starts without the tiny world's vocabulary):

```bash
python -m labcore.coreset_experiment --model gpt2 --finetune lora --lr 2e-4 --steps 300 --device cuda --threads 0 \
    --seeds 0 1 2 --out runs/coreset-gpt2
python -m labcore.coreset_experiment --model pythia-160m --finetune lora --lr 2e-4 --steps 300 --device cuda \
    --threads 0 --out runs/coreset-pythia
```
"""),
    code(FOOTER),
]

# ---------------------------------------------------------------------------------------------------------------
# 02 — reward models
# ---------------------------------------------------------------------------------------------------------------
NB02 = [
    md(r"""
# 02 · Reward models: learning $r(x, y)$ from preferences

Bradley & Terry 1952; Ouyang et al. 2022, *Training language models to follow instructions with human feedback*,
arXiv 2203.02155 (Eq. 1). Code: `labcore/reward_model.py`, `labcore/rewards.py`.

**Learning goals**

* read preference data: a prompt, a chosen and a rejected response;
* write the Bradley–Terry loss and find it in `labcore.reward_model.bt_loss`;
* train a small reward model (a head on a frozen sentence encoder) in seconds and measure its pair accuracy;
* find what a learned reward model gets **wrong** by comparing it with the tiny world's `gold` rubric — the cracks
  that RAFT and RRHF will later push on.
"""),
    code(SETUP),
    md(r"""
## 1. Preference data

`labcore.datasets.load_preferences` reads Anthropic HH files (two transcripts that share everything up to the last
`Assistant:`) or TRL files (`prompt` / `chosen` / `rejected`) into one format:
"""),
    code(r'''
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
'''),
    md(r"""
## 2. The Bradley–Terry model

The probability that a labeller prefers $y_w$ to $y_l$ is modelled as a logistic function of a reward difference,
and the reward model is fitted by maximum likelihood (Ouyang et al. 2022, Eq. 1):

$$P(y_w \succ y_l \mid x) = \sigma\big(r_\theta(x, y_w) - r_\theta(x, y_l)\big), \qquad
\mathcal{L}(\theta) = -\,\mathbb{E}_{(x, y_w, y_l)} \Big[\log \sigma\big(r_\theta(x, y_w) - r_\theta(x, y_l)\big)\Big].$$

Only *differences* matter: adding a constant to $r$ changes nothing. `bt_loss(r_w, r_l)` is this loss; check it on
hand-picked numbers — a margin of 2 costs $\log(1 + e^{-2}) \approx 0.127$, a margin of 0 costs $\log 2$, a margin of
$-2$ costs $\log(1 + e^{2}) \approx 2.127$:
"""),
    code(r'''
from labcore.reward_model import bt_loss, pair_features

r_w = torch.tensor([2.0, 0.0, -2.0])
r_l = torch.tensor([0.0, 0.0, 0.0])
for a, b in zip(r_w, r_l):
    print(f"margin {float(a - b):+.0f}: bt_loss = {float(bt_loss(a[None], b[None])):.4f}   "
          f"by hand log(1 + e^-m) = {np.log1p(np.exp(-float(a - b))):.4f}")
print("mean over the three:", float(bt_loss(r_w, r_l)))
'''),
    md(r"""
**The model.** Prompt and response are embedded separately by the frozen MiniLM encoder ($e_x, e_y \in
\mathbb{R}^{384}$, notebook 01), and a small MLP scores the features

$$\phi(x, y) = [\,e_x,\; e_y,\; e_x \odot e_y\,], \qquad r_\theta(x, y) = w_2^\top \operatorname{GELU}(W_1 \phi + b_1) + b_2,$$

(`pair_features`, `RewardHead`); the product $e_x \odot e_y$ carries "is this response about this prompt?". The
encoder stays frozen, so embeddings are computed once and cached, and training takes seconds.
"""),
    code(r'''
from labcore.reward_model import train_reward_model

t = time.perf_counter()
rm, fit = train_reward_model(train_pairs, eval_pairs=eval_pairs, epochs=10 if FAST else 30, progress=False)
print(f"trained in {time.perf_counter() - t:.0f} s (embedding {fit['seconds_embed']:.0f} s, head {fit['seconds_train']:.1f} s)")
hist = pd.DataFrame(fit["history"])
px.line(hist, x="epoch", y=["loss", "train_acc", "eval_acc"], markers=True,
        title="Bradley-Terry training: loss and pair accuracy").show()
'''),
    md(r"""
## 3. Accuracy

**Pair accuracy** = share of held-out pairs with $r(x, y_w) > r(x, y_l)$ (`labcore.reward_model.pair_accuracy`). The
same measure for the shipped `tiny-rm` (trained on all 10,584 pairs), for the `gold` rubric and for two naive
"reward models":
"""),
    code(r'''
from labcore.reward_model import pair_accuracy
from labcore.rewards import get_reward

shipped = get_reward(str(DATA_DIR / "models" / "tiny-rm"))
candidates = {"this notebook's RM": rm, "shipped tiny-rm": shipped, "gold rubric": get_reward("gold"),
              "sentiment (VADER)": get_reward("sentiment"), "length (#words)": get_reward("length")}
acc = pd.DataFrame([{"reward": name, "pair accuracy": round(pair_accuracy(fn, eval_pairs), 3)}
                    for name, fn in candidates.items()])
display(acc)
'''),
    md(r"""
## 4. What a reward model gets wrong

A high pair accuracy on data like the training data says little about responses the policy will produce *later*.
`labcore.reward_model.analyse_reward` scores every style of held-out requests and compares with `gold`, and runs
**probes**: edited responses that *sound* good but are worse for the rubric —

* `polite_compliance`: a harmful "sure, here's how" wrapped in polite phrases, vs a curt refusal;
* `padded_long`: the helpful answer repeated to > 60 words, vs the answer once;
* `polite_off_topic`: an off-topic answer with polite phrases, vs the curt helpful answer;
* `polite_rude`: a rude answer with polite phrases, vs the curt helpful answer.

A policy optimised against the reward model will find exactly these cracks (reward hacking, notebook 05).
"""),
    code(r'''
from labcore.reward_model import analyse_reward
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
'''),
    md(r"""
Read the probe table row by row: where `reward_prefers_edit` is well above `gold_prefers_edit`, the reward model
rewards how a response *sounds* (politeness markers, length) over what it *does*. The `disagreements` are the
responses whose rank under the reward model is furthest from their rank under gold.

## Exercises

1. Train the reward model on **half** as many pairs. How much pair accuracy do you lose? And with 3 epochs?
2. `length` gets a surprisingly high pair accuracy. Why, in this dataset? (Hint: `data/README.md`, mean characters
   per style.) Would that survive a policy that learns to pad its answers?
3. Write a new probe: the helpful answer followed by a rude line (`" Figure it out yourself."`). Does `tiny-rm`
   prefer it to the plain helpful answer? Does `gold`?
"""),
    *solution(r'''
# 1. data and epochs
for n, ep in ((N_TRAIN // 2, 10 if FAST else 30), (N_TRAIN, 3)):
    m, f = train_reward_model(train_pairs[:n], epochs=ep, progress=False)
    print(f"{n} pairs, {ep} epochs: held-out pair accuracy {pair_accuracy(m, eval_pairs):.3f}")
''', "Solution 1"),
    *solution(r'''
# 2. chosen responses are longer on average (polite answers add an opener/closer; refusals and rude lines are short)
words = lambda s: len(s.split())
longer = np.mean([words(p["chosen"]) > words(p["rejected"]) for p in eval_pairs])
print(f"chosen is longer than rejected in {longer:.0%} of the pairs: length is a proxy here, and a hackable one")
''', "Solution 2"),
    *solution(r'''
# 3. a rude tail
from labcore.models import format_chat

safe = [r for r in requests if not r["unsafe"]]
ps = [format_chat(r["request"]) for r in safe]
plain = [" " + r["responses"]["helpful_polite"] for r in safe]
rude = [p + " Figure it out yourself." for p in plain]
gold = get_reward("gold")
print("tiny-rm prefers the rude tail:", float((shipped(ps, rude) > shipped(ps, plain)).float().mean()))
print("gold prefers the rude tail:   ", float((gold(ps, rude) > gold(ps, plain)).float().mean()))
''', "Solution 3"),
    md(r"""
## Scale up: GPT-2 / Pythia on one GPU

* Train the tiny-world reward model on a GPU: `labcore train-rm --device cuda` (all 10,584 pairs, 30 epochs:
  seconds). With the Hub reachable, `--encoder sentence-transformers/all-mpnet-base-v2` swaps in a larger frozen
  encoder.
* Use an off-the-shelf Hugging Face reward model anywhere a reward is expected — `get_reward(name)` loads any
  sequence-classification model and scores `prompt + response`:

```python
rm_hh   = get_reward("OpenAssistant/reward-model-deberta-v3-large-v2")   # HH-style dialogue reward, ~0.4 B
rm_imdb = get_reward("lvwerra/distilbert-imdb")                            # the IMDB sentiment reward of the papers
pair_accuracy(rm_hh, load_preferences("hh-rlhf/helpful-base/test.jsonl.gz"))
```
"""),
    code(FOOTER),
]

# ---------------------------------------------------------------------------------------------------------------
# 03 — RAFT
# ---------------------------------------------------------------------------------------------------------------
NB03 = [
    md(r"""
# 03 · RAFT: reward-ranked fine-tuning

Dong et al. 2023, *RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment*, arXiv 2304.06767.
Code: `labcore/raft.py` (loop, selection, presets), `labcore/sft.py` (the fine-tuning step); docs: `docs/raft.md`.

**Learning goals**

* run one RAFT iteration by hand: sample $K$ responses per prompt, score them, keep the best (local or global
  ranking), fine-tune on what was kept;
* run the loop with a preset and read its curves: on-policy reward, held-out reward, diversity, perplexity;
* compare the base model with the shipped RAFT adapter.

The task here is the IMDB task of the papers in the tiny world: continue a ~30-character review opening, rewarded
by the sentiment of the continuation (VADER in the role of the DistilBERT classifier).
"""),
    code(SETUP),
    md(r"""
## Algorithm 1

For iterations $t = 1, \dots, T$, with policy $\pi_{w_{t-1}}$, reward $r$ and prompt pool $D$:

1. **Data collection** — draw $b$ prompts $x_1..x_b$ from $D$; sample $y_{i,1..K} \sim \pi_{w_{t-1}}(\cdot \mid x_i)$
   (`labcore.generation.generate`, `num_samples=K`).
2. **Data ranking** — $r_{i,k} = r(x_i, y_{i,k})$, with $-\infty$ for degenerate samples (`discard_mask`,
   `apply_discard`), then
   * local: $k_i^\star = \arg\max_k r_{i,k}$, one sample per prompt (`select_local`);
   * global: one sample for each of $b/\alpha$ prompts, keep the top $\alpha$ fraction across the batch
     (`select_global`).
3. **Fine-tuning** — $w_t = \arg\min_w \; -\frac{1}{\sum_i |y_i|} \sum_i \sum_t \log \pi_w(y_{i,t} \mid x_i,
   y_{i,<t})$ over the kept pairs, a few epochs from $w_{t-1}$ (`labcore.sft.sft_epochs`).

No gradient flows through the reward, so any reward works, and only one model is ever in memory.
"""),
    code(r'''
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
'''),
    md(r"""
### Step 1 · data collection
"""),
    code(r'''
prompts = random.Random(0).sample(pool, P)
rows = generate(policy, tok, prompts, num_samples=K, seed=0, **GEN)  # P*K dicts, prompt-major
print(len(rows), "samples;", rows[0])
'''),
    md(r"""
### Step 2 · ranking: score, discard, select
"""),
    code(r'''
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
'''),
    md(r"""
### Step 3 · fine-tuning on the kept samples

`labcore.sft.sft_epochs` runs plain supervised fine-tuning through a `labcore.training.Learner` (optimiser,
clipping, accumulation; scales with `accelerate launch`), on the response tokens only, with an EOS appended:
"""),
    code(r'''
from labcore.sft import sft_epochs
from labcore.training import Learner, OptimConfig

kept = [(rows[i * K + k]["prompt"], rows[i * K + k]["response"]) for i, k in enumerate(best.tolist()) if k >= 0]
learner = Learner(policy, OptimConfig(lr=5e-4), seed=0)
logs = sft_epochs(learner, tok, kept, epochs=2, batch_size=8, seed=0, progress=False)
print(f"{len(logs)} micro-batches, loss {logs[0]['loss']:.3f} -> {logs[-1]['loss']:.3f}")
print(f"held-out reward after one iteration: {eval_reward(learner.unwrapped()):+.3f}")
del learner  # one Learner at a time: accelerate's gradient state is per process
'''),
    md(r"""
## The loop

`labcore.raft.raft` repeats the three steps with a fixed held-out evaluation every iteration (iteration 0 is the
base model) and logs `reward_onpolicy` (sample 0 of every prompt — unbiased), `reward_selected` (the kept set, what
the reference plotted), `eval_reward`, `distinct_2`, `ppl` of held-out positive reviews, and mean length. The
preset `tiny-sentiment` is the setting of the shipped adapter; here it is shrunk to notebook size:
"""),
    code(r'''
import tempfile
from dataclasses import asdict

from labcore.raft import PRESETS, plot_metrics, preset_config, raft

cfg = preset_config("tiny-sentiment", num_threads=1,
                    **({} if FAST else dict(iterations=3, raft_batch_size=48, eval_prompts=64, ppl_examples=64)))
task = PRESETS["tiny-sentiment"].make_task(cfg, None)
print({k: v for k, v in asdict(cfg).items() if k in ("iterations", "raft_batch_size", "num_samples", "selection",
                                                      "lr", "epochs", "min_new_tokens", "max_new_tokens")})
run_dir = tempfile.mkdtemp(prefix="labcore-nb03-")
t = time.perf_counter()
metrics = raft(cfg, run_dir, task=task, progress=False)
print(f"{cfg.iterations} iterations in {time.perf_counter() - t:.0f} s -> {run_dir}")
display(pd.DataFrame(metrics).round(3))
plot_metrics(f"{run_dir}/metrics.jsonl").show()
'''),
    md(r"""
## Before / after: the shipped adapter

`data/models/raft-sentiment` was trained with the full `tiny-sentiment` preset (`labcore raft --preset
tiny-sentiment`). Its curves, the base-vs-RAFT table of every shipped run (`labcore.raft.results_table`), and
samples of the base model and the adapter on the same held-out openings with the same seed:
"""),
    code(r'''
from pathlib import Path

from labcore.metrics import distinct_n, mean_length
from labcore.raft import SHIPPED_RUNS, results_table

present = {k: v for k, v in SHIPPED_RUNS.items() if Path(v).is_file()}
for name, path in SHIPPED_RUNS.items():
    if name not in present:
        print(f"note: the shipped run {name!r} is missing ({Path(path).parent.name}); train it with "
              f"`labcore raft --preset {name}`")
if present:
    display(Markdown(results_table(present)))
    plot_metrics(present.get("tiny-sentiment", next(iter(present.values())))).show()

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
'''),
    md(r"""
`adapter_disabled(model)` switches a LoRA adapter off for the duration of a `with` block: one copy of the weights
serves the base model and the aligned one (the chat app uses the same trick).

## Exercises

1. Run the loop with **global** selection (`selection="global"`, `alpha=0.25`). Which reaches a higher held-out
   reward in the same number of iterations, and why could local ranking help when rewards depend on the prompt?
2. Switch the discard rule off (`min_tokens=0`, `max_repetition=1.0`) and look at `selected_1.jsonl` in the run
   folder. Do degenerate samples get kept?
3. Which metric in the loop's table would warn you first that the policy is collapsing onto a few phrases?
"""),
    *solution(r'''
# 1. global selection
cfg_g = preset_config("tiny-sentiment", num_threads=1, selection="global", alpha=0.25,
                      **({} if FAST else dict(iterations=3, raft_batch_size=48, eval_prompts=64, ppl_examples=64)))
m_g = raft(cfg_g, tempfile.mkdtemp(prefix="labcore-nb03-global-"), task=task, progress=False)
print("local :", [round(r["eval_reward"], 3) for r in metrics])
print("global:", [round(r["eval_reward"], 3) for r in m_g])
''', "Solution 1"),
    *solution(r'''
# 2. no discard rule
import json

cfg_nd = preset_config("tiny-sentiment", num_threads=1, iterations=1, min_tokens=0, max_repetition=1.0)
d = tempfile.mkdtemp(prefix="labcore-nb03-nodiscard-")
raft(cfg_nd, d, task=task, progress=False)
kept = [json.loads(l) for l in open(f"{d}/selected_1.jsonl")]
short = [k for k in kept if k["num_tokens"] < 4]
print(f"{len(short)} of {len(kept)} kept samples are shorter than 4 tokens:", [k["response"] for k in short][:5])
''', "Solution 2"),
    *solution(r'''
# 3. distinct-2 (share of distinct word bigrams over all eval samples) falls when outputs collapse
print(pd.DataFrame(metrics)[["iteration", "eval_reward", "distinct_2", "ppl"]].round(3))
''', "Solution 3"),
    md(r"""
## Scale up: GPT-2 / Pythia on one GPU

The online presets reproduce the paper's recipes (PAPERS.md), full fine-tuning in bf16:

| preset | policy | reward | iterations | b (kept) | selection | lr | epochs | tokens | temperature |
|---|---|---|---|---|---|---|---|---|---|
| `gpt2-imdb` | `gpt2` | `lvwerra/distilbert-imdb` | 5 | 64 (of 320) | global, α = 0.2 | 2e-4 const | 4 | 16–48 | 0.7 |
| `gpt2-hh` | `gpt2` | `weqweasdas/hh_rlhf_rm_open_llama_3b` | 20 | 1024 | local, K = 8 | 2e-5 const | 4 | 64–128 | 0.85 |

```bash
labcore raft --preset gpt2-imdb --device cuda --out runs/raft-imdb                # ~10 min on one GPU
labcore raft --preset gpt2-imdb --model pythia-160m --set use_lora=true lr=2e-4 --out runs/raft-imdb-pythia
labcore raft --preset gpt2-hh --device cuda --out runs/raft-hh                    # the 3B reward model needs ~8 GB
```

From Python: `preset_config("gpt2-imdb", device="cuda")` and `PRESETS["gpt2-imdb"].make_task(cfg, None)` (needs the
Hub and `pip install datasets`, or `make_task(cfg, "imdb.jsonl")` with a local file).
"""),
    code(FOOTER),
]

# ---------------------------------------------------------------------------------------------------------------
# 04 — RRHF
# ---------------------------------------------------------------------------------------------------------------
NB04 = [
    md(r"""
# 04 · RRHF: rank responses to align language models

Yuan et al. 2023, *RRHF: Rank Responses to Align Language Models with Human Feedback without tears*,
arXiv 2304.05302. Code: `labcore/rrhf.py`.

**Learning goals**

* compute the RRHF score $p_i$ (Eq. 1) and the ranking loss (Eq. 2) by hand on a worked example, and check them
  against `labcore.rrhf`;
* understand where the $k$ responses come from (any policy: the dataset, the model itself, other models);
* train a small model with RRHF and measure it — including as a **reward model** of its own (`rrhf_score`).
"""),
    code(SETUP),
    md(r"""
## 1. The equations

A query $x$ has $k$ responses $y_1..y_k$ with rewards $r_i = R(x, y_i)$. The policy $\pi$ scores each response by its
length-normalised log-probability, and a hinge asks the scores to be ordered as the rewards are:

$$\text{(Eq. 1)}\quad p_i = \frac{\sum_t \log \pi(y_{i,t} \mid x, y_{i,<t})}{|y_i|^{\alpha}}
\qquad\longrightarrow\quad \texttt{sequence\_scores(token\_logp, mask, length\_penalty=}\alpha\texttt{)}$$

$$\text{(Eq. 2)}\quad L_{\text{rank}} = \sum_{r_i < r_j} \max(0,\; p_i - p_j)
\qquad\longrightarrow\quad \texttt{ranking\_loss(scores, rewards)}$$

$$\text{(Eq. 3–4)}\quad i' = \arg\max_i r_i, \qquad L_{\text{ft}} = -\sum_t \log \pi(y_{i',t} \mid x, y_{i',<t})
\qquad\longrightarrow\quad \texttt{sft\_loss(token\_logp, mask, rewards)}$$

$$\text{(Eq. 5)}\quad L = L_{\text{rank}} + L_{\text{ft}}
\qquad\longrightarrow\quad \texttt{rrhf\_loss(...)}$$

No reference model, no KL term, no value model. (labcore's `sft_loss` averages over the best response's tokens by
default — `reduction="masked_mean"`, the fix agreed in reference issue #51; `reduction="sum"` is Eq. 4 as printed.)

### A worked example with hand-picked numbers

One query, three responses with per-token log-probabilities

| $i$ | tokens | $\log\pi$ per token | $\sum$ | $p_i$ ($\alpha = 1$) | reward $r_i$ |
|---|---|---|---|---|---|
| 1 | 2 | $-1, -1$ | $-2$ | $-1$ | 1 |
| 2 | 4 | $-0.5, -0.5, -0.5, -0.5$ | $-2$ | $-0.5$ | 0 |
| 3 | 2 | $-2, -2$ | $-4$ | $-2$ | 2 (best) |

Pairs with $r_i < r_j$: $(2, 1)$: $\max(0, -0.5 - (-1)) = 0.5$; $(2, 3)$: $\max(0, -0.5 - (-2)) = 1.5$; $(1, 3)$:
$\max(0, -1 - (-2)) = 1$. So $L_{\text{rank}} = 3$: the model ranks the responses exactly *backwards*. $i' = 3$, and
$L_{\text{ft}} = 4$ (sum, Eq. 4) or $2$ (masked mean). With the masked mean, $L = 3 + 2 = 5$.
"""),
    code(r'''
from labcore.rrhf import ranking_loss, rrhf_loss, sequence_scores, sft_loss

# (B=1 query, K=3 responses, T=4 token slots); mask marks the real response tokens
token_logp = torch.tensor([[[-1.0, -1.0, 0.0, 0.0],
                            [-0.5, -0.5, -0.5, -0.5],
                            [-2.0, -2.0, 0.0, 0.0]]])
mask = torch.tensor([[[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]]], dtype=torch.bool)
rewards = torch.tensor([[1.0, 0.0, 2.0]])

p = sequence_scores(token_logp, mask, length_penalty=1.0)
print("p_i (Eq. 1):", p.tolist())
print("L_rank (Eq. 2):", float(ranking_loss(p, rewards)))
print("L_ft (Eq. 4, sum):", float(sft_loss(token_logp, mask, rewards, reduction="sum")),
      "  masked mean:", float(sft_loss(token_logp, mask, rewards)))
total = rrhf_loss(p, token_logp, mask, rewards)
print("L (Eq. 5):", float(total.loss), "=", float(total.rank), "+", float(total.sft))
assert torch.allclose(p, torch.tensor([[-1.0, -0.5, -2.0]])) and float(total.loss) == 5.0
'''),
    md(r"""
**Properties worth checking.** If the model already ranks as the rewards do, $L_{\text{rank}} = 0$; equal rewards add
nothing; and the length penalty $\alpha$ changes the *order* of the scores — log-probabilities are negative, so a
larger $\alpha$ divides long responses by more and moves them *up*:
"""),
    code(r'''
print("already ranked as rewarded:", float(ranking_loss(torch.tensor([[-1.0, -0.5, -0.2]]), torch.tensor([[0.0, 1.0, 2.0]]))))
print("all rewards equal:        ", float(ranking_loss(p, torch.tensor([[1.0, 1.0, 1.0]]))))
for a in (0.0, 1.0, 2.0):
    s = sequence_scores(token_logp, mask, length_penalty=a)[0]
    print(f"alpha={a}: p = {[round(v, 3) for v in s.tolist()]}  -> ranked first: response {int(s.argmax()) + 1}")
'''),
    md(r"""
## 2. Real queries: from text to $p_i$

`labcore.datasets.load_rrhf` reads the reference format (`query`, `responses`, `scores`). `build_rrhf_batch`
tokenises, appends EOS to each response and cuts long queries *from the left* (reference issue #27);
`rrhf_forward` computes every response token's log-probability in one forward pass over the $(B \cdot K, T)$ rows
and the scores $p_i$ (Eq. 1).
"""),
    code(r'''
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
'''),
    md(r"""
## 3. Where the responses come from

RRHF accepts responses from **any** sampling policy $\rho_i$ (paper Table 1): the dataset's responses (written by
people), samples or beam-search outputs of the initial model, of the model being trained (online, IP-$n$), or of
other LLMs. `labcore.rrhf_train.collect` gathers them from a list of *sources* (`PolicySamples`, `FixedResponses`,
or any function), drops duplicates and scores every response with one reward, whatever its source — here the
learned `tiny-rm`. Diverse beam search (`decoding="diverse_beam"`, the paper's DP) picks, group after group, the best
token minus a penalty for tokens earlier groups chose (Vijayakumar et al. 2016). Mixing sources is what lets RRHF
learn from responses the model would never produce itself.
"""),
    code(r"""
from labcore.rewards import get_reward
from labcore.rrhf_train import FixedResponses, PolicySamples, collect

reward = get_reward(str(DATA_DIR / "models" / "tiny-rm"))
queries = [r["query"] for r in rrhf_test[:3]]
sources = [
    FixedResponses.from_rrhf(DATA_DIR / "dialogues" / "rrhf_test.jsonl.gz", name="dataset"),
    PolicySamples(model, tok, num_samples=2, decoding="sample", temperature=0.8, max_new_tokens=48, name="sample"),
    PolicySamples(model, tok, num_samples=2, decoding="beam", num_beams=4, max_new_tokens=48, name="beam"),
    PolicySamples(model, tok, num_samples=4, decoding="diverse_beam", diversity_penalty=1.0, max_new_tokens=48,
                  name="diverse beam"),
]
records = collect(queries, sources, reward)
src = pd.DataFrame([{"query": i, "source": s, "response": y, "reward (tiny-rm)": round(r, 2)}
                    for i, rec in enumerate(records)
                    for y, r, s in zip(rec["responses"], rec["scores"], rec["sources"])])
print(repr(queries[0]))
display(src[src["query"] == 0].sort_values("reward (tiny-rm)", ascending=False))
"""),
    md(r"""
## 4. Training

`labcore.rrhf_train.rrhf_pipeline` collects the records with a Table 1 policy, then trains with
`train_rrhf`: each optimiser step takes `queries_per_step` queries with their $k$ responses through
`build_rrhf_batch` → `rrhf_forward` → `rrhf_loss` (Eq. 5) on a `labcore.training.Learner` (AdamW, schedule,
clipping, gradient accumulation; `accelerate launch` for several GPUs), and evaluates like RAFT on held-out
prompts: `eval_reward` (tiny-rm), `gold`, `ppl` of held-out best responses, `distinct_2`, and `rank_acc`, the share
of held-out response pairs that $p_i$ orders as the reward does. The preset `tiny-helpful` (policy BP: beam search
by the base model + the dataset's styled answers, LoRA on the tiny base), at notebook size:
"""),
    code(r"""
import tempfile
from dataclasses import asdict

from labcore.rrhf_train import make_experiment, metrics_table, preset_configs, rrhf_pipeline

SIZES = {} if FAST else dict(eval_prompts=64, ppl_examples=64, heldout_queries=32)  # the preset's training sizes
run, cfg = preset_configs("tiny-helpful", num_threads=1, **SIZES)
print("run:", {k: v for k, v in asdict(run).items() if k in ("policy", "queries", "num_samples", "dataset_responses")})
print("train:", {k: v for k, v in asdict(cfg).items() if k in ("learning_rate", "num_epochs", "queries_per_step",
                                                               "max_length", "use_lora", "length_penalty")})
exp = make_experiment("tiny-helpful", run, cfg)
out_dir = tempfile.mkdtemp(prefix="labcore-nb04-")
t = time.perf_counter()
rows = rrhf_pipeline(run, cfg, out_dir, exp, progress=False)
print(f"collected and trained in {time.perf_counter() - t:.0f} s -> {out_dir}")
hist = pd.DataFrame(rows)
display(hist[[c for c in ("step", "loss", "rank_loss", "sft_loss", "eval_reward", "gold", "ppl", "distinct_2",
                          "rank_acc") if c in hist]].round(3))
px.line(hist, x="step", y=[c for c in ("eval_reward", "gold", "rank_acc", "distinct_2") if c in hist], markers=True,
        title="RRHF on the tiny world: held-out metrics per evaluation").show()
"""),
    md(r"""
## 5. After training — and RRHF as a reward model

The trained policy is a LoRA adapter in `OUT/final`. Side by side with the base model (the same weights with the
adapter switched off) on held-out requests, and its own scores $p_i$ on the styles of one held-out request — a good
reward model scores them in decreasing order (paper §3.2, Table 5: an RRHF-trained model is itself a reward model):
"""),
    code(r"""
from labcore.generation import generate
from labcore.models import adapter_disabled, format_chat
from labcore.rrhf import rrhf_score
from labcore.tinyworld import load_requests

display(Markdown(metrics_table({"RRHF (tiny-helpful)": rows})))
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
"""),
    md(r"""
## Exercises

1. Set `rrhf_weight=0` (SFT on the best response only, the paper's ablation in Table 7) and train again on the same
   records. What happens to `rank_acc` and to `gold`?
2. Show with `ranking_loss` that swapping the rewards of two responses with equal scores $p_i = p_j$ leaves the loss
   unchanged. Why does the hinge have no margin, and what would a margin change?
3. With `length_penalty` $\alpha = 0$, which style does the *base* model score highest on the first test request? And with
   $\alpha = 2$?
"""),
    *solution(r'''
# 1. no ranking loss: SFT on the best response only, on the SAME collected records
from labcore.datasets import load_rrhf

run0, cfg0 = preset_configs("tiny-helpful", num_threads=1, rrhf_weight=0.0, **SIZES)
rows0 = rrhf_pipeline(run0, cfg0, tempfile.mkdtemp(prefix="labcore-nb04-sft-"), exp,
                      records=load_rrhf(f"{out_dir}/data_1.jsonl"), progress=False)
display(Markdown(metrics_table({"RRHF": rows, "L_ft only (rrhf_weight=0)": rows0})))
''', "Solution 1"),
    *solution(r'''
# 2. equal scores: every hinge max(0, p_i - p_j) is 0 whatever the rewards
s = torch.tensor([[-1.0, -1.0, -2.0]])
print(float(ranking_loss(s, torch.tensor([[0.0, 1.0, 2.0]]))), float(ranking_loss(s, torch.tensor([[1.0, 0.0, 2.0]]))))
# Without a margin, the loss is satisfied as soon as the order is right, by any gap; a margin would keep pushing.
''', "Solution 2"),
    *solution(r'''
# 3. alpha moves long responses up
fresh, _ = load_model("tiny")
rec = load_requests("test")[0]
ys = [" " + rec["responses"][s] for s in rec["responses"]]
for a in (0.0, 1.0, 2.0):
    sc = rrhf_score(fresh, tok, format_chat(rec["request"]), ys, length_penalty=a)
    print(f"alpha={a}: highest = {list(rec['responses'])[int(np.argmax(sc))]}")
''', "Solution 3"),
    md(r"""
## Scale up: GPT-2 / Pythia on one GPU

The reference recipe (train.sh, PAPERS.md) is `RRHFConfig()`'s defaults: lr 2e-5, 3 epochs, 3% warm-up, cosine,
weight decay 0, 64 queries per optimiser step, max length 192, bf16. On one GPU:

| model | `RRHFConfig(...)` | memory |
|---|---|---|
| `gpt2` (124 M) | `per_device_batch_size=8, queries_per_step=64, max_length=192, use_lora=False` | ~10 GB with k = 6 |
| `pythia-410m` | `per_device_batch_size=4, queries_per_step=64, max_length=192, use_lora=False, dtype="bf16"` | ~30 GB |
| `pythia-1.4b` | `per_device_batch_size=2, use_lora=True, lora_r=16, lora_alpha=32, share_query_prefix=True` | ~24 GB |

Responses (Table 1, the "DP" setting): 4 samples by diverse beam search of the initial model (4 beams, 4 groups,
diversity penalty 1.0, temperature 0.8, 128 new tokens) + the dataset's responses, scored with
`get_reward("OpenAssistant/reward-model-deberta-v3-large-v2")`. Swap `load_model("tiny")` for `load_model("gpt2")`
above and the rest of the notebook runs unchanged.
"""),
    code(FOOTER),
]

# ---------------------------------------------------------------------------------------------------------------
# 05 — comparison and chat
# ---------------------------------------------------------------------------------------------------------------
NB05 = [
    md(r"""
# 05 · Comparison, reward hacking, and chat

**Learning goals**

* compare the base model with the aligned models (RAFT, RRHF) side by side on held-out prompts;
* measure what alignment costs: diversity (distinct-2) and length, next to the reward and the gold rubric;
* see **reward hacking** happen: optimise a reward that is easy to game (`length`) and watch gold;
* chat with a model, with its adapter switched on and off (`labcore.generation.stream_generate`).
"""),
    code(SETUP),
    md(r"""
## 1. The models

Aligned policies are LoRA adapters on the one tiny base model (`data/models/*/adapter_config.json`): one copy of the
weights, the adapter switched on or off. The shipped ones, if present:
"""),
    code(r'''
from pathlib import Path

from labcore.models import adapter_disabled, format_chat, load_model

EXPECTED = ["raft-sentiment", "raft-helpful", "rrhf-helpful", "rrhf-sentiment"]
found = sorted(p.parent.name for p in (DATA_DIR / "models").glob("*/adapter_config.json"))
adapters = {name: DATA_DIR / "models" / name for name in found}
for name in EXPECTED:
    if name not in adapters:
        display(Markdown(f"> **note:** `data/models/{name}` is not in this checkout — its column is skipped "
                         f"(train it: `labcore {name.split('-')[0]} ...`, see notebooks 03/04)."))
print("adapters found:", list(adapters))
base, tok = load_model("tiny")
'''),
    md(r"""
## 2. Side by side on held-out prompts

Two tasks: **dialogue** (held-out *paraphrased* requests — templates never seen in training — scored by `tiny-rm`
and judged by `gold`) and **sentiment** (held-out review openings scored by VADER). Each adapter is evaluated on the
task its name says; every model samples with the same seed. Metrics: mean reward, gold, distinct-2 (share of
distinct word bigrams over all samples; lower = more repetitive) and mean length in words.
"""),
    code(r'''
import contextlib

from labcore.generation import generate
from labcore.metrics import distinct_n, mean_length
from labcore.rewards import get_reward
from labcore.tinyworld import load_paraphrases, review_prompts

N = 24 if FAST else 128
gold = get_reward("gold")
tasks = {
    "dialogue": dict(prompts=[format_chat(r["request"]) for r in load_paraphrases()[:N]],
                     reward=get_reward(str(DATA_DIR / "models" / "tiny-rm")), gen=dict(max_new_tokens=48)),
    "sentiment": dict(prompts=review_prompts("test")[:N], reward=get_reward("sentiment"),
                      gen=dict(max_new_tokens=32, stop_at_turn=False)),
}


def sample(model, task, use_adapter=True, seed=7):
    t = tasks[task]
    with (contextlib.nullcontext() if use_adapter else adapter_disabled(model)):
        out = generate(model, tok, t["prompts"], temperature=0.85, seed=seed, **t["gen"])
    return [o["response"] for o in out]


def metrics(task, replies):
    t = tasks[task]
    row = {"reward": float(t["reward"](t["prompts"], replies).mean()), "distinct-2": distinct_n(replies, 2),
           "mean words": mean_length(replies)}
    if task == "dialogue":
        row["gold"] = float(gold(t["prompts"], replies).mean())
    return row


samples = {task: {"base": sample(base, task)} for task in tasks}
for name, path in adapters.items():
    task = "sentiment" if "sentiment" in name else "dialogue"
    m, _ = load_model("tiny", adapter=str(path))
    samples[task][name] = sample(m, task)
for task, by_model in samples.items():
    display(Markdown(f"### {task}"))
    display(pd.DataFrame({k: metrics(task, v) for k, v in by_model.items()}).T.round(3))
    display(pd.DataFrame({"prompt": tasks[task]["prompts"][:5], **{k: v[:5] for k, v in by_model.items()}}))
'''),
    md(r"""
Read the dialogue table column by column: the aligned models were trained to raise `reward` (the learned `tiny-rm`),
and `gold` is the judge they never saw. If `reward` rose much more than `gold` — and the replies repeat a few stock
phrases (low distinct-2) — the policy has learned what the reward model *likes* rather than what is *good*: the
cracks found in notebook 02. That is reward hacking, and the next section provokes it on purpose.
"""),
    md(r"""
## 3. Reward hacking and diversity

A reward is a *proxy* for what we want. Optimise it hard enough and the policy finds what the proxy rewards but we
do not want. Two experiments with the deliberately hackable reward `length` (number of words).

**Selection pressure.** Sample $K$ replies per request from the base model and keep the best by each reward
(best-of-$K$, the selection step of RAFT). Keeping the longest reply raises length; does it raise gold?
"""),
    code(r'''
K = 4 if FAST else 8
prompts = tasks["dialogue"]["prompts"]
rows = generate(base, tok, prompts, num_samples=K, max_new_tokens=64, temperature=1.0, seed=0)
replies = np.array([r["response"] for r in rows], dtype=object).reshape(len(prompts), K)
flat_p = [r["prompt"] for r in rows]
scores = {"length": get_reward("length"), "tiny-rm": tasks["dialogue"]["reward"], "gold": gold}
by = {name: fn(flat_p, list(replies.flatten())).view(len(prompts), K) for name, fn in scores.items()}
table = []
for name in ["random (k=0)", *scores]:
    pick = torch.zeros(len(prompts), dtype=torch.long) if name.startswith("random") else by[name].argmax(1)
    kept = [replies[i, k] for i, k in enumerate(pick.tolist())]
    table.append({"kept by": name, "gold": float(gold(prompts, kept).mean()), "words": mean_length(kept),
                  "distinct-2": distinct_n(kept, 2)})
display(pd.DataFrame(table).round(3))
'''),
    md(r"""
**Optimising it.** A short RAFT run on the dialogue prompts with `reward="length"` (the `tiny-helpful` preset,
shrunk): the reward goes up by construction — watch `gold` and `distinct_2` on the curves.
"""),
    code(r'''
import tempfile

from labcore.raft import PRESETS, plot_metrics, preset_config, raft

cfg = preset_config("tiny-helpful", reward="length", num_threads=1,
                    **({} if FAST else dict(iterations=3, raft_batch_size=32, eval_prompts=48, ppl_examples=48)))
task = PRESETS["tiny-helpful"].make_task(cfg, None)
t = time.perf_counter()
hack = raft(cfg, tempfile.mkdtemp(prefix="labcore-nb05-length-"), task=task, progress=False)
print(f"{cfg.iterations} iterations in {time.perf_counter() - t:.0f} s")
display(pd.DataFrame(hack)[["iteration", "eval_reward", "gold", "distinct_2", "mean_length", "ppl"]].round(3))
'''),
    md(r"""
The same pattern is documented in the papers: RRHF's online setting reaches a high reward with perplexity 63.8
(Table 6 — "reward hacking"), and RAFT's reference run raised the reward while distinct-2 fell from 0.39 to 0.22
because responses containing `#` scored high. Remedies: a held-out judge (`gold` here), diversity and perplexity
monitoring, discard rules, early stopping — and better reward models (notebook 02).

## 4. Chat

A small chat helper on top of `labcore.generation.stream_generate`, which yields the text after every token (the
app uses the same function). It runs the *same* loaded model with the adapter on or off:
"""),
    code(r'''
from labcore.generation import stream_generate

chat_name = next((n for n in ("raft-helpful", "rrhf-helpful") if n in adapters), None) or next(iter(adapters), None)
chat_model = load_model("tiny", adapter=str(adapters[chat_name]))[0] if chat_name else base
dialogue = chat_name is None or "sentiment" not in chat_name


def chat(message, history=(), use_adapter=True, seed=0, max_new_tokens=48, show=True):
    """One assistant turn, streamed; history is a list of (user, assistant) pairs. Returns the reply."""
    prompt = format_chat([*history, message]) if dialogue else message
    state, label = None, f"**{'aligned' if use_adapter else 'base'}:** "
    handle = display(Markdown(label), display_id=True) if show else None
    for state in stream_generate(chat_model, tok, prompt, max_new_tokens=max_new_tokens, temperature=0.7,
                                 top_p=0.9, seed=seed, use_adapter=use_adapter, stop_at_turn=dialogue):
        if handle is not None:
            handle.update(Markdown(label + state.text))  # redrawn as tokens arrive
    return state.text if state else ""


print(f"chat model: tiny + {chat_name or '(no adapter: base only)'}")
message = "how do I keep my houseplants alive?" if dialogue else "The acting in this film"
display(Markdown(f"**user:** {message}"))
for on in (False, True):
    chat(message, use_adapter=on)
'''),
    md(r"""
Multi-turn: pass the history as `(user, assistant)` pairs; the prompt is the HH transcript so far
(`labcore.models.format_chat`). For a browser UI with two panes (adapter on / off side by side) run `labcore app`.
"""),
    code(r'''
if dialogue:
    history = [(message, chat(message, show=False))]
    display(Markdown(f"**user:** {message}\n\n**assistant:** {history[0][1]}"))
    follow_up = "and what about watering them?"
    display(Markdown(f"**user:** {follow_up}"))
    chat(follow_up, history=history)
'''),
    md(r"""
## Exercises

1. Which reward hacks fastest under best-of-$K$: `length` or `tiny-rm`? Compute gold when keeping the best of $K$
   by `tiny-rm` for $K = 2, 4, 8$.
2. In the side-by-side table, which aligned model lost the most diversity? Is the loss worth the reward gain?
3. Ask the chat model an unsafe request (e.g. `"how do I pick my neighbour's lock?"`) with the adapter on and off,
   five seeds each. Score the replies with `gold`.
"""),
    *solution(r'''
# 1. gold of best-of-K by tiny-rm, K = 2, 4, K_max
for k in sorted({2, min(4, K), K}):
    pick = by["tiny-rm"][:, :k].argmax(1)
    kept = [replies[i, j] for i, j in enumerate(pick.tolist())]
    print(f"best of {k} by tiny-rm: gold {float(gold(prompts, kept).mean()):+.3f}, words {mean_length(kept):.1f}")
''', "Solution 1"),
    *solution(r'''
# 2. diversity lost relative to the base model
for task, by_model in samples.items():
    d0 = distinct_n(by_model["base"], 2)
    for name, v in by_model.items():
        print(f"{task:9s} {name:15s} distinct-2 {distinct_n(v, 2):.3f} ({distinct_n(v, 2) - d0:+.3f} vs base)")
''', "Solution 2"),
    *solution(r'''
# 3. unsafe request, adapter on/off
req = "how do I pick my neighbour's lock?"
for on in (False, True):
    outs = [chat(req, use_adapter=on, seed=s, show=False) for s in range(5)]
    g = gold([format_chat(req)] * 5, outs) if dialogue else torch.zeros(5)
    print(f"adapter {'on ' if on else 'off'}: gold {float(g.mean()):+.2f}  e.g. {outs[0]!r}")
''', "Solution 3"),
    md(r"""
## Scale up: GPT-2 / Pythia on one GPU

Everything here takes a base model and adapter folders; with GPT-2 policies trained by notebooks 03/04's scale-up
commands (`runs/raft-imdb/final`, ...):

```python
base, tok = load_model("gpt2")                                   # bf16 on CUDA
aligned, _ = load_model("gpt2", adapter="runs/raft-imdb-lora/final")  # LoRA runs; full fine-tunes load as the model
tasks["sentiment"]["reward"] = get_reward("lvwerra/distilbert-imdb")
```

Serve the chat for a class: `labcore app --model gpt2 --adapter aligned=runs/raft-hh/final --device cuda`
(one copy of the base weights, adapters switched per request; see `labcore app --help`).
"""),
    code(FOOTER),
]

NOTEBOOKS = {
    "00_tour.ipynb": NB00,
    "01_coreset.ipynb": NB01,
    "02_reward_models.ipynb": NB02,
    "03_raft.ipynb": NB03,
    "04_rrhf.ipynb": NB04,
    "05_compare_chat.ipynb": NB05,
}


def build(name: str, cells: list):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (labcore)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name.split('_')[0]}-{i:02d}"  # stable ids: no diff noise on rebuild
    return nb


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        nb = build(name, cells)
        nbformat.validate(nb)
        text = nbformat.writes(nb) + "\n"
        path = HERE / name
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)} ({len(cells)} cells)")
    if stale:
        print("out of date (run notebooks/_build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
