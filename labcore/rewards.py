"""One interface for every reward: ``reward(prompts, responses) -> torch.Tensor`` of shape (N,), float32.

Rewards are batched and deterministic, and selectable by name (``labcore score --reward NAME``):

- ``sentiment`` — VADER compound score of the response, in [-1, 1] (the role of the DistilBERT IMDB classifier of the
  RAFT and RRHF papers; VADER's lexicon ships inside the ``vadersentiment`` package, no download);
- ``gold`` — the tiny world's transparent rubric for dialogues (``labcore.tinyworld.gold``), used to evaluate;
- ``length`` — a test reward: the number of words in the response (plumbing tests and reward-hacking demos);
- a directory of a saved labcore reward model (``labcore train-rm``);
- any other value: a Hugging Face sequence-classification reward model by path or Hub name (online), scored on
  ``prompt + response``; the last logit is the reward (the positive class of a 2-way classifier).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

RewardFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]

REWARD_NAMES = ("sentiment", "gold", "length")


def sentiment_reward() -> RewardFn:
    """VADER compound sentiment of each response (prompts are ignored: the task is a positive *continuation*)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()

    def reward(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return torch.tensor([analyzer.polarity_scores(r)["compound"] for r in responses], dtype=torch.float32)

    return reward


def length_reward() -> RewardFn:
    """Number of whitespace-separated words in each response (a test reward)."""

    def reward(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return torch.tensor([len(r.split()) for r in responses], dtype=torch.float32)

    return reward


def gold_reward() -> RewardFn:
    """The tiny world's rubric (helpful, on-topic, polite, refuses unsafe requests, not degenerate)."""
    from labcore.tinyworld.gold import gold_score

    def reward(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return torch.tensor(gold_score(list(prompts), list(responses)), dtype=torch.float32)

    return reward


def hf_classifier_reward(name_or_path: str, device: str = "auto", batch_size: int = 32) -> RewardFn:
    """A Hugging Face sequence-classification model as a reward (local path, or Hub name when online)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from labcore.models import _from_hub
    from labcore.utils import resolve_device

    dev = resolve_device(device)
    local = Path(name_or_path).expanduser().exists()
    load_tok, load_model = AutoTokenizer.from_pretrained, AutoModelForSequenceClassification.from_pretrained
    tok = load_tok(name_or_path) if local else _from_hub(load_tok, name_or_path)
    model = (load_model(name_or_path) if local else _from_hub(load_model, name_or_path)).to(dev).eval()

    @torch.no_grad()
    def reward(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        out = []
        texts = [p + r for p, r in zip(prompts, responses, strict=True)]
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True).to(dev)
            out.append(model(**enc).logits[:, -1].float().cpu())  # (b,)
        return torch.cat(out) if out else torch.zeros(0)

    return reward


def get_reward(name_or_path: str, device: str = "auto") -> RewardFn:
    """Resolve a reward by name (``sentiment``, ``gold``, ``length``) or path/Hub name (see the module docstring)."""
    if name_or_path == "sentiment":
        return sentiment_reward()
    if name_or_path == "gold":
        return gold_reward()
    if name_or_path == "length":
        return length_reward()
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "labcore_reward.json").exists():
        from labcore.reward_model import load_reward_model

        return load_reward_model(path, device=device)
    return hf_classifier_reward(name_or_path, device=device)
