"""labcore: a hands-on teaching lab for efficient LLM alignment (RRHF, RAFT, core-set selection).

This file is the ground floor: repository paths and fast mode, importable without torch (the app and the data
loaders start from here). The layers above it are described in ``docs/architecture.md``.
"""
from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository (the folder that holds ``labcore/`` and ``data/``)."""
DATA_DIR = REPO_ROOT / "data"
"""The tiny world: datasets, tokenizer, base model, reward model and shipped adapters (``data/README.md``)."""


def fast_mode() -> bool:
    """True when ``LABCORE_FAST=1``: tiny sizes and few steps everywhere (CI, notebooks in class)."""
    return os.environ.get("LABCORE_FAST", "0").strip().lower() not in ("", "0", "false", "no")


def cache_root() -> Path:
    """Root of labcore's on-disk caches (embeddings, K-means, converted models): ``$LABCORE_CACHE`` if set, else
    ``~/.cache/labcore``."""
    env = os.environ.get("LABCORE_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "labcore"
