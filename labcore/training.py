"""The shared training step on Hugging Face ``accelerate``: the loop knows nothing about the algorithm.

RAFT, RRHF and the instruction-tuning experiment hand a ``loss_fn(model, batch) -> (loss, logs)`` to
:class:`Learner`, which owns the optimiser, gradient accumulation, mixed precision (bf16 on a GPU that supports it,
none on the CPU), gradient clipping, LoRA or full fine-tuning, and checkpoints. Because it is plain ``accelerate``,
the same script scales out with ``accelerate launch --num_processes N script.py``: gradients are averaged across
processes (DDP; gloo on CPUs, NCCL on GPUs), so every process ends a step with identical weights.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed as accelerate_set_seed

from labcore.config import Lora, Optim, Runtime
from labcore.utils import resolve_device, resolve_dtype

LossFn = Callable[[torch.nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]


def mixed_precision(runtime: Runtime) -> str:
    """accelerate's ``mixed_precision`` for a Runtime dtype: auto (bf16 on a CUDA GPU that supports it), bf16, fp16,
    or no (fp32)."""
    return {"auto": "auto", "bf16": "bf16", "fp16": "fp16", "fp32": "no"}[runtime.dtype]


def _lr_lambda(optim: Optim, warmup_steps: int, total_steps: int | None) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if optim.scheduler == "cosine":
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return f


class Learner:
    """Owns optimiser, accelerator and checkpoints for one model; ``step(batch, loss_fn)`` is one micro-batch.

    Only parameters with ``requires_grad`` train, so a peft LoRA model trains its adapter and a plain model trains
    fully. Call :meth:`step` once per micro-batch; the optimiser steps every ``grad_accum`` micro-batches.
    ``accelerate`` keeps its gradient-accumulation state per process, so train with one Learner at a time.
    """

    def __init__(self, model: torch.nn.Module, optim: Optim | None = None, *, total_steps: int | None = None,
                 mixed_precision: str = "auto", cpu: bool = False, seed: int | None = None):
        """
        Args:
            model: the policy; its parameters with ``requires_grad`` train.
            optim: optimiser settings (``labcore.config.Optim``; ``epochs`` and ``batch_size`` are the caller's).
            total_steps: optimiser steps of the run (needed by the cosine schedule and the warm-up ratio).
            mixed_precision: 'auto' (bf16 on a CUDA GPU that supports it, else none), 'no', 'bf16' or 'fp16'.
            cpu: force the CPU even when a GPU is present.
            seed: seeds accelerate (Python, NumPy, torch) once.
        """
        self.config = optim = optim or Optim()
        if optim.scheduler == "cosine" and not total_steps:
            raise ValueError("scheduler='cosine' needs total_steps")
        if mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be auto/no/bf16/fp16, got {mixed_precision!r}")
        mp = mixed_precision
        if mp == "auto":
            mp = "bf16" if (torch.cuda.is_available() and not cpu and
                            resolve_dtype("auto", "cuda") == torch.bfloat16) else "no"
        # accelerate detects a multi-process CPU run (gloo) only when told it is on the CPU
        cpu = cpu or resolve_device("auto").type == "cpu"
        self.accelerator = Accelerator(gradient_accumulation_steps=optim.grad_accum, mixed_precision=mp, cpu=cpu)
        if seed is not None:
            accelerate_set_seed(seed)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas)
        warmup = optim.warmup_steps(total_steps) if total_steps else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(optim, warmup, total_steps))
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.optimizer_steps = 0
        self.micro_steps = 0
        # checkpoints keep the trainable weights only: a LoRA run saves its adapter (MBs), not the frozen base model
        self.partial = len(params) < sum(1 for _ in model.parameters())
        if self.partial:
            self.accelerator.register_save_state_pre_hook(_keep_trainable)

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
                     "optim": asdict(self.config), **(extra or {})}
            (path / "labcore_state.json").write_text(json.dumps(state, indent=1))
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self, path: str | Path) -> dict:
        """Restore what :meth:`save_checkpoint` wrote; returns its ``extra`` state."""
        path = Path(path)
        if self.partial:  # the checkpoint holds the trainable weights; the frozen ones are the base model's own
            from safetensors import safe_open

            with safe_open(str(path / "model.safetensors"), "pt") as f:
                saved = set(f.keys())
            missing = {n for n, p in self.model.named_parameters() if p.requires_grad} - saved
            if missing:
                raise ValueError(f"checkpoint {path} lacks {len(missing)} trainable weights, e.g. {sorted(missing)[0]}")
            self.accelerator.load_state(str(path), strict=False)
        else:
            self.accelerator.load_state(str(path))
        state = json.loads((path / "labcore_state.json").read_text())
        self.optimizer_steps, self.micro_steps = state["optimizer_steps"], state["micro_steps"]
        return state


def _keep_trainable(models: list, weights: list, output_dir: str) -> None:
    """accelerate save-state hook: drop frozen weights from each model's state dict before it is written."""
    for i, (model, state) in enumerate(zip(models, weights)):
        keep = {name for name, p in model.named_parameters() if p.requires_grad}
        weights[i] = {k: v for k, v in state.items() if k in keep}


def build_policy(model: str, lora: Lora, runtime: Runtime, start_from: str | Path | None = None):
    """Load the policy to train: fp32 weights (the Learner's autocast does bf16 on a GPU), a fresh LoRA adapter or
    every weight trainable.

    Args:
        model: preset or directory of the base model.
        lora: LoRA settings (``lora.use`` False: full fine-tuning).
        runtime: the device.
        start_from: a previous round's policy to continue (its adapter directory with LoRA, else its model directory).
    Returns:
        (model with trainable parameters, tokenizer).
    """
    from labcore.models import add_lora, load_model

    if start_from is not None and not lora.use:
        policy, tok = load_model(str(start_from), device=runtime.device, dtype="float32")
    elif start_from is not None:
        policy, tok = load_model(model, adapter=str(start_from), trainable_adapter=True, device=runtime.device,
                                 dtype="float32")
    else:
        policy, tok = load_model(model, device=runtime.device, dtype="float32")
        if lora.use:
            targets = list(lora.target_modules) if lora.target_modules else None
            policy = add_lora(policy, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, target_modules=targets)
    if not lora.use:
        for p in policy.parameters():
            p.requires_grad_(True)
    return policy, tok
