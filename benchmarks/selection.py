"""The data-selection tab on a fresh clone: first view, a new k, and ``labcore select``, side by side in one run.

Every step runs in a fresh Python process with an empty ``LABCORE_CACHE`` (a temporary folder), so nothing but
what the repository ships is cached, as on a fresh clone:

  1. first view: ``SelectionHandlers.open_view`` on the shipped instruction set (what the tab shows on open: read
     the file, the shipped embeddings and UMAP layout, K-means K = 32, select 0.5% of the largest task, draw the
     map and the radius curve); seconds including the imports;
  2. a new k: ``fit_kmeans`` on the 35k embeddings for K = 8, 33, 64, 96, with the app's ``init="sample"`` and with
     the previous app path (k-means++ on all points, 3 restarts), seconds and inertia side by side, then the whole
     ``select`` handler (K-means + selection + figures) for the same K;
  3. ``labcore select --task sentiment`` (the README's example), wall seconds of the command.

    python benchmarks/selection.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FIRST_VIEW = r"""
import json, time
t0 = time.perf_counter()
from labcore import DATA_DIR
from labcore.app.selection import SelectionHandlers
h = SelectionHandlers()
view = h.open_view(str(DATA_DIR / "instructions.jsonl.gz"))
out = {"first_view_s": time.perf_counter() - t0, "task": view[1], "steps": h.last_timings}
import numpy as np
from labcore.coreset import fit_kmeans
X = h.dataset(str(DATA_DIR / "instructions.jsonl.gz")).embeddings
rows = []
for k in (8, 33, 64, 96):
    r = {"k": k}
    for name, kw in (("sample", dict(init="sample")), ("kmeans++x3", dict(n_init=3))):
        t = time.perf_counter(); fit = fit_kmeans(X, n_clusters=k, random_state=0, **kw)
        r[name + "_s"] = time.perf_counter() - t
        r[name + "_inertia"] = float(((X - fit.centroids[fit.labels]) ** 2).sum())
    t = time.perf_counter(); h.select(str(DATA_DIR / "instructions.jsonl.gz"), view[1], k)
    r["handler_s"] = time.perf_counter() - t
    rows.append(r)
out["k"] = rows
print("RESULT " + json.dumps(out))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LABCORE_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        env.pop("LABCORE_FAST", None)
        res = subprocess.run([sys.executable, "-c", FIRST_VIEW], cwd=REPO, env=env, capture_output=True, text=True)
        line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
        if res.returncode or not line:
            sys.exit(f"first-view run failed:\n{res.stderr[-3000:]}")
        r = json.loads(line[0][7:])
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "LABCORE_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        t = time.perf_counter()
        sel = subprocess.run([sys.executable, "-m", "labcore.cli", "select", "--task", "sentiment", "--out",
                              str(Path(out) / "coreset.jsonl")], cwd=REPO, env=env, capture_output=True, text=True)
        t_select = time.perf_counter() - t
        if sel.returncode:
            sys.exit(f"labcore select failed:\n{sel.stderr[-3000:]}")
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in r["steps"].items())
    print(f"fresh clone (empty LABCORE_CACHE), {os.cpu_count()} CPUs")
    print(f"first view (imports, shipped embeddings + UMAP, K = 32, 0.5% of {r['task']!r}, figures): "
          f"{r['first_view_s']:.2f} s  [{steps}]")
    print(f"{'k':>4} | {'sample s':>8} {'inertia':>9} | {'k-means++ x3 s':>14} {'inertia':>9} | {'ratio':>6} | "
          f"{'whole handler s':>15}")
    for x in r["k"]:
        print(f"{x['k']:>4} | {x['sample_s']:>8.2f} {x['sample_inertia']:>9.1f} | {x['kmeans++x3_s']:>14.2f} "
              f"{x['kmeans++x3_inertia']:>9.1f} | {x['sample_inertia'] / x['kmeans++x3_inertia']:>6.4f} | "
              f"{x['handler_s']:>15.2f}")
    print(f"labcore select --task sentiment (fresh cache): {t_select:.1f} s wall")
    print(sel.stdout.strip().splitlines()[0])


if __name__ == "__main__":
    main()
