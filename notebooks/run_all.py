"""Execute the class notebooks top to bottom and report the wall-clock time of each.

    .venv/bin/python notebooks/run_all.py                 # default sizes (LABCORE_FAST=0)
    .venv/bin/python notebooks/run_all.py --fast          # LABCORE_FAST=1
    .venv/bin/python notebooks/run_all.py 03 04 --out /tmp/executed   # some notebooks; keep the executed copies
    .venv/bin/python notebooks/run_all.py --html docs/notebooks       # the previews (make notebooks-html)
    .venv/bin/python notebooks/run_all.py 03 --rerender docs/notebooks   # new markdown, same code: no re-execution

The sources are the jupytext percent scripts ``notebooks/NN_name.py`` (read with ``jupytext.read``), which hold no
outputs; ``--out DIR`` writes the executed copies, with outputs, as ``DIR/NN_name.ipynb``; ``--html DIR`` writes
them as ``DIR/NN_name.html`` (nbconvert; plotly figures load plotly.js from its CDN) beside ``DIR/NN_name.ipynb``.
``--rerender DIR`` re-exports ``DIR/NN_name.html`` from the executed copy there with the source's current markdown,
refusing when a code cell differs (then the notebook must run again). Exits 1 if any notebook raises.
``tests/test_notebooks.py`` runs the same notebooks under pytest.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
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
    if out_dir is not None:  # labcore.notebook.setup: plotly figures that a static HTML page shows
        os.environ["LABCORE_PLOTLY_RENDERER"] = "plotly_mimetype+notebook_connected"
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


def write_html(executed: Path, html: Path) -> Path:
    """Export an executed notebook (.ipynb) as an HTML page (nbconvert's lab template; its stylesheet is shared, see
    ``link_head_css``)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(executed, as_version=4))
    html.write_text(link_head_css(body, html.parent), encoding="utf-8")
    return html


def link_head_css(page: str, folder: Path) -> str:
    """Move the ``<style>`` blocks of the page's ``<head>`` (nbconvert's template: the same 260 KB in every preview)
    into one file in ``folder`` named by its content hash, and link it where the first block was. Styles in the body
    (cell outputs) stay. Pages exported with the same template share the file; another template gets its own."""
    end = page.index("</head>")
    head = page[:end]
    blocks = list(re.finditer(r"<style[^>]*>(.*?)</style>\s*", head, flags=re.S))
    if not blocks:
        return page
    css = "\n".join(m.group(1) for m in blocks)
    name = f"nbconvert-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
    if not (folder / name).is_file():
        (folder / name).write_text(css, encoding="utf-8")
    parts, last = [], 0
    for i, m in enumerate(blocks):
        parts += [head[last:m.start()], f'<link href="{name}" rel="stylesheet"/>\n' if i == 0 else ""]
        last = m.end()
    return "".join(parts) + head[last:] + page[end:]


def rerender(path: Path, out_dir: Path) -> Path:
    """Put the source's markdown into the executed copy ``out_dir/NN_name.ipynb`` and re-export its HTML.

    Raises:
        ValueError: the executed copy is missing, or its code cells differ from the source's (run it again).
    """
    import jupytext
    import nbformat

    executed = out_dir / path.with_suffix(".ipynb").name
    if not executed.is_file():
        raise ValueError(f"{executed} does not exist: run with --html {out_dir} first")
    nb, src = nbformat.read(executed, as_version=4), jupytext.read(path)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    if code != [c.source for c in src.cells if c.cell_type == "code"] or len(nb.cells) != len(src.cells):
        raise ValueError(f"{path.name}: code cells differ from the executed copy {executed}: run it again")
    for cell, new in zip(nb.cells, src.cells):
        if cell.cell_type == "markdown":
            cell.source = new.source
    nbformat.write(nb, executed)
    return write_html(executed, executed.with_suffix(".html"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("select", nargs="*", help="notebook name prefixes, e.g. 00 03 (default: all)")
    parser.add_argument("--fast", action="store_true", help="LABCORE_FAST=1 (tiny sizes)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=None, help="folder for the executed copies (with outputs)")
    parser.add_argument("--html", type=Path, default=None, help="folder for the executed copies and their HTML")
    parser.add_argument("--rerender", type=Path, default=None,
                        help="re-export the HTML in this folder with the sources' markdown (no execution)")
    args = parser.parse_args(argv)
    failed = []
    for path in notebooks(args.select):
        try:
            if args.rerender:
                print(f"{path.name:28s} ok      {rerender(path, args.rerender)}", flush=True)
                continue
            out = args.html or args.out
            seconds = execute(path, args.fast, args.timeout, out)
            if args.html:
                write_html(out / path.with_suffix(".ipynb").name, out / path.with_suffix(".html").name)
            print(f"{path.name:28s} ok      {seconds:6.0f} s", flush=True)
        except Exception as err:  # noqa: BLE001 - report every notebook, then fail
            failed.append(path.name)
            print(f"{path.name:28s} FAILED  {type(err).__name__}: {str(err)[-2000:]}", flush=True)
    print(f"mode={'fast' if args.fast else 'default'} notebooks={len(notebooks(args.select))} failed={len(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
