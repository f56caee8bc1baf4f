"""Tests for labcore.coreset: the core-set pipeline of Chen et al. 2023 (arXiv 2305.09246), steps 2-5."""
from __future__ import annotations

import gzip
import json
import os
from collections import Counter

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from labcore.coreset import (  # noqa: E402
    covering_radius_curve,
    fit_kmeans,
    load_instruction_set,
    parse_budget,
    resolve_budget,
    run_select,
    select_coreset,
    stratified_baseline,
)


def clustered(n: int = 1200, n_blobs: int = 12, n_tasks: int = 4, d: int = 16, seed: int = 0):
    """L2-normalised blobs; each blob belongs to one task, so tasks are unions of blobs (clustered data)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_blobs, d)) * 3.0
    blob = rng.integers(0, n_blobs, n)
    X = centres[blob] + rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    tasks = np.array([f"task{b % n_tasks}" for b in blob])
    return X.astype(np.float32), tasks


@pytest.fixture(scope="module")
def data():
    return clustered()


@pytest.fixture(scope="module")
def result(data):
    X, tasks = data
    return select_coreset(X, tasks, "task1", 20, n_clusters=8, random_state=0)


# ------------------------------------------------------------------ budget
def test_resolve_budget_fraction_and_count():
    assert resolve_budget(0.005, 1000) == 5  # the paper's 0.5%
    assert resolve_budget(0.0001, 1000) == 1  # at least one example
    assert resolve_budget(0.5, 7) == 4  # round(3.5) = 4 (banker's rounding gives 4 here)
    assert resolve_budget(40, 1000) == 40
    assert resolve_budget(40.0, 1000) == 40  # an integral float is a count
    assert resolve_budget(5000, 1000) == 1000  # clipped to the task
    for bad in (0, -3, 1.5, -0.2, True, "10"):
        with pytest.raises(ValueError):
            resolve_budget(bad, 1000)
    assert parse_budget("40") == 40 and isinstance(parse_budget("40"), int)
    assert parse_budget("0.005") == 0.005 and parse_budget("5e-3") == 0.005
    with pytest.raises(ValueError):
        parse_budget("2.5")


def test_budget_fraction_in_selection(data):
    X, tasks = data
    n_task = int((tasks == "task2").sum())
    res = select_coreset(X, tasks, "task2", 0.05, n_clusters=8)
    assert res.budget == len(res.selected_indices) == max(1, round(0.05 * n_task))
    assert len(res.radius_curve) == len(res.random_radius_curve) == len(res.stratified_radius_curve) == res.budget


# ------------------------------------------------------------------ steps 3 and 4
def test_distribution_centre_is_centroid_of_most_frequent_cluster(data, result):
    X, tasks = data
    labels_task = result.labels[tasks == "task1"]
    most, count = Counter(labels_task.tolist()).most_common(1)[0]
    assert result.distribution_cluster == most
    assert result.cluster_counts[most] == count and result.cluster_counts.sum() == (tasks == "task1").sum()
    np.testing.assert_array_equal(result.distribution_centre, result.centroids[most])
    # ... and the centroid really is the mean of its members (K-means converged).
    np.testing.assert_allclose(result.centroids[most], X[result.labels == most].mean(axis=0), atol=1e-4)


def test_task_centre_is_most_cosine_similar_task_member_and_first_pick(data, result):
    X, tasks = data
    assert tasks[result.task_centre_index] == "task1"
    assert result.selected_indices[0] == result.task_centre_index
    c = result.distribution_centre
    cos = {i: float(X[i] @ c / (np.linalg.norm(X[i]) * np.linalg.norm(c))) for i in np.flatnonzero(tasks == "task1")}
    assert result.task_centre_index == max(cos, key=cos.get)


# ------------------------------------------------------------------ step 5 and baselines
def test_selection_and_baselines_come_from_the_task(data, result):
    X, tasks = data
    for idx in (result.selected_indices, result.random_indices, result.stratified_indices):
        assert len(idx) == result.budget == 20
        assert len(set(idx.tolist())) == len(idx), "no example may be picked twice"
        assert (tasks[idx] == "task1").all()


def test_greedy_picks_are_farthest_points(data, result):
    """Brute force of step 5: each pick maximises the distance to the nearest earlier pick."""
    X, _ = data
    T = X[result.task_indices].astype(np.float64)
    pos = {g: i for i, g in enumerate(result.task_indices.tolist())}
    chosen = [pos[int(g)] for g in result.selected_indices]
    for k in range(1, len(chosen)):
        d = np.linalg.norm(T[:, None, :] - T[None, chosen[:k], :], axis=-1).min(axis=1)  # (n,)
        assert d[chosen[k]] == pytest.approx(d.max(), abs=1e-5)


def test_coreset_radius_beats_random_on_clustered_data(data, result):
    assert result.radius_curve[-1] <= result.random_radius_curve[-1]
    assert result.radius_curve[-1] <= result.stratified_radius_curve[-1]
    for curve in (result.radius_curve, result.random_radius_curve, result.stratified_radius_curve):
        assert (np.diff(curve) <= 1e-12).all(), "covering radius never increases with more picks"
    # Averaged over seeds, to be robust: the greedy radius is below the mean random radius at every k >= 5.
    X, tasks = data
    rand = np.mean([select_coreset(X, tasks, "task1", 20, kmeans=result.kmeans, random_state=s).random_radius_curve
                    for s in range(5)], axis=0)
    assert (result.radius_curve[4:] < rand[4:]).all()


def test_covering_radius_curve_matches_brute_force():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 5))
    order = rng.permutation(50)[:17]
    got = covering_radius_curve(X, order, block=4)  # several blocks
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)  # (n, n)
    want = [D[:, order[:k]].min(axis=1).max() for k in range(1, 18)]
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_radius_curve_matches_kcenter_history(data, result):
    """The core-set curve agrees with KCenterGreedy's own radius history (same definition, computed twice)."""
    from labcore.kcenter import KCenterGreedy

    X, _ = data
    T = X[result.task_indices]
    pos = {g: i for i, g in enumerate(result.task_indices.tolist())}
    kc = KCenterGreedy(result.budget, device="cpu").fit(T, initial=pos[result.task_centre_index])
    hist = np.asarray(kc.radius_history_, dtype=np.float64)[-result.budget:]
    np.testing.assert_allclose(result.radius_curve, hist, atol=1e-4)


def test_stratified_prefixes_are_proportional():
    rng = np.random.default_rng(2)
    labels = rng.choice(4, size=200, p=[0.5, 0.3, 0.15, 0.05])
    picks = stratified_baseline(np.arange(1000, 1200), labels, 60, random_state=3)
    share = np.bincount(labels, minlength=4) / 200
    got_labels = labels[picks - 1000]
    for k in range(1, 61):
        counts = np.bincount(got_labels[:k], minlength=4)
        assert (np.abs(counts - k * share) < 1.0 + 1e-9).all(), (k, counts, k * share)


def test_precomputed_kmeans_gives_same_result_and_is_deterministic(data, result):
    X, tasks = data
    again = select_coreset(X, tasks, "task1", 20, kmeans=result.kmeans)
    np.testing.assert_array_equal(again.selected_indices, result.selected_indices)
    np.testing.assert_array_equal(again.random_indices, result.random_indices)
    refit = fit_kmeans(X, n_clusters=8, random_state=0)
    np.testing.assert_array_equal(refit.labels, result.labels)
    with pytest.raises(ValueError, match="no examples"):
        select_coreset(X, tasks, "nope", 3, kmeans=result.kmeans)


def test_kmeans_disk_cache(data, result, tmp_path, monkeypatch):
    import sklearn.cluster

    monkeypatch.setenv("LABCORE_CACHE", str(tmp_path))
    X, _ = data
    first = fit_kmeans(X, n_clusters=8, random_state=0, cache=True)
    np.testing.assert_array_equal(first.labels, result.labels)

    class NoKMeans:
        def __init__(self, *args, **kwargs):
            raise AssertionError("K-means must not run on a cache hit")

    monkeypatch.setattr(sklearn.cluster, "KMeans", NoKMeans)
    again = fit_kmeans(X, n_clusters=8, random_state=0, cache=True)
    np.testing.assert_array_equal(again.labels, first.labels)
    np.testing.assert_array_equal(again.centroids, first.centroids)
    with pytest.raises(AssertionError, match="cache hit"):  # another seed is another key
        fit_kmeans(X, n_clusters=8, random_state=1, cache=True)


# ------------------------------------------------------------------ I/O and CLI entry point
RECORD = {"id": "a-1", "task": "nli", "source": "rte", "split": "train", "instruction": "Does A entail B?",
          "output": "yes"}


def write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def test_load_instruction_set_valid_and_errors(tmp_path):
    good = tmp_path / "ok.jsonl.gz"
    write_gz(good, [json.dumps(RECORD), "", json.dumps({**RECORD, "id": 2})])
    assert [r["id"] for r in load_instruction_set(good)] == ["a-1", 2]

    bad = tmp_path / "bad.jsonl.gz"
    write_gz(bad, [json.dumps(RECORD), json.dumps({k: v for k, v in RECORD.items() if k != "task"})])
    with pytest.raises(ValueError, match=r"bad\.jsonl\.gz, line 2, field 'task': missing field"):
        load_instruction_set(bad)
    write_gz(bad, [json.dumps({**RECORD, "output": 3})])
    with pytest.raises(ValueError, match=r", line 1, field 'output': must be a string"):
        load_instruction_set(bad)
    plain = tmp_path / "broken.jsonl"
    plain.write_text(json.dumps(RECORD) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"broken\.jsonl, line 2: invalid JSON"):
        load_instruction_set(plain)


def synthetic_instruction_set(path, per_source: int = 12):
    """A small file in the instruction-set format: 3 tasks x 2 sources, train and test splits."""
    templates = {
        "nli": ["Premise: {s} Hypothesis: the {o} is outside. Does the premise entail the hypothesis?",
                "Sentence 1: {s} Sentence 2: a {o} exists. Is sentence 2 true given sentence 1?"],
        "completion": ["Finish the story: {s} Then the {o}", "Pick the most plausible ending: {s} The {o} was"],
        "sentiment": ["Review: I loved the {o}. {s} Is this review positive or negative?",
                      "Tweet: the {o} made my day! {s} Sentiment?"],
    }
    objs = ["dog", "cat", "car", "tree", "river", "house", "bird", "phone", "lamp", "boat", "chair", "cloud"]
    recs = []
    for task, srcs in templates.items():
        for si, tpl in enumerate(srcs):
            for j in range(per_source):
                split = "test" if j == 0 else "train"
                recs.append({"id": f"{task}-{si}-{j}", "task": task, "source": f"{task}_src{si}", "split": split,
                             "instruction": tpl.format(s=f"Example number {j}.", o=objs[j % len(objs)]),
                             "output": "yes"})
    write_gz(path, [json.dumps(r) for r in recs])
    return recs


def test_run_select_writes_ranked_train_records(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABCORE_CACHE", str(tmp_path / "cache"))
    data_path = tmp_path / "instructions.jsonl.gz"
    recs = synthetic_instruction_set(data_path)
    out = tmp_path / "out" / "core.jsonl"
    res = run_select(data_path, "nli", 5, out, n_clusters=4, seed=0, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["coreset_rank"] for r in rows] == list(range(5)) == list(range(res.budget))
    by_id = {r["id"]: r for r in recs}
    for r in rows:
        assert r["task"] == "nli" and r["split"] == "train"
        assert {k: v for k, v in r.items() if k != "coreset_rank"} == by_id[r["id"]]  # original record kept
    assert "selected 5 of 22" in capsys.readouterr().out
    with pytest.raises(ValueError, match="tasks present"):
        run_select(data_path, "nope", 5, out, n_clusters=4, progress=False)


def test_kmeans_sample_init_is_seeded_and_close_to_full(monkeypatch):
    """init="sample": the same seed gives the same clusters; the inertia is close to k-means++ on all points."""
    from labcore import coreset

    monkeypatch.setattr(coreset, "KMEANS_SAMPLE", 300)  # N = 1200 > the sample, so the sample path runs
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((10, 16))
    X = (centres[rng.integers(10, size=1200)] + 0.3 * rng.standard_normal((1200, 16))).astype(np.float32)

    def inertia(fit):
        return float(((X - fit.centroids[fit.labels]) ** 2).sum())

    a = fit_kmeans(X, n_clusters=10, random_state=3, init="sample")
    b = fit_kmeans(X, n_clusters=10, random_state=3, init="sample")
    np.testing.assert_array_equal(a.labels, b.labels)
    full = fit_kmeans(X, n_clusters=10, random_state=3)
    assert inertia(a) <= 1.02 * inertia(full)
    with pytest.raises(ValueError, match="init"):
        fit_kmeans(X, n_clusters=10, init="random-ish")
