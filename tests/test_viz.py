"""Tests for labcore.viz: cluster map traces and hover, radius curves, k-center toy, UMAP cache."""
from __future__ import annotations

import numpy as np
import pytest

from labcore import viz
from labcore.coreset import select_coreset


@pytest.fixture(scope="module")
def toy():
    """300 normalised points in 6 blobs, 3 tasks; a selection of 8 for task "b"."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 8)) * 3
    blob = rng.integers(0, 6, 300)
    X = centres[blob] + rng.standard_normal((300, 8))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    tasks = np.array(["abc"[b % 3] for b in blob])
    sources = np.array([f"src{b}" for b in blob])
    texts = [f"example {i} <of blob {b}>\nsecond line " + "x" * 300 for i, b in enumerate(blob)]
    res = select_coreset(X, tasks, "b", 8, n_clusters=5, random_state=0)
    xy = X[:, :2] * 10  # any layout will do for the figure tests
    return X, tasks, sources, texts, res, xy


def test_plot_clusters_traces_and_hover(toy):
    X, tasks, sources, texts, res, xy = toy
    fig = viz.plot_clusters(xy, res.labels, texts, res, tasks=tasks, sources=sources, embeddings=X, max_chars=40)
    K = len(np.unique(res.labels))
    assert len(fig.data) == K + 3
    clusters, overlays = fig.data[:K], fig.data[K:]
    assert all(t.type == "scattergl" for t in clusters)
    assert sum(len(t.x) for t in clusters) == len(X)  # every example drawn exactly once
    for c, t in zip(np.unique(res.labels), clusters):
        np.testing.assert_allclose(t.x, xy[res.labels == c, 0])
        first = int(np.flatnonzero(res.labels == c)[0])
        assert t.text[0].startswith(f"<b>{tasks[first]} · {sources[first]}</b><br>example {first} &lt;of blob")
        assert "<br>second line" in t.text[0] and t.text[0].endswith("…")  # escaped, newline kept, truncated
    core, task_c, dist_c = overlays
    np.testing.assert_allclose(core.x, xy[res.selected_indices, 0])
    assert core.marker.symbol == "star" and core.text[0].startswith("pick 0<br>")
    assert (task_c.x[0], task_c.y[0]) == tuple(xy[res.task_centre_index])
    # Distribution centre: mean xy of the 10 members of its cluster nearest the centroid.
    members = np.flatnonzero(res.labels == res.distribution_cluster)
    near = members[np.argsort(np.linalg.norm(X[members] - res.distribution_centre, axis=1))[:10]]
    np.testing.assert_allclose([dist_c.x[0], dist_c.y[0]], xy[near].mean(axis=0), rtol=1e-6)
    with_baselines = viz.plot_clusters(xy, res.labels, texts, res, show_baselines=True)
    assert len(with_baselines.data) == K + 5


def test_plot_radius_curve(toy):
    *_, res, _ = toy
    fig = viz.plot_radius_curve(res)
    assert [t.name.split(" ")[0] for t in fig.data] == ["core-set", "random", "cluster-stratified"]
    np.testing.assert_allclose(fig.data[0].y, res.radius_curve)
    np.testing.assert_array_equal(fig.data[1].x, np.arange(1, res.budget + 1))


def test_plot_kcenter_steps_frames():
    P = viz.toy_points(n=40, n_blobs=3, random_state=1)
    fig = viz.plot_kcenter_steps(P, budget=5, initial=0)
    assert [f.name for f in fig.frames] == ["1", "2", "3", "4", "5"]
    radii = []
    for k, f in enumerate(fig.frames, start=1):
        points, centres, seg = f.data
        assert len(centres.x) == k and len(f.layout.shapes) == k
        radii.append(float(np.hypot(np.diff(seg.x), np.diff(seg.y))[0]))
        if k < 5:  # the dashed segment starts at the next pick
            nxt = fig.frames[k].data[1]
            assert (seg.x[0], seg.y[0]) == (nxt.x[-1], nxt.y[-1])
    assert (np.diff(radii) <= 1e-12).all()
    assert (fig.frames[0].data[1].x[0], fig.frames[0].data[1].y[0]) == tuple(P[0])


def test_umap_cache_hit_returns_identical_coordinates(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("LABCORE_CACHE", str(tmp_path))
    X = toy[0][:120]
    xy = viz.umap_2d(X, n_neighbors=8, n_epochs=20)
    assert xy.shape == (120, 2) and np.isfinite(xy).all()
    assert len(list((tmp_path / "umap").glob("*.npy"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("UMAP must not be refitted on a cache hit")

    monkeypatch.setattr(viz, "_fit_umap", boom)
    np.testing.assert_array_equal(viz.umap_2d(X, n_neighbors=8, n_epochs=20), xy)
    # Different parameters or data are different keys.
    params = viz._umap_params(42, dict(n_neighbors=8, n_epochs=20))
    assert viz.umap_key(X, params) != viz.umap_key(X, {**params, "random_state": 0})
    assert viz.umap_key(X, params) != viz.umap_key(X + 1e-3, params)
    with pytest.raises(AssertionError, match="refitted"):
        viz.umap_2d(X, random_state=0, n_neighbors=8, n_epochs=20)
