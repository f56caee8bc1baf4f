"""Execute the class notebooks top to bottom and report the wall-clock time of each.

    .venv/bin/python notebooks/run_all.py                 # default sizes (LABCORE_FAST=0)
    .venv/bin/python notebooks/run_all.py --fast          # LABCORE_FAST=1
    .venv/bin/python notebooks/run_all.py 03 04 --out /tmp/executed   # some notebooks; keep the executed copies

The sources are the jupytext percent scripts ``notebooks/NN_name.py`` (read with ``jupytext.read``), which hold no
outputs; ``--out DIR`` writes the executed copies, with outputs, as ``DIR/NN_name.ipynb``. Exits 1 if any notebook
raises. ``tests/test_notebooks.py`` runs the same notebooks under pytest.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def notebooks(selectors: list[str] | None = None) -> list[Path]:
    """The numbered notebook sources (``NN_*.py``), optionally only those whose name starts with a selector."""
    found = sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))
    if selectors:
        found = [p for p in found if any(p.name.startswith(s) for s in selectors)]
    return found


def execute(path: Path, fast: bool, timeout: int = 1200, out_dir: Path | None = None) -> float:
    """Run one notebook source in a fresh python3 kernel (cwd = notebooks/) and return its wall-clock seconds."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    os.environ["LABCORE_FAST"] = "1" if fast else "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    nb = jupytext.read(path)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(HERE)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    finally:
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out_dir / path.with_suffix(".ipynb").name)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("select", nargs="*", help="notebook name prefixes, e.g. 00 03 (default: all)")
    parser.add_argument("--fast", action="store_true", help="LABCORE_FAST=1 (tiny sizes)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=None, help="folder for the executed copies (with outputs)")
    args = parser.parse_args(argv)
    failed = []
    for path in notebooks(args.select):
        try:
            seconds = execute(path, args.fast, args.timeout, args.out)
            print(f"{path.name:28s} ok      {seconds:6.0f} s", flush=True)
        except Exception as err:  # noqa: BLE001 - report every notebook, then fail
            failed.append(path.name)
            print(f"{path.name:28s} FAILED  {type(err).__name__}: {str(err)[-2000:]}", flush=True)
    print(f"mode={'fast' if args.fast else 'default'} notebooks={len(notebooks(args.select))} failed={len(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
