"""KCenterGreedy (Sener & Savarese 2018, arXiv 1708.00489): hand-computed runs, greedy-step brute force, properties,
and bit-for-bit parity with the straightforward float64 algorithm (random, clustered, near-ties, duplicates)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labcore.kcenter import (_U64, KCenterGreedy, _Bound, _distances64, _matmul_input_roundoff,
                             kcenter_greedy_reference)


def brute_min_dist(X: np.ndarray, S: list[int]) -> np.ndarray:
    """min_{c in S} ||x_i - x_c|| with an (N, |S|, d) broadcast: a different float64 formulation on purpose."""
    X = np.asarray(X, dtype=np.float64)
    return np.linalg.norm(X[:, None, :] - X[S][None, :, :], axis=2).min(axis=1)  # (N,)


METHODS = ("lazy", "resident")  # both paths run on the CPU; the resident one is the CUDA default


def assert_same_as_reference(X, budget, initial, metric="euclidean", **kw):
    sel, m, radius = kcenter_greedy_reference(X, budget, initial, metric)
    km = KCenterGreedy(budget, metric=metric, device="cpu", **kw).fit(X, initial=initial)
    assert km.method_ == kw.get("method", "lazy")
    assert km.selected_indices_.tolist() == sel
    np.testing.assert_array_equal(km.min_distances_, m)  # the same float64 values, bit for bit
    np.testing.assert_array_equal(km.radius_history_, radius)
    return km


def clustered(n: int, d: int, n_clusters: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)) * 4  # (n_clusters, d)
    return centres[rng.integers(n_clusters, size=n)] + spread * rng.standard_normal((n, d))  # (n, d)


# ---------------------------------------------------------------- hand-computed ---------------------------------


def test_hand_computed_line():
    # points 0, 1, 3, 10 on a line, start at index 0:
    #   m = [0, 1, 3, 10] -> pick 10 (idx 3); m = [0, 1, 3, 0] -> pick 3 (idx 2); m = [0, 1, 0, 0] -> pick 1 (idx 1)
    #   radius after each pick: 10, 3, 1, 0
    X = np.array([[0.0], [1.0], [3.0], [10.0]])
    for method in METHODS:
        km = KCenterGreedy(4, device="cpu", method=method).fit(X, initial=0)
        assert km.selected_indices_.tolist() == [0, 3, 2, 1]
        np.testing.assert_array_equal(km.radius_history_, [10.0, 3.0, 1.0, 0.0])
        np.testing.assert_array_equal(km.min_distances_, [0.0, 0.0, 0.0, 0.0])
    km = KCenterGreedy(2, device="cpu").fit(X, initial=0)
    np.testing.assert_array_equal(km.min_distances_, [0.0, 1.0, 3.0, 0.0])
    assert kcenter_greedy_reference(X, 2, 0)[0] == [0, 3]


def test_hand_computed_ties_go_to_lowest_index():
    # square corners, start at (0, 0): (1, 1) is farthest (sqrt 2); then (1, 0) and (0, 1) tie at distance 1 -> index 1
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    km = KCenterGreedy(3, device="cpu").fit(X, initial=0)
    assert km.selected_indices_.tolist() == [0, 3, 1]
    np.testing.assert_allclose(km.radius_history_, [np.sqrt(2), 1.0, 1.0])


def test_cosine_hand_computed():
    # unit vectors at 0, 90 and 180 degrees: from 0 deg the farthest is 180 deg (1 - cos = 2); then 90 deg (1 - cos = 1)
    X = np.array([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]])  # norms do not matter for cosine
    km = KCenterGreedy(3, metric="cosine", device="cpu").fit(X, initial=0)
    assert km.selected_indices_.tolist() == [0, 2, 1]
    np.testing.assert_allclose(km.radius_history_, [2.0, 1.0, 0.0], atol=1e-15)


# ---------------------------------------------------------------- properties + brute force ----------------------


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_each_greedy_step_is_the_brute_force_farthest_point(metric):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5))
    Xm = X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X
    km = KCenterGreedy(25, metric=metric, random_state=3, device="cpu").fit(X)
    S = km.selected_indices_.tolist()
    to_reported = (lambda r: r * r / 2) if metric == "cosine" else (lambda r: r)
    for k in range(1, len(S)):
        m = brute_min_dist(Xm, S[:k])  # (N,) before step k
        m[S[:k]] = -1.0
        assert S[k] == int(np.argmax(m)), f"step {k}"
        np.testing.assert_allclose(km.radius_history_[k - 1], to_reported(m.max()), rtol=1e-12)
    final = brute_min_dist(Xm, S)
    np.testing.assert_allclose(km.min_distances_, to_reported(final), rtol=1e-12, atol=1e-15)


def test_radius_non_increasing_and_chosen_points_at_zero():
    X = clustered(2000, 8, 10, 0.5, seed=1)
    km = KCenterGreedy(120, random_state=0, device="cpu").fit(X)
    r = km.radius_history_
    assert r.shape == (120,) and np.all(np.diff(r) <= 0)
    assert np.all(km.min_distances_[km.selected_indices_] == 0.0)
    assert len(set(km.selected_indices_.tolist())) == 120
    assert r[-1] == km.min_distances_.max()
    # no chosen point may remain at a positive distance: the classic "forgot to zero chosen points" bug
    assert np.count_nonzero(km.min_distances_ == 0.0) >= 120


def test_distances64_depend_on_the_row_only():
    """Exactness rests on this: the float64 distance of a pair is the same whether computed in a batch or alone."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((500, 37)) * 10.0 ** rng.integers(-3, 4, size=(500, 1))
    c = X[7]
    full = _distances64(X, c)
    idx = rng.permutation(500)[:100]
    np.testing.assert_array_equal(_distances64(X[idx], np.repeat(c[None], 100, axis=0)), full[idx])
    for i in idx[:10]:
        np.testing.assert_array_equal(_distances64(X[i:i + 1], c), full[i:i + 1])


@pytest.mark.parametrize("precision", ["fp32", "fp64"])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_screen_bound_holds(offset, precision):
    """[L, H] from the fp32 screen (and from the float64 one the resident path refines with) contains the float64
    distance, even with catastrophic cancellation (offset)."""
    rng = np.random.default_rng(3)
    d = 64
    X = offset + rng.standard_normal((400, d)) * 10.0 ** rng.uniform(-3, 1, size=(400, 1))
    C = X[:50] + 1e-4 * rng.standard_normal((50, d))
    C[:5] = X[:5]  # exact duplicates: d64 = 0
    if precision == "fp32":
        bound = _Bound(d, _matmul_input_roundoff(torch.device("cpu")))
        x, c = torch.from_numpy(X).float(), torch.from_numpy(C).float()
    else:
        bound = _Bound(d, 0.0, u=_U64)
        x, c = torch.from_numpy(X), torch.from_numpy(C)
    xn, cn = (x * x).sum(1), (c * c).sum(1)
    q = torch.addmm(xn[:, None] + cn[None, :], x, c.T, alpha=-2.0)  # (400, 50)
    E, delta = bound.terms(xn, float(cn.max()))
    d64 = np.stack([_distances64(X, C[j]) for j in range(50)], axis=1)  # (400, 50)
    E, delta = E.repeat_interleave(50), delta.repeat_interleave(50)
    H = bound.upper(q.reshape(-1), E, delta).reshape(400, 50).numpy()
    L = bound.lower(q.reshape(-1), E, delta).reshape(400, 50).numpy()
    assert np.all(L <= d64) and np.all(d64 <= H)
    if precision == "fp32":
        # the threshold for "q > T  =>  d64 > best": take best = d64 itself, every pair must pass q <= T(d64)
        T = bound.threshold(torch.from_numpy(d64.reshape(-1)), E, delta)
        assert torch.all(q.reshape(-1) <= T)
    else:  # and it is tight: the float64 interval settles what the fp32 one cannot (less so far from the origin)
        assert np.median(H - L) < (1e-9 if offset == 0 else 1e-6) * np.median(d64)


# ---------------------------------------------------------------- parity with the straightforward algorithm ------


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("data", ["random", "clustered", "far_from_origin"])
@pytest.mark.parametrize("method", METHODS)
def test_identical_to_reference(metric, data, method):
    rng = np.random.default_rng(4)
    if data == "random":
        X = rng.standard_normal((1500, 24)).astype(np.float32)
    elif data == "clustered":
        X = clustered(1500, 24, 15, 0.3, seed=5)
    else:  # fp32 ||x||^2 + ||c||^2 - 2 x.c loses almost every digit here: verification must catch it
        X = 500.0 + 0.01 * rng.standard_normal((1500, 24))
    assert_same_as_reference(X, 150, [int(rng.integers(1500))], metric, method=method)


@pytest.mark.parametrize("call_pairs", [0, 1 << 40])
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_identical_whether_groups_are_joined_or_not(monkeypatch, call_pairs, data):
    """Large refreshes join groups into one screening call by a cost model; never joining (0) and always joining
    (a huge call cost) must both give the reference's picks and distances."""
    from labcore import kcenter

    monkeypatch.setattr(kcenter, "_CALL_PAIRS", call_pairs)
    rng = np.random.default_rng(11)
    X = rng.standard_normal((4000, 32)) if data == "random" else clustered(4000, 32, 40, 0.3, seed=12)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    assert_same_as_reference(X, 80, [5], chunk_size=1024)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("method", METHODS)
def test_identical_with_exact_ties_and_duplicates(metric, method):
    # an integer grid has many exactly equal distances; every row appears 3 times, in shuffled order;
    # the budget exceeds the number of distinct points, so covered duplicates must be taken lowest index first.
    g = np.stack(np.meshgrid(np.arange(1, 6), np.arange(1, 5), np.arange(1, 4)), -1).reshape(-1, 3)  # (60, 3)
    X = np.random.default_rng(6).permutation(np.concatenate([g, g, g])).astype(np.float64)  # (180, 3)
    km = assert_same_as_reference(X, 90, [17], metric, chunk_size=16, method=method)
    assert km.radius_history_[-1] == 0.0 and len(set(km.selected_indices_.tolist())) == 90


@pytest.mark.parametrize("method", METHODS)
def test_identical_with_near_ties_below_fp32_resolution(method):
    # points on spheres around the start whose radii differ by ~1e-13 (far below what fp32 can separate),
    # plus near-duplicates 1e-12 apart: the exact float64 order (and lowest index on exact ties) must win.
    rng = np.random.default_rng(7)
    dirs = rng.standard_normal((400, 16))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radii = 1.0 + 1e-13 * rng.integers(0, 4, size=(400, 1))
    X = np.concatenate([np.zeros((1, 16)), dirs * radii, dirs[:100] * radii[:100] + 1e-12])  # (501, 16)
    assert_same_as_reference(X, 60, 0, method=method)
    assert_same_as_reference(X[1:], 60, 0, "cosine", method=method)  # directions only; 1e-12 near-duplicates remain


def test_euclidean_and_cosine_agree_on_unit_vectors():
    X = np.random.default_rng(8).standard_normal((800, 32))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    e = KCenterGreedy(60, metric="euclidean", device="cpu").fit(X, initial=5)
    c = KCenterGreedy(60, metric="cosine", device="cpu").fit(X, initial=5)
    assert e.selected_indices_.tolist() == c.selected_indices_.tolist()
    # ||a - b||^2 / 2 = 1 - cos(a, b) for unit vectors
    np.testing.assert_allclose(c.min_distances_, e.min_distances_ ** 2 / 2, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(c.radius_history_, e.radius_history_ ** 2 / 2, rtol=1e-9)


def test_chunking_and_input_types_give_the_same_result():
    X = clustered(700, 12, 8, 0.4, seed=9).astype(np.float32)
    ref = KCenterGreedy(70, device="cpu").fit(X, initial=[3, 400])
    for km in (KCenterGreedy(70, device="cpu", chunk_size=7).fit(X, initial=[3, 400]),
               KCenterGreedy(70, device="cpu").fit(torch.from_numpy(X).requires_grad_(), initial=[3, 400]),
               KCenterGreedy(70, device="cpu", chunk_size=5).fit(torch.from_numpy(X), initial=[3, 400])):
        assert km.selected_indices_.tolist() == ref.selected_indices_.tolist()
        np.testing.assert_array_equal(km.min_distances_, ref.min_distances_)
        np.testing.assert_array_equal(km.radius_history_, ref.radius_history_)
    assert ref.stats_["pairs_screened"] > 0 and ref.stats_["brute_force_pairs"] == 700 * 70


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_resident_input_types(metric):
    X = clustered(700, 12, 8, 0.4, seed=9)
    for data in (X.astype(np.float32), torch.from_numpy(X.astype(np.float32)).requires_grad_(), X,
                 X.astype(np.float16), torch.from_numpy(X).to(torch.bfloat16), np.rint(4 * X).astype(np.int64)):
        assert_same_as_reference(data, 70, [3, 400], metric, method="resident")


def test_resident_reads_the_host_once_per_block_not_per_pick(monkeypatch):
    """The resident path keeps its picks on the device: the host reads a block's "proven" flags, not each pick
    (every host read a GPU would wait for is counted)."""
    X = np.random.default_rng(13).standard_normal((3000, 32)).astype(np.float32)
    reads = []
    for name in ("cpu", "item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, _name=name, **k:
                            reads.append(_name) or _real(self, *a, **k))
    km = KCenterGreedy(400, device="cpu", method="resident").fit(X, initial=0)
    monkeypatch.undo()
    assert km.stats_["host_decided"] == 0 and km.stats_["host_syncs"] <= 8
    assert len(reads) < 40, reads  # blocks, start-up and the batched verification: not 400 picks
    sel, m, radius = kcenter_greedy_reference(X, 400, 0)
    assert km.selected_indices_.tolist() == sel
    np.testing.assert_array_equal(km.radius_history_, radius)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_resident_recovers_when_the_device_cannot_prove_a_pick(monkeypatch, metric):
    """With one candidate per step the fp32 bound of the runner-up often overlaps the best: those steps are rebuilt
    and decided on the host, and the picks stay the reference's."""
    from labcore import kcenter_resident

    monkeypatch.setattr(kcenter_resident, "_START_K", 1)
    monkeypatch.setattr(kcenter_resident, "_START_B", 64)
    X = np.random.default_rng(14).standard_normal((2000, 384)).astype(np.float32)
    km = assert_same_as_reference(X, 120, [7], metric, method="resident")
    assert km.stats_["host_decided"] >= 1


def test_method_choice():
    X = np.random.default_rng(0).standard_normal((50, 3))
    assert KCenterGreedy(5, device="cpu").fit(X, initial=0).method_ == "lazy"  # auto: resident only on CUDA
    with pytest.raises(ValueError, match="method"):
        KCenterGreedy(5, device="cpu", method="fast").fit(X, initial=0)
    with pytest.raises(ValueError, match="MPS"):  # resolved before any device work, so it is checked everywhere
        KCenterGreedy(5, device=torch.device("mps"), method="resident").fit(X, initial=0)


# ---------------------------------------------------------------- initial, random_state, validation --------------


def test_initial_forms_and_budget_counts_them():
    X = np.random.default_rng(10).standard_normal((200, 4))
    a = KCenterGreedy(10, device="cpu").fit(X, initial=np.int64(7))
    b = KCenterGreedy(10, device="cpu").fit(X, initial=[7])
    assert a.selected_indices_.tolist() == b.selected_indices_.tolist() and a.selected_indices_[0] == 7
    c = KCenterGreedy(10, device="cpu").fit(X, initial=np.array([9, 2, 5]))
    assert c.selected_indices_[:3].tolist() == [9, 2, 5] and len(c.selected_indices_) == 10
    assert np.all(np.diff(c.radius_history_) <= 0)
    d = KCenterGreedy(3, device="cpu").fit(X, initial=[9, 2, 5])
    assert d.selected_indices_.tolist() == [9, 2, 5]


def test_random_start_uses_random_state():
    X = np.random.default_rng(11).standard_normal((500, 4))
    a = KCenterGreedy(5, random_state=123, device="cpu").fit(X)
    b = KCenterGreedy(5, random_state=123, device="cpu").fit(X)
    assert a.selected_indices_.tolist() == b.selected_indices_.tolist()
    assert a.selected_indices_[0] == np.random.default_rng(123).integers(500)
    starts = {int(KCenterGreedy(1, random_state=s, device="cpu").fit(X).selected_indices_[0]) for s in range(8)}
    assert len(starts) > 1  # the seed is really used (the classic reference ignored it)
    rs = np.random.RandomState(0)
    assert KCenterGreedy(1, random_state=rs, device="cpu").fit(X).selected_indices_[0] == \
        np.random.RandomState(0).randint(500)


def test_init_only_stores_arguments():
    km = KCenterGreedy(budget=-1, metric="nope")  # validated in fit, not in __init__ (scikit-learn contract)
    assert (km.budget, km.metric, km.device, km.random_state) == (-1, "nope", "auto", None)
    X = np.random.default_rng(0).standard_normal((10, 2))
    fitted = KCenterGreedy(3, device="cpu")
    assert fitted.fit(X, initial=0) is fitted


@pytest.mark.parametrize("budget,err", [(0, ValueError), (11, ValueError), (2.0, TypeError), (True, TypeError)])
def test_budget_validation(budget, err):
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(err):
        KCenterGreedy(budget, device="cpu").fit(X, initial=0)
    with pytest.raises(err):
        kcenter_greedy_reference(X, budget, 0)


@pytest.mark.parametrize("initial,err", [([], ValueError), (10, ValueError), (-1, ValueError), ([1, 1], ValueError),
                                         ([0, 1, 2, 3], ValueError), (1.5, TypeError), (["a"], TypeError)])
def test_initial_validation(initial, err):
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(err):
        KCenterGreedy(3, device="cpu").fit(X, initial=initial)


def test_input_validation():
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match="metric"):
        KCenterGreedy(3, metric="manhattan", device="cpu").fit(X, initial=0)
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KCenterGreedy(3, device="cpu").fit(bad, initial=0)
    zero = X.copy()
    zero[2] = 0.0
    with pytest.raises(ValueError, match="non-zero"):
        KCenterGreedy(3, metric="cosine", device="cpu").fit(zero, initial=0)
    with pytest.raises(ValueError, match="2-D"):
        KCenterGreedy(3, device="cpu").fit(X[0], initial=0)
    with pytest.raises(ValueError, match="chunk_size"):
        KCenterGreedy(3, device="cpu", chunk_size=0).fit(X, initial=0)


def test_coreset_pipeline_contract():
    X = torch.nn.functional.normalize(torch.randn(300, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    km = KCenterGreedy(budget=12, metric="cosine", random_state=0).fit(X, initial=42)
    assert km.selected_indices_[0] == 42 and km.selected_indices_.dtype == np.int64
    assert km.radius_history_.shape == (12,) and km.min_distances_.shape == (300,)
    sel, m, radius = kcenter_greedy_reference(X, 12, 42, "cosine")
    assert km.selected_indices_.tolist() == sel


# ---------------------------------------------------------------- GPU ---------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cuda_matches_cpu(metric):
    X = clustered(20000, 64, 30, 0.5, seed=12).astype(np.float32)
    cpu = KCenterGreedy(300, metric=metric, device="cpu").fit(X, initial=11)
    # host array streamed (lazy); tensor on the GPU (auto: resident); host array copied to the GPU (resident)
    for data, chunk, method in ((X, 1000, "lazy"), (torch.from_numpy(X).cuda(), 4096, "auto"), (X, 4096, "resident")):
        gpu = KCenterGreedy(300, metric=metric, device="cuda", chunk_size=chunk, method=method).fit(data, initial=11)
        assert gpu.device_.type == "cuda" and gpu.method_ == ("lazy" if method == "lazy" else "resident")
        assert gpu.selected_indices_.tolist() == cpu.selected_indices_.tolist()
        np.testing.assert_array_equal(gpu.min_distances_, cpu.min_distances_)
        np.testing.assert_array_equal(gpu.radius_history_, cpu.radius_history_)
