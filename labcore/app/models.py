"""One base model in memory, every aligned LoRA adapter attached to it by name, one lock for all model calls.

The aligned policies of the lab are LoRA adapters (RAFT, Dong et al. 2023, arXiv 2304.06767; RRHF, Yuan et al.
2023, arXiv 2304.05302) on the same base model, so the app keeps a single copy of the base weights: the first
adapter wraps the model with ``peft.PeftModel.from_pretrained(..., adapter_name=...)``, the others are added with
``load_adapter(..., adapter_name=...)``; a call picks its policy with ``set_adapter(name)``, or runs the base model
with the adapter disabled (``labcore.models.adapter_disabled``). Every forward pass takes ``ModelHub.lock`` (the
galleries switch the adapter inside it); the chat's generation worker (``labcore.app.worker``) decodes the panes of
every user as rows of one batch whose rows name their adapters (peft's mixed-adapter batches, ``peft_key``).

The model loads lazily (first use, or a background thread started after the server is up), so the app opens fast.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

STANDARD_ADAPTERS: dict[str, tuple[str, ...]] = {
    "tiny": ("raft-sentiment", "raft-helpful", "rrhf-sentiment", "rrhf-helpful"),
    "smollm2-135m": ("smol-raft-sentiment", "smol-raft-arithmetic", "smol-rrhf-sentiment", "smol-rrhf-arithmetic"),
}
"""Adapter folders the app looks for in ``models_dir``, per base model (made by ``labcore raft`` / ``labcore rrhf``;
``data/README.md`` gives the commands)."""

REWARD_MODEL_DIR = "tiny-rm"
"""Folder of the learned reward model in ``models_dir`` (made by ``labcore train-rm``)."""


def is_adapter_dir(path: str | Path) -> bool:
    """True for a saved peft adapter folder (it holds ``adapter_config.json``)."""
    return (Path(path) / "adapter_config.json").is_file()


def discover_adapters(models_dir: str | Path, extra: Sequence[str | Path] = (),
                      model: str = "tiny") -> tuple[dict[str, Path], list[str]]:
    """Find the aligned adapters.

    Args:
        models_dir: folder searched for the ``STANDARD_ADAPTERS`` of ``model`` (e.g. ``data/models``; a model that is
            not a preset there gets the tiny model's names).
        extra: more adapter folders (``--adapter``); each is named after its folder (``runs/raft/final`` ->
            ``raft-final``; a clash gets a numeric suffix).
        model: the app's base model.
    Returns:
        ({name: folder} in a stable order, names of the standard adapters that are missing).
    Raises:
        FileNotFoundError: an ``extra`` folder is not a peft adapter folder.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in STANDARD_ADAPTERS.get(model, STANDARD_ADAPTERS["tiny"]):  # another folder: the tiny lab's names
        path = Path(models_dir) / name
        if is_adapter_dir(path):
            found[name] = path
        else:
            missing.append(name)
    for item in extra:
        path = Path(item).expanduser()
        if not is_adapter_dir(path):
            raise FileNotFoundError(f"--adapter {item}: no adapter_config.json in {path} (not a peft adapter folder)")
        name = path.name if path.name not in ("final", "adapter", "checkpoint") else f"{path.parent.name}-{path.name}"
        base, i = name, 2
        while name in found:
            name, i = f"{base}-{i}", i + 1
        found[name] = path
    return found, missing


def method_of(name: str) -> str:
    """Display name of an adapter's method: "RAFT" for raft-*, "RRHF" for rrhf-*, else the adapter's name."""
    low = name.lower()
    return "RAFT" if low.startswith("raft") else "RRHF" if low.startswith("rrhf") else name


def dir_fingerprint(path: str | Path) -> str:
    """Cheap content fingerprint of a model folder: sha256 over (file name, size, mtime) of its files.

    Retraining rewrites the weights, which changes size or mtime, so cached galleries of an old model are not reused.
    """
    path = Path(path)
    h = hashlib.sha256(str(path.resolve()).encode())
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(json.dumps([str(f.relative_to(path)), st.st_size, st.st_mtime_ns]).encode())
    return h.hexdigest()[:16]


def _peft_name(name: str) -> str:
    """peft adapter names become module-dict keys: keep letters, digits and underscores."""
    return re.sub(r"\W", "_", name)


class ModelHub:
    """The app's single base model with its adapters, loaded on first use.

    Args:
        model: preset or folder of the base model (``labcore.models.load_model``).
        adapters: {name: adapter folder} (``discover_adapters``).
        device: "auto" or a torch device string.
        threads: torch intra-op threads, set when the model loads (None: leave torch's default).
    """

    def __init__(self, model: str, adapters: dict[str, Path], device: str = "auto", threads: int | None = None):
        self.model_name = model
        self.threads = threads
        self.adapter_dirs = dict(adapters)
        self.device = device
        self.lock = threading.Lock()
        """Taken by every forward pass / generate call on the model."""
        self.failed: dict[str, str] = {}
        """Adapters that did not load: {name: reason} (e.g. trained on another base model)."""
        self.load_error: str | None = None
        self._load_lock = threading.Lock()
        self._model = None
        self._tok = None
        self._peft_names: dict[str, str] = {}
        self._thread: threading.Thread | None = None

    # -- loading ---------------------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True once the base model (and its adapters) are in memory."""
        return self._model is not None

    def start_background_load(self) -> threading.Thread:
        """Load in a daemon thread (errors are kept in ``load_error`` and raised again by ``get``)."""
        if self._thread is None:
            def work() -> None:
                try:
                    self.get()
                except Exception:  # noqa: BLE001 - reported by get() on first real use
                    pass
            self._thread = threading.Thread(target=work, name="labcore-model-load", daemon=True)
            self._thread.start()
        return self._thread

    def get(self) -> tuple[Any, Any]:
        """(model, tokenizer), loading them on the first call (thread-safe: one load however many callers).

        Raises:
            RuntimeError: the base model cannot be loaded (the message says why and what to do).
        """
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    try:
                        self._load()
                    except Exception as err:  # noqa: BLE001 - one clear message for the UI
                        self.load_error = f"{type(err).__name__}: {err}"
                        raise RuntimeError(f"could not load the base model {self.model_name!r}: {err}") from err
        return self._model, self._tok

    def _load(self) -> None:
        from labcore.models import load_model

        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        model, tok = load_model(self.model_name, device=self.device)
        for name, path in self.adapter_dirs.items():
            key = _peft_name(name)
            try:
                if not self._peft_names:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, str(path), adapter_name=key)
                else:
                    model.load_adapter(str(path), adapter_name=key)
                self._peft_names[name] = key
            except Exception as err:  # noqa: BLE001 - a bad adapter must not take the app down
                self.failed[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
                if self._peft_names and key in getattr(model, "peft_config", {}):
                    with contextlib.suppress(Exception):
                        model.delete_adapter(key)
        model.to(next(model.parameters()).device).eval()
        self._tok, self._model = tok, model

    # -- what is available -----------------------------------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        """Adapters that can be used: found on disk and (once loaded) loaded without error."""
        return [n for n in self.adapter_dirs if n not in self.failed]

    def peft_key(self, name: str | None) -> str:
        """peft's name of an adapter for mixed-adapter batches (``adapter_names=``); ``"__base__"`` for None."""
        if name is None:
            return "__base__"
        if name not in self._peft_names:
            raise KeyError(f"adapter {name!r} is not loaded; available: {', '.join(self._peft_names) or 'none'}")
        return self._peft_names[name]

    @property
    def has_adapters(self) -> bool:
        """True once the model is a peft model with at least one adapter loaded."""
        return bool(self._peft_names)

    def context_length(self) -> int | None:
        """The model's context in tokens (None if unknown or not loaded yet)."""
        if self._model is None:
            return None
        from labcore.generation import max_positions

        return max_positions(self._model)

    # -- using a policy --------------------------------------------------------------------------------------------
    def _activate(self, name: str) -> None:
        """Make adapter ``name`` the active one (call with the lock held)."""
        if name not in self._peft_names:
            raise KeyError(f"adapter {name!r} is not loaded; available: {', '.join(self._peft_names) or 'none'}")
        key = self._peft_names[name]
        if self._model.active_adapter != key:
            self._model.set_adapter(key, inference_mode=True)

    def step_lock(self, adapter: str | None) -> "_PolicyStep":
        """A context manager for ONE forward pass: takes the lock, then activates ``adapter``.

        Pass it as ``lock=`` to ``labcore.generation.stream_generate`` with ``use_adapter=adapter is not None``
        (with ``adapter=None`` the stream disables the adapter itself), or with ``adapter=None`` to
        ``labcore.generation.stream_batch``, whose rows name their adapters (``peft_key``).
        """
        return _PolicyStep(self, adapter)

    @contextlib.contextmanager
    def using(self, adapter: str | None) -> Iterator[tuple[Any, Any]]:
        """Hold the lock for a whole call (e.g. a batched ``generate``) with ``adapter`` active, or the base model
        (adapter disabled) for ``adapter=None``. Yields (model, tokenizer)."""
        from labcore.models import adapter_disabled

        model, tok = self.get()
        with self.lock:
            if adapter is None:
                with adapter_disabled(model):
                    yield model, tok
            else:
                self._activate(adapter)
                yield model, tok

    def status_markdown(self, missing: Sequence[str] = ()) -> str:
        """One paragraph on what is loaded, missing or broken, for the UI."""
        lines = [f"**Base model:** `{self.model_name}`" + ("" if self.loaded else " (loads on first use)")]
        if self.load_error:
            lines.append(f"**Base model failed to load:** {self.load_error}")
        names = self.adapter_names
        lines.append("**Adapters:** " + (", ".join(f"`{n}` ({method_of(n)})" for n in names) if names else "none"))
        if missing:
            lines.append("**Missing** (train them with `labcore raft` / `labcore rrhf`): "
                         + ", ".join(f"`{m}`" for m in missing))
        for name, why in self.failed.items():
            lines.append(f"**Adapter `{name}` failed to load:** {why}")
        return "  \n".join(lines)


class _PolicyStep:
    """Lock + adapter switch for one decoding step (see ``ModelHub.step_lock``)."""

    def __init__(self, hub: ModelHub, adapter: str | None):
        self.hub, self.adapter = hub, adapter

    def __enter__(self) -> "_PolicyStep":
        self.hub.lock.acquire()
        try:
            if self.adapter is not None:
                self.hub._activate(self.adapter)
        except BaseException:
            self.hub.lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> bool:
        self.hub.lock.release()
        return False
