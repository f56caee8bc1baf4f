"""RAFT: Reward rAnked FineTuning — sample, rank by reward, fine-tune on the best, repeat.

Dong et al. 2023, "RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment", arXiv 2304.06767
(Algorithm 1). Reference code: LMFlow ``RaftAligner``. With policy pi_{w_t}, reward r(x, y) and a prompt pool D,
iteration t = 1..T does

    1. Data collection   draw b prompts x_1..x_b from D (shuffled, without replacement);
                         sample y_{i,1..K} ~ pi_{w_{t-1}}(. | x_i)                       (Alg. 1, data collection)
    2. Data ranking      r_{i,k} = r(x_i, y_{i,k})  (-inf for discarded degenerate samples, see below)
                         local:  keep y_i* = argmax_k r_{i,k}, one per prompt            (Alg. 1, data ranking)
                         global: K = 1 sample each for b/alpha prompts; keep the top alpha fraction by reward
                                 across the whole batch (LMFlow collection_strategy "top")
    3. Fine-tuning       w_t = SFT of w_{t-1} on the kept (x, y) pairs:
                         min_w - sum_t log pi_w(y_t | x, y_<t)                               (Alg. 1, fine-tuning)

Collection and ranking need no gradients and fine-tuning needs no reward gradients, so one policy sits in memory, any
(non-differentiable) reward works, and there is no KL term, reference model or value model.

Both strategies select b samples per iteration (LMFlow ``raft_batch_size``) from the same number of generated
samples when K = 1/alpha: local draws K for each of b prompts, global one for each of b/alpha prompts.

Deliberate deviations from / fixes to the reference, following the lessons of its issues:
  * ``reward_onpolicy`` is the reward of sample 0 of every prompt (an unbiased estimate of the policy's reward);
    ``reward_selected`` (the mean of the kept set, what the reference plots) is logged beside it.
  * A discard rule sets r = -inf for empty, too-short (< ``min_tokens`` new tokens) and repetitive samples (share of
    repeated word 3-grams > ``max_repetition``); discarded samples are never selected. The reference discarded
    samples containing "#" after seeing rewards hacked by them; distinct-2 is logged every iteration.
  * Evaluation on a fixed held-out prompt set with a fixed sampling seed (the reference had none, LMFlow #281),
    plus perplexity of held-out reference responses and distinct-2; iteration 0 is the base model.
  * Responses are cut from the prompt by token position (``labcore.generation.generate``), never by
    ``str.replace`` on decoded text; generation is batched with ``num_return_sequences``, left padding, KV cache.
  * SFT on the response tokens only by default (``response_only``; the reference trains on prompt + response).
  * One optimiser for the whole run (its state carries across iterations; constant learning rate as in the
    reference recipes); checkpoints every iteration and exact resume.
  * max_new_tokens is drawn in [min_new_tokens, max_new_tokens) once per generation batch (as LMFlow does with
    ``np.random.randint`` per inference batch) from a seeded generator, or once per iteration (``length_draw``).
"""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from labcore import DATA_DIR, fast_mode
from labcore.datasets import append_jsonl, read_jsonl as read_metrics, write_jsonl

SELECTIONS = ("local", "global")
LENGTH_DRAWS = ("batch", "iteration")
TINY_RM = DATA_DIR / "models" / "tiny-rm"


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RAFTConfig:
    """RAFT settings. Defaults: LMFlow ``RaftAlignerArguments`` and the paper's HH recipe (Sec. 4 / App.)."""
    model: str = "tiny"
    """Policy: a preset of labcore.models.PRESETS or a local Hugging Face directory."""
    reward: str = "sentiment"
    """Reward: sentiment | gold | length | a labcore reward-model directory | a HF classifier path or name."""
    iterations: int = 20
    """T: RAFT iterations (LMFlow num_raft_iteration default 20)."""
    raft_batch_size: int = 1024
    """b: samples kept (and fine-tuned on) per iteration (LMFlow raft_batch_size; HH recipe 1024)."""
    selection: str = "local"
    """'local': best of K per prompt for b prompts; 'global': one sample for each of b/alpha prompts, keep top alpha."""
    num_samples: int = 8
    """K: samples per prompt in local selection (HH recipe K = 8 = 1/top_reward_percentage)."""
    alpha: float = 0.2
    """Kept fraction in global selection (LMFlow top_reward_percentage 0.2)."""
    temperature: float = 0.85
    """Sampling temperature (LMFlow 0.85 for HH; IMDB recipe 0.7)."""
    top_k: int = 0
    """Top-k filter (0 = off, as in the reference)."""
    top_p: float = 1.0
    """Nucleus mass (1.0 = off, as in the reference)."""
    min_new_tokens: int = 64
    """Lower end of the new-token limit drawn per generation batch (LMFlow output_min_length 64)."""
    max_new_tokens: int = 128
    """Upper end, exclusive (LMFlow output_max_length 128)."""
    length_draw: str = "batch"
    """Draw max_new_tokens once per generation batch ('batch', as LMFlow) or once per iteration ('iteration')."""
    gen_batch_size: int = 32
    """Prompts per generation batch (each brings K rows)."""
    stop_at_turn: bool = True
    """Cut responses where the model starts a new 'Human:' turn (dialogue); False for plain continuation."""
    lr: float = 2e-5
    """Constant learning rate of the SFT step (HH recipe 2e-5; IMDB recipe 2e-4)."""
    epochs: int = 4
    """SFT epochs over the kept set per iteration (both recipes: 4)."""
    train_batch_size: int = 8
    """Pairs per SFT micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimiser step."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping (None = off)."""
    use_lora: bool = True
    """Train a LoRA adapter (True) or the full model (False)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """LoRA dropout."""
    response_only: bool = True
    """SFT loss on response tokens only (False: prompt + response, as the reference)."""
    max_length: int | None = None
    """Token budget of an SFT pair (default: the model's context); prompts are cut from the left."""
    min_tokens: int = 2
    """Discard rule: samples with fewer new tokens (or empty text) get reward -inf."""
    max_repetition: float = 0.5
    """Discard rule: samples whose share of repeated word 3-grams exceeds this get reward -inf (1.0 = off)."""
    eval_prompts: int = 128
    """Held-out prompts sampled for evaluation every iteration (a fixed set)."""
    eval_max_new_tokens: int | None = None
    """New-token limit of evaluation samples (default: max_new_tokens - 1)."""
    eval_seed: int = 1234
    """Sampling seed of the evaluation (fixed, so every iteration sees the same randomness)."""
    ppl_examples: int = 256
    """Held-out reference responses scored for perplexity (at most)."""
    device: str = "auto"
    """Device: auto (cuda > mps > cpu), cpu, cuda, ..."""
    num_threads: int = 0
    """torch CPU threads (0 = torch's default; 1 is often fastest for tiny models on a busy machine)."""
    seed: int = 0
    """Seed of the prompt order, sampling and SFT."""

    def __post_init__(self):
        checks = [
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.raft_batch_size >= 1, f"raft_batch_size must be >= 1, got {self.raft_batch_size}"),
            (self.selection in SELECTIONS, f"selection must be one of {SELECTIONS}, got {self.selection!r}"),
            (self.num_samples >= 1, f"num_samples (K) must be >= 1, got {self.num_samples}"),
            (0 < self.alpha <= 1, f"alpha must be in (0, 1], got {self.alpha}"),
            (self.temperature > 0, f"temperature must be > 0 (RAFT samples), got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (1 <= self.min_new_tokens < self.max_new_tokens,
             f"need 1 <= min_new_tokens < max_new_tokens (range is [min, max)), got "
             f"[{self.min_new_tokens}, {self.max_new_tokens})"),
            (self.length_draw in LENGTH_DRAWS, f"length_draw must be one of {LENGTH_DRAWS}, got {self.length_draw!r}"),
            (self.gen_batch_size >= 1, f"gen_batch_size must be >= 1, got {self.gen_batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.train_batch_size >= 1, f"train_batch_size must be >= 1, got {self.train_batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}"),
            (0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}"),
            (self.min_tokens >= 0, f"min_tokens must be >= 0, got {self.min_tokens}"),
            (0 <= self.max_repetition <= 1, f"max_repetition must be in [0, 1], got {self.max_repetition}"),
            (self.eval_prompts >= 1, f"eval_prompts must be >= 1, got {self.eval_prompts}"),
            (self.eval_max_new_tokens is None or self.eval_max_new_tokens >= 1,
             f"eval_max_new_tokens must be >= 1, got {self.eval_max_new_tokens}"),
            (self.ppl_examples >= 0, f"ppl_examples must be >= 0, got {self.ppl_examples}"),
            (self.num_threads >= 0, f"num_threads must be >= 0, got {self.num_threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def prompts_per_iteration(self) -> int:
        """Prompts drawn per iteration: b (local) or b / alpha (global, LMFlow ``M = raft_batch_size / alpha``)."""
        if self.selection == "local":
            return self.raft_batch_size
        return max(self.raft_batch_size, int(round(self.raft_batch_size / self.alpha)))

    @property
    def samples_per_prompt(self) -> int:
        """K for local selection, 1 for global selection."""
        return self.num_samples if self.selection == "local" else 1


# ----------------------------------------------------------------------------------------------------------------
# The math: pure selection functions
# ----------------------------------------------------------------------------------------------------------------
def _valid(rewards: torch.Tensor) -> torch.Tensor:
    """True where a reward can be selected (finite or +inf; -inf marks a discarded sample, NaN an invalid one)."""
    return ~(torch.isnan(rewards) | torch.isneginf(rewards))


def select_local(rewards: torch.Tensor) -> torch.Tensor:
    """Best of K per prompt: k*_i = argmax_k r_{i,k} (Alg. 1, local ranking).

    Ties go to the lowest sample index; discarded samples (-inf, or NaN) are never selected.

    Args:
        rewards: (P, K) rewards of K samples for each of P prompts.
    Returns:
        (P,) long: the selected sample index of each prompt, -1 where every sample was discarded.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (P, K), got shape {tuple(rewards.shape)}")
    valid = _valid(rewards)  # (P, K)
    masked = rewards.masked_fill(~valid, float("-inf"))  # (P, K)
    best = masked.max(dim=1, keepdim=True).values  # (P, 1)
    is_best = valid & (masked == best)  # (P, K)
    K = rewards.shape[1]
    index = torch.arange(K, device=rewards.device).expand_as(rewards)  # (P, K)
    first = torch.where(is_best, index, torch.full_like(index, K)).min(dim=1).values  # (P,) lowest tied index
    return torch.where(valid.any(dim=1), first, torch.full_like(first, -1))


def select_global(rewards: torch.Tensor, n_select: int) -> torch.Tensor:
    """Top ``n_select`` samples by reward across the batch (global ranking, LMFlow "top").

    Ties go to the lowest index (a stable sort); discarded samples (-inf, or NaN) are never selected, so fewer than
    ``n_select`` come back when fewer are valid.

    Args:
        rewards: (N,) rewards, one sample per prompt.
        n_select: how many to keep (b = alpha * N in RAFT).
    Returns:
        (<= n_select,) long indices into ``rewards``, best first.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be (N,), got shape {tuple(rewards.shape)}")
    if n_select < 0:
        raise ValueError(f"n_select must be >= 0, got {n_select}")
    valid = _valid(rewards)  # (N,)
    keys = torch.where(valid, rewards, torch.zeros_like(rewards))  # (N,) NaN-free for the sort
    order = torch.sort(keys, descending=True, stable=True).indices  # (N,) equal rewards keep index order
    order = order[valid[order]]
    return order[:n_select]


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of repeated word n-grams in one text: 1 - unique / total (0 for fewer than n words)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def discard_mask(responses: Sequence[str], num_tokens: Sequence[int], min_tokens: int,
                 max_repetition: float) -> torch.Tensor:
    """The discard rule: True for empty, too-short (< ``min_tokens`` new tokens) or repetitive samples.

    Returns:
        (N,) bool.
    """
    return torch.tensor([
        (not r.strip()) or n < min_tokens or repetition_rate(r) > max_repetition
        for r, n in zip(responses, num_tokens, strict=True)
    ], dtype=torch.bool)


def apply_discard(rewards: torch.Tensor, discard: torch.Tensor) -> torch.Tensor:
    """r = -inf where ``discard`` (so the sample is never selected). Shapes (N,) -> (N,)."""
    return rewards.masked_fill(discard, float("-inf"))


# ----------------------------------------------------------------------------------------------------------------
# Tasks and presets
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RAFTTask:
    """What a preset supplies besides the config: prompts, the evaluation set and the perplexity references."""
    prompts: list[str]
    """Training prompt pool D (already formatted: chat prompts end with 'Assistant:')."""
    eval_prompts: list[str]
    """Held-out prompts, sampled every iteration with a fixed seed."""
    ppl_pairs: list[tuple[str, str]] = field(default_factory=list)
    """Held-out (prompt, reference response) pairs whose perplexity under the policy is logged."""
    gold: bool = False
    """Also log the tiny world's gold rubric of the evaluation samples (dialogue presets)."""
    description: str = ""
    """One line for logs."""


def _best_reference(rec: dict) -> str:
    """The best-style response of a tiny-world request (helpful_polite, or polite_refusal for unsafe requests)."""
    from labcore.tinyworld import STYLES_SAFE, STYLES_UNSAFE

    styles = STYLES_UNSAFE if rec["unsafe"] else STYLES_SAFE
    return rec["responses"][styles[0]]


def tiny_sentiment_task(config: RAFTConfig, data: str | None = None) -> RAFTTask:
    """Review openings (~30 characters) to continue positively; ppl on held-out positive continuations."""
    from labcore.tinyworld import load_reviews, review_prompts
    from labcore.tinyworld.reviews import opening_prompt

    test = load_reviews("test")
    pos = [r for r in test if r["label"] == "pos"]
    ppl_pairs = []
    for r in pos[:config.ppl_examples]:
        prompt = opening_prompt(r["text"])
        ppl_pairs.append((prompt, r["text"][len(prompt):]))
    eval_prompts = review_prompts("test")[:config.eval_prompts]
    return RAFTTask(review_prompts("train"), eval_prompts, ppl_pairs, gold=False,
                    description="tiny-sentiment: positive continuation of review openings, VADER reward")


def tiny_helpful_task(config: RAFTConfig, data: str | None = None) -> RAFTTask:
    """Dialogue requests in chat format; ppl on the best-style responses of held-out test requests."""
    from labcore.formats import format_chat
    from labcore.tinyworld import load_requests

    train, test = load_requests("train"), load_requests("test")
    # a fixed mix of safe and unsafe test requests, in file order (the file is already shuffled)
    eval_prompts = [format_chat(r["request"]) for r in test[:config.eval_prompts]]
    ppl_pairs = [(format_chat(r["request"]), " " + _best_reference(r)) for r in test[:config.ppl_examples]]
    return RAFTTask([format_chat(r["request"]) for r in train], eval_prompts, ppl_pairs, gold=True,
                    description="tiny-helpful: dialogue requests, learned reward model (tiny-rm), gold logged")


def _split_heldout(rows: list, n_eval: int) -> tuple[list, list]:
    """Train / held-out split of a single local file: the last ``n_eval`` rows (at least 1, at most half) held out."""
    n = max(1, min(n_eval, len(rows) // 2))
    return rows[:-n], rows[-n:]


def _imdb_rows(data: str | None) -> tuple[list[dict], list[dict]]:
    """IMDB reviews {'text', 'label'}: a local JSONL file (split train / held-out), or the Hub via ``datasets``."""
    if data:
        from labcore.datasets import iter_records

        rows = [{"text": rec["text"], "label": rec.get("label", 1)} for _, rec in iter_records(data)]
        return _split_heldout(rows, 128)
    try:
        import datasets  # optional: only the online preset needs it
    except ImportError:
        raise RuntimeError("the gpt2-imdb preset loads IMDB with the 'datasets' package (pip install datasets), "
                           "or pass --data FILE.jsonl with a 'text' field per review") from None
    from labcore.hub import OFFLINE_HINT, hub_reachable

    if not hub_reachable():
        raise RuntimeError(f"IMDB needs the Hugging Face Hub; pass --data FILE.jsonl instead. {OFFLINE_HINT}")
    ds = datasets.load_dataset("stanfordnlp/imdb")
    return list(ds["train"]), list(ds["test"].shuffle(seed=0))


def gpt2_imdb_task(config: RAFTConfig, data: str | None = None) -> RAFTTask:
    """IMDB: prompt = first 30 characters of a review (as the reference); ppl on held-out positive continuations."""
    train, test = _imdb_rows(data)
    prompts = [r["text"][:30] for r in train]
    eval_prompts = [r["text"][:30] for r in test[:config.eval_prompts]]
    pos = [r for r in test if r["label"] in (1, "pos", "positive")][:config.ppl_examples]
    ppl_pairs = [(r["text"][:30], r["text"][30:]) for r in pos if len(r["text"]) > 30]
    return RAFTTask(prompts, eval_prompts, ppl_pairs, gold=False,
                    description="gpt2-imdb: IMDB review openings, DistilBERT IMDB classifier reward")


HH_TRAIN = "hf://datasets/Anthropic/hh-rlhf/helpful-base/train.jsonl.gz"
HH_TEST = "hf://datasets/Anthropic/hh-rlhf/helpful-base/test.jsonl.gz"


def gpt2_hh_task(config: RAFTConfig, data: str | None = None) -> RAFTTask:
    """HH-RLHF: prompts = dialogue up to the last 'Assistant:'; ppl on held-out chosen responses."""
    from labcore.datasets import iter_records, split_transcript

    def pairs(path: str) -> list[tuple[str, str]]:
        out = []
        for _, rec in iter_records(path):
            if "chosen" in rec:
                out.append(split_transcript(rec["chosen"]))
            else:
                out.append((rec["prompt"], rec.get("completion", rec.get("response", ""))))
        return out

    if data:
        train, test = _split_heldout(pairs(data), 128)
    else:
        train, test = pairs(HH_TRAIN), pairs(HH_TEST)
    ppl_pairs = [(p, r) for p, r in test[:config.ppl_examples] if r.strip()]
    return RAFTTask([p for p, _ in train], [p for p, _ in test[:config.eval_prompts]], ppl_pairs, gold=False,
                    description="gpt2-hh: Anthropic HH dialogues, HH reward model")


def _tiny_sentiment_config(fast: bool) -> RAFTConfig:
    # tuned for <= 10 minutes on 2 CPU cores (docs/raft.md): later iterations raise the reward further but
    # distinct-2 falls below that of real positive reviews
    cfg = RAFTConfig(model="tiny", reward="sentiment", iterations=4, raft_batch_size=128, selection="local",
                     num_samples=4, temperature=0.85, min_new_tokens=24, max_new_tokens=48, stop_at_turn=False,
                     lr=5e-4, epochs=2, train_batch_size=16, lora_r=16, lora_alpha=32, min_tokens=4,
                     max_repetition=0.3, eval_prompts=128, ppl_examples=128, gen_batch_size=64)
    return _shrink(cfg) if fast else cfg


def _tiny_helpful_config(fast: bool) -> RAFTConfig:
    # tuned for <= 10 minutes on 2 CPU cores (docs/raft.md). min_tokens=8 discards the 2-4 token "Happy to help!"
    # answers that the learned reward model over-rates (with min_tokens=2 they take over: distinct-2 0.71 -> 0.11)
    cfg = RAFTConfig(model="tiny", reward=str(TINY_RM), iterations=4, raft_batch_size=64, selection="local",
                     num_samples=8, temperature=0.85, min_new_tokens=32, max_new_tokens=48, stop_at_turn=True,
                     lr=5e-4, epochs=2, train_batch_size=16, lora_r=16, lora_alpha=32, min_tokens=8,
                     max_repetition=0.3, eval_prompts=128, ppl_examples=128, gen_batch_size=64)
    return _shrink(cfg) if fast else cfg


def _gpt2_imdb_config(fast: bool) -> RAFTConfig:
    # IMDB recipe: lr 2e-4 constant, 5 iterations, 4 epochs, 320 prompts per iteration (b = 64 kept at alpha 0.2,
    # global), output length [16, 48), temperature 0.7; full fine-tuning of GPT-2.
    cfg = RAFTConfig(model="gpt2", reward="lvwerra/distilbert-imdb", iterations=5, raft_batch_size=64,
                     selection="global", alpha=0.2, temperature=0.7, min_new_tokens=16, max_new_tokens=48,
                     stop_at_turn=False, lr=2e-4, epochs=4, train_batch_size=8, use_lora=False,
                     eval_prompts=256, gen_batch_size=64)
    return _shrink(cfg) if fast else cfg


def _gpt2_hh_config(fast: bool) -> RAFTConfig:
    # HH recipe: gpt2, 20 iterations, lr 2e-5 constant, 4 epochs, local selection K = 8, b = 1024.
    cfg = RAFTConfig(model="gpt2", reward="weqweasdas/hh_rlhf_rm_open_llama_3b", iterations=20,
                     raft_batch_size=1024, selection="local", num_samples=8, temperature=0.85, min_new_tokens=64,
                     max_new_tokens=128, stop_at_turn=True, lr=2e-5, epochs=4, train_batch_size=8, use_lora=False,
                     eval_prompts=256, gen_batch_size=32)
    return _shrink(cfg) if fast else cfg


def _shrink(cfg: RAFTConfig) -> RAFTConfig:
    """Fast mode (LABCORE_FAST=1): tiny sizes, 2 iterations."""
    return RAFTConfig(**{**asdict(cfg), "iterations": 2, "raft_batch_size": 8, "num_samples": min(cfg.num_samples, 2),
                         "min_new_tokens": 8, "max_new_tokens": 12, "epochs": 1, "train_batch_size": 4,
                         "eval_prompts": 8, "ppl_examples": 8, "gen_batch_size": 16})


@dataclass(frozen=True)
class Preset:
    """A named experiment: a config factory (fast mode shrinks it) and a task factory (``data`` = local file)."""
    make_config: Callable[[bool], RAFTConfig]
    make_task: Callable[[RAFTConfig, str | None], RAFTTask]
    online: bool
    help: str


PRESETS: dict[str, Preset] = {
    "tiny-sentiment": Preset(_tiny_sentiment_config, tiny_sentiment_task, False,
                             "tiny base, review openings, VADER sentiment reward (the IMDB/DistilBERT role)"),
    "tiny-helpful": Preset(_tiny_helpful_config, tiny_helpful_task, False,
                           "tiny base, dialogue requests, learned reward model data/models/tiny-rm; gold logged"),
    "gpt2-imdb": Preset(_gpt2_imdb_config, gpt2_imdb_task, True,
                        "GPT-2, IMDB openings (Hub or --data), DistilBERT IMDB reward (the reference IMDB recipe)"),
    "gpt2-hh": Preset(_gpt2_hh_config, gpt2_hh_task, True,
                      "GPT-2, Anthropic HH prompts (Hub or --data), HH reward model (the reference HH recipe)"),
}


def preset_config(name: str, fast: bool | None = None, **overrides) -> RAFTConfig:
    """The config of a preset (fast mode by default when LABCORE_FAST=1), with field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown RAFT preset {name!r}; known: {', '.join(PRESETS)}")
    cfg = PRESETS[name].make_config(fast_mode() if fast is None else fast)
    return RAFTConfig(**{**asdict(cfg), **{k: v for k, v in overrides.items() if v is not None}})


def load_reward(config: RAFTConfig):
    """``get_reward(config.reward)``, with a clear error when the tiny reward model has not been trained yet."""
    from labcore.rewards import REWARD_NAMES, get_reward

    name = config.reward
    path = Path(name).expanduser()
    if name == str(TINY_RM) and not (path / "labcore_reward.json").exists():
        raise FileNotFoundError(f"the tiny reward model is missing from {TINY_RM} (train it with `labcore train-rm`), "
                                f"or pass another reward, e.g. --reward gold")
    if name not in REWARD_NAMES and (path.is_absolute() or name.startswith(".")) and not path.exists():
        raise FileNotFoundError(f"no reward model at {name!r}")
    return get_reward(name, device=config.device)


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------
def _seed(*parts: int) -> int:
    """A deterministic 31-bit seed from integers (seed, iteration, chunk, ...)."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def prompt_indices(n_prompts: int, seed: int, iteration: int, size: int) -> list[int]:
    """Indices of the prompts of ``iteration`` (1-based): the ``size`` next positions of an endless stream of
    seeded permutations of the pool (without replacement within a pass over the pool)."""
    perms: dict[int, list[int]] = {}
    out = []
    for pos in range((iteration - 1) * size, iteration * size):
        epoch, offset = divmod(pos, n_prompts)
        if epoch not in perms:
            perms[epoch] = list(range(n_prompts))
            random.Random(_seed(seed, epoch)).shuffle(perms[epoch])
        out.append(perms[epoch][offset])
    return out


def _sample(policy, tok, prompts: list[str], config: RAFTConfig, num_samples: int, seed: int, progress: bool,
            max_new_tokens: int | None = None) -> list[dict]:
    """Sample ``num_samples`` responses per prompt in generation batches, each with its own max_new_tokens."""
    from labcore.generation import generate

    lengths = np.random.default_rng(seed)
    per_iteration = int(lengths.integers(config.min_new_tokens, config.max_new_tokens))
    rows: list[dict] = []
    for c, start in enumerate(range(0, len(prompts), config.gen_batch_size)):
        if max_new_tokens is not None:
            n_new = max_new_tokens
        elif config.length_draw == "batch":
            n_new = int(lengths.integers(config.min_new_tokens, config.max_new_tokens))  # [min, max)
        else:
            n_new = per_iteration
        chunk = generate(policy, tok, prompts[start:start + config.gen_batch_size], num_samples=num_samples,
                         max_new_tokens=n_new, temperature=config.temperature, top_k=config.top_k,
                         top_p=config.top_p, stop_at_turn=config.stop_at_turn, batch_size=config.gen_batch_size,
                         seed=_seed(seed, c))
        for r in chunk:
            r["prompt_index"] += start
        rows += chunk
    return rows


def _mean(values) -> float | None:
    values = [float(v) for v in values if math.isfinite(float(v))]
    return sum(values) / len(values) if values else None


@torch.no_grad()
def evaluate(policy, tok, task: RAFTTask, reward_fn, config: RAFTConfig, gold_fn=None) -> dict:
    """Held-out evaluation: reward, distinct-2, length of samples for the fixed prompts (fixed seed); ppl.

    Returns:
        ``eval_reward``, ``distinct_2``, ``mean_length`` (tokens), ``ppl`` and, with ``gold_fn``, ``gold``.
    """
    from labcore.metrics import distinct_n, mean_length, perplexity

    n_new = config.eval_max_new_tokens or config.max_new_tokens - 1
    rows = _sample(policy, tok, task.eval_prompts, config, 1, config.eval_seed, False, max_new_tokens=n_new)
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    out = {"eval_reward": _mean(reward_fn(prompts, responses).tolist()),
           "distinct_2": distinct_n(responses, 2), "mean_length": mean_length(responses, tok)}
    if task.ppl_pairs:
        out["ppl"] = perplexity(policy, tok, [p for p, _ in task.ppl_pairs], [r for _, r in task.ppl_pairs],
                                add_eos=True)
    else:
        out["ppl"] = None
    if gold_fn is not None:
        out["gold"] = _mean(gold_fn(prompts, responses).tolist())
    return out


def _build_policy(config: RAFTConfig):
    from labcore.models import add_lora, load_model

    model, tok = load_model(config.model, device=config.device)
    if config.use_lora:
        model = add_lora(model, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    return model, tok


_RESUME_FREE = ("iterations", "device", "num_threads")  # fields a resumed run may change


def raft(config: RAFTConfig, out_dir: str | Path, resume: bool = False, *, task: RAFTTask,
         reward_fn: Callable | None = None, progress: bool = True) -> list[dict]:
    """Run RAFT (Alg. 1) for ``config.iterations`` iterations; write metrics, selected sets, checkpoints, final policy.

    Args:
        config: the settings.
        out_dir: run folder: ``metrics.jsonl``, ``metrics.html``, ``selected_{i}.jsonl``, ``checkpoint/``,
            ``final/`` and ``raft_config.json``.
        resume: continue from ``out_dir/checkpoint`` (the last complete iteration); ends with the same result as an
            uninterrupted run with the same seed. ``iterations`` may be raised on resume; other fields must match.
        task: prompts, evaluation prompts and perplexity references (see :data:`PRESETS`).
        reward_fn: ``fn(prompts, responses) -> (N,)`` (default: :func:`load_reward`).
        progress: progress bars.
    Returns:
        the metrics rows, iteration 0 (the base model) to ``config.iterations``.
    """
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return _raft(config, Path(out_dir), resume, task, reward_fn, progress)
    finally:
        torch.set_num_threads(threads)  # leave the process as we found it


def _raft(config: RAFTConfig, out: Path, resume: bool, task: RAFTTask, reward_fn: Callable | None,
          progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    from labcore.models import save_policy
    from labcore.sft import sft_epochs
    from labcore.training import Learner, OptimConfig
    from labcore.utils import set_seed

    out.mkdir(parents=True, exist_ok=True)
    metrics_path, ckpt = out / "metrics.jsonl", out / "checkpoint"
    reward_fn = reward_fn or load_reward(config)
    gold_fn = None
    if task.gold:
        from labcore.rewards import get_reward

        gold_fn = get_reward("gold")
    if not task.prompts or not task.eval_prompts:
        raise ValueError("the task needs training prompts and evaluation prompts")

    set_seed(config.seed)
    policy, tok = _build_policy(config)
    optim = OptimConfig(lr=config.lr, scheduler="constant", grad_accum=config.grad_accum,
                        max_grad_norm=config.max_grad_norm, cpu=str(config.device) == "cpu")
    learner = Learner(policy, optim, seed=config.seed)
    policy = learner.unwrapped()

    start = 1
    if resume and (ckpt / "labcore_state.json").exists():
        state = learner.load_checkpoint(ckpt)
        saved = state["raft_config"]
        diff = {k: (saved[k], v) for k, v in asdict(config).items()
                if k not in _RESUME_FREE and k in saved and saved[k] != v}
        if diff:
            raise ValueError(f"cannot resume {out}: the config changed ({diff}); only {_RESUME_FREE} may change")
        start = state["iteration"] + 1
        rows = [r for r in read_metrics(metrics_path) if r["iteration"] <= state["iteration"]]
        write_jsonl(metrics_path, rows)  # drop a half-finished iteration
        print(f"resuming {out} after iteration {state['iteration']}", file=sys.stderr)
    else:
        if resume:
            print(f"no checkpoint in {out}; starting afresh", file=sys.stderr)
        for stale in [metrics_path, *out.glob("selected_*.jsonl")]:
            stale.unlink(missing_ok=True)
        shutil.rmtree(ckpt, ignore_errors=True)  # an old run's checkpoint must not be resumed into this one
        t0 = time.time()
        row = {"iteration": 0, "reward_onpolicy": None, "reward_selected": None, "n_selected": 0,
               "discarded": 0, "sft_loss": None, **evaluate(policy, tok, task, reward_fn, config, gold_fn)}
        row["seconds"] = time.time() - t0
        append_jsonl(metrics_path, row)
    (out / "raft_config.json").write_text(json.dumps(asdict(config), indent=1))

    P, K = config.prompts_per_iteration, config.samples_per_prompt
    for t in tqdm(range(start, config.iterations + 1), desc="raft", disable=not progress,
                  initial=start - 1, total=config.iterations):
        t0 = time.time()
        # 1. data collection: the next P prompts, K samples each from pi_{w_{t-1}}
        idx = prompt_indices(len(task.prompts), config.seed, t, P)
        prompts = [task.prompts[i] for i in idx]
        rows = _sample(policy, tok, prompts, config, K, _seed(config.seed, t, 1), progress)
        responses = [r["response"] for r in rows]
        # 2. ranking: r(x, y), -inf for discarded samples, then select
        raw = reward_fn([r["prompt"] for r in rows], responses).float().cpu()  # (P * K,)
        discard = discard_mask(responses, [r["num_tokens"] for r in rows], config.min_tokens, config.max_repetition)
        rewards = apply_discard(raw, discard).view(P, K)  # (P, K), prompt-major
        if config.selection == "local":
            best = select_local(rewards)  # (P,)
            chosen = [i * K + int(k) for i, k in enumerate(best.tolist()) if k >= 0]
        else:
            chosen = select_global(rewards[:, 0], config.raft_batch_size).tolist()  # K = 1: flat index = prompt
        selected = [{**rows[j], "reward": float(raw[j])} for j in chosen]
        write_jsonl(out / f"selected_{t}.jsonl", selected)
        # 3. fine-tuning on the kept (x, y) pairs
        logs = []
        if selected:
            logs = sft_epochs(learner, tok, [(r["prompt"], r["response"]) for r in selected], epochs=config.epochs,
                              batch_size=config.train_batch_size, seed=_seed(config.seed, t, 2),
                              max_length=config.max_length, add_eos=True, response_only=config.response_only,
                              progress=progress)
        last_epoch = [g["loss"] for g in logs if g["epoch"] == config.epochs - 1]
        row = {"iteration": t,
               "reward_onpolicy": _mean(raw.view(P, K)[:, 0].tolist()),  # sample 0 of each prompt: unbiased
               "reward_selected": _mean([r["reward"] for r in selected]),
               "n_selected": len(selected), "discarded": int(discard.sum()),
               "sft_loss": _mean(last_epoch),
               **evaluate(policy, tok, task, reward_fn, config, gold_fn)}
        row["seconds"] = time.time() - t0
        append_jsonl(metrics_path, row)
        # checkpoint written to a temporary folder, then swapped in: a kill never leaves a half checkpoint
        tmp = out / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        learner.save_checkpoint(tmp, extra={"iteration": t, "raft_config": asdict(config),
                                            "prompt_cursor": t * P, "seed": config.seed})
        shutil.rmtree(ckpt, ignore_errors=True)
        tmp.rename(ckpt)
        if progress:
            print(f"iteration {t}: on-policy {row['reward_onpolicy']:.3f}  eval {row['eval_reward']:.3f}  "
                  f"distinct-2 {row['distinct_2']:.3f}  ({row['seconds']:.0f}s)", file=sys.stderr)

    final = save_policy(policy, tok, out / "final")
    adapter_cfg = final / "adapter_config.json"
    if adapter_cfg.exists():  # name the base as the user did ("tiny"), not by this machine's absolute path
        meta = json.loads(adapter_cfg.read_text())
        meta["base_model_name_or_path"] = config.model
        adapter_cfg.write_text(json.dumps(meta, indent=2))
    shutil.copy(metrics_path, final / "metrics.jsonl")
    try:
        plot_metrics(metrics_path).write_html(out / "metrics.html", include_plotlyjs="cdn")
    except ImportError:  # plotly is optional for the loop itself
        pass
    return read_metrics(metrics_path)


# ----------------------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------------------
def plot_metrics(metrics_path: str | Path):
    """A plotly figure of a run's curves: rewards, distinct-2, perplexity, mean length (and gold) per iteration."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = read_metrics(metrics_path)
    x = [r["iteration"] for r in rows]
    panels = [("reward", ["reward_onpolicy", "reward_selected", "eval_reward"]), ("distinct-2", ["distinct_2"]),
              ("perplexity (held-out references)", ["ppl"]), ("mean length (tokens)", ["mean_length"])]
    if any(r.get("gold") is not None for r in rows):
        panels.append(("gold (eval samples)", ["gold"]))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    for col, (_, keys) in enumerate(panels, start=1):
        for key in keys:
            fig.add_trace(go.Scatter(x=x, y=[r.get(key) for r in rows], mode="lines+markers", name=key),
                          row=1, col=col)
        fig.update_xaxes(title_text="iteration", row=1, col=col)
    fig.update_layout(title=f"RAFT: {Path(metrics_path).parent.name}", height=380, width=320 * len(panels))
    return fig


SHIPPED_RUNS = {"tiny-sentiment": DATA_DIR / "models" / "raft-sentiment" / "metrics.jsonl",
                "tiny-helpful": DATA_DIR / "models" / "raft-helpful" / "metrics.jsonl"}


def results_table(runs: dict[str, str | Path] | None = None) -> str:
    """The Table-10-like markdown table: reward, perplexity, distinct-2 (and gold) of the base model vs RAFT.

    Args:
        runs: preset name -> metrics.jsonl (default: the shipped runs in data/models/raft-*/).
    Returns:
        markdown text.
    """
    runs = runs or SHIPPED_RUNS
    lines = ["| preset | model | eval reward | perplexity | distinct-2 | mean length | gold |",
             "|---|---|---|---|---|---|---|"]

    def fmt(v, digits=3):
        return "–" if v is None else f"{v:.{digits}f}"

    for name, path in runs.items():
        rows = read_metrics(path)
        base, last = rows[0], rows[-1]
        for label, r in (("base", base), (f"RAFT ({last['iteration']} it.)", last)):
            lines.append(f"| {name} | {label} | {fmt(r['eval_reward'])} | {fmt(r['ppl'], 2)} | "
                         f"{fmt(r['distinct_2'])} | {fmt(r['mean_length'], 1)} | {fmt(r.get('gold'))} |")
    return "\n".join(lines)


TABLE_BEGIN, TABLE_END = "<!-- raft-table:begin -->", "<!-- raft-table:end -->"


# ----------------------------------------------------------------------------------------------------------------
# CLI glue
# ----------------------------------------------------------------------------------------------------------------
def add_raft_args(parser) -> None:
    """Options of ``labcore raft``."""
    parser.add_argument("--preset", required=True, choices=list(PRESETS),
                        help="; ".join(f"{k}: {v.help}" for k, v in PRESETS.items()))
    parser.add_argument("--model", default=None, help="policy: preset or local HF directory (default: the preset's)")
    parser.add_argument("--reward", default=None, help="reward name or path (default: the preset's)")
    parser.add_argument("--data", default=None, help="local prompt file for the online presets (JSONL: IMDB 'text' "
                        "[+ 'label'], HH 'chosen' transcripts or 'prompt'); the last rows are held out")
    parser.add_argument("--iterations", type=int, default=None, help="RAFT iterations (default: the preset's)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/raft-PRESET)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    parser.add_argument("--device", default=None, help="auto (cuda > mps > cpu), cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override any RAFTConfig field, e.g. --set lr=5e-4 num_samples=8 use_lora=false")


def _parse_overrides(pairs: list[str]) -> dict:
    types = {f.name: f.type for f in fields(RAFTConfig)}
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types:
            raise ValueError(f"unknown RAFTConfig field {name!r}")
        kind = str(types[name])
        if value.lower() in ("none", "null"):
            out[name] = None
        elif "bool" in kind:
            out[name] = value.lower() in ("1", "true", "yes")
        elif "int" in kind:
            out[name] = int(value)
        elif "float" in kind:
            out[name] = float(value)
        else:
            out[name] = value
    return out


def run_raft(args) -> list[dict]:
    """``labcore raft``: build the preset's config and task (with overrides) and run."""
    overrides = {"model": args.model, "reward": args.reward, "iterations": args.iterations, "seed": args.seed,
                 "device": args.device,
                 "num_threads": getattr(args, "threads", None), **_parse_overrides(getattr(args, "set", []) or [])}
    config = preset_config(args.preset, **overrides)
    task = PRESETS[args.preset].make_task(config, args.data)
    out = args.out or f"runs/raft-{args.preset}"
    rows = raft(config, out, resume=args.resume, task=task)
    print(results_table({args.preset: Path(out) / "metrics.jsonl"}))
    print(f"final policy: {Path(out) / 'final'}  (labcore generate --model {config.model} "
          f"{'--adapter' if config.use_lora else '--model'} {Path(out) / 'final'} ...)", file=sys.stderr)
    return rows


def add_raft_table_args(parser) -> None:
    """Options of ``labcore raft-table``."""
    parser.add_argument("--run", dest="runs", nargs="*", default=None, metavar="PRESET=METRICS",
                        help="runs to tabulate (default: the shipped data/models/raft-*/metrics.jsonl)")
    parser.add_argument("--update", default=None, help="rewrite the table between the raft-table markers of this "
                        "markdown file (e.g. docs/raft.md)")


def run_raft_table(args) -> str:
    """``labcore raft-table``: print (and optionally write into a doc) the base-vs-RAFT table."""
    runs = dict(p.split("=", 1) for p in args.runs) if args.runs else None
    table = results_table(runs)
    print(table)
    if args.update:
        doc = Path(args.update)
        text = doc.read_text(encoding="utf-8")
        if TABLE_BEGIN not in text or TABLE_END not in text:
            raise ValueError(f"{doc} has no {TABLE_BEGIN} ... {TABLE_END} block")
        head, rest = text.split(TABLE_BEGIN, 1)
        _, tail = rest.split(TABLE_END, 1)
        doc.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}", encoding="utf-8")
    return table


__all__ = ["RAFTConfig", "RAFTTask", "Preset", "PRESETS", "preset_config", "select_local", "select_global",
           "repetition_rate", "discard_mask", "apply_discard", "prompt_indices", "evaluate", "raft", "read_metrics",
           "plot_metrics", "results_table", "add_raft_args", "run_raft", "add_raft_table_args", "run_raft_table",
           "load_reward"]
