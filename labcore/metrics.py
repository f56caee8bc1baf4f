"""Metrics shared by every experiment: perplexity, distinct-n, mean length, reward summaries."""
from __future__ import annotations

import math
import statistics
from typing import Sequence

import torch

from labcore.generation import response_logprobs


def perplexity(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int = 16,
               add_eos: bool = False) -> float:
    """Perplexity of the responses given their prompts: exp(- sum of token log-probs / number of response tokens).

    Token-weighted over the whole set (as a language-model perplexity), response tokens only.
    """
    logps = response_logprobs(model, tokenizer, prompts, responses, batch_size=batch_size, add_eos=add_eos)
    n = sum(lp.numel() for lp in logps)
    if n == 0:
        return float("nan")
    return math.exp(-float(sum(lp.sum() for lp in logps)) / n)


def _words(text: str) -> list[str]:
    return text.lower().split()


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams over the whole set, on lower-cased words."""
    total, seen = 0, set()
    for t in texts:
        w = _words(t)
        grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def mean_length(texts: Sequence[str], tokenizer=None) -> float:
    """Mean length in tokenizer tokens (or in words without a tokenizer)."""
    if not texts:
        return 0.0
    if tokenizer is None:
        return sum(len(_words(t)) for t in texts) / len(texts)
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts) / len(texts)


def reward_summary(rewards: Sequence[float] | torch.Tensor) -> dict[str, float]:
    """Mean, standard deviation, min, median and max of a set of rewards (NaN-free input expected)."""
    values = [float(r) for r in (rewards.tolist() if isinstance(rewards, torch.Tensor) else rewards)]
    if not values:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "min": float("nan"), "median": float("nan"),
                "max": float("nan")}
    return {"n": len(values), "mean": statistics.fmean(values), "std": statistics.pstdev(values),
            "min": min(values), "median": statistics.median(values), "max": max(values)}
