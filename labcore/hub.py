"""The one Hugging Face Hub check of labcore: offline first, and a Hub-only path fails at once, never hangs.

Importable without torch (datasets and the app use it).
"""
from __future__ import annotations

import os
import socket

OFFLINE_HINT = ("The Hugging Face Hub cannot be reached from here. Use the offline preset 'tiny' (--model tiny; "
                "--set model=tiny for raft, rrhf and coreset-experiment), or a local Hugging Face directory.")


class HubUnavailableError(RuntimeError):
    """A Hub-only model or dataset was asked for while the Hub cannot be reached."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when huggingface.co answers on port 443 within ``timeout`` seconds (False at once under HF_HUB_OFFLINE)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False
