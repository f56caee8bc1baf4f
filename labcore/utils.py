"""Small torch helpers: device and dtype resolution, seeding. (Paths and fast mode: :mod:`labcore`.)"""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` once: cuda, then mps, then cpu. Any other value is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """``"auto"``: bf16 on a CUDA device that supports it, fp32 elsewhere (CPU bf16 matmuls are slow)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    device = resolve_device(device)
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of 'auto', {', '.join(map(repr, names))}")
    return names[dtype]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A deterministic 31-bit seed from integers (seed, iteration, chunk, ...): independent streams per position."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


@contextlib.contextmanager
def torch_threads(n: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads and restore the old number after (a no-op for 0/None, or off the
    CPU)."""
    old = torch.get_num_threads()
    if not n or resolve_device(device).type != "cpu" or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
