"""Read and validate the data formats alignment people use.

Formats (one JSON object per line in ``.jsonl`` / ``.jsonl.gz``, or a JSON list in ``.json``):

=================  ====================================================  ==================================
format             fields                                                 origin
=================  ====================================================  ==================================
``hh``             ``chosen``, ``rejected``: full transcripts              Anthropic HH-RLHF
``preference``     ``prompt``, ``chosen``, ``rejected``                    TRL preference (explicit prompt);
                                                                          the app's ``votes.jsonl`` too
``rrhf``           ``query``, ``responses`` [str], ``scores`` [float]      RRHF reference code
``prompt``         ``prompt``                                              TRL prompt-only
``completion``     ``prompt``, ``completion``                              TRL prompt-completion
=================  ====================================================  ==================================

Structural errors (invalid JSON, a missing or non-string field, a transcript with no Assistant turn, a
responses/scores length mismatch, a NaN score) raise :class:`DataFormatError` naming the file, the line and the field.
Well-formed records that cannot be used for training (an empty response; chosen and rejected transcripts whose prompts
differ) are skipped and counted, and one warning per file reports each reason's count: never dropped silently.

Responses keep their leading whitespace exactly as in the file (HH responses start with a space after
``"Assistant:"``): the tokens of a response are the tokens of its text, the same in training and in sampling.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from labcore.formats import ASSISTANT, HUMAN, split_transcript
from labcore.hub import OFFLINE_HINT, HubUnavailableError, hub_reachable


class DataFormatError(ValueError):
    """A malformed record; the message names the file, the line number and the field."""

    def __init__(self, path: str | Path, line: int, field_name: str | None, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field_name, problem
        where = f"{path}, line {line}" + (f", field {field_name!r}" if field_name else "")
        super().__init__(f"{where}: {problem}")


@dataclass
class LoadReport:
    """How many records a loader kept and why it skipped the others."""
    path: str
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def warn(self) -> None:
        if self.skipped:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            warnings.warn(f"{self.path}: kept {self.kept} records, skipped {sum(self.skipped.values())} ({reasons})",
                          stacklevel=3)


def _resolve(path: str | Path) -> Path:
    """A local file, or ``hf://datasets/OWNER/NAME/FILE`` downloaded from the Hub when it is reachable."""
    text = str(path)
    if text.startswith("hf://"):
        parts = text[len("hf://"):].split("/")
        if parts[0] == "datasets":
            parts = parts[1:]
        if len(parts) < 3:
            raise ValueError(f"{text!r}: use hf://datasets/OWNER/NAME/PATH/IN/REPO.jsonl.gz")
        from huggingface_hub import hf_hub_download

        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        try:
            return Path(hf_hub_download(repo, filename, repo_type="dataset", local_files_only=True))
        except Exception:
            if not hub_reachable():
                raise HubUnavailableError(f"{text} is not cached and the Hub cannot be reached. Use a local file; the "
                                          f"tiny world's data lives in data/ (e.g. data/dialogues/hh_train.jsonl.gz). "
                                          + OFFLINE_HINT) from None
            return Path(hf_hub_download(repo, filename, repo_type="dataset"))
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no data file at {str(path)!r}")
    return p


def iter_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` from ``.jsonl``, ``.jsonl.gz`` or ``.json`` (a list of objects).

    Raises:
        DataFormatError: invalid JSON, or a line that is not a JSON object (naming file and line).
    """
    p = _resolve(path)
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataFormatError(p, e.lineno, None, f"invalid JSON ({e.msg})") from None
        if not isinstance(data, list):
            raise DataFormatError(p, 1, None, "a .json file must hold a list of objects")
        for i, rec in enumerate(data, start=1):
            if not isinstance(rec, dict):
                raise DataFormatError(p, i, None, f"item {i} is not a JSON object")
            yield i, rec
        return
    raw = gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")
    with io.TextIOWrapper(raw, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(p, lineno, None, f"invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(rec, dict):
                raise DataFormatError(p, lineno, None, "not a JSON object")
            yield lineno, rec


def write_jsonl(path: str | Path, records: list[dict] | Iterator[dict]) -> Path:
    """Write records as JSON lines (gzip when the name ends in .gz); creates parent folders."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "wt", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return p


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one record to a JSON-lines log (e.g. ``metrics.jsonl``), creating the file if needed."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a JSON-lines file (``.jsonl`` / ``.jsonl.gz`` / ``.json``), validated as in :func:`iter_records`."""
    return [rec for _, rec in iter_records(path)]


def _str_field(path, line, rec, name) -> str:
    if name not in rec:
        raise DataFormatError(path, line, name, "missing field")
    if not isinstance(rec[name], str):
        raise DataFormatError(path, line, name, f"expected a string, got {type(rec[name]).__name__}")
    return rec[name]


def detect_format(rec: dict) -> str:
    """Name the format of one record (see the module table)."""
    keys = set(rec)
    if {"query", "responses", "scores"} <= keys:
        return "rrhf"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "preference"
    if {"chosen", "rejected"} <= keys:
        return "hh"
    if {"prompt", "completion"} <= keys:
        return "completion"
    if "prompt" in keys:
        return "prompt"
    raise ValueError(f"unknown record format with fields {sorted(keys)}")


UNDECIDED_VOTES = ("tie", "both bad")
"""Votes of the app (``choice`` field of ``votes.jsonl``) that prefer neither answer: kept in the file, skipped here."""


def read_preferences(path: str | Path) -> tuple[list[dict], LoadReport]:
    """Preference pairs from an HH-RLHF or TRL preference file, or the app's ``votes.jsonl``.

    A vote record (``labcore.app.votes``) is a TRL record with a ``choice``; "tie" and "both bad" prefer neither
    answer and are skipped (counted in the report).

    Returns:
        (records with ``prompt``, ``chosen``, ``rejected`` — the two final responses — and the load report).
    """
    report = LoadReport(str(path))
    out: list[dict] = []
    for line, rec in iter_records(path):
        if rec.get("choice") in UNDECIDED_VOTES:
            report.skipped[f"'{rec['choice']}' votes"] += 1
            continue
        if "prompt" in rec:  # TRL preference, explicit prompt
            prompt = _str_field(path, line, rec, "prompt")
            chosen = _str_field(path, line, rec, "chosen")
            rejected = _str_field(path, line, rec, "rejected")
        else:  # HH transcripts: shared prompt up to the last Assistant turn
            pc, chosen = _split_field(path, line, rec, "chosen")
            pr, rejected = _split_field(path, line, rec, "rejected")
            if pc != pr:
                report.skipped["chosen and rejected prompts differ"] += 1
                continue
            prompt = pc
        if not chosen.strip() or not rejected.strip():
            report.skipped["empty response"] += 1
            continue
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    report.kept = len(out)
    return out, report


def _split_field(path, line, rec, name) -> tuple[str, str]:
    text = _str_field(path, line, rec, name)
    try:
        return split_transcript(text)
    except ValueError as e:
        raise DataFormatError(path, line, name, str(e)) from None


def load_preferences(path: str | Path) -> list[dict]:
    """``prompt``/``chosen``/``rejected`` dicts from HH-RLHF or TRL files or the app's votes; warns once with the
    skip counts (empty responses, mismatched HH prompts, tie / both-bad votes)."""
    records, report = read_preferences(path)
    report.warn()
    return records


def preferences_to_rrhf(records: list[dict]) -> list[dict]:
    """Preference pairs as RRHF records: the prompt is the query, its two responses ranked by scores 1 (chosen) and
    0 (rejected) — RRHF's ranking loss (Yuan et al. 2023, arXiv 2304.05302, Eq. 2) with k = 2 is then a hinge on the
    pair, and L_ft fine-tunes on the chosen answer."""
    return [{"query": r["prompt"], "responses": [r["chosen"], r["rejected"]], "scores": [1.0, 0.0]} for r in records]


def load_rrhf(path: str | Path) -> list[dict]:
    """RRHF records ``{"query", "responses", "scores"}``, validated (lengths match, scores finite numbers).

    Responses that are empty are dropped from their record (with their score) and counted in the warning; a record
    left with no response is skipped.
    """
    report = LoadReport(str(path))
    out = []
    for line, rec in iter_records(path):
        query = _str_field(path, line, rec, "query")
        responses, scores = rec.get("responses"), rec.get("scores")
        for name, value in (("responses", responses), ("scores", scores)):
            if value is None:
                raise DataFormatError(path, line, name, "missing field")
            if not isinstance(value, list):
                raise DataFormatError(path, line, name, f"expected a list, got {type(value).__name__}")
        if len(responses) != len(scores):
            raise DataFormatError(path, line, "scores", f"{len(scores)} scores for {len(responses)} responses")
        for j, (r, s) in enumerate(zip(responses, scores)):
            if not isinstance(r, str):
                raise DataFormatError(path, line, f"responses[{j}]", f"expected a string, got {type(r).__name__}")
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
                raise DataFormatError(path, line, f"scores[{j}]", f"expected a finite number, got {s!r}")
        keep = [j for j, r in enumerate(responses) if r.strip()]
        if len(keep) < len(responses):
            report.skipped["empty response"] += len(responses) - len(keep)
        if not keep:
            report.skipped["record with no response"] += 1
            continue
        out.append({"query": query, "responses": [responses[j] for j in keep], "scores": [float(scores[j]) for j in keep]})
    report.kept = len(out)
    report.warn()
    return out


def load_prompts(path: str | Path, field_name: str | None = None) -> list[dict]:
    """Prompt-only or prompt-completion records (any extra fields are kept).

    ``field_name`` reads another string field as the prompt (e.g. ``"request"``); HH / preference files give their
    prompts too.
    """
    out = []
    for line, rec in iter_records(path):
        if field_name:
            out.append({**rec, "prompt": _str_field(path, line, rec, field_name)})
            continue
        if "prompt" in rec:
            _str_field(path, line, rec, "prompt")
            if "completion" in rec:
                _str_field(path, line, rec, "completion")
            out.append(rec)
        elif "chosen" in rec:
            prompt, _ = _split_field(path, line, rec, "chosen")
            out.append({"prompt": prompt})
        elif "query" in rec:
            out.append({**rec, "prompt": _str_field(path, line, rec, "query")})
        else:
            raise DataFormatError(path, line, "prompt", "missing field")
    return out


__all__ = ["DataFormatError", "LoadReport", "iter_records", "write_jsonl", "append_jsonl", "read_jsonl", "split_transcript", "detect_format",
           "read_preferences", "load_preferences", "preferences_to_rrhf", "load_rrhf", "load_prompts", "HUMAN", "ASSISTANT"]
