"""Benchmark: labcore KCenterGreedy against the classic reference's own formulation, side by side in one run.

The reference is google/active-learning ``sampling_methods/kcenter_greedy.py``, the code most core-set selection
copies: float32 features (as the embeddings come), ``sklearn.metrics.pairwise_distances(features, [centre])`` every
step, ``np.minimum`` into the running min distances, ``argmax``. ``ReferenceKCenterGreedy`` below is that code path
(minus its bare ``except`` and its (K x N) first call). A second, optional column (``--float64``) runs the same loop
on a float64 copy, the formulation labcore's exact picks are defined by (``labcore.kcenter.kcenter_greedy_reference``).
labcore: ``KCenterGreedy(budget=K, device=...).fit(X, initial=i0)`` (exact: lazy bounds + fp32 screen + float64
verification). Same start index, unit vectors in d = 384: random Gaussian directions (the worst case for pruning)
and 50 Gaussian clusters, normalised; Euclidean metric.

Cases: (N, K) = (10k, 100), (50k, 200), (100k, 500). Per case it prints the reference's seconds, labcore's seconds,
the speed-up, whether the picks are identical, and the floor of any per-step method: K times one pass over X,
measured here as the best time of ``X @ c`` (torch matvec) over fp32 X and over fp16 X. labcore "vs floor" is that
floor divided by labcore's time (above 1: faster than reading X once per step).

When the full reference would take long (N >= 50k and K >= 500), only ``--baseline-steps`` steps are timed and the
time is extrapolated linearly (every step does the same work); the output says so, and identity is checked on those
steps. Memory (MB): the peak RSS above the start of labcore's run, sampled every 2 ms in an untimed run (X itself is
not counted: labcore never copies it whole).

Usage:  python benchmarks/kcenter.py [--quick] [--device auto|cpu|cuda] [--baseline-steps 100] [--float64]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labcore.kcenter import KCenterGreedy  # noqa: E402

D, N_CLUSTERS = 384, 50
CASES = [(10_000, 100), (50_000, 200), (100_000, 500)]


# ----------------------------------------------------------------------------------------------------------------
# The reference, google/active-learning sampling_methods/kcenter_greedy.py (its select_batch_ / update_distances)
# ----------------------------------------------------------------------------------------------------------------


class ReferenceKCenterGreedy:
    """The reference's loop: pairwise_distances(features, [centre]) per step, np.minimum, argmax."""

    def __init__(self, X: np.ndarray, metric: str = "euclidean", dtype=np.float32):
        self.features = np.asarray(X, dtype=dtype)  # (N, d); the reference keeps the features as given (float32)
        self.metric = metric
        self.min_distances = None
        self.already_selected: list[int] = []

    def update_distances(self, cluster_centers: list[int]) -> None:
        from sklearn.metrics import pairwise_distances

        cluster_centers = [c for c in cluster_centers if c not in self.already_selected]
        if cluster_centers:
            x = self.features[cluster_centers]  # (c, d)
            dist = pairwise_distances(self.features, x, metric=self.metric)  # (N, c)
            if self.min_distances is None:
                self.min_distances = np.min(dist, axis=1).reshape(-1, 1)  # (N, 1)
            else:
                self.min_distances = np.minimum(self.min_distances, dist)

    def select_batch(self, first: int, n: int) -> list[int]:
        batch = []
        for _ in range(n):
            ind = first if not batch else int(np.argmax(self.min_distances))
            assert ind not in self.already_selected
            self.update_distances([ind])
            self.already_selected.append(ind)
            batch.append(ind)
        return batch


# ----------------------------------------------------------------------------------------------------------------
# Measurement helpers
# ----------------------------------------------------------------------------------------------------------------


def set_malloc(track_rss: bool) -> None:
    """glibc. track_rss=True: serve allocations >= 64 KiB by mmap (returned to the OS on free), so RSS tracks live
    memory (for the memory runs). False: keep freed blocks up to 32 MiB in the heap for reuse, as glibc's dynamic
    threshold does after warm-up (for the timed runs: no page faults on every temporary)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16 if track_rss else 1 << 25)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 16 if track_rss else 1 << 26)  # M_TRIM_THRESHOLD
    except OSError:  # not glibc: RSS deltas may then undercount reused memory
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak RSS above the starting value, sampled every 2 ms in a background thread."""

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.delta_mb = (self.peak - self.start) / 2**20


def one_pass_seconds(X: np.ndarray, dtype: torch.dtype, repeats: int = 7) -> float:
    """Best time of one matvec X @ c over X in ``dtype`` (torch, CPU): the per-step floor of any per-step method."""
    Xt = torch.from_numpy(X).to(dtype)
    c = Xt[0].clone()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        Xt @ c
        best = min(best, time.perf_counter() - t)
    return best


def make_data(n: int, kind: str, seed: int = 0) -> np.ndarray:
    """(n, D) float32 unit vectors: 'random' directions or 'clustered' (50 Gaussian clusters, normalised)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        X = rng.standard_normal((n, D), dtype=np.float32)
    else:
        centres = rng.standard_normal((N_CLUSTERS, D), dtype=np.float32)  # (50, D)
        X = centres[rng.integers(N_CLUSTERS, size=n)] + 0.35 * rng.standard_normal((n, D), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 10k only (CI-like run)")
    ap.add_argument("--device", default="auto", help="labcore device: auto | cpu | cuda | mps")
    ap.add_argument("--method", default="auto", help="labcore path: auto | lazy | resident (KCenterGreedy(method=))")
    ap.add_argument("--baseline-steps", type=int, default=100,
                    help="for N >= 50k and K >= 500 time this many reference steps and extrapolate (0: run all K)")
    ap.add_argument("--float64", action="store_true", help="also time the reference loop on float64 features")
    args = ap.parse_args()
    cases = CASES[:1] if args.quick else CASES

    print(f"torch threads: {torch.get_num_threads()}; d={D}; metric=euclidean; reference = google/active-learning "
          f"kcenter_greedy.py formulation (float32 features, sklearn pairwise_distances per step)")
    cols = f"{'N':>7} {'K':>4} {'data':>9} | {'reference s':>11} " + (f"{'float64 s':>9} " if args.float64 else "")
    header = (cols + f"| {'labcore s':>9} {'MB':>5} | {'speed-up':>8} {'identical':>9} | {'floor fp32 s':>12} "
              f"{'fp16 s':>6} {'labcore/floor':>13}")
    print(header)
    print("-" * len(header))
    summary = {}
    # memory first, in untimed runs with RSS tracking live memory; then the timed runs with the allocator set for
    # reuse and no sampler thread (it takes the GIL every 2 ms)
    set_malloc(track_rss=True)
    KCenterGreedy(budget=5, device=args.device).fit(make_data(1000, "random"), initial=0)  # one-off torch start-up
    memory = {}
    for n, K in cases:
        for kind in ("random", "clustered"):
            X = make_data(n, kind)
            i0 = int(np.random.default_rng(1).integers(n))
            with PeakRSS() as mem:
                KCenterGreedy(budget=K, device=args.device, method=args.method).fit(X, initial=i0)
            memory[n, kind] = mem.delta_mb
            del X
    set_malloc(track_rss=False)
    for n, K in cases:
        for kind in ("random", "clustered"):
            X = make_data(n, kind)
            i0 = int(np.random.default_rng(1).integers(n))
            mem_mb = memory[n, kind]
            KCenterGreedy(budget=K, device=args.device, method=args.method).fit(X, initial=i0)  # warm the allocator's reuse
            t = time.perf_counter()
            km = KCenterGreedy(budget=K, device=args.device, method=args.method).fit(X, initial=i0)
            t_lab = time.perf_counter() - t
            steps = K if (n < 50_000 or K < 500 or args.baseline_steps <= 0) else min(args.baseline_steps, K)
            t = time.perf_counter()
            ref = ReferenceKCenterGreedy(X).select_batch(i0, steps)
            t_ref = (time.perf_counter() - t) * K / steps
            t64 = ""
            if args.float64:
                t = time.perf_counter()
                ReferenceKCenterGreedy(X, dtype=np.float64).select_batch(i0, steps)
                t64 = f"{(time.perf_counter() - t) * K / steps:>9.2f} "
            identical = ref == km.selected_indices_[:steps].tolist()
            f32, f16 = K * one_pass_seconds(X, torch.float32), K * one_pass_seconds(X, torch.float16)
            floor = min(f32, f16)
            speedup = t_ref / t_lab
            note = f"  (reference extrapolated from {steps} steps)" if steps < K else ""
            print(f"{n:>7} {K:>4} {kind:>9} | {t_ref:>11.2f} {t64}| {t_lab:>9.2f} {mem_mb:>5.0f} | "
                  f"{speedup:>7.1f}x {str(identical):>9} | {f32:>12.2f} {f16:>6.2f} {floor / t_lab:>12.2f}x{note}")
            tag = f"{n // 1000}k_{kind}"
            summary[f"speedup_{tag}"] = f"{speedup:.1f}x"
            summary[f"identical_{tag}"] = identical
    print(f"labcore device: {km.device_}, method: {km.method_}; labcore/floor above 1x: faster than one pass over X per step "
          f"(the floor of any per-step method, fp32 or fp16, whichever is faster here)")
    print(" ".join(f"{k}={v}" for k, v in summary.items())
          + f" identical={all(v for k, v in summary.items() if k.startswith('identical'))}")


if __name__ == "__main__":
    main()
