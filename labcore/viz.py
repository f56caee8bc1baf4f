"""Pictures of core-set selection: a 2-D UMAP map of the clusters and the core-set, radius-vs-budget curves,
and a step-by-step KCenterGreedy toy.

Chen et al. 2023, "Maybe Only 0.5% Data is Needed", arXiv 2305.09246 (the pipeline: ``labcore.coreset``);
KCenterGreedy: Sener & Savarese 2018, arXiv 1708.00489. Nothing here changes a selection: the plots only show what
``labcore.coreset.select_coreset`` computed. The 2-D map is for the eye only; every distance the method uses is
in the full embedding space.

Distribution centre on the map: a K-means centroid is not an example, so it has no UMAP coordinates of its own. It
is drawn at the mean 2-D position of the ``m`` (default 10) members of its cluster nearest to it in embedding space
(``project_centre``); without embeddings, at the coordinate-wise median of its cluster's 2-D points. (UMAP's
``transform`` could place it, but the cache keeps coordinates only, not the fitted model.)
"""
from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from labcore import cache_root
from labcore import fast_mode

_PALETTE_CACHE: list[str] = []


def _palette() -> list[str]:
    """A long qualitative palette (Light24 + Dark24 + Alphabet): distinct colours for up to 74 clusters."""
    if not _PALETTE_CACHE:
        from plotly.colors import qualitative as q

        _PALETTE_CACHE.extend(q.Light24 + q.Dark24 + q.Alphabet)
    return _PALETTE_CACHE


# ----------------------------------------------------------------------------------------------------------------
# UMAP with an on-disk cache
# ----------------------------------------------------------------------------------------------------------------
def _umap_params(random_state: int, umap_kwargs: dict[str, Any], fast: bool | None = None) -> dict[str, Any]:
    params = dict(n_neighbors=15, min_dist=0.1, metric="cosine")
    if fast_mode() if fast is None else fast:
        params["n_epochs"] = 50  # fast mode: fewer optimisation epochs (UMAP's default is 200 for large data)
    params.update(umap_kwargs)
    params["random_state"] = random_state
    return params


def _fit_umap(X: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Fit UMAP and return the (N, 2) layout. A fixed random_state makes UMAP single-threaded and reproducible."""
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # expected with a seed
        return umap.UMAP(n_components=2, **params).fit_transform(X).astype(np.float32)  # (N, 2)


def umap_key(embeddings: np.ndarray, params: dict[str, Any], with_version: bool = True) -> str:
    """Cache key: sha256 of the embedding bytes, shape and dtype, the UMAP parameters and (for the user's cache)
    umap's version; the shipped layouts (``with_version=False``) are a valid picture under any umap version."""
    from importlib.metadata import version

    X = np.ascontiguousarray(embeddings)
    h = hashlib.sha256()
    h.update(json.dumps([list(X.shape), str(X.dtype), params] + ([version("umap-learn")] if with_version else []),
                        sort_keys=True, default=str).encode())
    h.update(X.tobytes())
    return h.hexdigest()[:32]


def shipped_layout_path(X: np.ndarray, random_state: int, **umap_kwargs: Any) -> Path:
    """Where ``labcore embed --ship`` puts the UMAP layout of X: ``data/embeddings/umap/<key>.npy`` (full-quality
    parameters, also in fast mode)."""
    from labcore.embed import SHIPPED_DIR

    params = _umap_params(random_state, umap_kwargs, fast=False)
    return SHIPPED_DIR / "umap" / f"{umap_key(np.asarray(X, np.float32), params, with_version=False)}.npy"


def umap_2d(embeddings: np.ndarray, random_state: int = 42, cache: bool = True, cached_only: bool = False,
            **umap_kwargs: Any) -> np.ndarray | None:
    """2-D UMAP layout of embeddings, cached on disk (UMAP on 30k points takes minutes on a laptop).

    Args:
        embeddings: (N, d) vectors.
        random_state: UMAP seed; the same seed, data and parameters give the same layout.
        cache: read/write ``$LABCORE_CACHE/umap/<key>.npy`` (default ``~/.cache/labcore``), and read the layouts
            shipped in ``data/embeddings/umap/`` (``labcore embed --ship``); the key covers the embedding content and
            every parameter.
        cached_only: return None instead of fitting UMAP when no layout is on disk.
        **umap_kwargs: passed to ``umap.UMAP`` (defaults: n_neighbors=15, min_dist=0.1, metric="cosine";
            in fast mode, ``LABCORE_FAST=1``, n_epochs=50).
    Returns:
        (N, 2) float32 coordinates (None: ``cached_only`` and not on disk).
    """
    X = np.asarray(embeddings, dtype=np.float32)
    params = _umap_params(random_state, umap_kwargs)
    path = cache_root() / "umap" / f"{umap_key(X, params)}.npy"
    # the layouts shipped in data/ (full quality, so fast mode uses them too), then the user's cache
    for candidate in (shipped_layout_path(X, random_state, **umap_kwargs), path):
        if cache and candidate.is_file():
            try:
                xy = np.load(candidate)
                if xy.shape == (len(X), 2):
                    return xy.astype(np.float32, copy=False)
            except (OSError, ValueError):  # a torn file: recompute
                pass
    if cached_only:
        return None
    xy = _fit_umap(X, params)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}-{np.random.default_rng().integers(1 << 30)}.tmp.npy")
        np.save(tmp, xy)
        tmp.replace(path)
    return xy


# ----------------------------------------------------------------------------------------------------------------
# Cluster map with the core-set
# ----------------------------------------------------------------------------------------------------------------
def project_centre(xy: np.ndarray, labels: np.ndarray, cluster: int, centre: np.ndarray | None = None,
                   embeddings: np.ndarray | None = None, m: int = 10) -> np.ndarray:
    """2-D position for a centroid, which UMAP never saw (see the module docstring).

    Args:
        xy: (N, 2) layout.
        labels: (N,) cluster ids.
        cluster: the centroid's cluster id.
        centre: (d,) the centroid (needed with ``embeddings``).
        embeddings: (N, d) vectors; if given, average the xy of the ``m`` cluster members nearest to ``centre``.
        m: members to average.
    Returns:
        (2,) coordinates.
    """
    members = np.flatnonzero(labels == cluster)
    if len(members) == 0:
        return np.asarray(xy, dtype=np.float64).mean(axis=0)
    if embeddings is None or centre is None:
        return np.median(xy[members], axis=0)
    d = np.linalg.norm(np.asarray(embeddings, dtype=np.float64)[members] - centre, axis=1)  # (n_c,)
    return xy[members[np.argsort(d)[:m]]].mean(axis=0)


def _hover(texts: Sequence[str], idx: np.ndarray, tasks: Sequence[str] | None, sources: Sequence[str] | None,
           max_chars: int) -> list[str]:
    out = []
    for i in idx:
        t = str(texts[i])
        t = t if len(t) <= max_chars else t[:max_chars - 1] + "…"
        head = " · ".join(str(x[i]) for x in (tasks, sources) if x is not None)
        body = html.escape(t).replace("\n", "<br>")
        out.append(f"<b>{html.escape(head)}</b><br>{body}" if head else body)
    return out


def plot_clusters(xy: np.ndarray, labels: np.ndarray, texts: Sequence[str], result: Any,
                  tasks: Sequence[str] | None = None, sources: Sequence[str] | None = None,
                  embeddings: np.ndarray | None = None, max_chars: int = 160, show_baselines: bool = False,
                  title: str | None = None):
    """UMAP map: one WebGL trace per K-means cluster (click the legend to hide one) and the core-set on top.

    Args:
        xy: (N, 2) layout (``umap_2d``).
        labels: (N,) K-means cluster ids (``result.labels``).
        texts: N example texts, shown (truncated) on hover.
        result: a ``labcore.coreset.CoresetResult``.
        tasks: N task names for the hover (optional).
        sources: N source dataset names for the hover (optional).
        embeddings: (N, d) vectors, to place the distribution centre (see ``project_centre``).
        max_chars: hover text length.
        show_baselines: also overlay the random and stratified baselines (hidden until clicked in the legend).
        title: figure title (default names the task and budget).
    Returns:
        plotly Figure: K cluster traces, then "core-set", "task centre", "distribution centre"
        (then "random baseline", "stratified baseline" if asked).
    """
    import plotly.graph_objects as go

    xy = np.asarray(xy)
    labels = np.asarray(labels)
    if not (len(xy) == len(labels) == len(texts)):
        raise ValueError(f"xy, labels and texts differ in length: {len(xy)}, {len(labels)}, {len(texts)}")
    colours = _palette()
    fig = go.Figure()
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_task = int(result.cluster_counts[c]) if c < len(result.cluster_counts) else 0
        fig.add_trace(go.Scattergl(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=f"cluster {c} ({len(idx)}; task: {n_task})",
            marker=dict(size=4, color=colours[int(c) % len(colours)], opacity=0.55),
            text=_hover(texts, idx, tasks, sources, max_chars), hovertemplate=f"%{{text}}<extra>cluster {c}</extra>",
        ))

    sel = np.asarray(result.selected_indices)
    fig.add_trace(go.Scattergl(
        x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=f"core-set ({len(sel)})",
        marker=dict(size=12, symbol="star", color="gold", line=dict(width=1, color="black")),
        text=[f"pick {r}<br>{h}" for r, h in enumerate(_hover(texts, sel, tasks, sources, max_chars))],
        hovertemplate="%{text}<extra>core-set</extra>",
    ))
    t = result.task_centre_index
    fig.add_trace(go.Scatter(
        x=[xy[t, 0]], y=[xy[t, 1]], mode="markers", name="task centre (first pick)",
        marker=dict(size=22, symbol="circle-open", color="black", line=dict(width=3)),
        text=_hover(texts, np.array([t]), tasks, sources, max_chars), hovertemplate="%{text}<extra>task centre</extra>",
    ))
    p = project_centre(xy, labels, result.distribution_cluster, result.distribution_centre, embeddings)
    fig.add_trace(go.Scatter(
        x=[p[0]], y=[p[1]], mode="markers", name=f"distribution centre (cluster {result.distribution_cluster})",
        marker=dict(size=18, symbol="x", color="crimson", line=dict(width=1, color="white")),
        hovertemplate=f"centroid of cluster {result.distribution_cluster}, the cluster holding most of the task "
                      f"({int(result.cluster_counts[result.distribution_cluster])} examples)<extra></extra>",
    ))
    if show_baselines:
        for name, idx, symbol in (("random baseline", result.random_indices, "triangle-up-open"),
                                  ("stratified baseline", result.stratified_indices, "square-open")):
            idx = np.asarray(idx)
            fig.add_trace(go.Scattergl(
                x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name, visible="legendonly",
                marker=dict(size=10, symbol=symbol, color="black"),
                text=_hover(texts, idx, tasks, sources, max_chars), hovertemplate=f"%{{text}}<extra>{name}</extra>",
            ))
    fig.update_layout(
        title=title or f"K-means clusters (UMAP 2-D) and the core-set of {result.target_task!r}, k = {result.budget}",
        xaxis=dict(title="UMAP 1", showticklabels=False), yaxis=dict(title="UMAP 2", showticklabels=False),
        legend=dict(itemsizing="constant"), template="plotly_white", hoverlabel=dict(align="left"),
    )
    return fig


def plot_radius_curve(result: Any, title: str | None = None):
    """Covering radius after k picks, k = 1..budget: core-set (KCenterGreedy) vs random vs cluster-stratified.

    Args:
        result: a ``labcore.coreset.CoresetResult``.
        title: figure title.
    Returns:
        plotly Figure with three line traces (core-set, random, stratified).
    """
    import plotly.graph_objects as go

    k = np.arange(1, result.budget + 1)
    fig = go.Figure()
    for name, curve, style in (("core-set (k-center greedy)", result.radius_curve, dict(width=3)),
                               ("random", result.random_radius_curve, dict(dash="dot")),
                               ("cluster-stratified random", result.stratified_radius_curve, dict(dash="dash"))):
        fig.add_trace(go.Scatter(x=k, y=np.asarray(curve), mode="lines+markers" if len(k) <= 40 else "lines",
                                 name=name, line=style))
    fig.update_layout(
        title=title or f"Covering radius of task {result.target_task!r} vs budget",
        xaxis_title="budget k (examples selected)",
        yaxis_title="covering radius  max_i min_j ||x_i - x_j||",
        template="plotly_white", hovermode="x unified",
    )
    return fig


# ----------------------------------------------------------------------------------------------------------------
# KCenterGreedy, step by step, on a 2-D toy
# ----------------------------------------------------------------------------------------------------------------
def toy_points(n: int = 60, n_blobs: int = 4, random_state: int = 0) -> np.ndarray:
    """A small 2-D point cloud of ``n_blobs`` Gaussian blobs, (n, 2) float64, for the class notebook."""
    rng = np.random.default_rng(random_state)
    centres = rng.uniform(-8, 8, size=(n_blobs, 2))
    blob = rng.integers(0, n_blobs, n)
    return centres[blob] + rng.normal(scale=1.2, size=(n, 2))  # (n, 2)


def plot_kcenter_steps(points: np.ndarray | None = None, budget: int = 6, initial: int | None = None,
                       random_state: int = 0):
    """Animated KCenterGreedy on 2-D points: one frame per pick, with a slider and a play button.

    Frame k shows the k chosen centres (numbered stars), every point coloured by its nearest centre, a circle of the
    current covering radius r_k around each centre (every point lies inside one), and a dashed segment from the
    farthest point, the next pick, to its nearest centre: its length is r_k.

    Args:
        points: (n, 2) points; default ``toy_points()``.
        budget: number of picks (frames).
        initial: first pick; default the point nearest the mean (a stand-in for the paper's task centre).
        random_state: seed of the default toy points.
    Returns:
        plotly Figure with ``budget`` frames (named "1".."budget").
    """
    import plotly.graph_objects as go

    from labcore.kcenter import KCenterGreedy  # lazy: a sibling module

    P = toy_points(random_state=random_state) if points is None else np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 2:
        raise ValueError(f"points must be (n, 2), got {P.shape}")
    if initial is None:
        initial = int(np.argmin(np.linalg.norm(P - P.mean(axis=0), axis=1)))
    budget = min(budget, len(P))
    picks = [int(i) for i in KCenterGreedy(budget, device="cpu").fit(P, initial=initial).selected_indices_]
    colours = _palette()
    D = np.linalg.norm(P[:, None, :] - P[None, picks, :], axis=-1)  # (n, budget) distance to each pick

    frames = []
    for k in range(1, budget + 1):
        near = D[:, :k].argmin(axis=1)  # (n,) nearest chosen centre
        dist = D[np.arange(len(P)), near]  # (n,)
        far = int(dist.argmax())
        r = float(dist[far])
        c = P[picks[near[far]]]
        data = [
            go.Scatter(x=P[:, 0], y=P[:, 1], mode="markers", name="points",
                       marker=dict(size=8, color=[colours[j % len(colours)] for j in near]),
                       hovertemplate="point %{customdata}<extra></extra>", customdata=np.arange(len(P))),
            go.Scatter(x=P[picks[:k], 0], y=P[picks[:k], 1], mode="markers+text", name="chosen centres",
                       text=[str(j + 1) for j in range(k)], textposition="top center",
                       marker=dict(size=16, symbol="star", color="gold", line=dict(width=1, color="black"))),
            go.Scatter(x=[P[far, 0], c[0]], y=[P[far, 1], c[1]], mode="lines+markers", name=f"radius r = {r:.2f}",
                       line=dict(dash="dash", color="crimson"), marker=dict(size=[12, 0], color="crimson",
                                                                           symbol="circle-open")),
        ]
        shapes = [dict(type="circle", xref="x", yref="y", x0=P[i, 0] - r, x1=P[i, 0] + r, y0=P[i, 1] - r,
                       y1=P[i, 1] + r, line=dict(color="rgba(0,0,0,0.25)", width=1)) for i in picks[:k]]
        title = (f"step {k}: {k} centre{'s' if k > 1 else ''}, covering radius r = {r:.2f}"
                 + (" — the red point is picked next" if k < budget else ""))
        frames.append(go.Frame(data=data, name=str(k), layout=dict(shapes=shapes, title=dict(text=title))))

    fig = go.Figure(data=frames[0].data, frames=frames)
    fig.update_layout(
        title=frames[0].layout.title, shapes=frames[0].layout.shapes, template="plotly_white",
        xaxis=dict(scaleanchor="y", range=[P[:, 0].min() - 3, P[:, 0].max() + 3]),
        yaxis=dict(range=[P[:, 1].min() - 3, P[:, 1].max() + 3]),
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.08, xanchor="left", buttons=[
            dict(label="play", method="animate",
                 args=[None, dict(frame=dict(duration=900, redraw=True), fromcurrent=True)])])],
        sliders=[dict(active=0, x=0.1, len=0.9, currentvalue=dict(prefix="picks: "), steps=[
            dict(label=f.name, method="animate",
                 args=[[f.name], dict(mode="immediate", frame=dict(duration=0, redraw=True))]) for f in frames])],
    )
    return fig
