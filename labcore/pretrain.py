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

import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from labcore.formats import TURN_MARKERS
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
