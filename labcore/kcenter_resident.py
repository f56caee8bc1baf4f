"""KCenterGreedy with X resident on the device: one pass over X per pick and no host round trip per pick.

The choices and float64 values are those of ``labcore.kcenter.kcenter_greedy_reference`` (Sener & Savarese 2018,
Algorithm 1), bit for bit, as for the lazy path of ``labcore.kcenter``; only the route differs. The lazy path
touches few points per step but decides on the host every step, which costs a GPU more than the pass it saves.
Here every step is the same fixed sequence of device operations, which a GPU runs at its memory bandwidth:

1. Screen. qmin_i = min over the centres so far of the fp32 q(x_i, c) = ||x'||^2 + ||c'||^2 - 2 x'.c' (one
   matrix-vector product over X per new centre, Eq. 6 as a running minimum; chosen points hold -inf). ``_Bound``
   (fp32, the largest squared norm of all rows standing for ||c'||^2) turns it into H_i(qmin_i) >= m_i, the
   reference's exact value; H_i is increasing in q, and H_i <= H_max (the bound with the largest row terms).
2. Candidates. The K points with the largest qmin (``torch.topk``); every other point has
   m_i <= H_max(q_(K+1)), q_(K+1) the (K+1)-th largest qmin.
3. Refine. For the K candidates, q in float64 against every centre (one small float64 matmul) and ``_Bound``
   with u = 2^-53 (one scalar pair of terms, so again increasing in q) give [lo_i, hi_i] around m_i from each
   row's smallest q, about 1e-13 wide where the fp32 bound is 1e-4 wide.
4. Decide. top = the lowest index with the largest lo. The step is *proven* when lo_top > H_max(q_(K+1)) and
   lo_top > hi_i for every other candidate: then x_top is the reference's argmax (Algorithm 1, line 4), exactly.
   The centre realising m_top is recorded (the radius of Eq. 5, evaluated later), with a flag if another centre's
   lower bound reaches hi_top.
5. Blocks. Steps run speculatively, B at a time, with their picks kept on the device. Then one host read of the B
   "proven" flags: if a step p was not proven (an exact tie, duplicates, more than K points within the fp32
   bound), the state is rebuilt at p from the last checkpoint and the block's proven picks (qmin is a minimum:
   a matmul against those centres restores it), step p is decided on the host with the reference's own float64
   code, and the run goes on. K and B adapt.
6. Batched verification. After the last pick, every float64 value the reference reports is computed on the host
   with its own code (``_Rows.distances64``), once: the radius of each step from the recorded centre, and every
   point's min distance from its nearest centre, found by an fp32 screen of X against all centres (a float64
   one where two centres are within the fp32 bound).

Memory on the device: X as fp32 (a float32 tensor on the device is used as it is), plus the source rows where
they are not that fp32 copy (cosine, or float64 input), O(N) vectors and O(budget * d) centres; X is copied to
the host once if it lives on a device, for the float64 verification. ``KCenterGreedy(method="auto")`` takes this
path on CUDA when that fits in free device memory, the lazy streaming path otherwise.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from labcore.kcenter_bounds import _U64, _Bound, _matmul_input_roundoff

if TYPE_CHECKING:
    from labcore.kcenter import _Rows

_ROW_BLOCK = 8192  # rows per block of the start-up passes and the final screen
_START_K, _MAX_K = 64, 4096  # candidates per step: first, largest (doubled when the outside bound overlaps)
_START_B, _MAX_B = 16, 256  # picks per speculative block: first, longest (doubled after a proven block)


def fits_on_device(X: np.ndarray | torch.Tensor, metric: str, device: torch.device) -> bool:
    """Whether the resident path's device memory (see the module docstring) fits in 80% of the free memory."""
    if device.type != "cuda" or X.ndim != 2:
        return False
    n, d = X.shape
    item = X.element_size() if isinstance(X, torch.Tensor) else np.dtype(X.dtype).itemsize
    is_f32 = item == 4 and (X.dtype == torch.float32 if isinstance(X, torch.Tensor) else X.dtype == np.float32)
    there = isinstance(X, torch.Tensor) and X.device == device
    need = 40 * n  # the (N,) vectors
    need += 0 if there else n * d * item  # the source rows
    need += 0 if is_f32 and metric == "euclidean" else 4 * n * d  # the fp32 screen copy
    free, _ = torch.cuda.mem_get_info(device)
    return need <= 0.8 * free


def host_array(X: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """X on the host, as numpy where it can be (the fast float64 verification): one copy if X lives on a device."""
    if not isinstance(X, torch.Tensor):
        return X
    t = X.detach().cpu()
    t = t.float() if t.dtype == torch.bfloat16 else t  # exact
    return t if t.is_complex() or t.dtype == torch.bool else t.numpy()


class ResidentGreedy:
    """State of one resident run (see the module docstring). ``run`` returns what ``KCenterGreedy.fit`` reports."""

    def __init__(self, X: np.ndarray | torch.Tensor, rows: _Rows, metric: str, device: torch.device, budget: int):
        """X as given (moved to ``device``); rows: its host access (``_Rows(..., screen=False)``): the float64
        values, the cosine norms and the reference's distance code."""
        self.rows, self.device, self.budget = rows, device, budget
        self.n = n = rows.n
        d = rows.d
        src = X.detach() if isinstance(X, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(X))
        if src.dtype == torch.bfloat16:
            src = src.float()  # exact
        self.src = src.to(device)  # (N, d) the input values, on the device
        self.norms = None if rows.norms is None else torch.from_numpy(rows.norms).to(device)  # (N,) float64
        same = metric == "euclidean" and self.src.dtype == torch.float32
        self.X32 = self.src.contiguous() if same else torch.empty((n, d), dtype=torch.float32, device=device)
        self.xn = torch.empty(n, dtype=torch.float32, device=device)  # (N,) fp32 ||x'||^2
        self.rn64 = torch.empty(n, dtype=torch.float64, device=device)  # (N,) float64 ||x||^2 (computed)
        for lo in range(0, n, _ROW_BLOCK):
            sl = slice(lo, min(lo + _ROW_BLOCK, n))
            if not bool(torch.isfinite(self.src[sl]).all()):
                raise ValueError("X contains NaN or infinite values")
            r64 = self.src64(sl)  # (b, d)
            if not same:
                self.X32[sl] = r64.float()
            x32 = self.X32[sl]
            self.xn[sl] = (x32 * x32).sum(1)
            self.rn64[sl] = (r64 * r64).sum(1)
        # fp32 bound: the largest squared norm of any row stands for ||c'||^2, so E, delta are fixed per row, and
        # their largest values (Emax, dmax) bound every row's: H_i(q) <= (sqrt(q + Emax) + dmax)(1 + rho)
        self.b32 = _Bound(d, _matmul_input_roundoff(device))
        self.E, self.delta = self.b32.terms(self.xn, float(self.xn.max()))  # (N,) float64 each
        self.Emax, self.dmax = float(self.E.max()), float(self.delta.max())
        # float64 bound: the largest squared norm stands for both ||x||^2 and ||c||^2 (valid, and one scalar pair)
        self.b64 = _Bound(d, 0.0, u=_U64)
        big = self.rn64.max().reshape(1)
        self.E64, self.d64 = (float(v) for v in self.b64.terms(big, float(big)))
        self.qmin = torch.full((n,), math.inf, dtype=torch.float32, device=device)  # (N,)
        self.chosen = torch.zeros(n, dtype=torch.bool, device=device)  # (N,)
        self.C32 = torch.empty((budget, d), dtype=torch.float32, device=device)
        self.Cn32 = torch.empty(budget, dtype=torch.float32, device=device)
        self.C64 = torch.empty((budget, d), dtype=torch.float64, device=device)
        self.Cn64 = torch.empty(budget, dtype=torch.float64, device=device)
        self.picks = torch.empty(budget, dtype=torch.int64, device=device)  # picks[t]: the (t+1)-th centre
        self.rc = torch.zeros(budget, dtype=torch.int64, device=device)  # rc[t]: centre realising m of picks[t]
        # flag[t]: (an outside point may beat the pick, a candidate may, two centres may realise its m)
        self.flag = torch.zeros((budget, 3), dtype=torch.bool, device=device)
        self.on_host = np.zeros(budget, dtype=bool)  # on_host[t]: picks[t] was decided on the host (radius known)
        self._false = torch.zeros((), dtype=torch.bool, device=device)
        self.C64h = np.empty((budget, d))  # host copy of the centres as the reference sees them
        self.host_t = 0  # centres copied to C64h
        self.k, self.block = min(_START_K, n), _START_B
        self.stats = dict(rows_streamed=0, pairs_screened=0, pairs_verified=0, host_syncs=0, host_decided=0)

    def src64(self, idx: slice | torch.Tensor) -> torch.Tensor:
        """(n, d) float64 rows as the reference sees them (cosine: the same IEEE division by the float64 norm)."""
        r = self.src[idx].to(torch.float64)
        return r / self.norms[idx][:, None] if self.norms is not None else r

    # -------------------------------------------------------------------------------------------- device steps

    def add_centre(self, t: int, j: torch.Tensor) -> None:
        """Centre number t is row j (a (1,) device tensor): qmin <- min(qmin, q(., x_j)) (Eq. 6), no host sync."""
        self.picks[t:t + 1] = j
        torch.index_select(self.X32, 0, j, out=self.C32[t:t + 1])
        torch.index_select(self.xn, 0, j, out=self.Cn32[t:t + 1])
        self.C64[t:t + 1] = self.src64(j)
        torch.index_select(self.rn64, 0, j, out=self.Cn64[t:t + 1])
        q = torch.addmv(self.xn + self.Cn32[t], self.X32, self.C32[t], alpha=-2.0)  # (N,) fp32
        torch.minimum(self.qmin, q, out=self.qmin)
        self.qmin.index_fill_(0, j, -math.inf)  # chosen: never a candidate
        self.chosen.index_fill_(0, j, True)
        self.stats["rows_streamed"] += self.n
        self.stats["pairs_screened"] += self.n

    def upper32(self) -> torch.Tensor:
        """(N,) float64 H_i(qmin_i) >= m_i, the fp32 screen's bound, for unchosen points; -1 for chosen ones."""
        return self.b32.upper(self.qmin, self.E, self.delta).masked_fill_(self.chosen, -1.0)  # (nan there)

    def screen64(self, idx: torch.Tensor, t: int) -> torch.Tensor:
        """Float64 screen q of rows idx against centres 0..t-1, (len(idx), t): lower64(q) <= d64 <= upper64(q).

        E and delta are one scalar pair, so the bounds are increasing functions of q: the bounds of a row's m (the
        minimum over centres) are those of its smallest q."""
        return torch.addmm(self.rn64[idx][:, None] + self.Cn64[None, :t], self.src64(idx), self.C64[:t].T, alpha=-2.0)

    def lower64(self, q: torch.Tensor) -> torch.Tensor:
        """lower bound of d64 from a float64 screen value q (any shape)."""
        return self.b64.lower(q, self.E64, self.d64)

    def upper64(self, q: torch.Tensor) -> torch.Tensor:
        """upper bound of d64 from a float64 screen value q (any shape)."""
        return self.b64.upper(q, self.E64, self.d64)

    def decide(self, t: int) -> torch.Tensor:
        """Steps 2-4 with t centres: the pick (a (1,) device tensor); flag[t] says whether it is proven. No sync."""
        kk = min(self.k + 1, self.n)
        qv, ci = torch.topk(self.qmin, kk)  # (kk,) each: the largest screens; H is increasing in q
        cand = ci if kk == self.n else ci[:-1]  # (k,)
        q = self.screen64(cand, t)  # (k, t)
        qm, am = q.min(1)  # (k,) each: the nearest centre of each candidate, by the screen
        ch = qv[:len(cand)] == -math.inf  # chosen candidates (fewer than k points left)
        lo, hi = self.lower64(qm).masked_fill_(ch, -1.0), self.upper64(qm).masked_fill_(ch, -1.0)  # m in [lo, hi]
        lo_top = lo.max()
        pos = torch.where(lo == lo_top, cand, self.n).argmin().view(1)  # lowest index among the largest lo
        if kk == self.n:
            out_bad = self._false
        else:  # every point outside has m <= H_i(q_(k+1)) <= H_max(q_(k+1)) (nan: only chosen points outside)
            out_bad = self.b32.upper(qv[-1], self.Emax, self.dmax).nan_to_num_(nan=-1.0) >= lo_top
        in_bad = hi.index_fill(0, pos, -math.inf).max() >= lo_top
        tie_rc = (self.lower64(q.index_select(0, pos)) <= hi.index_select(0, pos)).sum() > 1
        torch.index_select(am, 0, pos, out=self.rc[t:t + 1])
        self.flag[t] = torch.stack((out_bad, in_bad, tie_rc))
        return cand.index_select(0, pos)

    # -------------------------------------------------------------------------------------------- host steps

    def sync_centres(self, t: int) -> None:
        """Copy centres host_t..t-1 to the host, as the reference sees them (one read of their indices)."""
        if t > self.host_t:
            idx = self.picks[self.host_t:t].cpu().numpy()
            self.C64h[self.host_t:t] = self.rows.host64(idx)
            self.host_t = t

    def exact_m(self, idx: np.ndarray, t: int) -> np.ndarray:
        """The reference's exact m_i = min_{c < t} d64(x_i, c) for rows idx, by the reference's code on the pairs
        that the float64 screen cannot rule out."""
        self.sync_centres(t)
        out = np.empty(len(idx))
        step = max(1, (1 << 22) // max(t, 1))
        for lo in range(0, len(idx), step):
            part = idx[lo:lo + step]
            q = self.screen64(torch.as_tensor(part, device=self.device), t)
            r, c = torch.nonzero(self.lower64(q) <= self.upper64(q.min(1).values)[:, None], as_tuple=True)
            r, c = r.cpu().numpy(), c.cpu().numpy()
            d64 = self.rows.distances64(part[r], self.C64h, c)
            m = np.full(len(part), np.inf)
            np.minimum.at(m, r, d64)
            out[lo:lo + len(part)] = m
            self.stats["pairs_verified"] += len(r)
        return out

    def host_decide(self, t: int) -> tuple[int, float]:
        """Step with t centres decided exactly on the host: the reference's argmax (lowest index on ties) and m."""
        self.stats["host_decided"] += 1
        H = self.upper32()
        kk = min(self.k, self.n)
        cand = torch.topk(H, kk).indices
        lo = self.lower64(self.screen64(cand, t).min(1).values).masked_fill_(self.chosen[cand], -1.0)
        # every point whose upper bound reaches the best proven lower bound (sorted: argmax takes the lowest index)
        cand = torch.nonzero(H >= lo.max()).flatten().cpu().numpy()
        m = self.exact_m(cand, t)
        i = int(np.argmax(m))
        return int(cand[i]), max(float(m[i]), 0.0)

    def rebuild(self, qmin: torch.Tensor, chosen: torch.Tensor, t0: int, t: int) -> None:
        """State with t centres from a checkpoint taken with t0: qmin is a minimum, so one matmul restores it."""
        self.qmin, self.chosen = qmin.clone(), chosen.clone()
        if t > t0:
            for lo in range(0, self.n, _ROW_BLOCK):
                sl = slice(lo, min(lo + _ROW_BLOCK, self.n))
                q = torch.addmm(self.xn[sl, None] + self.Cn32[None, t0:t], self.X32[sl], self.C32[t0:t].T,
                                alpha=-2.0)
                torch.minimum(self.qmin[sl], q.min(1).values, out=self.qmin[sl])
            self.chosen[self.picks[t0:t]] = True
            self.qmin[self.picks[t0:t]] = -math.inf
            self.stats["rows_streamed"] += self.n

    # -------------------------------------------------------------------------------------------- the run

    def run(self, initial: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(selected, min distances (N,), radius (budget,)) as the reference computes them (chordal for cosine)."""
        budget, dev = self.budget, self.device
        radius = np.full(budget, np.nan)  # filled now where decided on the host, else in the batched check
        for t, c in enumerate(initial):
            self.add_centre(t, torch.tensor([c], device=dev))
            if t + 1 < len(initial):  # the radius between given centres: decided on the host (rare: few centres)
                radius[t] = self.host_decide(t + 1)[1]
        t = len(initial)
        while t < budget:
            t0, qmin0, chosen0 = t, self.qmin.clone(), self.chosen.clone()
            for _ in range(min(self.block, budget - t)):
                self.add_centre(t, self.decide(t))
                t += 1
            flags = self.flag[t0:t, :2].cpu().numpy()  # the one host read of this block
            self.stats["host_syncs"] += 1
            if not flags.any():
                self.block = min(2 * self.block, _MAX_B)
                continue
            p = t0 + int(np.argmax(flags.any(1)))  # first step that could not be proven on the device
            if flags[p - t0, 0]:  # an outside point: take more candidates
                self.k = min(2 * self.k, _MAX_K, self.n)
            self.block = max(self.block // 2, 4)
            self.rebuild(qmin0, chosen0, t0, p)
            j, radius[p - 1] = self.host_decide(p)
            self.on_host[p] = True
            self.add_centre(p, torch.tensor([j], device=dev))
            t = p + 1
        self.sync_centres(budget)
        m = self.finish()
        self.fill_radius(radius, initial)
        radius[budget - 1] = float(m.max())
        return self.picks.cpu().numpy(), m, radius

    def fill_radius(self, radius: np.ndarray, initial: Sequence[int]) -> None:
        """radius[t-1] = m of picks[t] when it was picked (Eq. 5: the farthest point's distance), batched."""
        ts = np.arange(len(initial), self.budget)
        tie, rc, picks = self.flag[:, 2].cpu().numpy(), self.rc.cpu().numpy(), self.picks.cpu().numpy()
        ts = ts[~self.on_host[ts]]
        one = ts[~tie[ts]]
        radius[one - 1] = self.rows.distances64(picks[one], self.C64h, rc[one])
        self.stats["pairs_verified"] += len(one)
        for t in ts[tie[ts]]:  # two centres within the float64 bound: the min of all
            radius[t - 1] = self.exact_m(picks[t:t + 1], int(t))[0]
        np.maximum(radius, 0.0, out=radius)

    def finish(self) -> np.ndarray:
        """Every point's exact min distance: an fp32 screen of X against all centres finds each point's nearest
        centre (or the few within the bound), and the reference's code gives the value."""
        n, b = self.n, self.budget
        a = np.empty(n, dtype=np.int64)
        count = np.empty(n, dtype=np.int64)
        step = max(1, min(_ROW_BLOCK, (1 << 25) // b))
        for lo in range(0, n, step):
            sl = slice(lo, min(lo + step, n))
            q = torch.addmm(self.xn[sl, None] + self.Cn32[None, :], self.X32[sl], self.C32.T, alpha=-2.0)
            qm, am = q.min(1)
            E, delta = self.E[sl], self.delta[sl]
            T = self.b32.threshold(self.b32.upper(qm, E, delta), E, delta)
            count[sl] = (q <= T[:, None]).sum(1).cpu().numpy()
            a[sl] = am.cpu().numpy()
        self.stats["pairs_screened"] += n * b
        self.stats["rows_streamed"] += n
        chosen = self.chosen.cpu().numpy()
        m = np.zeros(n)
        one = np.flatnonzero((count == 1) & ~chosen)
        m[one] = self.rows.distances64(one, self.C64h, a[one])
        self.stats["pairs_verified"] += len(one)
        more = np.flatnonzero((count > 1) & ~chosen)
        if len(more):
            m[more] = self.exact_m(more, b)
        return m
