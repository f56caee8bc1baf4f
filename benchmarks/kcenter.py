"""Benchmark: labcore KCenterGreedy vs a classic-style baseline (google/active-learning kcenter_greedy.py manner).

Both run in the same process on the same data, one after the other:
  * baseline: numpy float64, ``sklearn.metrics.pairwise_distances(features, new_centre)`` every step, then
    ``min_distances = np.minimum(min_distances, dist)`` and ``argmax`` (as the classic reference does);
  * labcore:  ``KCenterGreedy(budget=K, device=...).fit(X, initial=i0)`` (exact: lazy bounds + fp32 screen + float64
    verification).
Data: N unit vectors in d = 384 (random Gaussian directions, the worst case for pruning; and 50 Gaussian clusters,
normalised), K = 500, Euclidean metric, same start index for both.

Memory is the peak process RSS above the value at the start of each variant, sampled every 2 ms by a thread
in a separate, untimed run of that variant (the baseline's over its first 10 steps, where its peak is reached)
(``/proc/self/statm``; it covers numpy, torch and BLAS buffers alike; glibc is told to return freed blocks of
64 KiB or more to the OS, so that one variant's freed memory does not hide the next one's). The baseline's float64 copy of X counts, as it
is part of what it needs. The memory-bandwidth floor uses the read bandwidth of a large numpy ``sum`` measured in this
run: a per-step algorithm must read all of X once per step (K * N * d * itemsize bytes).

When the full baseline would take long (N = 100k), only ``--baseline-steps`` steps are timed and the time is
extrapolated linearly (every step does the same work); the output says so, and identity is checked on those steps.

Usage:  python benchmarks/kcenter.py [--quick] [--device auto|cpu|cuda] [--baseline-steps 60]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labcore.kcenter import KCenterGreedy  # noqa: E402

D, K, N_CLUSTERS = 384, 500, 50


# ----------------------------------------------------------------------------------------------------------------
# The baseline, written in the manner of google/active-learning sampling_methods/kcenter_greedy.py
# ----------------------------------------------------------------------------------------------------------------


class ClassicKCenterGreedy:
    """Classic-style k-center greedy: float64 features, sklearn pairwise_distances per step, min update."""

    def __init__(self, X: np.ndarray, metric: str = "euclidean"):
        self.features = np.asarray(X, dtype=np.float64)  # (N, d) float64 copy, as the classic code works in float64
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


def read_bandwidth(nbytes: int = 1 << 29) -> float:
    """Read bandwidth (bytes/s) of np.sum over a large float64 array (best of 3)."""
    a = np.ones(nbytes // 8)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return nbytes / best


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
    ap.add_argument("--baseline-steps", type=int, default=60,
                    help="at N = 100k, time this many baseline steps and extrapolate to K (0: run all K)")
    args = ap.parse_args()
    sizes = [10_000] if args.quick else [10_000, 100_000]

    bw = read_bandwidth()
    print(f"measured read bandwidth: {bw / 1e9:.1f} GB/s (np.sum over 512 MiB); K={K}, d={D}, metric=euclidean")
    header = (f"{'N':>7} {'data':>9} | {'baseline s':>11} {'MB':>6} {'floor%':>6} | {'labcore s':>9} {'MB':>6} "
              f"{'X reads':>7} | {'speedup':>7} {'identical':>9}")
    print(header)
    print("-" * len(header))
    summary = {}
    data = []
    # memory first, in untimed runs with RSS tracking live memory (the baseline over its first 10 steps, where its
    # peak is reached); then timing with the allocator set for reuse and no RSS sampler thread (it takes the GIL
    # every 2 ms, which slows a loop of many small steps more than one of few large numpy calls)
    set_malloc(track_rss=True)
    for n in sizes:
        for kind in ("random", "clustered"):
            X = make_data(n, kind)
            i0 = int(np.random.default_rng(1).integers(n))
            KCenterGreedy(budget=5, device=args.device).fit(X[:1000], initial=0)  # one-off torch start-up
            with PeakRSS() as mem_l:
                KCenterGreedy(budget=K, device=args.device).fit(X, initial=i0)
            with PeakRSS() as mem_b:
                ClassicKCenterGreedy(X).select_batch(i0, 10)
            data.append((n, kind, X, i0, mem_l.delta_mb, mem_b.delta_mb))
    set_malloc(track_rss=False)
    for n, kind, X, i0, mem_l_mb, mem_b_mb in data:
        KCenterGreedy(budget=K, device=args.device).fit(X, initial=i0)  # warm the allocator's reuse
        t = time.perf_counter()
        km = KCenterGreedy(budget=K, device=args.device).fit(X, initial=i0)
        t_lab = time.perf_counter() - t
        # baseline: the whole run, or a prefix of steps extrapolated to K
        steps = K if (n <= 10_000 or args.baseline_steps <= 0) else min(args.baseline_steps, K)
        t = time.perf_counter()
        base = ClassicKCenterGreedy(X).select_batch(i0, steps)
        t_base = time.perf_counter() - t
        extrapolated = steps < K
        t_base_full = t_base * K / steps
        identical = base == km.selected_indices_[:steps].tolist()
        floor_base = K * n * D * 8 / bw  # K passes over float64 X
        floor_fp32 = K * n * D * 4 / bw  # K passes over float32 X: floor of any per-step fp32 method
        x_reads = km.stats_["rows_streamed"] / n  # how many times labcore read X (in rows) in all
        speedup = t_base_full / t_lab
        note = f" (extrapolated from {steps} steps)" if extrapolated else ""
        print(f"{n:>7} {kind:>9} | {t_base_full:>11.2f} {mem_b_mb:>6.0f} {100 * floor_base / t_base_full:>5.0f}% "
              f"| {t_lab:>9.2f} {mem_l_mb:>6.0f} {x_reads:>7.1f} | {speedup:>6.1f}x {str(identical):>9}{note}")
        print(f"{'':>19}labcore vs the fp32 per-step floor ({floor_fp32:.2f} s): {floor_fp32 / t_lab:.2f}x of it; "
              f"own reads {km.stats_['rows_streamed'] * D * 4 / 1e9:.2f} GB -> {km.stats_['rows_streamed'] * D * 4 / bw:.2f} s at "
              f"bandwidth; pairs screened {km.stats_['pairs_screened'] / km.stats_['brute_force_pairs']:.2f}x of "
              f"N*K, verified in float64 {km.stats_['pairs_verified']}")
        tag = f"{n // 1000}k_{kind}"
        summary[f"speedup_{tag}"] = f"{speedup:.1f}x"
        summary[f"identical_{tag}"] = identical
        summary[f"labcore_s_{tag}"] = f"{t_lab:.2f}"
        summary[f"baseline_s_{tag}"] = f"{t_base_full:.2f}" + ("(extrapolated)" if extrapolated else "")
    print(f"labcore device: {km.device_}")
    print(" ".join(f"{k}={v}" for k, v in summary.items()) + f" identical={all(v for k, v in summary.items() if k.startswith('identical'))}")


if __name__ == "__main__":
    main()
