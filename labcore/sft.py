"""Supervised fine-tuning (SFT) on (prompt, response) pairs: the inner step of RAFT and two baselines.

Used by RAFT (Dong et al. 2023, arXiv 2304.06767, step 5 of the loop: "fine-tune on the selected samples"), by the
"SFT on the best response" baseline of the RRHF comparison (Yuan et al. 2023, arXiv 2304.05302, Eq. 4 alone) and by
the instruction-tuning experiment of core-set selection (Chen et al. 2023, arXiv 2305.09246).

The loss is the mean negative log-likelihood of the response tokens y given the prompt x,

    L_SFT = - (1 / sum_i |y_i|) * sum_i sum_t log pi(y_{i,t} | x_i, y_{i,<t})

token-weighted over the batch (every response token counts once, so long and short responses are not re-weighted).
An EOS token is appended to every response (``add_eos=True``) so the model learns to end its turn.

Deliberate deviation: ``response_only=True`` is the default. The RAFT reference (LMFlow) trains on the whole text
``prompt + response`` (``response_only=False`` reproduces it: every token after the first is a target); masking the
prompt is the usual choice for instruction tuning and keeps the model from re-learning the prompt distribution.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from labcore.generation import encode_pairs, forward_response_logprobs, max_positions


def sft_batch(tokenizer, prompts: Sequence[str], responses: Sequence[str], *, max_length: int | None = None,
              add_eos: bool | Sequence[bool] = True) -> dict:
    """Tokenise a micro-batch for :func:`response_nll` (prompt cut from the left to fit ``max_length``).

    Returns:
        ``{"seqs": token id lists (prompt + response [+ EOS]), "n_resp": response tokens of each,
        "pad_id": padding id}``.
    """
    seqs, n_resp = encode_pairs(tokenizer, prompts, responses, max_length, add_eos)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {"seqs": seqs, "n_resp": n_resp, "pad_id": pad_id}


def response_nll(model, batch: dict, response_only: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean NLL over the target tokens of a micro-batch made by :func:`sft_batch` (with gradients).

    Args:
        model: a causal LM (plain or peft).
        batch: ``{"seqs", "n_resp", "pad_id"}``.
        response_only: targets are the response tokens only (default); False: every token after the first of
            ``prompt + response`` (the RAFT reference's plain language-modelling loss).
    Returns:
        (scalar loss, ``{"tokens": number of target tokens}``).
    """
    seqs, pad_id = batch["seqs"], batch["pad_id"]
    # the first token has no context, so "the whole text" means every token after it
    n_target = list(batch["n_resp"]) if response_only else [len(s) - 1 for s in seqs]
    keep = [i for i, n in enumerate(n_target) if n > 0]
    if not keep:
        raise ValueError("the micro-batch has no target tokens")
    logp, mask = forward_response_logprobs(model, [seqs[i] for i in keep], [n_target[i] for i in keep], pad_id)
    n_tokens = mask.sum()
    loss = -(logp * mask).sum() / n_tokens  # L_SFT: token-weighted mean NLL over the batch
    return loss, {"tokens": float(n_tokens)}


def sft_epochs(learner, tokenizer, pairs: Sequence[tuple[str, str]], *, epochs: int = 1, batch_size: int = 8,
               seed: int = 0, max_length: int | None = None, add_eos: bool | Sequence[bool] = True,
               response_only: bool = True, progress: bool = True) -> list[dict[str, float]]:
    """Train ``learner`` for ``epochs`` passes over ``pairs`` in a shuffled, seeded order.

    Each epoch draws a fresh permutation from ``random.Random(seed)`` (so epochs differ and a rerun with the same
    seed visits the same micro-batches). Torch's RNG (dropout) is seeded with ``seed`` too, so the pass is
    reproducible on its own, whatever ran before.

    Args:
        learner: a :class:`labcore.training.Learner` (owns optimiser, accumulation, clipping).
        tokenizer: the policy's tokenizer.
        pairs: (prompt, response) pairs; responses keep their leading space (prompt + response = the text).
        epochs: passes over the data.
        batch_size: pairs per micro-batch (the Learner accumulates ``grad_accum`` of them per optimiser step).
        seed: seed of the order and of dropout.
        max_length: token budget per pair (default: the model's context); prompts are cut from the left.
        add_eos: append the end token (EOS, or the chat template's end-of-turn token) to each response; or one flag
            per pair (RAFT: only to samples that ended before the token limit).
        response_only: see :func:`response_nll`.
        progress: show a progress bar.
    Returns:
        the Learner's log dict of every micro-batch (``loss``, ``tokens``, ``epoch``, and ``lr``/``grad_norm`` on
        optimiser steps).
    """
    from tqdm.auto import tqdm

    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    pairs = list(pairs)
    if not pairs:
        return []
    eos = [bool(add_eos)] * len(pairs) if isinstance(add_eos, bool) else [bool(e) for e in add_eos]
    if len(eos) != len(pairs):
        raise ValueError(f"{len(eos)} add_eos flags for {len(pairs)} pairs")
    max_length = max_length or max_positions(learner.unwrapped())
    rng = random.Random(seed)
    torch.manual_seed(seed)
    logs: list[dict[str, float]] = []
    n_batches = -(-len(pairs) // batch_size)
    bar = tqdm(total=epochs * n_batches, desc="sft", disable=not progress, leave=False)
    for epoch in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = sft_batch(tokenizer, [pairs[i][0] for i in idx], [pairs[i][1] for i in idx],
                              max_length=max_length, add_eos=[eos[i] for i in idx])
            log = learner.step(batch, lambda model, b: response_nll(model, b, response_only=response_only))
            logs.append({**log, "epoch": epoch})
            bar.update(1)
            bar.set_postfix(loss=f"{log['loss']:.3f}")
    bar.close()
    return logs


__all__ = ["sft_batch", "response_nll", "sft_epochs"]
