"""Votes on the two chat panes become preference data: one TRL preference record per vote in ``OUT/votes.jsonl``.

Side-by-side arenas (FastChat's Chatbot Arena, Open WebUI) collect such votes for a leaderboard; here they are the
``prompt`` / ``chosen`` / ``rejected`` pairs that the lab's own methods train on: ``labcore train-rm --train
OUT/votes.jsonl`` (the Bradley-Terry reward model) and ``labcore rrhf --data OUT/votes.jsonl`` (each vote a query
with two ranked responses). ``labcore.datasets.load_preferences`` reads the file.

A record::

    {"prompt": "<the dialogue up to the voted answer, in the model's prompt format>",
     "chosen": "<the better answer>", "rejected": "<the other>",
     "choice": "left" | "right" | "tie" | "both bad",
     "chosen_policy": "base" | ADAPTER, "rejected_policy": ..., "model": BASE MODEL, "adapter": ADAPTER,
     "message": "<the user's last message>", "sampling": {"temperature", "top_p", "max_new_tokens"} or null,
     "left_messages": [...], "right_messages": [...], "timestamp": "2025-...Z"}

``tie`` and ``both bad`` are kept (chosen = left, rejected = right, as placeholders) so no judgement is lost;
``load_preferences`` skips them and says how many. The two panes keep separate dialogues, so after the first turn
their earlier answers differ: the shared ``prompt`` is then the last message alone, and both full dialogues are in
``left_messages`` / ``right_messages``. Each record is ONE ``write`` to a file opened for appending, then
``fsync``: a crash can lose at most the vote being written, never an earlier one.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

CHOICES = ("left", "right", "tie", "both bad")
"""Values of the vote (the /vote endpoint's last argument)."""

LABELS = {"left": "left is better", "right": "right is better", "tie": "tie", "both bad": "both bad"}
"""What the buttons say."""

BASE = "base"
"""Name of the unaligned pane's policy (the base model, adapter off) in a record."""


def last_exchange(history: list[dict]) -> tuple[list[tuple[str, str]], str, str] | None:
    """(earlier (user, assistant) pairs, last user message, its answer) of a messages history; None without an answer."""
    from labcore.app.chat import history_pairs

    pairs = history_pairs(history)
    if not pairs or not pairs[-1][1].strip():
        return None
    return pairs[:-1], pairs[-1][0], pairs[-1][1]


def vote_record(choice: str, left: list[dict], right: list[dict], *, fmt: Any, model: str, adapter: str,
                sampling: dict | None = None) -> dict:
    """The preference record of one vote (see the module docstring).

    Args:
        choice: one of :data:`CHOICES`.
        left: the unaligned pane's messages ({"role", "content": str}).
        right: the aligned pane's messages.
        fmt: the model's prompt format (``labcore.formats.prompt_format``): the ``prompt`` is written with it.
        model: the base model's name.
        adapter: the aligned pane's adapter.
        sampling: the answer's sampling settings (None if unknown).
    Raises:
        ValueError: an unknown choice, a pane without an answer, or panes answering different messages.
    """
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")
    lx, rx = last_exchange(left), last_exchange(right)
    if lx is None or rx is None:
        raise ValueError("nothing to vote on yet: both panes need an answer")
    (l_before, l_msg, l_answer), (r_before, r_msg, r_answer) = lx, rx
    if l_msg != r_msg:
        raise ValueError("the two panes answer different messages; send a message, then vote")
    context = l_before if l_before == r_before else []  # separate dialogues: share only what both panes saw
    prompt = fmt.prompt(context + [l_msg]) if context else fmt.prompt(l_msg)
    better_right = choice == "right"
    l_answer, r_answer = fmt.response(l_answer), fmt.response(r_answer)  # as a response follows its prompt in training
    chosen, rejected = (r_answer, l_answer) if better_right else (l_answer, r_answer)
    policies = (adapter, BASE) if better_right else (BASE, adapter)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "choice": choice,
            "chosen_policy": policies[0], "rejected_policy": policies[1], "model": model, "adapter": adapter,
            "message": l_msg, "sampling": sampling, "left_messages": left, "right_messages": right,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class VoteLog:
    """``votes.jsonl``: append-only, one fsync-ed write per record, safe across the app's threads.

    Args:
        path: the file (its folder is created).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a write cut by a crash: start the next record on its own line
                    self._write(b"\n")

    def _write(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, record: dict) -> int:
        """Append ``record`` as one JSON line; returns the number of records in the file now."""
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self._write(line)
            return self.count()

    def count(self) -> int:
        """Records in the file (its non-empty lines)."""
        if not self.path.is_file():
            return 0
        with open(self.path, "rb") as f:
            return sum(1 for line in f if line.strip())
