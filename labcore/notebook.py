"""The set-up every class notebook runs in its first cell, and its closing line.

``setup()`` works offline (``HF_HUB_OFFLINE=1`` unless already set: class machines have no Hugging Face Hub; set it
to 0 to allow the Hub), runs torch on one thread on a small CPU (tiny models on a few shared cores are faster that
way), seeds Python, NumPy and torch, widens pandas' columns, starts the notebook's timer and prints what it chose.
``finish()`` prints how long the notebook took. Sizes come from ``labcore.fast_mode()`` (``LABCORE_FAST=1``).
"""
from __future__ import annotations

import os
import time

_START: float | None = None


def setup(seed: int = 0) -> None:
    """Call first, before anything loads transformers (it reads ``HF_HUB_OFFLINE`` when imported)."""
    global _START
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import pandas as pd
    import torch

    from labcore import fast_mode
    from labcore.utils import resolve_device, set_seed

    if (os.cpu_count() or 1) <= 4:
        torch.set_num_threads(1)
    pd.set_option("display.max_colwidth", 120)
    set_seed(seed)
    _START = time.perf_counter()
    print(f"fast mode: {fast_mode()}   device: {resolve_device('auto')}   torch threads: {torch.get_num_threads()}")


def finish() -> None:
    """The notebook's last line: its wall-clock time since :func:`setup`."""
    from labcore import fast_mode

    seconds = time.perf_counter() - _START if _START is not None else float("nan")
    print(f"notebook ran in {seconds:.0f} s (fast mode: {fast_mode()})")
