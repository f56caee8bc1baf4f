"""The shared training step on Hugging Face ``accelerate``: the loop knows nothing about the algorithm.

RAFT, RRHF and the instruction-tuning experiment hand a ``loss_fn(model, batch) -> (loss, logs)`` to
:class:`Learner`, which owns the optimiser, gradient accumulation, mixed precision (bf16 on a GPU that supports it,
none on the CPU), gradient clipping, LoRA or full fine-tuning, and checkpoints. Because it is plain ``accelerate``,
the same script scales out with ``accelerate launch --num_processes N script.py``: gradients are averaged across
processes (DDP; gloo on CPUs, NCCL on GPUs), so every process ends a step with identical weights.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed as accelerate_set_seed

from labcore.utils import resolve_device, resolve_dtype

LossFn = Callable[[torch.nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class OptimConfig:
    """Optimiser settings shared by every trainer."""
    lr: float = 2e-5
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    grad_accum: int = 1
    """Micro-batches per optimiser step (gradient accumulation)."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this value (None: no clipping)."""
    scheduler: str = "constant"
    """Learning-rate schedule: 'constant' or 'cosine' (both after a linear warmup)."""
    warmup_steps: int = 0
    """Optimiser steps of linear warmup."""
    total_steps: int | None = None
    """Optimiser steps in all (needed by 'cosine')."""
    mixed_precision: str = "auto"
    """'auto' (bf16 on a CUDA GPU that supports it, else none), 'no', 'bf16' or 'fp16'."""
    cpu: bool = False
    """Force the CPU even when a GPU is present."""

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.scheduler not in ("constant", "cosine"):
            raise ValueError(f"scheduler must be 'constant' or 'cosine', got {self.scheduler!r}")
        if self.scheduler == "cosine" and not self.total_steps:
            raise ValueError("scheduler='cosine' needs total_steps")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be auto/no/bf16/fp16, got {self.mixed_precision!r}")


def _lr_lambda(cfg: OptimConfig) -> Callable[[int], float]:
    import math

    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "cosine":
            progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return f


class Learner:
    """Owns optimiser, accelerator and checkpoints for one model; ``step(batch, loss_fn)`` is one micro-batch.

    Only parameters with ``requires_grad`` train, so a peft LoRA model trains its adapter and a plain model trains
    fully. Call :meth:`step` once per micro-batch; the optimiser steps every ``grad_accum`` micro-batches.
    ``accelerate`` keeps its gradient-accumulation state per process, so train with one Learner at a time.
    """

    def __init__(self, model: torch.nn.Module, config: OptimConfig | None = None, seed: int | None = None):
        self.config = config or OptimConfig()
        cfg = self.config
        mp = cfg.mixed_precision
        if mp == "auto":
            mp = "bf16" if (torch.cuda.is_available() and not cfg.cpu and
                            resolve_dtype("auto", "cuda") == torch.bfloat16) else "no"
        # accelerate detects a multi-process CPU run (gloo) only when told it is on the CPU
        cpu = cfg.cpu or resolve_device("auto").type == "cpu"
        self.accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=mp, cpu=cpu)
        if seed is not None:
            accelerate_set_seed(seed)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.optimizer_steps = 0
        self.micro_steps = 0

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def step(self, batch: Any, loss_fn: LossFn) -> dict[str, float]:
        """Forward + backward of one micro-batch; an optimiser step when the accumulation window is full.

        Returns:
            the logs of ``loss_fn`` plus ``loss``, and ``grad_norm`` / ``lr`` on optimiser steps.
        """
        self.model.train()
        with self.accelerator.accumulate(self.model):
            with self.accelerator.autocast():
                loss, logs = loss_fn(self.model, batch)
            self.accelerator.backward(loss)
            logs = {"loss": float(loss.detach()), **logs}
            if self.accelerator.sync_gradients:
                if self.config.max_grad_norm is not None:
                    norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
                    logs["grad_norm"] = float(norm)
                logs["lr"] = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.micro_steps += 1
        if self.accelerator.sync_gradients:
            self.optimizer_steps += 1
        return logs

    def unwrapped(self) -> torch.nn.Module:
        """The model without its DDP/accelerate wrapper (to save, generate or score)."""
        return self.accelerator.unwrap_model(self.model)

    def save_checkpoint(self, path: str | Path, extra: dict | None = None) -> None:
        """Model, optimiser, scheduler and RNG states (``accelerate``'s save_state) plus ``extra`` JSON state."""
        path = Path(path)
        self.accelerator.save_state(str(path))
        if self.accelerator.is_main_process:
            state = {"optimizer_steps": self.optimizer_steps, "micro_steps": self.micro_steps,
                     "optim_config": asdict(self.config), **(extra or {})}
            (path / "labcore_state.json").write_text(json.dumps(state, indent=1))
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self, path: str | Path) -> dict:
        """Restore what :meth:`save_checkpoint` wrote; returns its ``extra`` state."""
        path = Path(path)
        self.accelerator.load_state(str(path))
        state = json.loads((path / "labcore_state.json").read_text())
        self.optimizer_steps, self.micro_steps = state["optimizer_steps"], state["micro_steps"]
        return state
