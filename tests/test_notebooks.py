"""The class notebooks run top to bottom without an error; their sources are jupytext percent scripts without outputs.

The sources are ``notebooks/NN_name.py`` (jupytext percent format, read with ``jupytext.read``); JupyterLab opens them
as notebooks paired with a git-ignored ``NN_name.ipynb`` (``notebooks/jupytext.toml``), so outputs are never committed.

Execution is slow (a python3 kernel per notebook, real models): marked ``slow``. By default every notebook runs in
fast mode (``LABCORE_FAST=1``, about 2 minutes each on 2 CPU cores); ``LABCORE_FAST=0`` in the environment runs the
default sizes (up to 10 minutes each):

    .venv/bin/python -m pytest tests/test_notebooks.py                    # fast mode
    LABCORE_FAST=0 .venv/bin/python -m pytest tests/test_notebooks.py     # default mode

The kernel inherits this process's environment, so ``LABCORE_CACHE`` (embedding / K-means / UMAP cache) applies;
the notebooks must pass with an empty cache: ``LABCORE_CACHE=$(mktemp -d) ...``.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import jupytext
import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))
FAST = os.environ.get("LABCORE_FAST", "1").strip().lower() not in ("0", "false", "no", "")
BUDGET_S = 300 if FAST else 1200  # per notebook (targets: 2 min fast, 10 min default on 2 cores; margin for load)


def test_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    assert names == ["00_tour.py", "01_coreset.py", "02_reward_models.py", "03_raft.py", "04_rrhf.py",
                     "05_compare_chat.py"]
    assert (NB_DIR / "jupytext.toml").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_sources_parse_round_trip_and_have_no_outputs(path):
    """Each source is a jupytext percent notebook that round-trips exactly, with hidden solution code cells."""
    text = path.read_text(encoding="utf-8")
    nb = jupytext.read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3", path.name
    assert jupytext.writes(nb, fmt="py:percent") == text, f"{path.name} does not round-trip through jupytext"
    for cell in nb.cells:
        assert cell.cell_type in ("markdown", "code"), (path.name, cell.cell_type)
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert solutions, f"{path.name} has no solution cell"
    for cell in solutions:
        assert cell.cell_type == "code" and cell.metadata.get("jupyter", {}).get("source_hidden") is True, path.name


def test_previews_share_the_template_stylesheet(tmp_path):
    """The HTML previews link nbconvert's head styles from one shared file instead of repeating them; the styles of
    cell outputs stay in the page."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", NB_DIR / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    page = ('<html><head><meta charset="utf-8"/><style type="text/css">a{color:red}</style>\n<script src="x.js">'
            '</script><style>b{color:blue}</style></head><body><style>.df{x:1}</style><p>hi</p></body></html>')
    out = run_all.link_head_css(page, tmp_path)
    (css,) = tmp_path.glob("nbconvert-*.css")
    assert css.read_text() == "a{color:red}\nb{color:blue}"
    assert out.count("<style") == 1 and "<style>.df{x:1}</style>" in out.split("</head>")[1]
    assert f'<link href="{css.name}" rel="stylesheet"/>' in out and out.index(css.name) < out.index("x.js")
    assert run_all.link_head_css(page, tmp_path) == out and len(list(tmp_path.iterdir())) == 1  # shared, once
    assert run_all.link_head_css(page.replace("red", "green"), tmp_path) != out  # another template: its own file
    assert len(list(tmp_path.iterdir())) == 2
    for html in sorted((NB_DIR.parent / "docs" / "notebooks").glob("*.html")):  # the committed previews do
        head = html.read_text(encoding="utf-8").split("</head>")[0]
        (name,) = re.findall(r'href="(nbconvert-[0-9a-f]+\.css)"', head)
        assert "<style" not in head and (html.parent / name).is_file(), html.name


def test_every_notebook_has_goals_exercises_solutions_and_scale_up():
    for path in NOTEBOOKS:
        nb = jupytext.read(path)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert "Learning goals" in text and "## Exercises" in text and "## Scale up" in text, path.name
        hidden = [c for c in nb.cells if c.metadata.get("jupyter", {}).get("source_hidden")]
        assert hidden and all(c.cell_type == "code" for c in hidden), path.name
        assert "fast_mode()" in "".join(c.source for c in nb.cells), path.name


@pytest.mark.slow
@pytest.mark.timeout(BUDGET_S + 60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("LABCORE_FAST", "1" if FAST else "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(nb, timeout=BUDGET_S, kernel_name="python3", allow_errors=False,
                                     resources={"metadata": {"path": str(NB_DIR)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and traceback) on any error
    seconds = time.perf_counter() - t0
    print(f"{path.name}: {seconds:.0f} s ({'fast' if FAST else 'default'} mode)")
    assert seconds < BUDGET_S
