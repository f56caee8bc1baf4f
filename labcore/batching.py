"""Continuous batching: rows of several requests join and leave ONE batch between decoding steps (the app's chat).

Orca (Yu et al., OSDI 2022) calls it iteration-level scheduling; vLLM and TGI serve LLMs this way. Here it is kept
small and readable on Hugging Face's ``DynamicCache``: a joining request is prefilled in its own forward pass and its
cache concatenated to the running one along the batch axis (left-padded to one width, the padding masked); a leaving
row's cache rows are dropped. Every row carries explicit position ids, its own sampling settings, seeded generator
and (with a peft model) adapter, so a row's tokens do not depend on its neighbours.
``labcore.generation.stream_batch`` is this decoder with every row joining at once; ``labcore.app.worker`` drives it
for the app; ``tests/test_batch_decoder.py`` checks greedy parity with ``stream_generate`` on GPT-2, GPT-NeoX and
Llama.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

import torch

from labcore.formats import cut_turn, prompt_format
from labcore.generation import (StreamState, _truncate_left, cache_kwarg, max_positions, sample_token,
                                turn_marker_ids)


@dataclass
class DecodeRow:
    """One response decoded by a :class:`BatchDecoder`: its prompt and sampling settings, then its progress.

    Args:
        prompt_ids: the prompt's token ids (cut from the left to leave ``max_new_tokens`` of the context).
        adapter: the row's peft adapter name (``"__base__"``: adapter off); None with a model without adapters.
        max_new_tokens: longest response in tokens.
        temperature, top_k, top_p: sampling settings of this row (temperature 0 = greedy).
        seed: seed of the row's own generator (None: random).
        tag: anything the caller wants back with the row (the app: its job and pane).
    """
    prompt_ids: list[int]
    adapter: str | None = None
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    tag: object = None
    state: StreamState = field(default_factory=StreamState)
    """Text so far, ``finished`` (ended its turn), ``num_tokens``."""
    done: bool = False
    """Left the batch: ended its turn, reached ``max_new_tokens``, or was removed."""
    new: list[int] = field(default_factory=list)
    """Response token ids so far."""
    _gen: torch.Generator | None = None
    _next: int = 0  # the token fed at the next step
    _pos: int = 0  # its position id


class BatchDecoder:
    """Continuous batching: rows join and leave ONE left-padded KV cache between decoding steps.

    ``add`` prefills new rows in one forward pass of their own (left-padded among themselves), samples their first
    token and merges their cache into the running one (the narrower of the two is padded on the left, masked);
    ``step`` runs one forward pass over every row, each row fed its last token at its own position id; a row that
    ends its turn, reaches its token limit or is ``remove``-d leaves the cache at once, and columns that only padding
    still uses are cut from the left. Rows are independent: each has its own sampling settings, seeded generator and
    (with a peft model) adapter, peft's mixed-adapter batches (``adapter_names``) giving each row its own. Greedy, a
    row's tokens are those :func:`stream_generate` gives it alone, whatever joins or leaves around it (up to float
    rounding: padding is masked and positions are explicit). Only ``DynamicCache`` layers (GPT-2, Llama) are merged.

    Args:
        model: a causal LM (a peft model for rows with adapters).
        tokenizer: its tokenizer.
        stop_at_turn: end a row at the chat template's end-of-turn token, or at a new HH speaker tag.
        lock: taken around every forward pass (the app's model lock).
    """

    def __init__(self, model, tokenizer, *, stop_at_turn: bool = True, lock=None):
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.context = max_positions(model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = {tokenizer.eos_token_id, *((turn_marker_ids(tokenizer) or []) if stop_at_turn else [])}
        self.cut_tags = stop_at_turn and not prompt_format(tokenizer).template  # HH tags (a template's end is a token)
        self.arg, self.attr = cache_kwarg(model)
        self.lock = lock if lock is not None else threading.Lock()
        self.rows: list[DecodeRow] = []
        """Rows in the batch, in cache order."""
        self.cache = None
        self.attention: torch.Tensor | None = None  # (B, T): 1 at real tokens, 0 at padding
        self.forward_passes = 0

    def __len__(self) -> int:
        return len(self.rows)

    def _forward(self, input_ids, attention, positions, rows, cache):
        names = [r.adapter for r in rows]
        extra = {"adapter_names": names} if any(n is not None for n in names) else {}
        with self.lock:
            out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                             **({self.arg: cache} if cache is not None else {}), **extra)
        self.forward_passes += 1
        return out.logits[:, -1].float().cpu(), getattr(out, self.attr)  # (B, V), the cache

    @torch.no_grad()
    def add(self, rows: Sequence[DecodeRow]) -> None:
        """Prefill ``rows`` (one forward pass), sample their first tokens and merge them into the batch."""
        rows = list(rows)
        if not rows:
            return
        ids = []
        for r in rows:
            keep = self.context - r.max_new_tokens if self.context else 0
            x = _truncate_left(list(r.prompt_ids), keep) or [self.tokenizer.eos_token_id]
            ids.append(x)
            r._gen = torch.Generator(device="cpu")
            r._gen.manual_seed(r.seed if r.seed is not None else torch.seed() % 2**63)
            r._pos = len(x)
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(x)) + x for x in ids], device=self.device)  # (b, T)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)  # (b, T)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # (b, T)
        logits, cache = self._forward(input_ids, attention, positions, rows, None)
        for r, lg in zip(rows, logits):
            self._advance(r, lg)
        if self.cache is None:
            self.rows, self.cache, self.attention = rows, cache, attention
        else:  # merge: pad the narrower cache on the left (masked), stack the rows
            T = max(self.attention.shape[1], width)
            for old, add in zip(self.cache.layers, cache.layers):
                _check_layer(old)
                old.keys = torch.cat([_pad_left(old.keys, T, 2), _pad_left(add.keys, T, 2)], dim=0)  # (B, H, T, D)
                old.values = torch.cat([_pad_left(old.values, T, 2), _pad_left(add.values, T, 2)], dim=0)
            self.attention = torch.cat([_pad_left(self.attention, T, 1), _pad_left(attention, T, 1)], dim=0)
            self.rows = self.rows + rows
        self._drop_done()

    @torch.no_grad()
    def step(self) -> None:
        """One forward pass over every row of the batch: each row gets its next token (or leaves)."""
        if not self.rows:
            return
        input_ids = torch.tensor([[r._next] for r in self.rows], device=self.device)  # (B, 1)
        positions = torch.tensor([[r._pos] for r in self.rows], device=self.device)  # (B, 1)
        self.attention = torch.cat([self.attention, self.attention.new_ones(len(self.rows), 1)], dim=1)  # (B, T+1)
        logits, self.cache = self._forward(input_ids, self.attention, positions, self.rows, self.cache)
        for r, lg in zip(self.rows, logits):
            r._pos += 1
            self._advance(r, lg)
        self._drop_done()

    def remove(self, rows: Sequence[DecodeRow]) -> None:
        """Take ``rows`` out of the batch now (a cancelled answer); their state stays as it is."""
        for r in rows:
            r.done = True
        self._drop_done()

    def _advance(self, r: DecodeRow, logits: torch.Tensor) -> None:
        """Sample row ``r``'s next token from its (V,) logits and update its state (as :func:`stream_generate`)."""
        next_id = sample_token(logits, r.temperature, r.top_k, r.top_p, r._gen)
        if next_id in self.stop_ids:
            r.state.finished = r.done = True
            return
        r.new.append(next_id)
        text = self.tokenizer.decode(r.new, skip_special_tokens=True)
        if self.cut_tags:
            text, ended = cut_turn(text)
            r.state.finished = r.done = ended
        r.state.text, r.state.num_tokens = text, len(r.new)
        r._next = next_id
        if len(r.new) >= r.max_new_tokens:
            r.done = True

    def _drop_done(self) -> None:
        keep = [i for i, r in enumerate(self.rows) if not r.done]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.attention = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        attention = self.attention[index]  # (B', T)
        first = int((attention.sum(0) > 0).nonzero()[0])  # columns left of it are padding in every row
        for layer in self.cache.layers:
            _check_layer(layer)
            layer.keys = layer.keys[index, :, first:]  # (B', H, T', D)
            layer.values = layer.values[index, :, first:]
        self.attention = attention[:, first:]
        self.rows = [self.rows[i] for i in keep]


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``t`` with zeros prepended along ``dim`` up to ``width``."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _check_layer(layer) -> None:
    from transformers.cache_utils import DynamicLayer

    if type(layer) is not DynamicLayer:
        raise NotImplementedError(f"BatchDecoder merges DynamicCache layers only, not {type(layer).__name__}")
