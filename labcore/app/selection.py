"""The "Data selection" tab: core-set selection of instruction data, shown on a map.

Chen et al. 2023, "Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training Data Instruction
Tuning", arXiv 2305.09246. The method is ``labcore.coreset.select_coreset`` (steps 2-5: K-means over all tasks,
distribution centre, task centre, KCenterGreedy); the pictures are ``labcore.viz``. This module only caches:

- per dataset: its records, their embeddings (``labcore.embed.embed_texts``, also cached on disk) and the 2-D UMAP
  layout (``labcore.viz.umap_2d``, cached on disk). For the shipped instruction set both come with the repository
  (``labcore embed --ship`` made them: MiniLM, mean pooling, L2-normalised, stored as float16), so the tab draws
  its first map on open, in seconds, without running the encoder. Any other file is embedded on *Load*, with a
  progress bar and an ETA; *Cancel* stops it after the current batch and keeps what was embedded in the cache;
- per (dataset, K): the K-means fit (``labcore.coreset.fit_kmeans`` with ``init="sample"``: k-means++ on a seeded
  5,000-point sample, then Lloyd on all points; about a second at N = 35k, and the same K always gives the same
  clusters; ``labcore select --kmeans sample`` reproduces them);
- per (dataset, task, K, budget): the figures (the last ``MAX_VIEWS``), so a class opening the tab at once costs
  one selection.

So moving the budget slider re-runs only the per-task steps 3-5 and the baselines, on cached embeddings. The map
draws at most ``MAX_MAP_POINTS`` points: every example of the target task and a fixed random sample of the others
(30k hover texts would make every update a 7 MB figure, slow to build and to draw); the method itself always uses
all examples. As
``labcore select``, only the ``train`` split is clustered and selected from (evaluation examples never enter a
core-set); a file without a ``train`` split is used whole.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_MAP_POINTS = 10_000
"""Most points drawn on the map: all of the target task's, then a fixed random sample of the other tasks'."""

MAX_VIEWS = 16
"""Most (dataset, task, K, budget) views kept in memory (each holds a map figure of up to ``MAX_MAP_POINTS``)."""

BUDGET_UNITS = ("% of task", "count")
"""How the budget slider is read: a percentage of the task's examples (0.5 = the paper's 0.5%), or a count."""


@dataclass
class LoadedSet:
    """One instruction set, embedded and laid out in 2-D."""

    path: str
    """The file it was read from."""
    records: list[dict[str, Any]]
    """The records of the split in use."""
    embeddings: np.ndarray
    """(N, d) L2-normalised embeddings of the examples' instructions."""
    xy: np.ndarray
    """(N, 2) UMAP layout (for the eye only)."""
    note: str = ""
    """How the split was chosen, for the status line."""

    def __post_init__(self) -> None:
        self.tasks = np.asarray([r["task"] for r in self.records])  # (N,) task of every example
        self.sources = np.asarray([r["source"] for r in self.records])  # (N,) source dataset of every example
        self.texts = [r["instruction"] for r in self.records]  # N hover texts

    def task_counts(self) -> dict[str, int]:
        """{task: number of examples}, tasks sorted by name."""
        names, counts = np.unique(self.tasks, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}


def budget_count(unit: str, value: float, n_task: int) -> int:
    """The number of examples a slider setting asks for.

    Args:
        unit: one of ``BUDGET_UNITS``.
        value: slider value: a percentage (e.g. 0.5) or a count.
        n_task: examples of the target task.
    Returns:
        max(1, round(value / 100 * n_task)) for a percentage, else round(value); clipped to [1, n_task].
    """
    if unit not in BUDGET_UNITS:
        raise ValueError(f"budget unit must be one of {BUDGET_UNITS}, got {unit!r}")
    if value is None or not np.isfinite(value) or value <= 0:
        raise ValueError(f"the budget must be positive, got {value!r}")
    k = round(float(value) / 100.0 * n_task) if unit == BUDGET_UNITS[0] else round(float(value))
    return int(min(max(k, 1), n_task))


class SelectionHandlers:
    """Handlers of the data-selection tab, with the in-memory caches.

    Args:
        embed_model: sentence encoder for ``labcore.embed.embed_texts`` ("minilm" works offline).
        split: split to select from (None: all records).
        random_state: seed of K-means, UMAP and the random baselines.
    """

    def __init__(self, embed_model: str = "minilm", split: str | None = "train", random_state: int = 0):
        self.embed_model, self.split, self.random_state = embed_model, split, random_state
        self._sets: dict[str, LoadedSet] = {}
        self._kmeans: dict[tuple[str, int], Any] = {}
        self._views: OrderedDict[tuple, tuple] = OrderedDict()  # (path, task, K, budget) -> ``select``'s outputs
        self._embedded: dict[str, np.ndarray] = {}  # embeddings read by ``instant``, for ``dataset``
        self._read: dict[str, tuple[list[dict[str, Any]], str]] = {}  # records read by ``instant``, for ``dataset``
        self._lock = threading.Lock()  # one load / fit at a time (both are CPU-heavy)
        self.cancel = threading.Event()  # set by ``request_cancel``: stops an embedding after the current batch
        self.loading_by: str | None = None  # the session whose load is running (None: no load is running)
        self.last_timings: dict[str, float] = {}
        """Seconds spent in the steps of the last ``select`` call (``select``, ``plots``, ``kmeans``)."""

    # -- caches ------------------------------------------------------------------------------------------------------
    def dataset(self, path: str, progress: Any = None, owner: str | None = None) -> LoadedSet:
        """Read, embed (disk cache) and lay out (disk cache) an instruction set; kept in memory afterwards.

        ``owner`` (the app's session) is the one whose ``request_cancel`` stops this load."""
        key = str(Path(path).expanduser().resolve())
        if key in self._sets:
            return self._sets[key]
        with self._lock:
            if key in self._sets:
                return self._sets[key]
            self.cancel.clear()
            self.loading_by = owner or ""  # "": started outside a session (request_cancel() stops it)
            try:
                return self._load(key, path, progress)
            finally:
                self.loading_by = None

    def request_cancel(self, owner: str | None = None) -> str:
        """Stop the running load after its current batch if ``owner`` started it (None: whoever did)."""
        running = self.loading_by
        if running is None:
            return "Nothing is loading."
        if owner is not None and running != owner:
            return "The load that is running was started by another user; it goes on (Cancel stops your own load)."
        self.cancel.set()
        return "Cancelling after the current batch; what is embedded stays cached."

    def _load(self, key: str, path: str, progress: Any) -> LoadedSet:
        """The body of ``dataset``, under its lock: read, embed, lay out, keep."""
        from labcore.coreset import example_text
        from labcore.embed import embed_texts
        from labcore.viz import umap_2d

        _say(progress, 0.0, f"reading {path}")
        records, note = self._records(key)
        self._read.pop(key)  # kept in the LoadedSet from here on
        _say(progress, 0.05, f"embedding {len(records)} examples with {self.embed_model} "
                             "(minutes on a CPU the first time; cached on disk afterwards)")

        def tick(done: int, total: int, eta: float) -> None:
            _say(progress, 0.05 + 0.75 * done / total,
                 f"embedding with {self.embed_model}: {done:,} of {total:,} new texts, about {eta:.0f} s left "
                 "(Cancel keeps what is done)")

        emb = self._embedded.pop(key, None)
        if emb is None or len(emb) != len(records):
            emb = embed_texts([example_text(r) for r in records], model=self.embed_model, progress=True,
                              cancel=self.cancel, on_progress=tick)
        _say(progress, 0.8, f"UMAP 2-D map of {len(records)} points (slow the first time; cached on disk)")
        xy = umap_2d(emb, random_state=self.random_state)
        self._sets[key] = LoadedSet(path=key, records=records, embeddings=emb, xy=xy, note=note)
        _say(progress, 1.0, "ready")
        return self._sets[key]

    def kmeans(self, data: LoadedSet, n_clusters: int):
        """The K-means fit of a dataset for K = ``n_clusters`` (fitted once per (dataset, K))."""
        from labcore.coreset import fit_kmeans

        key = (data.path, int(n_clusters))
        if key not in self._kmeans:
            with self._lock:
                if key not in self._kmeans:
                    self._kmeans[key] = fit_kmeans(data.embeddings, n_clusters=int(n_clusters),
                                                   random_state=self.random_state, init="sample")
        return self._kmeans[key]

    def instant(self, path: str) -> bool:
        """True if ``path`` opens without running the encoder or UMAP (in memory, or embedded and laid out on
        disk: the shipped set on a fresh clone), so the tab may draw it on open."""
        key = str(Path(path).expanduser().resolve())
        if key in self._sets:
            return True
        if not Path(key).is_file():
            return False
        from labcore.coreset import example_text
        from labcore.embed import embed_texts
        from labcore.viz import umap_2d

        records, _ = self._records(key)
        X = embed_texts([example_text(r) for r in records], model=self.embed_model, progress=False,
                        cached_only=True)
        if X is None:
            return False
        self._embedded[key] = X  # dataset() takes it from here
        return umap_2d(X, random_state=self.random_state, cached_only=True) is not None

    def _records(self, key: str) -> tuple[list[dict[str, Any]], str]:
        """The records of the split in use from file ``key`` (read once), and the note on how the split was chosen."""
        if key not in self._read:
            from labcore.coreset import load_instruction_set

            records = load_instruction_set(key)
            note = ""
            if self.split is not None:
                part = [r for r in records if r.get("split") == self.split]
                if part:
                    note = f"split {self.split!r} only ({len(part)} of {len(records)} records)"
                    records = part
                else:
                    note = f"no {self.split!r} split in the file: all {len(records)} records used"
            self._read[key] = (records, note)
        return self._read[key]

    def open_view(self, path: str, n_clusters: int = 32, unit: str = BUDGET_UNITS[0], value: float = 0.5,
                  progress: Any = None):
        """The first view on opening the tab: load ``path`` and select a core-set of its largest task, if that
        needs no encoder run (``instant``); else None (the user presses *Load*).

        Returns:
            None, or (task names, default task, map figure, radius figure, table, status markdown).
        """
        if not self.instant(path):
            return None
        tasks, default, _ = self.load(path, progress)
        return (tasks, default) + tuple(self.select(path, default, n_clusters, unit, value, progress))

    # -- handlers ----------------------------------------------------------------------------------------------------
    def load(self, path: str, progress: Any = None, owner: str | None = None) -> tuple[list[str], str | None, str]:
        """Load a dataset (the *Load* button); ``owner``: the session that may cancel it (``request_cancel``).

        Returns:
            (task names, the default task: the largest, status markdown).
        """
        t0 = time.perf_counter()
        data = self.dataset(path, progress, owner)
        counts = data.task_counts()
        default = max(counts, key=lambda t: (counts[t], t)) if counts else None
        status = (f"**{Path(data.path).name}**: {len(data.records)} examples, {len(counts)} tasks "
                  f"({', '.join(f'{t}: {c}' for t, c in counts.items())}); {data.note}; "
                  f"embeddings {data.embeddings.shape[1]}-d; ready in {time.perf_counter() - t0:.1f} s.")
        return list(counts), default, status

    def select(self, path: str, task: str, n_clusters: int = 32, unit: str = BUDGET_UNITS[0],
               value: float = 0.5, progress: Any = None, owner: str | None = None):
        """Select a core-set of ``task`` and draw it.

        Args:
            path: instruction set file.
            task: target task.
            n_clusters: K of K-means.
            unit: one of ``BUDGET_UNITS``.
            value: the budget slider.
            progress: a ``gr.Progress`` (or None).
            owner: the session that may cancel a load this call starts.
        Returns:
            (UMAP map figure, radius-vs-budget figure, table of the selected examples in pick order, summary
            markdown). The steps' times are in ``last_timings``.
        """
        import pandas as pd

        from labcore.coreset import select_coreset
        from labcore.viz import plot_clusters, plot_radius_curve

        data = self.dataset(path, progress, owner)
        counts = data.task_counts()
        if task not in counts:
            raise ValueError(f"task {task!r} not in {Path(data.path).name}; tasks: {', '.join(counts)}")
        k = budget_count(unit, value, counts[task])
        view_key = (data.path, task, int(n_clusters), k)
        if view_key in self._views:
            self._views.move_to_end(view_key)
            return self._views[view_key]
        t0 = time.perf_counter()
        if (data.path, int(n_clusters)) not in self._kmeans:
            _say(progress, 0.5, f"K-means with K = {int(n_clusters)} on {len(data.records)} examples "
                                "(once per K; minutes on 30k examples)")
        fit = self.kmeans(data, n_clusters)
        t1 = time.perf_counter()
        res = select_coreset(data.embeddings, data.tasks, task, k, kmeans=fit, random_state=self.random_state)
        t2 = time.perf_counter()
        shown, view = map_view(res, len(data.records), MAX_MAP_POINTS, self.random_state)
        fig_map = plot_clusters(data.xy[shown], res.labels[shown], [data.texts[i] for i in shown], view,
                                tasks=data.tasks[shown], sources=data.sources[shown],
                                embeddings=data.embeddings[shown])
        fig_radius = plot_radius_curve(res)
        t3 = time.perf_counter()
        self.last_timings = {"kmeans": t1 - t0, "select": t2 - t1, "plots": t3 - t2}
        table = pd.DataFrame([{
            "rank": rank, "id": data.records[int(i)]["id"], "source": data.records[int(i)]["source"],
            "cluster": int(res.labels[int(i)]), "instruction": _short(data.records[int(i)]["instruction"]),
            "output": _short(data.records[int(i)]["output"], 80),
        } for rank, i in enumerate(res.selected_indices)])
        n_task = len(res.task_indices)
        summary = (
            f"**{task}**: {res.budget} of {n_task} examples ({100 * res.budget / n_task:.2f}%), "
            f"{len(data.records)} examples in {len(res.centroids)} clusters. Distribution centre: cluster "
            f"{res.distribution_cluster} ({int(res.cluster_counts[res.distribution_cluster])} of the task's examples). "
            f"Covering radius at k = {res.budget}: core-set **{res.radius_curve[-1]:.3f}**, random "
            f"{res.random_radius_curve[-1]:.3f}, cluster-stratified {res.stratified_radius_curve[-1]:.3f}.  \n"
            + (f"The map shows all {n_task} examples of the task and {len(shown) - n_task} of the other "
               f"{len(data.records) - n_task} (a fixed random sample).  \n" if len(shown) < len(data.records) else "")
            + f"Selection {self.last_timings['select']:.2f} s, plots {self.last_timings['plots']:.2f} s"
            + (f", K-means {self.last_timings['kmeans']:.1f} s (now cached for K = {len(res.centroids)})"
               if self.last_timings["kmeans"] > 0.05 else " (K-means from the cache)") + "."
        )
        self._views[view_key] = (fig_map, fig_radius, table, summary)
        while len(self._views) > MAX_VIEWS:  # least recently shown first
            self._views.popitem(last=False)
        return fig_map, fig_radius, table, summary


def map_view(result: Any, n: int, max_points: int, random_state: int = 0) -> tuple[np.ndarray, Any]:
    """The points drawn on the map, and the selection re-indexed to them (the selection itself is unchanged).

    Args:
        result: a ``labcore.coreset.CoresetResult`` over n examples.
        n: number of examples.
        max_points: most points to draw.
        random_state: seed of the sample of non-task examples.
    Returns:
        (shown: sorted dataset indices, all task examples + a random sample of the others, up to ``max_points``;
        the result with every index field mapped to positions in ``shown`` and ``labels`` restricted to them).
    """
    if n <= max_points:
        return np.arange(n), result
    task = np.asarray(result.task_indices)
    others = np.setdiff1d(np.arange(n), task)  # (n - n_task,)
    extra = np.random.default_rng(random_state).permutation(others)[: max(0, max_points - len(task))]
    shown = np.sort(np.concatenate([task, extra]))  # (m,)
    pos = np.full(n, -1, dtype=np.int64)
    pos[shown] = np.arange(len(shown))  # dataset index -> map position
    view = dataclasses.replace(
        result, selected_indices=pos[result.selected_indices], task_indices=pos[task],
        task_centre_index=int(pos[result.task_centre_index]), random_indices=pos[result.random_indices],
        stratified_indices=pos[result.stratified_indices], labels=result.labels[shown])
    return shown, view


def _short(text: str, n: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _say(progress: Any, fraction: float, desc: str) -> None:
    if progress is not None:
        progress(fraction, desc=desc)
