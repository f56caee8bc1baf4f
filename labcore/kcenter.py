"""KCenterGreedy: farthest-point core-set selection, exact and fast.

Paper: Sener & Savarese 2018, "Active Learning for Convolutional Neural Networks: A Core-Set Approach",
arXiv 1708.00489 (Algorithm 1, the greedy 2-approximation of the k-Center problem, Eq. 5 / Eq. 6). Used by the
core-set method of Chen et al. 2023 (arXiv 2305.09246, step 5), starting from the task centre.

The straightforward algorithm (``kcenter_greedy_reference`` below, and the definition of "correct" here)
-------------------------------------------------------------------------------------------------------
X is cast to float64 (cosine: every row is then divided by its float64 L2 norm). d(a, b) = sqrt(sum((a - b)**2))
evaluated in float64 numpy exactly as written in ``_distances64``. With S the chosen set (in order):

    for each centre c of ``initial``, in order:  add c to S, update m, record radius
    then, until |S| = budget:
        j = argmax_{i not in S} m_i        (ties -> lowest index)                      # Algorithm 1, line 4
        add j to S
        m_i <- min(m_i, d(x_i, x_j)) for every i; m_j <- 0                            # Eq. 6: d(x_i, S)
        radius <- max_i m_i                                                           # covering radius, Eq. 5
m starts at +inf. Restricting the argmax to unchosen points only matters once every point is covered
(duplicates): the next pick is then the lowest-index unchosen point, never a repeat.
The cosine metric selects with the chordal distance ||x^ - c^|| (a true metric, same order as 1 - cos) and
reports ``min_distances_`` / ``radius_history_`` as cosine distances 1 - cos = ||x^ - c^||^2 / 2.

What KCenterGreedy does instead (same choices, same float64 values, bit for bit)
------------------------------------------------------------------------------
1. Lazy upper bounds. m_i only ever decreases, so a value m_i that is exact for the first s_i centres is an
   upper bound of the current one. Each step refreshes (brings up to date) only the points whose stale bound is
   >= L, the largest *exact* value among a few refreshed points; every other point has a true value < L and can
   neither be the argmax nor tie it. Most steps touch tens of points instead of N; the other points are brought
   up to date in large batches (when L falls below their bound, and once at the end for ``min_distances_``).
2. Triangle-inequality pruning, per group. A large refresh groups points by their assigned (nearest) centre a and
   skips, for the whole group, every new centre c with d(a, c) >= 2 max_group m: then
   d(x, c) >= d(a, c) - d(x, a) >= m_x, so c cannot lower m_x (rounding margins included, see ``_group_centres``).
   On clustered embeddings this removes most (point, centre) pairs; on random directions it removes none.
3. Batched fp32 screening with a rigorous error bound. A refresh computes q = ||x||^2 + ||c||^2 - 2 x.c for a
   block of points against the centres they have not seen, as one float32 matmul (compute-bound, not
   bandwidth-bound like a pass over X per centre). ``_Bound`` turns q into an interval [L, H] that provably holds the
   float64 value d(x, c) of the reference (input rounding, dot-product error gamma_d, and the float64 reference's
   own rounding included; TF32/bf16 matmul precision is accounted for). Pairs whose lower bound reaches the
   row's best upper bound are recomputed in float64 with the reference's own code (``_distances64``), so every
   decision is taken on the reference's exact values and argmax ties (including near-ties fp32 cannot separate)
   go to the lowest index. When a single new centre is provably closer than everything else, its float64 value is
   computed later, only if needed (the point becomes the argmax, or at the end): one float64 distance per point.
4. Streaming. X is never copied whole: rows are gathered ``chunk_size`` at a time and moved to the device, so X may
   exceed device memory (it may live in host RAM, or be a tensor on any device). Extra memory is O(N) (a few
   (N,) vectors) + O(budget * d) for the centres + one (chunk_size x 1024) screening block.
Nothing here changes with the device: GPU matmuls may round differently from run to run, which only moves
the screen inside its proven bounds; the float64 verification runs on the host with numpy. On a GPU the lazy
steps' host decisions cost more than the passes they save: ``method="resident"`` (the CUDA default,
``labcore.kcenter_resident``) keeps X on the device, makes one pass per pick and reads the host once per block.

Better than the classic copies (see shared/PAPERS.md): ``random_state`` is really used for the random start;
no bare ``except``; no (budget x N) or (N x N) matrix; chosen points get min distance 0 and are never picked twice;
input is validated (finite values, non-zero rows for cosine, budget and ``initial`` ranges) with clear errors.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from labcore.kcenter_bounds import _U32, _U64, _Bound, _matmul_input_roundoff  # noqa: F401 (tests use them)
from labcore.kcenter_resident import ResidentGreedy, fits_on_device, host_array
from labcore.utils import resolve_device, torch_threads

METRICS = ("euclidean", "cosine")
_CENTRE_BLOCK = 1024  # centres per screening block: a block is (chunk_size x _CENTRE_BLOCK) floats
_GROUP_MIN_ROWS = 512  # refreshes of fewer rows skip the triangle-inequality grouping (overhead > gain)
_VERIFY_ROWS = 256  # rows per float64 verification block (stays in cache)
_CALL_PAIRS = 1 << 16  # fixed cost of one screening call, in (point, centre) pairs (Python and dispatch overhead)
_SMALL_WORK = 1 << 24  # multiply-adds below which a CPU screening block runs on one thread


# ----------------------------------------------------------------------------------------------------------------
# The straightforward algorithm (float64 numpy), readable beside Algorithm 1 of the paper
# ----------------------------------------------------------------------------------------------------------------


def _row_sq_sums64(A: np.ndarray) -> np.ndarray:
    """sum_k A[i, k]^2 for a C-contiguous float64 (n, d) array; each row's value depends on that row only."""
    return (A * A).sum(axis=1)


def _distances64(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Float64 Euclidean distances ||A_i - B_i|| (B may be one row, broadcast). THE distance of this module."""
    return np.sqrt(_row_sq_sums64(A - B))


def _as_float64(X: np.ndarray | torch.Tensor) -> np.ndarray:
    """A float64 numpy copy (or view) of X, from numpy or a torch tensor on any device."""
    if isinstance(X, torch.Tensor):
        return X.detach().to("cpu", torch.float64).numpy()
    return np.asarray(X, dtype=np.float64)


def _check_budget(budget: int, n: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise TypeError(f"budget must be an int, got {type(budget).__name__}")
    if not 1 <= budget <= n:
        raise ValueError(f"budget must be in [1, N={n}], got {budget}")
    return int(budget)


def _check_initial(initial: int | Sequence[int], n: int, budget: int) -> list[int]:
    """Validate ``initial`` (an int or a sequence of distinct ints in [0, n)); return it as a list."""
    if isinstance(initial, np.ndarray):
        items = list(initial.ravel()) if initial.ndim else [initial.item()]
    elif isinstance(initial, (int, np.integer)):
        items = [initial]
    else:
        items = list(initial)
    if not items:
        raise ValueError("initial must name at least one point (or be None for a random start)")
    out = []
    for c in items:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"initial indices must be ints, got {c!r}")
        if not 0 <= c < n:
            raise ValueError(f"initial index {int(c)} out of range [0, {n})")
        out.append(int(c))
    if len(set(out)) != len(out):
        raise ValueError(f"initial indices must be distinct, got {out}")
    if len(out) > budget:
        raise ValueError(f"initial has {len(out)} points but the budget is {budget} (the budget counts them)")
    return out


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def kcenter_greedy_reference(X: np.ndarray | torch.Tensor, budget: int, initial: int | Sequence[int],
                             metric: str = "euclidean") -> tuple[list[int], np.ndarray, np.ndarray]:
    """The straightforward greedy k-center of Sener & Savarese 2018 (Algorithm 1), float64, O(budget * N * d).

    Defines the choices ``KCenterGreedy`` must reproduce exactly. Memory: one float64 copy of X plus O(N).

    Args:
        X: (N, d) points, numpy array or torch tensor.
        budget: total number of centres to choose, ``initial`` included.
        initial: index or list of distinct indices chosen first, in order.
        metric: "euclidean" or "cosine" (see the module docstring).
    Returns:
        (selected, min_distances, radius_history): the chosen indices in order; (N,) distance of each point to its
        nearest chosen centre (0 for chosen points); (budget,) covering radius after each selection.
    """
    X = _as_float64(X)  # (N, d)
    _check_metric(metric)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (N, d), got shape {X.shape}")
    n = X.shape[0]
    budget = _check_budget(budget, n)
    initial = _check_initial(initial, n, budget)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    if metric == "cosine":
        norms = np.sqrt(_row_sq_sums64(X))  # (N,)
        if (norms == 0).any():
            raise ValueError(f"cosine metric needs non-zero rows; row {int(np.argmax(norms == 0))} is zero")
        X = X / norms[:, None]  # (N, d) unit rows
    m = np.full(n, np.inf)  # m_i = d(x_i, S), Eq. 6
    chosen = np.zeros(n, dtype=bool)
    selected: list[int] = []
    radius: list[float] = []
    for k in range(budget):
        j = initial[k] if k < len(initial) else int(np.argmax(np.where(chosen, -1.0, m)))  # farthest point
        selected.append(j)
        chosen[j] = True
        m = np.minimum(m, _distances64(X, X[j]))  # min-update with the new centre only
        m[j] = 0.0
        radius.append(float(m.max()))  # max_i min_{c in S} d(x_i, c), Eq. 5
    m, radius_arr = m, np.asarray(radius)
    if metric == "cosine":  # report 1 - cos = ||x^ - c^||^2 / 2
        m, radius_arr = m * m / 2.0, radius_arr * radius_arr / 2.0
    return selected, m, radius_arr


# ----------------------------------------------------------------------------------------------------------------
# Row access without copying X
# ----------------------------------------------------------------------------------------------------------------


class _Rows:
    """Gather rows of X as exact float64 on the host, or as fp32 on the device, one chunk at a time."""

    def __init__(self, X: np.ndarray | torch.Tensor, metric: str, device: torch.device, chunk_size: int,
                 screen: bool = True):
        if isinstance(X, torch.Tensor):
            self.t, self.a = X.detach(), None
            if self.t.is_complex() or self.t.dtype == torch.bool:
                raise TypeError(f"X must be real-valued, got {self.t.dtype}")
        else:
            self.t, self.a = None, np.asarray(X)
            if not (np.issubdtype(self.a.dtype, np.floating) or np.issubdtype(self.a.dtype, np.integer)):
                raise TypeError(f"X must be a real numeric array, got dtype {self.a.dtype}")
        shape = tuple((self.t if self.t is not None else self.a).shape)
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"X must be a non-empty 2-D (N, d) array, got shape {shape}")
        self.n, self.d = shape
        self.metric, self.device, self.chunk_size = metric, device, chunk_size
        self.norms: np.ndarray | None = None
        # One streaming pass: check finiteness, (cosine) the float64 row norms of the reference, and the fp32
        # squared norms ||x'||^2 of the screen (x' = fl32 of the reference's row, as ``device32`` gives it).
        # screen=False (the resident path, which checks and screens on its device): only the cosine norms.
        norms = np.empty(self.n) if metric == "cosine" else None
        xn = np.empty(self.n, dtype=np.float32)
        for lo in range(0, self.n if screen or norms is not None else 0, chunk_size):
            rows = self._raw64(slice(lo, min(lo + chunk_size, self.n)))  # (n_chunk, d)
            if not np.isfinite(rows).all():
                raise ValueError("X contains NaN or infinite values")
            if norms is not None:
                norms[lo:lo + len(rows)] = nc = np.sqrt(_row_sq_sums64(rows))
                rows = rows / nc[:, None] if (nc > 0).all() else rows
            if screen:
                x32 = torch.from_numpy(rows).float()
                xn[lo:lo + len(rows)] = (x32 * x32).sum(1).numpy()
        self.xn = torch.from_numpy(xn).to(device) if screen else None  # (N,) fp32
        if norms is not None:
            if (norms == 0).any():
                raise ValueError(f"cosine metric needs non-zero rows; row {int(np.argmax(norms == 0))} is zero")
            self.norms = norms
            self._norms_dev = torch.from_numpy(norms).to(device)

    def _raw64(self, idx: slice | np.ndarray) -> np.ndarray:
        if self.t is not None:
            sel = idx if isinstance(idx, slice) else torch.as_tensor(idx, device=self.t.device)
            return self.t[sel].to("cpu", torch.float64).numpy()
        return np.ascontiguousarray(self.a[idx], dtype=np.float64)

    def host64(self, idx: np.ndarray) -> np.ndarray:
        """(n, d) float64 rows exactly as the reference sees them (cosine: divided by the float64 norm)."""
        rows = self._raw64(idx)
        return rows / self.norms[idx][:, None] if self.norms is not None else rows

    def distances64(self, idx: np.ndarray, C: np.ndarray, cidx: np.ndarray) -> np.ndarray:
        """``_distances64(self.host64(idx), C[cidx])`` (float64 centres C), bit for bit, without large temporaries.

        The same IEEE operations in the same order (gather and convert, divide by the norm, subtract, square, the
        row sums of a C-contiguous block), done in place in a small cache-resident buffer: several times faster than
        the expression on large index sets.
        """
        if self.t is not None:
            return _distances64(self.host64(idx), C[cidx])
        out = np.empty(len(idx))
        buf = np.empty((min(len(idx), _VERIFY_ROWS), self.d))
        for lo in range(0, len(idx), _VERIFY_ROWS):
            part = idx[lo:lo + _VERIFY_ROWS]
            A = buf[:len(part)]
            A[...] = self.a.take(part, axis=0)  # float64 of the exact input values
            if self.norms is not None:
                A /= self.norms[part][:, None]
            A -= C.take(cidx[lo:lo + _VERIFY_ROWS], axis=0)
            A *= A
            out[lo:lo + len(part)] = np.sqrt(A.sum(axis=1))
        return out

    def device32(self, idx: np.ndarray) -> torch.Tensor:
        """(n, d) float32 rows on the device: fl32 of the float64 rows of ``host64``."""
        if self.t is not None:
            rows = self.t[torch.as_tensor(idx, device=self.t.device)].to(self.device)
        else:
            rows = torch.from_numpy(np.ascontiguousarray(self.a[idx])).to(self.device)
        if self.norms is not None:  # same IEEE division as host64, then one rounding to fp32
            return (rows.to(torch.float64) / self._norms_dev[torch.as_tensor(idx, device=self.device)][:, None]).float()
        if rows.dtype == torch.float32:
            return rows
        return rows.to(torch.float64).float()  # exact to float64 first, then one rounding to fp32


# ----------------------------------------------------------------------------------------------------------------
# The estimator
# ----------------------------------------------------------------------------------------------------------------


class KCenterGreedy:
    """Greedy k-center selection (Sener & Savarese 2018, Algorithm 1), exact and fast; scikit-learn style.

    Chooses exactly what ``kcenter_greedy_reference`` chooses (same indices, same float64 distances), using lazy
    upper bounds, a rigorously bounded fp32 screen with exact float64 verification, and chunked streaming of X
    (see the module docstring for why each trick is exact).

    Args:
        budget: number of points to choose, the ``initial`` ones included.
        metric: "euclidean" or "cosine" (selection by the chordal distance; distances reported as 1 - cos).
        device: where the screening matmuls run; "auto" resolves cuda > mps > cpu.
        random_state: seed (int, None, or np.random.Generator / RandomState) for the random start when ``fit`` gets
            no ``initial``.
        chunk_size: rows moved to the device at once (also bounds the screening block); lower it for huge d or
            small devices.
        method: "lazy" (streams X, touches few points per step: the fast path on a CPU), "resident" (X on the
            device, one pass over it per pick and one host read per block of picks: the fast path on a GPU, see
            ``labcore.kcenter_resident``) or "auto": resident on CUDA when X fits in its free memory, else lazy.
            Both choose exactly what the reference chooses.

    Attributes (after ``fit``):
        selected_indices_: (budget,) int64, the chosen indices in order, starting with ``initial``.
        min_distances_: (N,) float64, distance of each point to its nearest chosen centre (0 for chosen points).
        radius_history_: (budget,) float64, covering radius max_i min_distances after each selection (non-increasing).
        device_: the resolved torch.device.
        method_: "lazy" or "resident", the path taken.
        stats_: work counters: rows_streamed, pairs_screened, pairs_verified, brute_force_pairs (N * budget);
            resident: host_syncs (host reads of a block's flags) and host_decided (steps decided on the host).
    """

    def __init__(self, budget: int, metric: str = "euclidean", device: str | torch.device = "auto",
                 random_state: int | np.random.Generator | np.random.RandomState | None = None,
                 chunk_size: int = 4096, method: str = "auto"):
        self.budget = budget
        self.metric = metric
        self.device = device
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.method = method

    def _random_start(self, n: int) -> int:
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(n))
        return int(np.random.default_rng(rs).integers(n))

    @torch.no_grad()
    def fit(self, X: np.ndarray | torch.Tensor, initial: int | Sequence[int] | None = None) -> "KCenterGreedy":
        """Choose ``budget`` centres from X.

        Args:
            X: (N, d) points, numpy or torch (any float dtype, any device); lazy never copies it whole, resident once.
            initial: index or list of distinct indices chosen first (counted in the budget); None: one index drawn
                from ``random_state``.
        Returns:
            self, with ``selected_indices_``, ``min_distances_``, ``radius_history_`` set.
        """
        metric = _check_metric(self.metric)
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, (int, np.integer)) \
                or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {self.chunk_size!r}")
        if self.method not in ("auto", "lazy", "resident"):
            raise ValueError(f"method must be 'auto', 'lazy' or 'resident', got {self.method!r}")
        device = resolve_device(self.device)
        X = X if isinstance(X, torch.Tensor) else np.asarray(X)
        resident = self.method == "resident" or (self.method == "auto" and fits_on_device(X, metric, device))
        if resident and device.type == "mps":
            raise ValueError("method='resident' refines in float64, which MPS lacks: use method='lazy' (the default)")
        rows = _Rows(host_array(X) if resident else X, metric, device, int(self.chunk_size), screen=not resident)
        n, d = rows.n, rows.d
        budget = _check_budget(self.budget, n)
        initial = _check_initial(self._random_start(n) if initial is None else initial, n, budget)
        run = ResidentGreedy(X, rows, metric, device, budget) if resident else \
            _LazyGreedy(rows, budget, _Bound(d, _matmul_input_roundoff(device)))
        with torch_threads(None if resident else 1, device):
            selected, m, radius_arr = run.run(initial)
        if metric == "cosine":  # report 1 - cos = ||x^ - c^||^2 / 2, exactly as the reference
            m, radius_arr = m * m / 2.0, radius_arr * radius_arr / 2.0
        self.selected_indices_ = np.asarray(selected, dtype=np.int64)
        self.min_distances_ = m
        self.radius_history_ = radius_arr
        self.n_features_in_ = d
        self.device_ = device
        self.method_ = "resident" if resident else "lazy"
        self.stats_ = dict(run.stats, brute_force_pairs=n * budget)
        return self


class _LazyGreedy:
    """State of one run: exact-but-possibly-stale m (N,), staleness s (N,), and the centres so far.

    Invariant: for an unchosen point i, m[i] = min over the first s[i] centres of d64(x_i, c) exactly (+inf when
    s[i] = 0), hence m[i] >= its current true value. Chosen points have m = -1 and s = +huge (never stale).
    """

    _CHOSEN_S = np.iinfo(np.int64).max

    def __init__(self, rows: _Rows, budget: int, bound: _Bound):
        self.rows, self.bound = rows, bound
        n, d = rows.n, rows.d
        self.m = np.full(n, np.inf)  # (N,)
        self.s = np.zeros(n, dtype=np.int64)  # (N,)
        self.a = np.full(n, -1, dtype=np.int64)  # (N,) index (into the centres) of the centre realising m
        self.ex = np.ones(n, dtype=bool)  # (N,) m is exact; False: m is an upper bound, the exact value is d64(x, a)
        self.lo = np.full(n, np.inf)  # (N,) lower bound of the exact value (= m when exact)
        self.t = 0  # number of centres
        self.C64 = np.empty((budget, d))  # (budget, d) centres as the reference sees them
        self.C32 = torch.empty((budget, d), dtype=torch.float32, device=rows.device)  # (budget, d) fp32 on device
        self.Cn = torch.empty(budget, dtype=torch.float32, device=rows.device)  # (budget,) fp32 squared norms
        self.Cn_host = np.empty(budget)
        self.probe = 64  # how many top upper bounds to refresh first in each step (adapted)
        self.stats = dict(rows_streamed=0, pairs_screened=0, pairs_verified=0)
        self.n_threads = torch.get_num_threads()  # fit() runs small ops on one thread, big matmuls on these

    def add_centre(self, j: int) -> None:
        c64 = self.rows.host64(np.array([j]))[0]  # (d,)
        self.C64[self.t] = c64
        c32 = torch.from_numpy(c64).to(self.rows.device).float()
        self.C32[self.t] = c32
        self.Cn[self.t] = (c32 * c32).sum()
        self.Cn_host[self.t] = float(self.Cn[self.t])
        self.t += 1
        self.m[j], self.lo[j], self.s[j], self.ex[j] = -1.0, -1.0, self._CHOSEN_S, True

    def run(self, initial: list[int]) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(selected, min distances (N,), radius (budget,)) as the reference computes them (chordal for cosine)."""
        selected, radius, nxt = [], [], -1
        for k in range(len(self.C64)):
            c = initial[k] if k < len(initial) else nxt
            self.add_centre(c)
            selected.append(c)
            nxt, r = self.select()  # exact argmax over unchosen points, and the covering radius now
            radius.append(r)
        return selected, self.finish(), np.asarray(radius, dtype=np.float64)

    def select(self) -> tuple[int, float]:
        """Exact argmax_i m_i over unchosen points (lowest index on ties), and the covering radius max_i m_i."""
        m, s, t = self.m, self.s, self.t
        n_chosen = t
        if n_chosen == len(m):
            return -1, 0.0
        # 1. refresh the `probe` largest upper bounds: their exact values give a lower bound L of the maximum.
        k = min(self.probe, len(m) - n_chosen)
        top = np.argpartition(m, len(m) - k)[len(m) - k:]
        self.refresh(top[s[top] < t])
        first = top[np.argsort(-m[top])[:4]]  # exact values of the 4 largest bounds give L ...
        self.verify(first)
        L = m[first].max()
        self.verify(top[m[top] >= L])  # ... and any other probe point that could exceed it raises L
        L = m[top].max()
        # 2. every point whose stale bound reaches L could still be the maximum (or tie it): refresh them all.
        cand = np.flatnonzero((m >= L) & (s < t))
        self.refresh(cand)
        self.probe = int(np.clip(len(cand) + 16, 16, self.rows.chunk_size))
        # Now every stale point has m < L <= max of the fresh points, so the argmax is fresh; make it exact (a
        # deferred value only decreases when made exact, so repeat until the argmax is exact).
        while True:
            j = int(np.argmax(m))
            assert s[j] >= t, "lazy bound invariant violated"
            if self.ex[j]:
                return j, max(float(m[j]), 0.0)
            self.verify(np.array([j]))

    def finish(self) -> np.ndarray:
        """Bring every point up to date; return min distances (N,) with 0 for chosen points."""
        self.refresh(np.flatnonzero(self.s < self.t))
        self.verify(np.flatnonzero(~self.ex))
        return np.maximum(self.m, 0.0)

    def refresh(self, idx: np.ndarray) -> None:
        """For points idx (all stale): m_i <- min(m_i, min_{c = s_i .. t-1} d64(x_i, c)), s_i <- t; exact.

        Large refreshes group the points by assigned centre a and skip, for a whole group, every new centre c with
        d(a, c) >= 2 max_group m: then d(x, c) >= d(a, c) - d(x, a) >= m_x for each x of the group (triangle
        inequality), so c cannot lower m_x. Small refreshes (a handful of points) skip the grouping overhead.
        """
        if len(idx) == 0:
            return
        t = self.t
        if len(idx) < _GROUP_MIN_ROWS:  # by staleness, in buckets of 64 centres: little masked (wasted) work
            idx = idx[np.argsort(self.s[idx], kind="stable")]
            bucket = self.s[idx] // 64
            for part in np.split(idx, np.flatnonzero(np.diff(bucket)) + 1):
                self._refresh_rows(part, np.arange(int(self.s[part[0]]), t))
        else:
            a = self.a[idx]
            order = np.lexsort((self.s[idx], a))  # by assigned centre, then staleness
            idx, a = idx[order], a[order]
            cut = np.flatnonzero(np.diff(a)) + 1
            starts, ends = np.r_[0, cut], np.r_[cut, len(idx)]
            for g0 in range(0, len(starts), _CENTRE_BLOCK):  # batches of groups: (groups x centres) bounds
                gs, ge = starts[g0:g0 + _CENTRE_BLOCK], ends[g0:g0 + _CENTRE_BLOCK]
                for rows, cols in self._merge_groups(idx, gs, ge, self._group_centres(idx, a, gs, ge)):
                    self._refresh_rows(rows, cols)
        self.s[idx] = t

    def _merge_groups(self, idx: np.ndarray, gs: np.ndarray, ge: np.ndarray,
                      cols: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Join consecutive groups into one screening call while that costs less than separate calls.

        A call costs about ``_CALL_PAIRS`` (point, centre) pairs of fixed overhead plus rows x columns; a joined call
        screens every row of it against the union of the groups' columns. Extra columns are harmless (a centre that
        cannot lower m_x does not; one already seen is masked), only work: on random directions, where the pruning
        keeps every column, a refresh becomes a few large matmuls instead of one small call per group.
        """
        rows: list[np.ndarray] = []
        union: np.ndarray | None = None
        cost = n_rows = 0  # pairs of the groups in `rows` screened separately (overhead included); their rows
        for lo, hi, c in zip(gs, ge, cols):
            if union is not None:
                joined = np.union1d(union, c)
                if (n_rows + hi - lo) * len(joined) <= cost + _CALL_PAIRS + (hi - lo) * len(c) \
                        and n_rows + hi - lo <= self.rows.chunk_size:
                    rows.append(idx[lo:hi])
                    union, cost, n_rows = joined, cost + _CALL_PAIRS + (hi - lo) * len(c), n_rows + hi - lo
                    continue
                yield np.concatenate(rows), union
            rows, union, cost, n_rows = [idx[lo:hi]], c, _CALL_PAIRS + (hi - lo) * len(c), hi - lo
        if union is not None:
            yield np.concatenate(rows), union

    def _group_centres(self, idx: np.ndarray, a: np.ndarray, gs: np.ndarray, ge: np.ndarray) -> list[np.ndarray]:
        """For each group (rows idx[gs:ge], all assigned to centre a[gs]) the new centres that may lower some m."""
        t, s, dev, bound = self.t, self.s, self.rows.device, self.bound
        s_min = np.minimum.reduceat(s[idx], gs)  # (g,) first centre some row of the group has not seen
        m_max = np.maximum.reduceat(self.m[idx], gs)  # (g,)
        ga = a[gs]  # (g,) assigned centre of each group, -1: none yet (m = inf)
        lo = int(s_min.min())
        out = [np.arange(int(s0), t) for s0 in s_min]
        has = np.flatnonzero(ga >= 0)
        if len(has) == 0 or lo >= t:
            return out
        ca = self.C32[torch.as_tensor(ga[has], device=dev)]  # (g', d)
        can = self.Cn[torch.as_tensor(ga[has], device=dev)]  # (g',)
        q = torch.addmm(can[:, None] + self.Cn[None, lo:t], ca, self.C32[lo:t].T, alpha=-2.0)  # (g', t - lo)
        E, delta = bound.terms(can, float(self.Cn_host[lo:t].max()))
        L = bound.lower(q, E[:, None], delta[:, None]).cpu().numpy()  # (g', t - lo) <= d64(a, c)
        # skip c when L(a, c) >= 2 m (1 + 4 rho): then d64(x, c) >= m_x for every row x of the group (see docstring)
        keep = L < 2.0 * m_max[has][:, None] * (1 + 4 * bound.rho)
        for row, g in enumerate(has):
            cols = np.flatnonzero(keep[row, s_min[g] - lo:]) + s_min[g]
            out[g] = cols
        return out

    def verify(self, idx: np.ndarray) -> None:
        """Make the deferred values of rows idx exact: m = d64(x, a), a being their proven unique nearest centre."""
        idx = idx[~self.ex[idx]]
        for lo in range(0, len(idx), self.rows.chunk_size):
            chunk = idx[lo:lo + self.rows.chunk_size]
            self.m[chunk] = self.lo[chunk] = self.rows.distances64(chunk, self.C64, self.a[chunk])
            self.ex[chunk] = True
            self.stats["pairs_verified"] += len(chunk)

    def _refresh_rows(self, idx: np.ndarray, cols: np.ndarray) -> None:
        """Update m, a of rows idx (sorted by s) with the centres cols (ascending; those below s_i are ignored)."""
        rows, dev = self.rows, self.rows.device
        if len(cols) == 0:
            return
        for lo in range(0, len(idx), rows.chunk_size):
            chunk = idx[lo:lo + rows.chunk_size]  # (n,)
            s_chunk = self.s[chunk]
            x32 = rows.device32(chunk)  # (n, d)
            xn = rows.xn[torch.as_tensor(chunk, device=dev)]  # (n,)
            m_chunk = torch.from_numpy(self.m[chunk]).to(dev)  # (n,) float64
            self.stats["rows_streamed"] += len(chunk)
            for b0 in range(0, len(cols), _CENTRE_BLOCK):
                block = cols[b0:b0 + _CENTRE_BLOCK]
                m_chunk = self._screen_block(chunk, s_chunk, x32, xn, m_chunk, block)

    def _screen_block(self, chunk: np.ndarray, s_chunk: np.ndarray, x32: torch.Tensor, xn: torch.Tensor,
                      m_chunk: torch.Tensor, block: np.ndarray) -> torch.Tensor:
        """Update m, a for rows ``chunk`` with the centres ``block`` (ascending); return the new m (n,)."""
        rows, bound, dev = self.rows, self.bound, self.rows.device
        b0, b1 = int(block[0]), int(block[-1]) + 1
        if b1 - b0 == len(block):  # a contiguous range: views, no gather
            C, Cn, cn_max = self.C32[b0:b1], self.Cn[b0:b1], float(self.Cn_host[b0:b1].max())
        else:
            sel = torch.as_tensor(block, device=dev)
            C, Cn, cn_max = self.C32[sel], self.Cn[sel], float(self.Cn_host[block].max())
        # q = ||x||^2 + ||c||^2 - 2 x.c in fp32: one matmul per block
        # (thread fork/join costs more than it saves on small blocks, and stalls on busy machines)
        big = len(chunk) * len(block) * rows.d >= _SMALL_WORK
        with torch_threads(self.n_threads if big else 1, dev):
            q = torch.addmm(xn[:, None] + Cn[None, :], x32, C.T, alpha=-2.0)  # (n, k)
        self.stats["pairs_screened"] += q.numel()
        w = int(np.searchsorted(block, s_chunk.max()))  # columns that some row of the chunk has already seen
        if w > 0:  # hide them (re-screening would be harmless, only wasted work)
            seen = torch.as_tensor(block[:w], device=dev)[None, :] < torch.as_tensor(s_chunk, device=dev)[:, None]
            q[:, :w].masked_fill_(seen, float("inf"))  # (n, w)
        E, delta = bound.terms(xn, cn_max)
        best = torch.minimum(m_chunk, bound.upper(q.min(1).values, E, delta))  # (n,) >= new exact m
        r, c = torch.nonzero(q <= bound.threshold(best, E, delta)[:, None], as_tuple=True)
        if len(r) == 0:
            return m_chunk
        # A row whose only candidate is surely closer than its exact old value (H < m_old) has that centre as its
        # unique nearest one: defer the float64 value (m = H, an upper bound, until someone needs it exact).
        per_row = torch.bincount(r, minlength=len(chunk)).cpu().numpy()  # (n,)
        qp = q[r, c]  # (n_pairs,)
        H, Lp = bound.upper(qp, E[r], delta[r]).cpu().numpy(), bound.lower(qp, E[r], delta[r]).cpu().numpy()
        r, c = r.cpu().numpy(), block[c.cpu().numpy()]
        rows_i = chunk[r]
        defer = (per_row[r] == 1) & (H < self.lo[rows_i])  # lo: lower bound of the old exact value
        if defer.any():
            dr = rows_i[defer]
            self.m[dr], self.lo[dr], self.a[dr], self.ex[dr] = H[defer], Lp[defer], c[defer], False
            r, c, rows_i = r[~defer], c[~defer], rows_i[~defer]
            if len(r) == 0:
                return torch.from_numpy(self.m[chunk]).to(dev)
        # exact float64 verification with the reference's own code (a row's pending centre is re-checked too)
        pend = np.unique(rows_i[~self.ex[rows_i]])
        if len(pend):
            self.verify(pend)
        d64 = rows.distances64(rows_i, self.C64, c)  # (n_pairs,)
        self.stats["pairs_verified"] += len(r)
        order = np.lexsort((d64, r))  # per row, its smallest verified distance first
        r, c, d64 = r[order], c[order], d64[order]
        first = np.r_[True, r[1:] != r[:-1]]
        r, c, d64 = r[first], c[first], d64[first]
        rows_i = chunk[r]
        better = d64 < self.m[rows_i]
        self.m[rows_i[better]] = d64[better]  # m_x = min(m_x, d64(x, c)), Eq. 6
        self.lo[rows_i[better]] = d64[better]
        self.a[rows_i[better]] = c[better]  # the centre that realises it
        return torch.from_numpy(self.m[chunk]).to(dev)
