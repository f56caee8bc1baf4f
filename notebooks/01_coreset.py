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
# # 01 · Core-set selection: maybe only 0.5% of the data is needed
#
# Chen et al. 2023, *Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training Data Instruction
# Tuning*, arXiv 2305.09246. Code: `labcore/embed.py`, `labcore/coreset.py`, `labcore/kcenter.py`,
# `labcore/viz.py`, `labcore/experiments/coreset_05.py`.
#
# **Learning goals**
#
# * embed instructions with masked **mean pooling** + L2 normalisation, and read the pooling line by line;
# * cluster **all** tasks with K-means and find a task's **distribution centre** and **task centre**;
# * run **KCenterGreedy** step by step and see why it covers a task better than random sampling (the covering radius);
# * read the 0.5% experiment: core-set vs random vs the full task, at equal compute.
#
# **Subset.** Embedding all 35,307 train instructions takes 20+ minutes on 2 CPU cores (seconds on a GPU), so this
# notebook works on a seeded random subset: 3,000 examples by default, 400 in fast mode. Embeddings are cached on disk
# (`$LABCORE_CACHE`, default `~/.cache/labcore`), so a second run is fast.

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

# %%
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

# %% [markdown]
# ## 1. Embeddings: mean pooling, written out
#
# Step 1 of the paper: encode each example with a sentence encoder and average its last hidden states over the
# real (non-padding) tokens, then normalise:
#
# $$e = \frac{\bar h}{\lVert \bar h \rVert_2}, \qquad \bar h = \frac{\sum_t m_t\, h_t}{\sum_t m_t},$$
#
# with $h_t \in \mathbb{R}^d$ the encoder's last hidden state at token $t$ and $m_t \in \{0, 1\}$ the attention mask.
# `labcore.embed.mean_pool` and `l2_normalise` implement it; the encoder is all-MiniLM-L6-v2 ($d = 384$), shipped
# inside a PyPI package so it works offline. Here are the two functions, then the same computation by hand on three
# texts, compared with `embed_texts`:

# %%
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

# %%
t = time.perf_counter()
emb = embed_texts(texts, progress=False)  # (N, 384), cached on disk by text
print(f"embedded {emb.shape} in {time.perf_counter() - t:.1f} s;  row norms = 1: {np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)}")

# %% [markdown]
# ## 2. K-means over all tasks, distribution centre and task centre
#
# Step 2: K-means over *all* examples of *all* tasks, labels unused (task boundaries are fuzzy).
# Step 3: count the target task's examples per cluster; the centroid of the most frequent cluster is the task's
# **distribution centre** $c$ — it need not be an example. Step 4: the **task centre** is the task example most similar
# to it,
#
# $$k^\star = \arg\max_k \big|\{ i \in \text{task} : \text{cluster}(i) = k \}\big|, \quad c = \mu_{k^\star}, \quad
# i_0 = \arg\max_{i \in \text{task}} \cos(e_i, c).$$
#
# `labcore.coreset.fit_kmeans`, `distribution_centre`, `task_centre`:

# %%
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

# %% [markdown]
# ## 3. KCenterGreedy, step by step
#
# Step 5 (Sener & Savarese 2018, arXiv 1708.00489, Algorithm 1): start from the task centre and repeatedly add the
# example *farthest* from everything chosen so far,
#
# $$u = \arg\max_{i \notin S} \; \min_{j \in S} \lVert x_i - x_j \rVert, \qquad S \leftarrow S \cup \{u\},$$
#
# which greedily shrinks the **covering radius** $r(S) = \max_i \min_{j \in S} \lVert x_i - x_j \rVert$ (a
# 2-approximation of the best possible). On 2-D toy points — press *play* or drag the slider; the red dashed segment
# is the current radius, and its far end is the next pick (`labcore.viz.plot_kcenter_steps`):

# %%
from labcore.viz import plot_kcenter_steps, toy_points

plot_kcenter_steps(toy_points(n=60, n_blobs=4, random_state=0), budget=6).show()

# %% [markdown]
# Two implementations: `kcenter_greedy_reference` is Algorithm 1 in ten readable lines of float64 numpy
# ($O(\text{budget} \cdot N \cdot d)$); `KCenterGreedy` is the fast scikit-learn-style estimator (lazy bounds,
# triangle-inequality pruning, fp32 screening with exact float64 verification). They must choose **the same
# examples** — check it on the task's embeddings:

# %%
from labcore.kcenter import KCenterGreedy, kcenter_greedy_reference

BUDGET = 12 if FAST else 40  # 40 = 0.5% of the 8,052 sentiment examples of the full train set
X_task = emb[task_idx]  # (n, d)
ref_sel, ref_min, ref_radius = kcenter_greedy_reference(X_task, BUDGET, initial=start)
kc = KCenterGreedy(BUDGET, device="cpu").fit(X_task, initial=start)
print("same picks:", list(kc.selected_indices_) == ref_sel, "  same radii:", np.array_equal(kc.radius_history_, ref_radius))
print("first picks:", ref_sel[:8])
print("work:", kc.stats_)

# %% [markdown]
# ## 4. The whole pipeline, the map and the radius curve
#
# `labcore.coreset.select_coreset` runs steps 2–5 and the two baselines at the same budget (uniform random and
# cluster-stratified random). The map is a 2-D UMAP of the embeddings (for the eye only: every distance above is in
# 384-D), one colour per cluster, the core-set as stars (`labcore.viz.umap_2d`, `plot_clusters`):

# %%
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

# %%
plot_radius_curve(res).show()
print(f"covering radius with {res.budget} examples: core-set {res.radius_curve[-1]:.3f}, "
      f"random {res.random_radius_curve[-1]:.3f}, stratified {res.stratified_radius_curve[-1]:.3f}")

# %% [markdown]
# ## 5. The 0.5% experiment
#
# The paper's claim is about *training*: instruction-tune on the core-set only, and match (or beat) training on the
# whole task. `labcore.experiments.coreset_05.run_experiment` trains a fresh copy of the tiny base for each arm —
# `coreset`, `random`, `stratified`, `full` — with the **same number of optimiser steps** (a fair, compute-matched
# rule), then scores exact-match accuracy per source dataset on held-out test examples:
#
# $$\text{acc}_s = \frac{1}{|T_s|} \sum_{(x, y) \in T_s} \big[\operatorname{norm}(\hat y(x)) = \operatorname{norm}(y)\big].$$
#
# The full run (all 35k train examples, 3 seeds, 150 steps per arm) is a command:
#
# ```bash
# labcore coreset-experiment --set task=sentiment --out docs/results/coreset   # ~20 min on 2 CPU cores
# ```
#
# Its results, if they have been produced in this checkout:

# %%
from labcore.config import CoresetExperimentConfig
from labcore.experiments.coreset_05 import results_markdown, run_experiment
from labcore.presets import build

# results.md = results_markdown(results.json), written beside it by run_experiment
shipped = REPO_ROOT / "docs" / "results" / "coreset" / "results.md"
if shipped.is_file():
    display(Markdown(shipped.read_text(encoding="utf-8")))
else:
    display(Markdown(f"> **No results yet** at `{shipped.relative_to(REPO_ROOT)}`: run the command above to "
                     "produce them. Below is the same experiment in miniature on this notebook's subset."))

# %% [markdown]
# The same function in miniature on our subset (its embeddings are passed in, so nothing is re-embedded). With this
# few steps and test examples the numbers are noisy — the point is to see the pieces, not to settle the question:

# %%
import tempfile

test_task = [r for r in load_instructions("test") if r["task"] == TARGET]
STEPS, WARMUP = (5, 1) if FAST else (40, 10)  # optimiser steps per arm, of which linear warm-up
cfg = build(CoresetExperimentConfig, fast=FAST,
            overrides={"task": TARGET, "budget": BUDGET, "n_clusters": K, "seeds": (0,),
                       "arms": ("coreset", "random", "full"), "steps": STEPS, "optim.warmup_ratio": WARMUP / STEPS,
                       "eval_per_source": 8 if FAST else 30, "runtime.threads": 1})
out_dir = tempfile.mkdtemp(prefix="labcore-nb01-")
t = time.perf_counter()
results = run_experiment(cfg, out_dir, records=sub + test_task, embeddings=emb, progress=False)
print(f"mini experiment: {time.perf_counter() - t:.0f} s, written to {out_dir}")
display(Markdown(results_markdown(results)))

# %% [markdown]
# ## Exercises
#
# 1. Select a core-set for the task `safety` instead. Is its covering-radius advantage over random larger or smaller
#    than for `sentiment`? Why might that be (look at the cluster/task table)?
# 2. On L2-normalised vectors $\lVert a - b \rVert^2 = 2 - 2\cos(a, b)$. Check that `KCenterGreedy(metric="cosine")`
#    picks exactly the same examples as the Euclidean one.
# 3. What share of the core-set lies in the distribution-centre cluster, compared with the task's share in it?
#    Explain the difference in one sentence.

# %% [markdown]
# #### Solution 1
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. another task
res_s = select_coreset(emb, tasks, "safety", BUDGET, kmeans=km, device="cpu")
for name, r in (("sentiment", res), ("safety", res_s)):
    print(f"{name:10s} radius at k={r.budget}: core-set {r.radius_curve[-1]:.3f}  random {r.random_radius_curve[-1]:.3f}"
          f"  ratio {r.radius_curve[-1] / r.random_radius_curve[-1]:.2f}")

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. cosine vs Euclidean picks
kc_cos = KCenterGreedy(BUDGET, metric="cosine", device="cpu").fit(X_task, initial=start)
print("identical picks:", np.array_equal(kc_cos.selected_indices_, kc.selected_indices_))

# %% [markdown]
# #### Solution 3
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 3. KCenterGreedy spreads out: it under-samples the dense distribution-centre cluster
in_c = np.mean(res.labels[res.selected_indices] == res.distribution_cluster)
share = res.cluster_counts[res.distribution_cluster] / res.cluster_counts.sum()
print(f"core-set in cluster {res.distribution_cluster}: {in_c:.0%};  the task's share there: {share:.0%}")

# %% [markdown]
# ## Scale up: GPT-2 / Pythia on one GPU
#
# * Embed the **whole** instruction set: `embed_texts(texts, device="cuda", batch_size=256)` (35k texts in well under a
#   minute on a GPU; cached for every later run). Any Hugging Face encoder id works as `model=` when the Hub is
#   reachable, e.g. a larger sentence encoder.
# * Select: `labcore select --data data/instructions.jsonl.gz --task sentiment --budget 0.005 --out coreset.jsonl`.
# * The experiment with a real base model (LoRA; more steps because GPT-2 starts without the tiny world's vocabulary):
#
# ```bash
# labcore coreset-experiment --out runs/coreset-gpt2 --set model=gpt2 lora.use=true optim.lr=2e-4 steps=300 \
#     runtime.device=cuda runtime.threads=0 seeds=0,1,2
# labcore coreset-experiment --out runs/coreset-pythia --set model=pythia-160m lora.use=true optim.lr=2e-4 steps=300 \
#     runtime.device=cuda runtime.threads=0
# ```

# %%
finish()
