"""KCenterGreedy with X resident on the device: one pass over X per pick and no host round trip per pick.

The choices and float64 values are those of ``labcore.kcenter.kcenter_greedy_reference`` (Sener & Savarese 2018,
Algorithm 1), bit for bit, as for the lazy path of ``labcore.kcenter``; only the route differs. The lazy path
touches few points per step but decides on the host every step, which costs a GPU more than the pass it saves.
Here every step is the same fixed sequence of device operations, which a GPU runs at its memory bandwidth:

1. Screen. qmin_i = min over the centres so far of the fp32 q(x_i, c) = ||x'||^2 + ||c'||^2 - 2 x'.c' (one
   matrix-vector product over X per new centre, Eq. 6 as a running minimum). ``_Bound`` (fp32) turns qmin_i into
   H_i >= m_i = min_c d64(x_i, c), the reference's exact value. With the largest squared norm of all rows for
   ||c'||^2, H is one monotone function of q per row, so min_c H(q_c) = H(qmin).
2. Candidates. The K points with the largest H (``torch.topk``); every other point has m_i <= H_(K+1).
3. Refine. For the K candidates, q in float64 against every centre (one small float64 matmul) and ``_Bound``
   with u = 2^-53 give [lo_i, hi_i] around m_i, about 1e-13 wide where the fp32 bound is 1e-4 wide.
4. Decide. top = the lowest index with the largest lo. The step is *proven* when lo_top > H_(K+1) and
   lo_top > hi_i for every other candidate: then x_top is the reference's argmax (Algorithm 1, line 4), exactly.
   The centre realising m_top is recorded (the radius of Eq. 5, evaluated later).
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
        self.rows, self.metric, self.device, self.budget = rows, metric, device, budget
        self.n, self.d = n, d = rows.n, rows.d
        src = X.detach() if isinstance(X, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(X))
        if src.dtype == torch.bfloat16:
            src = src.float()  # exact
        self.src = src.to(device)  # (N, d) the input values, on the device
        self.norms = None if rows.norms is None else torch.from_numpy(rows.norms).to(device)  # (N,) float64
        same = metric == "euclidean" and self.src.dtype == torch.float32
        self.X32 = self.src.contiguous() if same else torch.empty((n, d), dtype=torch.float32, device=device)
        self.xn = torch.empty(n, dtype=torch.float32, device=device)  # (N,) fp32 ||x'||^2
        cn64 = 0.0
        for lo in range(0, n, _ROW_BLOCK):
            sl = slice(lo, min(lo + _ROW_BLOCK, n))
            if not bool(torch.isfinite(self.src[sl]).all()):
                raise ValueError("X contains NaN or infinite values")
            r64 = self.src64(sl)  # (b, d)
            if not same:
                self.X32[sl] = r64.float()
            x32 = self.X32[sl]
            self.xn[sl] = (x32 * x32).sum(1)
            cn64 = max(cn64, float((r64 * r64).sum(1).max()))
        # fp32 bound: the largest squared norm of any row stands for ||c'||^2, so E, delta are fixed per row
        self.b32 = _Bound(d, _matmul_input_roundoff(device))
        self.E, self.delta = self.b32.terms(self.xn, float(self.xn.max()))  # (N,) float64 each
        self.b64, self.cn64_max = _Bound(d, 0.0, u=_U64), cn64
        self.qmin = torch.full((n,), math.inf, dtype=torch.float32, device=device)  # (N,)
        self.chosen = torch.zeros(n, dtype=torch.bool, device=device)  # (N,)
        self.C32 = torch.empty((budget, d), dtype=torch.float32, device=device)
        self.Cn32 = torch.empty(budget, dtype=torch.float32, device=device)
        self.C64 = torch.empty((budget, d), dtype=torch.float64, device=device)
        self.Cn64 = torch.empty(budget, dtype=torch.float64, device=device)
        self.picks = torch.empty(budget, dtype=torch.int64, device=device)  # picks[t]: the (t+1)-th centre
        self.rc = torch.zeros(budget, dtype=torch.int64, device=device)  # rc[t]: centre realising m of picks[t]
        self.flag = torch.zeros(budget, dtype=torch.int8, device=device)  # 1 outside, 2 inside unproven; 4 rc tie
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
        self.C32[t:t + 1] = self.X32.index_select(0, j)
        self.Cn32[t:t + 1] = self.xn.index_select(0, j)
        c64 = self.src64(j)  # (1, d)
        self.C64[t:t + 1] = c64
        self.Cn64[t:t + 1] = (c64 * c64).sum(1)
        q = torch.addmv(self.xn + self.Cn32[t], self.X32, self.C32[t], alpha=-2.0)  # (N,) fp32
        torch.minimum(self.qmin, q, out=self.qmin)
        self.chosen.index_fill_(0, j, True)
        self.stats["rows_streamed"] += self.n
        self.stats["pairs_screened"] += self.n

    def upper(self) -> torch.Tensor:
        """(N,) float64 H_i >= m_i for unchosen points; -1 for chosen ones."""
        return self.b32.upper(self.qmin, self.E, self.delta).masked_fill_(self.chosen, -1.0)

    def bounds64(self, idx: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float64 screen of rows idx against centres 0..t-1: (L, H, q), each (len(idx), t), L <= d64 <= H."""
        R = self.src64(idx)  # (k, d)
        rn = (R * R).sum(1)  # (k,)
        q = torch.addmm(rn[:, None] + self.Cn64[None, :t], R, self.C64[:t].T, alpha=-2.0)
        E, delta = self.b64.terms(rn, self.cn64_max)
        return self.b64.lower(q, E[:, None], delta[:, None]), self.b64.upper(q, E[:, None], delta[:, None]), q

    def decide(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 2-4 with t centres: the pick (a (1,) device tensor) and its (0-d) "proven" flag; no host sync."""
        H = self.upper()
        kk = min(self.k + 1, self.n)
        hv, ci = torch.topk(H, kk)
        cand, hout = (ci, None) if kk == self.n else (ci[:-1], hv[-1])
        L, Hc, q = self.bounds64(cand, t)
        ch = self.chosen[cand]
        lo, hi = L.min(1).values.masked_fill_(ch, -1.0), Hc.min(1).values.masked_fill_(ch, -1.0)  # (k,)
        lo_top = lo.max()
        pos = torch.where(lo == lo_top, cand, self.n).argmin().view(1)  # lowest index among the largest lo
        others = hi.index_fill(0, pos, -math.inf).max()
        out_bad = torch.zeros((), dtype=torch.bool, device=self.device) if hout is None else hout >= lo_top
        in_bad = others >= lo_top
        tie_rc = (L.index_select(0, pos) <= hi.index_select(0, pos)).sum() > 1
        self.rc[t:t + 1] = q.index_select(0, pos).argmin(1)
        self.flag[t] = out_bad.to(torch.int8) + 2 * in_bad.to(torch.int8) + 4 * tie_rc.to(torch.int8)
        return cand.index_select(0, pos), ~(out_bad | in_bad)

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
            L, H, _ = self.bounds64(torch.as_tensor(part, device=self.device), t)
            r, c = torch.nonzero(L <= H.min(1).values[:, None], as_tuple=True)
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
        H = self.upper()
        kk = min(self.k, self.n)
        cand = torch.topk(H, kk).indices
        L, _, _ = self.bounds64(cand, t)
        lo = L.min(1).values.masked_fill_(self.chosen[cand], -1.0)
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
            proven = []
            for _ in range(min(self.block, budget - t)):
                j, ok = self.decide(t)
                self.add_centre(t, j)
                proven.append(ok)
                t += 1
            flags = torch.stack(proven).cpu().numpy()  # the one host read of this block
            self.stats["host_syncs"] += 1
            if flags.all():
                self.block = min(2 * self.block, _MAX_B)
                continue
            p = t0 + int(np.argmin(flags))  # first step that could not be proven on the device
            if self.flag[p].item() & 1:
                self.k = min(2 * self.k, _MAX_K, self.n)
            self.block = max(self.block // 2, 4)
            self.rebuild(qmin0, chosen0, t0, p)
            j, radius[p - 1] = self.host_decide(p)
            self.flag[p] = 8  # decided on the host: radius known
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
        flag, rc, picks = self.flag.cpu().numpy(), self.rc.cpu().numpy(), self.picks.cpu().numpy()
        ts = ts[flag[ts] != 8]
        one = ts[(flag[ts] & 4) == 0]
        radius[one - 1] = self.rows.distances64(picks[one], self.C64h, rc[one])
        self.stats["pairs_verified"] += len(one)
        for t in ts[(flag[ts] & 4) != 0]:  # two centres within the float64 bound: the min of all
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
