"""Core-set selection of instruction data for one target task.

Chen et al. 2023, "Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training Data Instruction
Tuning", arXiv 2305.09246. The paper's pipeline (its steps, numbered as in /work/shared/PAPERS.md):

1. embed every example: masked mean pooling + L2 normalisation (``labcore.embed.embed_texts``);
2. K-means over ALL examples of ALL tasks, labels unused (task boundaries in NLP are fuzzy);
3. count the target task's examples per cluster; the centroid of the most frequent cluster is the task's
   *distribution centre* c (it need not be an example);
4. the *task centre* is the task example with the highest cosine similarity to c;
5. KCenterGreedy (Sener & Savarese 2018, arXiv 1708.00489) over the task's examples, starting from the task centre:
   repeatedly add argmax_i min_{j in S} ||x_i - x_j|| until the budget is reached;
6. instruction-tune on the chosen examples only (not here: see the training modules).

Baselines at the same budget, for the radius-vs-budget plot: uniform random sampling from the task, and
cluster-stratified random sampling (proportional to the task's cluster counts). The covering radius of a set S is
r(S) = max_i min_{j in S} ||x_i - x_j|| over the task's examples; k-center greedy is a 2-approximation of its minimum.

Choices the paper leaves open (labcore's, documented here): K (``n_clusters``, default 32) and K-means ``n_init``
(default 3, scikit-learn k-means++ init); ties for the most frequent cluster go to the lowest cluster id;
distances are Euclidean on the L2-normalised embeddings (||a - b||^2 = 2 - 2 cos(a, b), so the greedy choices
equal the cosine ones; the radius curves are Euclidean whatever ``metric`` the greedy uses); a budget larger than
the task is clipped to the task size; the embedded text of an example is its instruction (the task input; the
output is often a single label word). The CLI selects from the ``train`` split only, so that evaluation examples
never enter the core-set, and caches K-means on disk next to the embeddings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

INSTRUCTION_FIELDS = ("id", "task", "source", "split", "instruction", "output")
"""Fields every record of the instruction set must have (``data/instructions.jsonl.gz``)."""


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------
def load_instruction_set(path: str | Path) -> list[dict[str, Any]]:
    """Read an instruction set: JSON lines (optionally gzipped) with the fields of ``INSTRUCTION_FIELDS``.

    Args:
        path: ``.jsonl`` or ``.jsonl.gz`` file; each line {"id", "task", "source", "split", "instruction", "output"}.
    Returns:
        The records, in file order (blank lines skipped).
    Raises:
        FileNotFoundError: no such file.
        labcore.datasets.DataFormatError (a ValueError): bad JSON, a missing field or a wrong type; the message
            names the file, the line and the field.
    """
    from labcore.datasets import DataFormatError, iter_records  # lazy: keeps this module free of transformers

    records: list[dict[str, Any]] = []
    for lineno, rec in iter_records(path):  # invalid JSON / non-objects already name the file and line
        for name in INSTRUCTION_FIELDS:
            if name not in rec:
                raise DataFormatError(path, lineno, name, "missing field")
            ok = isinstance(rec[name], (str, int)) if name == "id" else isinstance(rec[name], str)
            if not ok:
                raise DataFormatError(path, lineno, name, f"must be a string, got {type(rec[name]).__name__}")
        records.append(rec)
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def example_text(record: dict[str, Any]) -> str:
    """The text that is embedded for one example: its instruction (the task input; outputs are often a label word)."""
    return record["instruction"]


# ----------------------------------------------------------------------------------------------------------------
# Pieces of the pipeline
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class KMeansFit:
    """A K-means clustering of all examples (step 2); pass it back to ``select_coreset`` to skip re-clustering."""

    labels: np.ndarray
    """(N,) cluster id of every example."""
    centroids: np.ndarray
    """(K, d) cluster centres."""


KMEANS_INITS = ("k-means++", "sample")
"""``fit_kmeans`` initialisations: scikit-learn's k-means++ on all points, or k-means++ on a seeded sample."""

KMEANS_SAMPLE = 5000
"""Points in the seeded sample of ``init="sample"``."""

KMEANS_SAMPLE_ITER = 20
"""Most Lloyd iterations on all points after the sample's fit (``init="sample"``; measured on the shipped set with an
8,000-point sample, K = 32, 64, 96: the inertia is within 0.05% of running them to convergence, at half the time)."""


def fit_kmeans(embeddings: np.ndarray, n_clusters: int = 32, random_state: int = 0, n_init: int = 3,
               cache: bool = False, init: str = "k-means++", **kmeans_kwargs: Any) -> KMeansFit:
    """Step 2: K-means over all examples of all tasks (scikit-learn Lloyd iterations, labels unused).

    Args:
        embeddings: (N, d) example embeddings.
        n_clusters: K (clipped to N).
        random_state: seed of the initialisation; the same seed gives the same clusters.
        n_init: number of k-means++ restarts; the run with the lowest inertia is kept (``init="k-means++"``).
        init: "k-means++" (scikit-learn's default, as the paper's K-means) or "sample": one k-means++ K-means on a
            seeded sample of ``KMEANS_SAMPLE`` points, whose centroids start at most ``KMEANS_SAMPLE_ITER`` Lloyd
            iterations on all points. The k-means++ seeding over all N points is what makes a fit slow (1.3 s of
            2 s at N = 35k, K = 32); from the sample's centroids the inertia lands within 0.4% of the best of 3
            full restarts for K = 33..96, 2.9% at K = 8 (``benchmarks/selection.py`` measures both on the shipped
            set). The app uses it so that a
            new K answers in about a second; ``labcore select --kmeans sample`` gives the same clusters.
        cache: read/write ``$LABCORE_CACHE/kmeans/<key>.npz`` (default ``~/.cache/labcore``), keyed by the
            embedding bytes, every parameter and scikit-learn's version (K-means on 35k x 384 takes ~30 s of CPU).
        **kmeans_kwargs: passed to ``sklearn.cluster.KMeans`` (e.g. ``max_iter``).
    Returns:
        KMeansFit with labels (N,) and centroids (K, d).
    """
    import hashlib
    from importlib.metadata import version

    from sklearn.cluster import KMeans

    if init not in KMEANS_INITS:
        raise ValueError(f"init must be one of {KMEANS_INITS}, got {init!r}")
    X = np.ascontiguousarray(embeddings, dtype=np.float32)
    K = min(n_clusters, len(X))
    path = None
    if cache:
        from labcore import cache_root

        key = [list(X.shape), K, random_state, n_init, kmeans_kwargs, version("scikit-learn")]
        if init != "k-means++":  # (the default's key is unchanged, so older caches stay valid)
            key.append([init, KMEANS_SAMPLE])
        h = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
        h.update(X.tobytes())
        path = cache_root() / "kmeans" / f"{h.hexdigest()[:32]}.npz"
        if path.is_file():
            try:
                with np.load(path) as z:
                    return KMeansFit(labels=z["labels"], centroids=z["centroids"])
            except (OSError, ValueError, KeyError):  # a torn file: recompute
                pass
    if init == "sample" and len(X) > KMEANS_SAMPLE:
        sample = np.sort(np.random.default_rng(random_state).choice(len(X), KMEANS_SAMPLE, replace=False))
        start = KMeans(n_clusters=K, random_state=random_state, n_init=1, **kmeans_kwargs).fit(X[sample])
        km = KMeans(n_clusters=K, init=start.cluster_centers_, n_init=1, random_state=random_state,
                    **{"max_iter": KMEANS_SAMPLE_ITER, **kmeans_kwargs})
    else:
        km = KMeans(n_clusters=K, random_state=random_state, n_init=n_init, **kmeans_kwargs)
    fit = KMeansFit(labels=km.fit_predict(X).astype(np.int64), centroids=km.cluster_centers_.astype(np.float32))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}-{np.random.default_rng().integers(1 << 30)}.tmp.npz")
        np.savez(tmp, labels=fit.labels, centroids=fit.centroids)
        tmp.replace(path)
    return fit


def resolve_budget(budget: int | float, n_task: int) -> int:
    """Number of examples to select.

    Args:
        budget: an int count (>= 1), or a float fraction in (0, 1) of the task's examples (e.g. 0.005 = 0.5%).
        n_task: number of examples of the target task.
    Returns:
        max(1, round(budget * n_task)) for a fraction, else the count; clipped to n_task.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise ValueError(f"budget must be an int count or a float fraction in (0, 1), got {budget!r}")
    if isinstance(budget, (float, np.floating)) and not float(budget).is_integer():
        if not 0.0 < budget < 1.0:
            raise ValueError(f"a fractional budget must lie in (0, 1), got {budget}")
        k = max(1, int(round(float(budget) * n_task)))
    else:
        k = int(budget)
        if k < 1:
            raise ValueError(f"budget must be >= 1 example, got {budget}")
    return min(k, n_task)


def parse_budget(text: str) -> int | float:
    """Parse a CLI budget: "40" is a count, "0.005" (or "5e-3") a fraction of the task's examples."""
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"budget must be a count like 40 or a fraction like 0.005, got {text!r}") from None
    resolve_budget(value, n_task=10**9)  # validate now, with any task size
    return value


def distribution_centre(labels_task: np.ndarray, centroids: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Step 3: the centroid of the cluster holding most of the task's examples.

    Args:
        labels_task: (n,) cluster ids of the target task's examples.
        centroids: (K, d) cluster centres.
    Returns:
        (cluster id, centre (d,), counts (K,) of the task's examples per cluster). Ties: the lowest cluster id.
    """
    counts = np.bincount(labels_task, minlength=len(centroids))  # (K,)
    c = int(np.argmax(counts))
    return c, centroids[c], counts


def task_centre(X_task: np.ndarray, centre: np.ndarray) -> int:
    """Step 4: position (within X_task) of the example with the highest cosine similarity to ``centre``.

    Args:
        X_task: (n, d) the task's embeddings.
        centre: (d,) the distribution centre.
    Returns:
        Row index into X_task.
    """
    Xn = X_task / np.maximum(np.linalg.norm(X_task, axis=1, keepdims=True), 1e-12)  # (n, d)
    cn = centre / max(float(np.linalg.norm(centre)), 1e-12)  # (d,)
    return int(np.argmax(Xn @ cn))  # cos(x_i, c) = x_i . c / (|x_i| |c|)


def covering_radius_curve(X: np.ndarray, order: Sequence[int], block: int = 256) -> np.ndarray:
    """Covering radius of the first k picks, for k = 1..len(order): r_k = max_i min_{j <= k} ||x_i - x_{order_j}||.

    One pass over the picks with a running minimum, ``block`` picks at a time: O(len(order) * n * d) time,
    O(n * block) memory.

    Args:
        X: (n, d) the points to cover (the task's embeddings).
        order: positions into X, in pick order.
        block: picks per distance matrix.
    Returns:
        (len(order),) float64 radii, non-increasing.
    """
    X = np.asarray(X, dtype=np.float64)
    order = np.asarray(order, dtype=np.int64)
    sq = np.einsum("ij,ij->i", X, X)  # (n,) squared norms
    min_d2 = np.full(len(X), np.inf)
    radii = np.empty(len(order))
    for s in range(0, len(order), block):
        P = order[s:s + block]
        d2 = sq[:, None] + sq[None, P] - 2.0 * X @ X[P].T  # (n, b) ||x_i - x_p||^2
        d2 = np.minimum.accumulate(np.maximum(d2, 0.0), axis=1)  # (n, b) min over the block's picks so far
        d2 = np.minimum(d2, min_d2[:, None])  # (n, b) ... and over earlier blocks
        radii[s:s + len(P)] = d2.max(axis=0)
        min_d2 = d2[:, -1]
    return np.sqrt(radii)


def random_baseline(task_indices: np.ndarray, budget: int, random_state: int = 0) -> np.ndarray:
    """Uniform random sample of ``budget`` task examples, in a random order (every prefix is a random sample).

    Args:
        task_indices: (n,) dataset indices of the task's examples.
        budget: number to draw (<= n).
        random_state: seed.
    Returns:
        (budget,) dataset indices.
    """
    rng = np.random.default_rng(random_state)
    return np.asarray(task_indices)[rng.permutation(len(task_indices))[:budget]]


def stratified_baseline(task_indices: np.ndarray, labels_task: np.ndarray, budget: int,
                        random_state: int = 0) -> np.ndarray:
    """Cluster-stratified random sample: each cluster gets budget in proportion to the task's count in it.

    Picks are ordered so that every prefix k is itself proportional (a quota sequence): at step k the next pick
    comes from the cluster c with the largest deficit k * p_c - n_c (p_c: the task's share in cluster c, n_c: picks
    so far from c; ties go to the larger share, then the lower id), drawn uniformly from c's unpicked examples.

    Args:
        task_indices: (n,) dataset indices of the task's examples.
        labels_task: (n,) their cluster ids.
        budget: number to draw (<= n).
        random_state: seed.
    Returns:
        (budget,) dataset indices.
    """
    rng = np.random.default_rng(random_state)
    task_indices = np.asarray(task_indices)
    clusters = np.unique(labels_task)
    pools = [list(rng.permutation(np.flatnonzero(labels_task == c))) for c in clusters]  # shuffled members
    share = np.array([len(p) for p in pools], dtype=np.float64) / len(labels_task)  # p_c
    taken = np.zeros(len(clusters))
    picks = []
    for k in range(1, budget + 1):
        deficit = k * share - taken
        deficit[[len(p) == 0 for p in pools]] = -np.inf  # exhausted clusters
        c = max(range(len(clusters)), key=lambda j: (deficit[j], share[j], -j))
        picks.append(pools[c].pop())
        taken[c] += 1
    return task_indices[np.asarray(picks, dtype=np.int64)]


# ----------------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class CoresetResult:
    """Everything the selection computed, for the CLI, the plots and the app."""

    target_task: str
    """The task the core-set was selected for."""
    budget: int
    """Number of examples selected (the resolved budget)."""
    selected_indices: np.ndarray
    """(budget,) dataset indices in KCenterGreedy pick order; selected_indices[0] is the task centre."""
    task_indices: np.ndarray
    """(n,) dataset indices of all examples of the target task."""
    labels: np.ndarray
    """(N,) K-means cluster id of every example (all tasks)."""
    centroids: np.ndarray
    """(K, d) K-means centroids."""
    cluster_counts: np.ndarray
    """(K,) number of the target task's examples in each cluster."""
    distribution_cluster: int
    """Id of the cluster holding most of the task's examples."""
    distribution_centre: np.ndarray
    """(d,) its centroid: the task's distribution centre (step 3)."""
    task_centre_index: int
    """Dataset index of the task centre (step 4): the first pick."""
    radius_curve: np.ndarray
    """(budget,) covering radius of the task after k = 1..budget core-set picks."""
    random_indices: np.ndarray
    """(budget,) random baseline, dataset indices."""
    random_radius_curve: np.ndarray
    """(budget,) its covering radius after k picks."""
    stratified_indices: np.ndarray
    """(budget,) cluster-stratified baseline, dataset indices."""
    stratified_radius_curve: np.ndarray
    """(budget,) its covering radius after k picks."""
    params: dict[str, Any] = field(default_factory=dict)
    """How it was computed (n_clusters, random_state, n_init, metric)."""

    @property
    def kmeans(self) -> KMeansFit:
        """The clustering, to pass back to ``select_coreset`` when only the task or budget changes."""
        return KMeansFit(labels=self.labels, centroids=self.centroids)


def select_coreset(embeddings: np.ndarray, tasks: Sequence[str], target_task: str, budget: int | float,
                   n_clusters: int = 32, random_state: int = 0, n_init: int = 3, kmeans: KMeansFit | None = None,
                   metric: str = "euclidean", device: str = "auto", **kmeans_kwargs: Any) -> CoresetResult:
    """Select a core-set of ``target_task`` with the paper's pipeline (arXiv 2305.09246, steps 2-5).

    Args:
        embeddings: (N, d) L2-normalised embeddings of all examples of all tasks.
        tasks: (N,) task name of every example.
        target_task: the task to select for.
        budget: int count, or float fraction in (0, 1) of the task's examples (0.005 = the paper's 0.5%); >= 1.
        n_clusters: K of K-means (ignored if ``kmeans`` is given).
        random_state: seed of K-means and of both baselines.
        n_init: K-means restarts.
        kmeans: a precomputed clustering of exactly these embeddings (e.g. ``previous_result.kmeans``).
        metric: KCenterGreedy distance, "euclidean" or "cosine" (same picks on normalised embeddings).
        device: device of KCenterGreedy ("auto": cuda > mps > cpu).
        **kmeans_kwargs: passed to ``sklearn.cluster.KMeans``.
    Returns:
        CoresetResult (selected indices index the full dataset).
    """
    from labcore.kcenter import KCenterGreedy  # lazy: a sibling module

    X = np.asarray(embeddings, dtype=np.float32)
    tasks = np.asarray(tasks)
    if X.ndim != 2 or len(X) != len(tasks):
        raise ValueError(f"embeddings must be (N, d) with N = len(tasks) = {len(tasks)}, got {X.shape}")
    task_indices = np.flatnonzero(tasks == target_task)  # (n,)
    if len(task_indices) == 0:
        known = ", ".join(sorted(map(str, np.unique(tasks))))
        raise ValueError(f"task {target_task!r} has no examples; tasks present: {known}")
    k = resolve_budget(budget, len(task_indices))

    # Step 2: K-means over all examples of all tasks (task labels are not used).
    given = kmeans is not None
    if kmeans is None:
        kmeans = fit_kmeans(X, n_clusters=n_clusters, random_state=random_state, n_init=n_init, **kmeans_kwargs)
    elif len(kmeans.labels) != len(X):
        raise ValueError(f"precomputed kmeans has {len(kmeans.labels)} labels for {len(X)} embeddings")
    labels_task = kmeans.labels[task_indices]  # (n,)

    # Step 3: distribution centre = centroid of the task's most frequent cluster.
    c, centre, counts = distribution_centre(labels_task, kmeans.centroids)
    # Step 4: task centre = the task example most cosine-similar to the distribution centre.
    X_task = X[task_indices]  # (n, d)
    start = task_centre(X_task, centre)
    # Step 5: KCenterGreedy over the task's examples, starting from the task centre, until k are chosen.
    kc = KCenterGreedy(k, metric=metric, device=device, random_state=random_state).fit(X_task, initial=start)
    picks = np.asarray(kc.selected_indices_, dtype=np.int64)  # (k,) positions in X_task

    rand = random_baseline(task_indices, k, random_state)
    strat = stratified_baseline(task_indices, labels_task, k, random_state)
    pos = {int(g): i for i, g in enumerate(task_indices)}  # dataset index -> position in X_task

    def curve(idx: np.ndarray) -> np.ndarray:
        return covering_radius_curve(X_task, [pos[int(g)] for g in idx])

    return CoresetResult(
        target_task=str(target_task), budget=k, selected_indices=task_indices[picks], task_indices=task_indices,
        labels=kmeans.labels, centroids=kmeans.centroids, cluster_counts=counts, distribution_cluster=c,
        distribution_centre=centre, task_centre_index=int(task_indices[start]),
        radius_curve=covering_radius_curve(X_task, picks), random_indices=rand, random_radius_curve=curve(rand),
        stratified_indices=strat, stratified_radius_curve=curve(strat),
        params=dict(n_clusters=len(kmeans.centroids), random_state=random_state,
                    n_init=None if given else n_init, metric=metric, precomputed_kmeans=given),
    )


# ----------------------------------------------------------------------------------------------------------------
# CLI entry point: labcore select
# ----------------------------------------------------------------------------------------------------------------
def run_select(data: str | Path, task: str, budget: int | float, out: str | Path, n_clusters: int = 32,
               seed: int = 0, model: str = "minilm", split: str | None = "train",
               progress: bool = True, kmeans_init: str = "k-means++") -> CoresetResult:
    """``labcore select``: embed (cached), cluster, select a core-set of ``task`` and write it as JSONL.

    Args:
        data: instruction set (.jsonl or .jsonl.gz).
        task: target task name (the records' "task" field).
        budget: int count or float fraction in (0, 1) of the task's examples.
        out: output .jsonl; one original record per line plus "coreset_rank" (0 = task centre), in pick order.
        n_clusters: K of K-means.
        seed: random_state of K-means and the baselines.
        model: encoder for ``labcore.embed.embed_texts`` ("minilm" works offline).
        split: only records of this split are candidates and are clustered (None: all records).
        progress: show the embedding progress bar.
        kmeans_init: ``fit_kmeans``'s init ("sample": the app's clusters).
    Returns:
        The CoresetResult (indices into the records of ``split``).
    """
    from labcore.embed import embed_texts

    records = load_instruction_set(data)
    if split is not None:
        records = [r for r in records if r.get("split") == split]
        if not records:
            raise ValueError(f"{data}: no records with split={split!r}")
    tasks = [r["task"] for r in records]
    n_task = tasks.count(task)  # checked before the (slow) embedding
    if not n_task:
        raise ValueError(f"task {task!r} has no examples in {data}; tasks present: {', '.join(sorted(set(tasks)))}")
    if resolve_budget(budget, n_task) < budget:  # a count larger than the task: say so rather than clip
        raise ValueError(f"budget {budget} is more than the {n_task:,} examples of task {task!r}")
    emb = embed_texts([example_text(r) for r in records], model=model, progress=progress)
    kmeans = fit_kmeans(emb, n_clusters=n_clusters, random_state=seed, cache=True,  # cached: re-runs take seconds
                        init=kmeans_init)
    res = select_coreset(emb, tasks, task, budget, random_state=seed, kmeans=kmeans)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for rank, i in enumerate(res.selected_indices):
            f.write(json.dumps({**records[int(i)], "coreset_rank": rank}, ensure_ascii=False) + "\n")

    n_task = len(res.task_indices)
    sources = sorted({records[int(i)]["source"] for i in res.selected_indices})
    print(f"task {task!r}: selected {res.budget} of {n_task} examples ({100 * res.budget / n_task:.2f}%), "
          f"{len(records)} examples in {len(res.centroids)} clusters")
    print(f"distribution centre: cluster {res.distribution_cluster} "
          f"({res.cluster_counts[res.distribution_cluster]} of the task's examples); "
          f"task centre: example id {records[res.task_centre_index]['id']}")
    print(f"covering radius at k={res.budget}: core-set {res.radius_curve[-1]:.3f}, "
          f"random {res.random_radius_curve[-1]:.3f}, stratified {res.stratified_radius_curve[-1]:.3f}")
    print(f"sources in the core-set: {', '.join(sources)}")
    print(f"wrote {out}")
    return res


# ----------------------------------------------------------------------------------------------------------------
# CLI entry point: labcore embed
# ----------------------------------------------------------------------------------------------------------------
def run_embed(data: str | Path, split: str | None = "train", model: str = "minilm", quantize: str | None = None,
              ship: bool = False, seed: int = 0, progress: bool = True) -> np.ndarray:
    """``labcore embed``: embed an instruction set into the cache; ``ship=True`` also writes the shipped files.

    Shipping writes ``data/embeddings/<model id>/<file stem>-<split>.npz`` (float16 rows + text keys, read by every
    ``embed_texts`` call) and the UMAP layout of those float16 rows as a fresh clone reads them
    (``data/embeddings/umap/<key>.npy``, seed ``seed``: the app's default), so the app's data-selection tab and
    ``labcore select`` start without running the encoder or UMAP.

    Returns:
        (N, d) float32 embeddings of the split's examples (as the cache returns them).
    """
    import time

    from labcore.embed import EmbeddingCache, embed_texts, text_key

    records = load_instruction_set(data)
    if split is not None:
        records = [r for r in records if r.get("split") == split]
        if not records:
            raise ValueError(f"{data}: no records with split={split!r}")
    texts = [example_text(r) for r in records]
    from labcore import fast_mode

    if ship and fast_mode():
        raise ValueError("--ship writes the full-quality UMAP layout: run it without LABCORE_FAST")
    t0 = time.perf_counter()
    # shipping writes float32 rows (the user's cache or the encoder), so re-shipping never rounds rounded rows again
    emb = embed_texts(texts, model=model, progress=progress, quantize=quantize, shipped=not ship)
    print(f"embedded {len(texts)} examples of {data} ({emb.shape[1]}-d) in {time.perf_counter() - t0:.1f} s")
    if not ship:
        return emb
    from labcore.viz import shipped_layout_path, umap_2d

    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    stem = Path(data).name.split(".")[0] + (f"-{split}" if split else "")
    path = EmbeddingCache(model, 256, quantize=quantize).write_shipped(
        [text_key(t) for t in first], emb[list(first.values())], stem)
    shipped = embed_texts(texts, model=model, progress=False, quantize=quantize)  # read back from data/
    t0 = time.perf_counter()
    layout = shipped_layout_path(shipped, seed)
    layout.parent.mkdir(parents=True, exist_ok=True)
    np.save(layout, umap_2d(shipped, random_state=seed).astype(np.float32))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) and {layout.name} (UMAP {time.perf_counter() - t0:.1f} s)")
    return shipped
