"""Batched sampling, streaming chat and per-token log-probabilities of responses."""
from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log pi(label_t | context) for every position, without a full-vocabulary log-softmax tensor.

    log_softmax(z)[y] = z[y] - logsumexp(z): gather one logit per position and subtract the log-partition.
    Only (B, T) floats are kept for the backward pass besides the logits themselves, where
    ``logits.log_softmax(-1).gather(...)`` would keep a second (B, T, V) tensor.

    Args:
        logits: (B, T, V) next-token logits, already aligned with ``labels`` (logits[:, t] predicts labels[:, t]).
        labels: (B, T) token ids; any value is allowed at masked positions as long as it is a valid id.
    Returns:
        (B, T) float32 log-probabilities.
    """
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1).float()  # (B, T)
    return picked - torch.logsumexp(logits.float(), dim=-1)  # (B, T)
