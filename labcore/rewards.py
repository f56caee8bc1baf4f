"""One interface for every reward: ``reward(prompts, responses) -> torch.Tensor`` of shape (N,), float32.

Rewards are batched and deterministic, and selectable by name (``labcore score --reward NAME``):

- ``sentiment`` — VADER compound score of the response, in [-1, 1] (the role of the DistilBERT IMDB classifier of the
  RAFT and RRHF papers; VADER's lexicon ships inside the ``vadersentiment`` package, no download);
- ``afinn`` — a second, independent sentiment lexicon (Nielsen's AFINN, package ``afinn``): the sign of the
  response's AFINN score, so a mean is (share positive - share negative); the judge of the sentiment tasks;
- ``arithmetic`` — 1 when the last number of the response equals the sum asked for in the prompt
  (``"... 7 + 12 ..."``), else 0: the verifiable reward and judge of ``smol-arithmetic``;
- ``gold`` — the tiny world's transparent rubric for dialogues (``labcore.tinyworld.gold``), used to evaluate;
- ``length`` — a test reward: the number of words in the response (plumbing tests and reward-hacking demos);
- a directory of a saved labcore reward model (``labcore train-rm``);
- any other value: a Hugging Face sequence-classification reward model by path or Hub name (online), scored on
  ``prompt + response``; the last logit is the reward (the positive class of a 2-way classifier).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import torch

RewardFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]

REWARD_NAMES = ("sentiment", "afinn", "arithmetic", "gold", "length")


def sentiment_reward() -> RewardFn:
    """VADER compound sentiment of each response (prompts are ignored: the task is a positive *continuation*)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()

    def reward(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return torch.tensor([analyzer.polarity_scores(r)["compound"] for r in responses], dtype=torch.float32)

    return reward


def afinn_reward() -> RewardFn:
    """sign(AFINN score) of each response: +1 positive, -1 negative, 0 neutral (an independent sentiment judge:
    a different lexicon and rule from VADER's, which the sentiment tasks optimise)."""
    from afinn import Afinn

    afinn = Afinn(language="en", emoticons=True)

    def reward(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return torch.tensor([float((s > 0) - (s < 0)) for s in map(afinn.score, responses)], dtype=torch.float32)

    return reward


_SUM = re.compile(r"(-?\d+)\s*(?:\+|plus|and)\s*(-?\d+)")
_NUMBER = re.compile(r"-?\d+")


def arithmetic_answer(prompt: str) -> int | None:
    """The sum a prompt asks for: the last ``A + B`` (or ``A and B``, ``A plus B``) in it, or None."""
    hits = _SUM.findall(prompt)
    return int(hits[-1][0]) + int(hits[-1][1]) if hits else None


def arithmetic_reward() -> RewardFn:
    """1.0 when the last integer of the response is the sum the prompt asks for, else 0.0 (exact, verifiable)."""

    def reward(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        out = []
        for prompt, response in zip(prompts, responses, strict=True):
            want, got = arithmetic_answer(prompt), _NUMBER.findall(response.replace(",", ""))
            out.append(float(want is not None and bool(got) and int(got[-1]) == want))
        return torch.tensor(out, dtype=torch.float32)

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
    """Resolve a reward by name (``REWARD_NAMES``) or path/Hub name (see the module docstring)."""
    if name_or_path == "sentiment":
        return sentiment_reward()
    if name_or_path == "afinn":
        return afinn_reward()
    if name_or_path == "arithmetic":
        return arithmetic_reward()
    if name_or_path == "gold":
        return gold_reward()
    if name_or_path == "length":
        return length_reward()
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "labcore_reward.json").exists():
        from labcore.reward_model import load_reward_model

        return load_reward_model(path, device=device)
    return hf_classifier_reward(name_or_path, device=device)
