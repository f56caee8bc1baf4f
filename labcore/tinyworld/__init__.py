"""The tiny world: a small, download-free stand-in for GPT-2 pretraining text, IMDB, HH-RLHF and a human judge.

Files live in ``data/`` (see ``data/README.md``, the datasheet) and are rebuilt byte-identically by
``python -m labcore.tinyworld.build``. This module loads them:

* :func:`load_requests` - dialogue requests with one response per style (quality order :data:`STYLES_SAFE`,
  :data:`STYLES_UNSAFE`, best first);
* :func:`load_reviews`, :func:`review_prompts` - movie reviews and the ~30-character openings used as prompts of
  the positive-continuation task (RAFT arXiv 2304.06767 / RRHF arXiv 2304.05302 IMDB setting);
* :func:`load_instructions` - the multi-task instruction set for core-set selection (arXiv 2305.09246);
* :func:`pretraining_texts` - the tiny base model's corpus (unaligned on purpose: skewed toward bad styles);
* :func:`labcore.tinyworld.gold.gold_score` - the transparent rubric standing in for human judgement.
"""
from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

from labcore import DATA_DIR
from labcore.datasets import read_jsonl

from labcore.tinyworld.dialogues import STYLES_SAFE, STYLES_UNSAFE, pretraining_dialogues
from labcore.tinyworld.reviews import opening_prompt

__all__ = ["STYLES_SAFE", "STYLES_UNSAFE", "load_requests", "load_paraphrases",
           "load_reviews", "load_instructions", "review_prompts", "pretraining_texts"]


@lru_cache(maxsize=None)
def _cached(rel: str, data_dir: str) -> tuple[dict, ...]:
    return tuple(read_jsonl(Path(data_dir) / rel))


def _load(rel: str, split: str | None, data_dir: str | Path | None) -> list[dict]:
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    recs = _cached(rel, str(data_dir or DATA_DIR))
    # Copies, so callers may mutate them without touching the cache.
    return [json.loads(json.dumps(r)) for r in recs if split is None or r["split"] == split]


def load_requests(split: str | None = "train", data_dir: str | Path | None = None) -> list[dict]:
    """Dialogue requests of a split.

    Args:
        split: "train", "test" or None (both).
        data_dir: data folder (default: the repository's ``data/``).

    Returns:
        list of {"id", "topic", "request", "unsafe", "split", "responses": {style: text}}; the styles of a
        request are :data:`STYLES_UNSAFE` if ``unsafe`` else :data:`STYLES_SAFE`, in that (best-first) order.
    """
    return _load("dialogues/requests.jsonl.gz", split, data_dir)


def load_paraphrases(data_dir: str | Path | None = None) -> list[dict]:
    """Held-out paraphrased requests (same schema as :func:`load_requests`, split "test")."""
    return _load("dialogues/paraphrase_test.jsonl.gz", None, data_dir)


def load_reviews(split: str | None = "train", data_dir: str | Path | None = None) -> list[dict]:
    """Movie reviews of a split: list of {"id", "text", "label" ("pos"|"neg"|"mixed"), "stars" (1-10), "split"}."""
    return _load("reviews.jsonl.gz", split, data_dir)


def load_instructions(split: str | None = None, data_dir: str | Path | None = None) -> list[dict]:
    """Instruction examples: list of {"id", "task", "source", "split", "instruction", "output"}.

    Args:
        split: "train", "test" or None (all).
        data_dir: data folder (default: the repository's ``data/``).
    """
    return _load("instructions.jsonl.gz", split, data_dir)


def review_prompts(split: str = "train", n_chars: int = 30, data_dir: str | Path | None = None) -> list[str]:
    """Prompts of the positive-continuation task: the first ~``n_chars`` characters of every review of the split,
    cut back to a word boundary (duplicates kept, in file order).

    Returns:
        list of prompt strings, one per review.
    """
    return [opening_prompt(r["text"], n_chars) for r in load_reviews(split, data_dir)]


def pretraining_texts(split: str = "train", seed: int = 0, data_dir: str | Path | None = None) -> list[str]:
    """The tiny base model's pretraining corpus, shuffled: dialogue transcripts plus every review of the split.

    Dialogues are "\\n\\nHuman: ...\\n\\nAssistant: ..." (the trainer appends the tokenizer's EOS), three per
    request, with styles drawn from the skewed mixes :data:`labcore.tinyworld.dialogues.PRETRAIN_MIX_SAFE` /
    ``PRETRAIN_MIX_UNSAFE`` (65% of safe answers off-topic/evasive/rude, half of unsafe answers complying), 15%
    of them two-turn. No instruction-set examples are included.

    Args:
        split: "train" (train requests and reviews) or "test" (the held-out ones).
        seed: seed of the style draws and the shuffle.
        data_dir: data folder (default: the repository's ``data/``).

    Returns:
        list of texts.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"pretrain-{seed}-{split}")
    texts = pretraining_dialogues(rng, load_requests(split, data_dir))
    texts += [r["text"] for r in load_reviews(split, data_dir)]
    rng.shuffle(texts)
    return texts
