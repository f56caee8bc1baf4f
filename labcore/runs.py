"""Run plumbing, written once for every method: the run folder's metrics log, the atomic checkpoint swap, the final
policy, the metrics plot, markdown result tables and the doc-marker rewrite.

A run folder holds ``metrics.jsonl`` (one row per evaluation, appended; cut back to the checkpoint on resume),
``checkpoint/`` (written to ``checkpoint.tmp`` and swapped in, so a kill never leaves half a checkpoint), ``final/``
(the trained policy as a Hugging Face / peft directory, with a copy of the metrics) and ``metrics.html``.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Callable, Sequence

from labcore.datasets import append_jsonl, read_jsonl, write_jsonl


class MetricsLog:
    """``metrics.jsonl`` of a run: append a row per evaluation; on resume keep only the rows a checkpoint knew."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, row: dict) -> None:
        append_jsonl(self.path, row)

    def rows(self) -> list[dict]:
        return read_jsonl(self.path) if self.path.exists() else []

    def keep(self, predicate: Callable[[int, dict], bool]) -> list[dict]:
        """Rewrite the log with the rows ``predicate(index, row)`` keeps (e.g. those before a checkpoint)."""
        rows = [r for i, r in enumerate(self.rows()) if predicate(i, r)]
        write_jsonl(self.path, rows)
        return rows

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def swap_in_checkpoint(run_dir: str | Path, save: Callable[[Path], None], name: str = "checkpoint") -> Path:
    """Write a checkpoint with ``save(tmp_dir)`` into ``name.tmp``, then replace ``name`` by it (atomic enough: a
    kill leaves either the old checkpoint or the new one, never half of one)."""
    run_dir = Path(run_dir)
    tmp, final = run_dir / f"{name}.tmp", run_dir / name
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def save_final(policy, tokenizer, final_dir: str | Path, base_model: str, metrics: str | Path | None = None) -> Path:
    """Save the trained policy (adapter or full model, with the tokenizer) and a copy of the run's metrics.

    An adapter's ``base_model_name_or_path`` is rewritten to the name the user gave (``"tiny"``), not this
    machine's absolute path, so the folder can be shipped. An adapter on a model preset is saved without a copy of
    the tokenizer (``load_model(preset, adapter=...)`` takes the preset's own; SmolLM2's would add 3.5 MB).
    """
    from labcore.models import PRESETS, has_adapter, save_policy

    final = save_policy(policy, None if has_adapter(policy) and base_model in PRESETS else tokenizer, final_dir)
    adapter_cfg = final / "adapter_config.json"
    if adapter_cfg.exists():
        meta = json.loads(adapter_cfg.read_text())
        meta["base_model_name_or_path"] = base_model
        adapter_cfg.write_text(json.dumps(meta, indent=2))
    if metrics is not None and Path(metrics).exists():
        shutil.copy(metrics, final / "metrics.jsonl")
    return final


def mean_finite(values) -> float | None:
    """Mean of the finite values (None when there are none): -inf marks discarded samples."""
    values = [float(v) for v in values if math.isfinite(float(v))]
    return sum(values) / len(values) if values else None


# ----------------------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------------------
def plot_metrics(rows: Sequence[dict], panels: Sequence[tuple[str, Sequence[str]]], title: str,
                 x: Sequence | None = None, x_title: str = "iteration"):
    """A plotly figure with one panel per ``(title, [metric keys])`` of the metrics rows (a key absent from every
    row is left out; a panel left empty is dropped)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = list(x) if x is not None else [r.get("iteration") for r in rows]
    panels = [(t, [k for k in keys if any(r.get(k) is not None for r in rows)]) for t, keys in panels]
    panels = [(t, keys) for t, keys in panels if keys]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    for col, (_, keys) in enumerate(panels, start=1):
        for key in keys:
            fig.add_trace(go.Scatter(x=x, y=[r.get(key) for r in rows], mode="lines+markers", name=key),
                          row=1, col=col)
        fig.update_xaxes(title_text=x_title, row=1, col=col)
    fig.update_layout(title=title, height=380, width=310 * len(panels))
    return fig


def write_plot(fig, path: str | Path) -> Path:
    """Write a figure as a standalone HTML page (plotly.js from its CDN)."""
    path = Path(path)
    fig.write_html(path, include_plotlyjs="cdn")
    return path


def fmt(value, digits: int = 3) -> str:
    """A table cell: ``–`` for a missing value, else the number with ``digits`` decimals."""
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table from a header and rows of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rewrite_between_markers(doc: str | Path, name: str, text: str) -> Path:
    """Replace what stands between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in a markdown file."""
    doc = Path(doc)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    content = doc.read_text(encoding="utf-8")
    if begin not in content or end not in content:
        raise ValueError(f"{doc} has no {begin} ... {end} block")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{tail}", encoding="utf-8")
    return doc


__all__ = ["MetricsLog", "swap_in_checkpoint", "save_final", "mean_finite", "plot_metrics", "write_plot", "fmt",
           "markdown_table", "rewrite_between_markers"]
