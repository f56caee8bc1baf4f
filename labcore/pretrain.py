"""Tokenizer and tiny GPT-2 base model of the offline "tiny world" (the stand-in for GPT-2 and its pretraining data).

Not an algorithm from the alignment papers: this module builds the *starting point* they assume. RRHF (arXiv
2304.05302, Table 10) and RAFT (arXiv 2304.06767) both start from GPT-2 pretrained on web text; labcore starts from a
GPT-2-architecture model (Radford et al. 2019) small enough to pretrain on two CPU cores in under half an hour, on the
tiny world's dialogue transcripts (HH format) and movie reviews. The objective is the plain causal LM loss

    L(θ) = −(1/T) Σ_t log p_θ(x_t | x_<t)                      (next-token cross-entropy, GPT-2 §2)

over fixed-length blocks of the concatenated corpus, each text followed by ``<|endoftext|>`` (GPT-2 convention),
optimised with AdamW, linear warm-up then cosine decay of the learning rate (as nanoGPT's ``train.py``).

Deliberate deviations from GPT-2:
  * byte-level BPE with 8 192 tokens trained on the tiny world (GPT-2: 50 257 on WebText);
  * ``"\\n\\nHuman:"`` and ``"\\n\\nAssistant:"`` are single (non-special) added tokens, so that turn markers are
    compact, a prompt ending in ``"\\n\\nAssistant:"`` is a token prefix of prompt + response, and the end of a turn
    is one token id;
  * a context of 256 positions and a few million parameters (GPT-2 small: 1 024 and 124 M).

``evaluate_base`` measures what the datasheet (``data/README.md``) promises about the base model: held-out
perplexity, how often sampled replies end their turn, that the replies are a *mix* of styles (the base model must not
already be aligned) and that review continuations carry mixed sentiment.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from labcore.generation import generate
from labcore.formats import TURN_MARKERS, format_chat
from labcore import DATA_DIR, fast_mode
from labcore.utils import resolve_device, set_seed

EOS_TOKEN = "<|endoftext|>"
DEFAULT_OUT = DATA_DIR / "models" / "tiny-base"
CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "pretrain_log.jsonl"


# --------------------------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------------------------
def train_tokenizer(
    texts: Sequence[str],
    vocab_size: int = 8192,
    min_frequency: int = 2,
    model_max_length: int = 256,
    save_dir: str | Path | None = None,
):
    """Train a GPT-2-style byte-level BPE tokenizer on ``texts``.

    ``<|endoftext|>`` is bos, eos, unk and pad (GPT-2 has no pad token; pad = eos is the usual convention, and the
    attention mask keeps padding out of the loss). The turn markers ``"\\n\\nHuman:"`` and ``"\\n\\nAssistant:"`` are
    added tokens (not special: ``skip_special_tokens`` keeps them), one id each.

    Args:
        texts: training corpus.
        vocab_size: largest vocabulary size, including ``<|endoftext|>`` and the two turn markers (merging stops
            earlier when no pair occurs ``min_frequency`` times: the tiny world needs only ~3.7 k tokens).
        min_frequency: a pair must occur this often to be merged.
        model_max_length: stored in ``tokenizer_config.json`` (the model's context length).
        save_dir: if given, ``save_pretrained`` there (tokenizer.json, tokenizer_config.json, special_tokens_map).
    Returns:
        A ``transformers.PreTrainedTokenizerFast``; ``AutoTokenizer.from_pretrained(save_dir)`` loads it offline.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    n_reserved = 1 + len(TURN_MARKERS)
    if vocab_size <= 256 + n_reserved:
        raise ValueError(f"vocab_size must exceed the 256 byte symbols + {n_reserved} reserved tokens, got {vocab_size}")
    tok = Tokenizer(models.BPE())  # no unk: the byte-level alphabet covers every input
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TURN_MARKERS),  # the markers are appended below
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    # Markers are matched before pre-tokenisation, so "\n\nHuman:" is always exactly one token.
    tok.add_tokens([AddedToken(m, normalized=False, special=False) for m in TURN_MARKERS])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    if save_dir is not None:
        save_tokenizer(hf, save_dir)
    return hf


def save_tokenizer(tokenizer, save_dir: str | Path) -> None:
    """``save_pretrained`` plus the files older transformers (4.x) expect.

    transformers 5 names the class ``TokenizersBackend`` and writes no ``special_tokens_map.json``; 4.x knows neither.
    ``PreTrainedTokenizerFast`` loads in both.
    """
    save_dir = Path(save_dir)
    tokenizer.save_pretrained(str(save_dir))
    cfg_path = save_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    special = {k: EOS_TOKEN for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (save_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------------
MAX_PARAMS = 10_000_000


def gpt2_num_params(vocab_size: int, n_positions: int, n_embd: int, n_layer: int) -> int:
    """Parameter count of ``GPT2LMHeadModel`` with tied input/output embeddings.

    Per block: 2 LayerNorms (4E) + qkv (3E² + 3E) + attention proj (E² + E) + MLP (4E² + 4E + 4E² + E) = 12E² + 13E;
    plus token (V·E) and position (P·E) embeddings and the final LayerNorm (2E).
    """
    E = n_embd
    return vocab_size * E + n_positions * E + n_layer * (12 * E * E + 13 * E) + 2 * E


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run. Defaults: the shipped ``data/models/tiny-base``."""

    vocab_size: int = 8192
    """Largest BPE vocabulary (the tiny world stops at ~3.7 k); the parameter cap is checked with this bound."""
    n_layer: int = 4
    """Transformer blocks."""
    n_embd: int = 192
    """Hidden size E."""
    n_head: int = 3
    """Attention heads (must divide n_embd; 3 gives GPT-2's head size of 64)."""
    n_positions: int = 256
    """Context length of the model (learned position embeddings)."""
    seq_len: int = 256
    """Tokens per training block (≤ n_positions); the corpus is packed into blocks of this length."""
    dropout: float = 0.0
    """Residual/embedding/attention dropout (0: the corpus is seen about once, no need to regularise)."""
    batch_size: int = 16
    """Blocks per optimiser step."""
    lr: float = 2e-3
    """Peak learning rate (small models tolerate large ones)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of ``lr`` at the end of the cosine decay."""
    warmup_steps: int = 20
    """Linear warm-up steps from 0 to ``lr``."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay (on matrices only, not biases/LayerNorms)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (GPT-3 / nanoGPT values)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0: off)."""
    max_steps: int = 200
    """Optimiser steps (the cosine schedule spans exactly these); 200 x 16 x 256 = 0.8 M tokens, ~2 epochs."""
    max_minutes: float = 30.0
    """Wall-clock budget of one invocation; when exceeded, stop after the current step, save and keep the checkpoint."""
    seed: int = 0
    """Seed for initialisation, data order and dropout."""
    eval_every: int = 50
    """Held-out perplexity every N steps (0: only at the end)."""
    eval_blocks: int = 64
    """Held-out blocks used for the periodic and final perplexity (0: all)."""
    checkpoint_every: int = 50
    """Save model, optimiser, scheduler, RNG states, step and data order every N steps (0: never)."""
    keep_checkpoint: bool = False
    """Keep ``out_dir/checkpoint`` after a completed run (it is ~3x the model size; always kept when stopped early)."""
    log_every: int = 10
    """Append a training record to pretrain_log.jsonl every N steps."""
    num_threads: int = 0
    """torch CPU threads (0: one per available core)."""
    device: str = "auto"
    """'auto' (cuda > mps > cpu), 'cpu', 'cuda', ..."""

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "n_positions", "seq_len", "batch_size", "max_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head={self.n_head} must divide n_embd={self.n_embd}")
        if self.seq_len > self.n_positions:
            raise ValueError(f"seq_len={self.seq_len} exceeds the context n_positions={self.n_positions}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"need lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, {self.min_lr_ratio}")
        for name in ("warmup_steps", "eval_every", "eval_blocks", "checkpoint_every", "log_every", "num_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be < max_steps={self.max_steps}")
        if self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.n_params > MAX_PARAMS:
            raise ValueError(f"{self.n_params:,} parameters exceed the tiny-world cap of {MAX_PARAMS:,}")

    @property
    def n_params(self) -> int:
        """Parameters of the model this config builds (tied embeddings)."""
        return gpt2_num_params(self.vocab_size, self.n_positions, self.n_embd, self.n_layer)

    @classmethod
    def fast(cls, **overrides) -> "PretrainConfig":
        """Tiny sizes for CI / ``LABCORE_FAST=1``: seconds, not minutes."""
        base = dict(vocab_size=512, n_layer=2, n_embd=64, n_head=2, n_positions=64, seq_len=64, batch_size=8,
                    lr=3e-3, warmup_steps=5, max_steps=60, eval_every=20, eval_blocks=16, checkpoint_every=20,
                    log_every=5, max_minutes=5.0)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def default(cls, **overrides) -> "PretrainConfig":
        """The default run, or :meth:`fast` when ``labcore.utils.fast_mode()``."""
        return cls.fast(**overrides) if fast_mode() else cls(**overrides)


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------
def pack_blocks(tokenizer, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """Tokenise every text, append ``<|endoftext|>``, concatenate and cut into blocks (the tail is dropped).

    Args:
        tokenizer: a Hugging Face tokenizer with ``eos_token_id``.
        texts: documents.
        seq_len: block length T.
    Returns:
        (N, T) int64 tensor of token ids.
    """
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for chunk in range(0, len(texts), 2048):
        for row in tokenizer(list(texts[chunk:chunk + 2048]), add_special_tokens=False, verbose=False)["input_ids"]:
            ids.extend(row)
            ids.append(eos)
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"corpus of {len(ids)} tokens is shorter than one block of {seq_len}")
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)  # (N, T)


def _load_texts(split: str, seed: int) -> list[str]:
    from labcore.tinyworld import pretraining_texts  # the data generators (labcore/tinyworld)

    return list(pretraining_texts(split, seed=seed))


def lr_lambda(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr: linear warm-up over ``warmup_steps``, then cosine from 1 to ``min_lr_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------------
def _num_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def build_model(config: PretrainConfig, tokenizer):
    """A freshly initialised ``GPT2LMHeadModel`` sized by ``config`` (vocabulary from ``tokenizer``)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    eos = tokenizer.eos_token_id
    gcfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(gcfg)


def _make_optimizer(model, config: PretrainConfig) -> torch.optim.AdamW:
    # Weight decay on matrices only; biases and LayerNorm gains are not decayed (nanoGPT's configure_optimizers).
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


@torch.no_grad()
def block_perplexity(model, blocks: torch.Tensor, batch_size: int = 16, max_blocks: int = 0) -> float:
    """exp of the mean next-token NLL over held-out blocks (every block has the same T−1 predicted tokens).

    Args:
        model: causal LM.
        blocks: (N, T) token ids.
        batch_size: blocks per forward pass.
        max_blocks: use only the first N' blocks (0: all).
    Returns:
        perplexity exp(L) with L the mean of −log p(x_t | x_<t) over all predicted positions.
    """
    was_training = model.training
    model.eval()
    if max_blocks:
        blocks = blocks[:max_blocks]
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = blocks[i:i + batch_size].to(device)  # (b, T)
        loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss  # mean over b·(T−1) positions
        total += loss.item() * x.numel() - loss.item() * x.shape[0]  # × b·(T−1)
        count += x.numel() - x.shape[0]
    model.train(was_training)
    return math.exp(total / count)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_final(model, tokenizer, out_dir: Path) -> None:
    from transformers import GenerationConfig

    eos = tokenizer.eos_token_id
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(str(out_dir))


def _save_checkpoint(ckpt: Path, model, tokenizer, optimizer, scheduler, state: dict) -> None:
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    save_tokenizer(tokenizer, tmp)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                **state}, tmp / "trainer_state.pt")
    if ckpt.exists():
        shutil.rmtree(ckpt)
    tmp.rename(ckpt)  # a crash mid-save never leaves a half-written checkpoint behind


def pretrain(
    config: PretrainConfig,
    out_dir: str | Path = DEFAULT_OUT,
    resume: bool = False,
    train_texts: Sequence[str] | None = None,
    test_texts: Sequence[str] | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict:
    """Train the tokenizer (first run only) and a GPT-2 LM on the tiny world; save a standard HF directory.

    Args:
        config: sizes, optimiser, schedule, budget (see :class:`PretrainConfig`).
        out_dir: output directory: config.json, model.safetensors, tokenizer files, generation_config.json,
            pretrain_log.jsonl, pretrain_summary.json and (while unfinished) checkpoint/.
        resume: continue from ``out_dir/checkpoint`` (same tokenizer, weights, optimiser, schedule, RNG, data order).
            Architecture and data settings are taken from the checkpoint; the passed config supplies the budget.
        train_texts, test_texts: corpora (default: ``labcore.tinyworld.pretraining_texts("train"/"test")``).
        stop_after: stop after this global step as if interrupted (saves a checkpoint; resume continues).
        progress: show a tqdm bar.
    Returns:
        summary dict (steps, tokens, wall-clock seconds, final train loss, held-out perplexity, stop reason, ...).
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, GPT2LMHeadModel

    t_start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT_DIR
    torch.set_num_threads(config.num_threads or _num_cores())
    device = resolve_device(config.device)
    budget_config = config
    state: dict | None = None
    if resume:
        if not (ckpt / "trainer_state.pt").exists():
            raise FileNotFoundError(f"no checkpoint to resume from in {ckpt}")
        # Our own file (optimiser tensors + numpy RNG tuples): not loadable with weights_only=True.
        state = torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=False)
        saved = dict(state["config"])
        # Budget-like fields come from the caller; everything that shapes the model or the data from the checkpoint.
        for name in ("max_minutes", "eval_every", "checkpoint_every", "keep_checkpoint", "log_every", "num_threads",
                     "device"):
            saved[name] = getattr(budget_config, name)
        config = PretrainConfig(**saved)
    set_seed(config.seed)

    if train_texts is None:
        train_texts = _load_texts("train", config.seed)
    if test_texts is None:
        test_texts = _load_texts("test", config.seed)
    if resume:
        tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    else:
        tokenizer = train_tokenizer(train_texts, vocab_size=config.vocab_size, model_max_length=config.n_positions)
    train_blocks = pack_blocks(tokenizer, train_texts, config.seq_len)  # (N, T)
    test_blocks = pack_blocks(tokenizer, test_texts, config.seq_len)  # (N', T)

    if resume:
        model = GPT2LMHeadModel.from_pretrained(str(ckpt))
    else:
        model = build_model(config, tokenizer)
    model.to(device).train()
    optimizer = _make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, config.warmup_steps, config.max_steps, config.min_lr_ratio))
    data_gen = torch.Generator().manual_seed(config.seed)
    n_blocks = len(train_blocks)
    if state is None:
        step, epoch, cursor, elapsed_before = 0, 0, 0, 0.0
        order = torch.randperm(n_blocks, generator=data_gen)
        with open(out_dir / LOG_FILE, "w") as f:  # a fresh run starts a fresh log
            f.write(json.dumps({"event": "start", "config": dataclasses.asdict(config), "n_params": model.num_parameters(),
                                "train_blocks": n_blocks, "test_blocks": len(test_blocks),
                                "train_tokens": train_blocks.numel()}) + "\n")
    else:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, cursor = state["step"], state["epoch"], state["cursor"]
        order, elapsed_before = state["order"], state["elapsed"]
        data_gen.set_state(state["data_gen"])
        _set_rng_state(state["rng"])
        with open(out_dir / LOG_FILE, "a") as f:
            f.write(json.dumps({"event": "resume", "step": step}) + "\n")

    def log(record: dict) -> None:
        with open(out_dir / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    def trainer_state() -> dict:
        return {"config": dataclasses.asdict(config), "step": step, "epoch": epoch, "cursor": cursor, "order": order,
                "data_gen": data_gen.get_state(), "elapsed": elapsed_before + time.time() - t_start}

    tokens_per_step = config.batch_size * config.seq_len
    stop_reason = "max_steps"
    loss_value = float("nan")
    bar = tqdm(total=config.max_steps, initial=step, desc="pretrain", disable=not progress, dynamic_ncols=True)
    t_loop, step_loop = time.time(), step
    while step < config.max_steps:
        if stop_after is not None and step >= stop_after:
            stop_reason = "stop_after"
            break
        # Next batch without replacement; a new permutation each epoch (its state is checkpointed).
        idx = []
        while len(idx) < config.batch_size:
            take = order[cursor:cursor + config.batch_size - len(idx)]
            idx.extend(take.tolist())
            cursor += len(take)
            if cursor >= n_blocks:
                epoch, cursor = epoch + 1, 0
                order = torch.randperm(n_blocks, generator=data_gen)
        x = train_blocks[idx].to(device)  # (B, T)
        loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss  # mean −log p(x_t | x_<t), the model shifts labels itself
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss_value = loss.item()
        tok_per_s = (step - step_loop) * tokens_per_step / max(1e-9, time.time() - t_loop)  # this invocation's mean
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tok_per_s:.0f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if config.log_every and step % config.log_every == 0:
            log({"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0], "tokens_per_s": tok_per_s,
                 "epoch": epoch, "elapsed_s": elapsed_before + time.time() - t_start})
        if config.eval_every and step % config.eval_every == 0 and step < config.max_steps:
            ppl = block_perplexity(model, test_blocks, config.batch_size, config.eval_blocks)
            log({"step": step, "eval_ppl": ppl})
            bar.write(f"step {step}: held-out perplexity {ppl:.2f}")
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
            _save_checkpoint(ckpt, model, tokenizer, optimizer, scheduler, trainer_state())
        if time.time() - t_start > config.max_minutes * 60 and step < config.max_steps:
            stop_reason = "budget"  # checked after the step, so every invocation makes progress
            bar.write(f"wall-clock budget of {config.max_minutes} min spent at step {step}: saving")
            break
    bar.close()

    finished = step >= config.max_steps
    if not finished or config.keep_checkpoint:  # interrupted (budget / stop_after): keep a checkpoint to resume
        _save_checkpoint(ckpt, model, tokenizer, optimizer, scheduler, trainer_state())
    elif ckpt.exists():
        shutil.rmtree(ckpt)
    ppl = block_perplexity(model, test_blocks, config.batch_size, config.eval_blocks)
    _save_final(model.cpu(), tokenizer, out_dir)
    summary = {"event": "end", "stop_reason": stop_reason, "finished": finished, "step": step,
               "max_steps": config.max_steps, "tokens_seen": step * tokens_per_step, "train_loss": loss_value,
               "eval_ppl": ppl, "eval_blocks": min(len(test_blocks), config.eval_blocks or len(test_blocks)),
               "n_params": model.num_parameters(), "train_blocks": n_blocks, "epochs": epoch + cursor / n_blocks,
               "wall_clock_s": elapsed_before + time.time() - t_start, "threads": torch.get_num_threads(),
               "device": str(device), "config": dataclasses.asdict(config)}
    log(summary)
    (out_dir / "pretrain_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[pretrain] {stop_reason}: step {step}/{config.max_steps}, loss {loss_value:.3f}, held-out ppl {ppl:.2f}, "
          f"{summary['wall_clock_s'] / 60:.1f} min -> {out_dir}", file=sys.stderr)
    return summary


# --------------------------------------------------------------------------------------------------------------------
# Evaluation of the base model (the numbers of the datasheet)
# --------------------------------------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z][a-z']*", text.lower())


def nearest_style(reply: str, references: dict[str, str]) -> str:
    """The style whose reference reply shares most words with ``reply`` (unigram F1, as ROUGE-1).

    Args:
        reply: a sampled reply.
        references: {style: reference reply to the same request}.
    Returns:
        the style name with the highest F1 (ties: the first in ``references`` order); "empty" for a reply without
        words, "unmatched" when it shares no word with any reference (a tie at 0 must not count as the first style).
    """
    from collections import Counter

    r = Counter(_words(reply))
    if not r:
        return "empty"
    best, best_f1 = next(iter(references)), -1.0
    for style, ref in references.items():
        g = Counter(_words(ref))
        overlap = sum((r & g).values())
        f1 = 0.0 if overlap == 0 else 2 * overlap / (sum(r.values()) + sum(g.values()))
        if f1 > best_f1:
            best, best_f1 = style, f1
    return best if best_f1 > 0 else "unmatched"


def _gold_scorer() -> Callable | None:
    try:
        from labcore.tinyworld.gold import gold_score
    except Exception:  # the rubric is optional for this report
        return None
    return gold_score


def _dialogue_report(model, tokenizer, rows: list[dict], n: int, rng: random.Random, gen_kwargs: dict) -> dict:
    rows = rng.sample(rows, min(n, len(rows)))
    prompts = [format_chat(r["request"]) for r in rows]
    samples = generate(model, tokenizer, prompts, **gen_kwargs)  # cut at EOS or a new turn, by token position
    replies = [s["response"].strip() for s in samples]
    ended = [s["finished"] for s in samples]
    styles = [nearest_style(rep, r["responses"]) for rep, r in zip(replies, rows)]
    counts = {s: styles.count(s) / len(styles) for s in sorted(set(styles))}
    report = {"n": len(rows), "turn_end_rate": float(np.mean(ended)), "style_mix": counts,
              "mean_reply_words": float(np.mean([len(rep.split()) for rep in replies])),
              "examples": [{"request": r["request"], "reply": rep, "ended": e, "style": s}
                           for r, rep, e, s in list(zip(rows, replies, ended, styles))[:4]]}
    gold = _gold_scorer()
    if gold is not None:
        scores = np.array(gold(prompts, list(replies)), dtype=float)
        # Headroom: the rubric's score of the best reference style (responses are stored best first).
        best = np.array(gold(prompts, [next(iter(r["responses"].values())) for r in rows]), dtype=float)
        report.update(gold_mean=float(scores.mean()), gold_std=float(scores.std()),
                      gold_best_reference_mean=float(best.mean()))
    return report


def evaluate_base(
    model_dir: str | Path = DEFAULT_OUT,
    n: int = 200,
    n_reviews: int = 100,
    max_new_tokens: int = 64,
    review_new_tokens: int = 48,
    temperature: float = 1.0,
    top_p: float = 0.9,
    batch_size: int = 50,
    ppl_blocks: int = 200,
    seed: int = 0,
    data_dir: str | Path = DATA_DIR,
    out_json: str | Path | None = None,
    device: str = "auto",
) -> dict:
    """Measure the base model the way the datasheet states it.

    * held-out perplexity on ``pretraining_texts("test")`` (blocks of the model's context length);
    * turn ending: fraction of sampled replies (temperature ``temperature``, top-p ``top_p``, no top-k) to test
      requests and to the paraphrase set that end their turn (``<|endoftext|>`` or a new ``"\\n\\nHuman:"``) within
      ``max_new_tokens`` new tokens; target ≥ 0.95 on both;
    * style mix: each reply is assigned the style of the request's reference reply it overlaps most (unigram F1);
      a base model should show a mix, not one aligned style; plus the gold rubric's mean/std when available;
    * reviews: continuations of the ~30-character openings of test reviews (RAFT's IMDB prompts), VADER compound of the continuation (mean, std,
      share positive > 0.05 / negative < −0.05) and a few examples.

    Args:
        model_dir: HF directory of the model and tokenizer.
        n: requests sampled from each of the test split and the paraphrase set.
        n_reviews: review openings.
        max_new_tokens: new-token cap for replies (the turn must end within it).
        review_new_tokens: new tokens for review continuations.
        temperature, top_p: sampling settings.
        batch_size: prompts per ``generate`` call.
        ppl_blocks: held-out blocks for perplexity (0: all).
        seed: sampling seed.
        data_dir: where ``dialogues/`` and ``reviews.jsonl.gz`` live.
        out_json: where to write the report (default ``model_dir/eval_base.json``).
        device: 'auto', 'cpu', 'cuda', ...
    Returns:
        the report dict (also printed as a table and written as JSON).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from labcore.tinyworld.reviews import opening_prompt

    t0 = time.time()
    torch.set_num_threads(_num_cores())
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    dev = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).to(dev).eval()
    set_seed(seed)
    rng = random.Random(seed)
    half = model.config.n_positions // 2  # tiny fast-mode contexts: leave room for the prompt
    max_new_tokens, review_new_tokens = min(max_new_tokens, half), min(review_new_tokens, half)
    gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, batch_size=batch_size)

    test_blocks = pack_blocks(tokenizer, _load_texts("test", 0), model.config.n_positions)
    report: dict = {"model_dir": str(model_dir), "n_params": model.num_parameters(),
                    "sampling": {"temperature": temperature, "top_p": top_p, "top_k": None,
                                 "max_new_tokens": max_new_tokens, "seed": seed},
                    "heldout_ppl": block_perplexity(model, test_blocks, 16, ppl_blocks),
                    "heldout_blocks": min(len(test_blocks), ppl_blocks or len(test_blocks))}
    from labcore.tinyworld import load_paraphrases, load_requests, load_reviews

    requests = load_requests("test", data_dir)
    paraphrases = load_paraphrases(data_dir)
    report["test_requests"] = _dialogue_report(model, tokenizer, requests, n, rng, gen)
    report["paraphrases"] = _dialogue_report(model, tokenizer, paraphrases, n, rng, gen)

    reviews = load_reviews("test", data_dir)
    reviews = rng.sample(reviews, min(n_reviews, len(reviews)))
    openings = [opening_prompt(r["text"]) for r in reviews]
    conts = [s["response"] for s in generate(model, tokenizer, openings, max_new_tokens=review_new_tokens,
                                             temperature=temperature, top_p=top_p, batch_size=batch_size,
                                             stop_at_turn=False)]
    vader = SentimentIntensityAnalyzer()
    compound = np.array([vader.polarity_scores(c)["compound"] for c in conts])
    report["reviews"] = {"n": len(reviews), "vader_mean": float(compound.mean()), "vader_std": float(compound.std()),
                         "share_positive": float((compound > 0.05).mean()),
                         "share_negative": float((compound < -0.05).mean()),
                         "examples": [{"opening": o, "continuation": c.strip(), "vader": float(v)}
                                      for o, c, v in list(zip(openings, conts, compound))[:4]]}
    report["seconds"] = time.time() - t0
    out_json = Path(out_json) if out_json is not None else model_dir / "eval_base.json"
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    return report


def format_report(report: dict) -> str:
    """A plain-text table of an :func:`evaluate_base` report."""
    lines = [f"base model {report['model_dir']} ({report['n_params']:,} parameters)",
             f"sampling: temperature {report['sampling']['temperature']}, top-p {report['sampling']['top_p']}, "
             f"no top-k, max {report['sampling']['max_new_tokens']} new tokens",
             f"{'metric':<34}{'test requests':>16}{'paraphrases':>16}",
             f"{'held-out perplexity':<34}{report['heldout_ppl']:>16.2f}{'':>16}"]
    t, p = report["test_requests"], report["paraphrases"]
    lines.append(f"{'turn ends within the cap':<34}{t['turn_end_rate']:>16.1%}{p['turn_end_rate']:>16.1%}")
    lines.append(f"{'mean reply words':<34}{t['mean_reply_words']:>16.1f}{p['mean_reply_words']:>16.1f}")
    if "gold_mean" in t:
        lines.append(f"{'gold rubric mean ± std':<34}{t['gold_mean']:>9.2f} ± {t['gold_std']:<4.2f}"
                     f"{p['gold_mean']:>9.2f} ± {p['gold_std']:<4.2f}")
        lines.append(f"{'gold of the best reference style':<34}{t['gold_best_reference_mean']:>16.2f}"
                     f"{p['gold_best_reference_mean']:>16.2f}")
    for s in sorted(set(t["style_mix"]) | set(p["style_mix"])):
        lines.append(f"{'style: ' + s:<34}{t['style_mix'].get(s, 0.0):>16.1%}{p['style_mix'].get(s, 0.0):>16.1%}")
    r = report["reviews"]
    lines.append(f"reviews (n={r['n']}): VADER compound of continuations mean {r['vader_mean']:+.3f} "
                 f"std {r['vader_std']:.3f}, positive {r['share_positive']:.0%}, negative {r['share_negative']:.0%}")
    for ex in r["examples"]:
        lines.append(f"  [{ex['vader']:+.2f}] {ex['opening']} | {ex['continuation'][:100]!r}")
    for ex in t["examples"][:3]:
        lines.append(f"  [{ex['style']}{'' if ex['ended'] else ', no end'}] {ex['request'][:50]!r} -> "
                     f"{ex['reply'][:100]!r}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Command line (wired as `labcore pretrain` / `labcore eval-base`; also `python -m labcore.pretrain`)
# --------------------------------------------------------------------------------------------------------------------
def add_pretrain_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``labcore pretrain``."""
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default: data/models/tiny-base)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget; stops cleanly and saves")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: PretrainConfig.max_steps)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_pretrain(args: argparse.Namespace) -> dict:
    """Build the config from parsed ``add_pretrain_args`` options (fast sizes under LABCORE_FAST=1) and train."""
    overrides = {}
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    if args.steps is not None:
        overrides["max_steps"] = args.steps
        overrides["warmup_steps"] = min(PretrainConfig.default().warmup_steps, max(0, args.steps - 1))
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    return pretrain(PretrainConfig.default(**overrides), args.out, resume=args.resume, progress=not args.no_progress)


def add_eval_base_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``labcore eval-base``."""
    parser.add_argument("--model", default=str(DEFAULT_OUT), help="model directory (default: data/models/tiny-base)")
    parser.add_argument("--n", type=int, default=None, help="requests per set (default 200; 20 in fast mode)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--json", default=None, help="report path (default: MODEL/eval_base.json)")
    return parser


def run_eval_base(args: argparse.Namespace) -> dict:
    """Run :func:`evaluate_base` from parsed ``add_eval_base_args`` options."""
    n = args.n if args.n is not None else (20 if fast_mode() else 200)
    return evaluate_base(args.model, n=n, n_reviews=max(10, n // 2), seed=args.seed, out_json=args.json)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m labcore.pretrain {pretrain,eval-base} ...``"""
    parser = argparse.ArgumentParser(prog="python -m labcore.pretrain", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_pretrain_args(sub.add_parser("pretrain", help="train the tokenizer and the tiny base model"))
    add_eval_base_args(sub.add_parser("eval-base", help="evaluate the base model (datasheet numbers)"))
    args = parser.parse_args(argv)
    (run_pretrain if args.command == "pretrain" else run_eval_base)(args)


if __name__ == "__main__":
    main()
