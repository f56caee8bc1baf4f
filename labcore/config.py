"""Every setting of RAFT, RRHF and the core-set experiment, as dataclasses with one docstring per field.

The pieces the methods share are declared once and nested into each method's config under the same name:

    Sampling   how responses are drawn (temperature, top-k, top-p, new-token limit, generation batch)
    Eval       the fixed held-out evaluation: a Sampling plus prompts, seed and perplexity references
    Lora       peft LoRA or full fine-tuning
    Optim      AdamW, schedule, epochs, micro-batch, accumulation, clipping
    Runtime    device, mixed precision, CPU threads, seed

so ``config.optim.lr`` is the learning rate of every method and ``config.sampling.temperature`` its sampling
temperature. ``Literal[...]`` fields are checked in ``__post_init__`` (by :func:`check_choices`), with every range
check, so a config that constructs is a config that runs. Named settings (presets) are data in
:mod:`labcore.presets`; ``--set optim.lr=1e-4`` overrides any field from the command line.
Importable without torch.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Literal

from labcore import DATA_DIR


def union_members(hint) -> tuple | None:
    """The members of ``A | B`` or ``Optional[A]`` (both spellings), None when ``hint`` is not a union."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else None


def check_choices(obj) -> None:
    """Raise ``ValueError`` naming the field when a ``Literal[...]`` field (or ``Literal[...] | None``) holds a
    value outside its choices."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints[f.name]
        members = union_members(hint) or (hint,)
        allowed = [c for m in members if typing.get_origin(m) is Literal for c in typing.get_args(m)]
        value = getattr(obj, f.name)
        if allowed and value not in allowed and not (value is None and type(None) in members):
            raise ValueError(f"{f.name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _check(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Sampling:
    """How responses are sampled from a policy (``labcore.generation.generate``)."""
    temperature: float = 1.0
    """Sampling temperature (> 0)."""
    top_k: int = 0
    """Top-k filter (0 = off)."""
    top_p: float = 1.0
    """Nucleus mass, in (0, 1] (1 = off)."""
    max_new_tokens: int = 128
    """New-token limit of a response."""
    batch_size: int = 32
    """Prompts per generation batch (each brings its K rows)."""

    def __post_init__(self):
        _check([(self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
                (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
                (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
                (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
                (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")])


@dataclass
class Eval(Sampling):
    """The fixed held-out evaluation: the same prompts and sampling seed at every evaluation (RAFT had none, LMFlow
    #281). Every method evaluated on a task uses the task's protocol (``labcore.presets.EVAL``), so the methods'
    numbers are comparable and re-tuning one method never changes another's."""
    prompts: int = 128
    """Held-out prompts sampled at every evaluation (a fixed set: the first ones of the task's test split)."""
    seed: int = 1234
    """Sampling seed of the evaluation (fixed, so every evaluation sees the same randomness)."""
    ppl_examples: int = 128
    """Held-out (prompt, reference response) pairs whose perplexity under the policy is logged (at most)."""
    when: Literal["always", "final", "none"] = "always"
    """always: the starting policy and after every RAFT iteration / RRHF epoch (or eval_every steps); final: only the
    policy at the end (RAFT's last iteration, the end of each RRHF round); none: never (the caller evaluates, as
    labcore compare does for its RAFT arms). Only the curves change, never a trained weight."""

    def due(self, last: bool) -> bool:
        """Whether an evaluation point runs under ``when``: every one for always, only the ``last`` for final."""
        return self.when == "always" or (self.when == "final" and last)

    def __post_init__(self):
        super().__post_init__()
        check_choices(self)
        _check([(self.prompts >= 1, f"prompts must be >= 1, got {self.prompts}"),
                (self.ppl_examples >= 0, f"ppl_examples must be >= 0, got {self.ppl_examples}")])


@dataclass
class Lora:
    """LoRA adapters (peft) or full fine-tuning."""
    use: bool = True
    """Train a LoRA adapter (True) or every weight of the model (False)."""
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA branch."""
    target_modules: tuple[str, ...] | None = None
    """Modules to adapt (None: the attention and MLP projections of the architecture, labcore.models.LORA_TARGETS)."""

    def __post_init__(self):
        if self.target_modules is not None:
            self.target_modules = tuple(self.target_modules)
        _check([(self.r >= 1, f"r must be >= 1, got {self.r}"),
                (self.alpha >= 1, f"alpha must be >= 1, got {self.alpha}"),
                (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")])


@dataclass
class Optim:
    """AdamW and its schedule; the micro-batch and accumulation of ``labcore.training.Learner``."""
    lr: float = 2e-5
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    scheduler: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule after the linear warm-up: 'constant' or 'cosine' decay to 0."""
    warmup_ratio: float = 0.0
    """Fraction of the optimiser steps spent in linear warm-up."""
    epochs: int = 1
    """Passes over the training data (per iteration / round)."""
    batch_size: int = 8
    """Examples (pairs, or queries with all their responses) per forward pass on one device."""
    grad_accum: int = 1
    """Micro-batches per optimiser step (gradient accumulation)."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this value (None = off)."""

    def __post_init__(self):
        self.betas = tuple(self.betas)
        check_choices(self)
        _check([(self.lr > 0, f"lr must be > 0, got {self.lr}"),
                (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
                (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"),
                (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
                (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
                (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
                (self.max_grad_norm is None or self.max_grad_norm > 0,
                 f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")])

    def warmup_steps(self, total_steps: int) -> int:
        """Warm-up length in optimiser steps for a run of ``total_steps``."""
        return int(round(self.warmup_ratio * total_steps))


@dataclass
class Runtime:
    """Where and how a run executes."""
    device: str = "auto"
    """Device: auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps."""
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Training precision: auto (bf16 autocast on a CUDA GPU that supports it, fp32 elsewhere), bf16, fp16, fp32."""
    threads: int = 0
    """torch CPU threads during the run (0 = torch's default; 1 is often fastest for tiny models on a busy CPU)."""
    seed: int = 0
    """Seed of data order, sampling, dropout and initialisation."""

    def __post_init__(self):
        check_choices(self)
        _check([(self.threads >= 0, f"threads must be >= 0, got {self.threads}")])


# ----------------------------------------------------------------------------------------------------------------
# RAFT
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RAFTConfig:
    """RAFT settings (Dong et al. 2023, arXiv 2304.06767, Alg. 1). Defaults: LMFlow ``RaftAlignerArguments`` and the
    paper's HH recipe."""
    model: str = "tiny"
    """Policy: a preset of labcore.models.PRESETS or a local Hugging Face directory."""
    reward: str = "sentiment"
    """Reward: sentiment | gold | length | a labcore reward-model directory | a HF classifier path or name."""
    task: str = "tiny-sentiment"
    """Prompt pool and held-out set: a task of labcore.tasks.TASKS."""
    iterations: int = 20
    """T: RAFT iterations (LMFlow num_raft_iteration default 20)."""
    raft_batch_size: int = 1024
    """b: samples kept (and fine-tuned on) per iteration (LMFlow raft_batch_size; HH recipe 1024)."""
    selection: Literal["local", "global", "random"] = "local"
    """'local': best of K per prompt for b prompts; 'global': one sample for each of b/alpha prompts, keep top alpha;
    'random': the control, one of K chosen at random per prompt (same samples, same discard rule, no reward)."""
    num_samples: int = 8
    """K: samples per prompt in local selection (HH recipe K = 8 = 1/top_reward_percentage)."""
    alpha: float = 0.2
    """Kept fraction in global selection (LMFlow top_reward_percentage 0.2)."""
    min_new_tokens: int = 64
    """Lower end of the new-token limit drawn in [min_new_tokens, sampling.max_new_tokens) (LMFlow 64 and 128)."""
    length_draw: Literal["batch", "iteration"] = "batch"
    """Draw the new-token limit once per generation batch ('batch', as LMFlow) or once per iteration."""
    response_only: bool = True
    """SFT loss on response tokens only (False: prompt + response, as the reference)."""
    eos_on_truncated: bool = True
    """Append the end token to every kept sample (True, the tiny presets), or only to samples that ended before the
    new-token limit (False, the SmolLM2 presets: a cut-off sample must not teach the model to stop there)."""
    max_length: int | None = None
    """Token budget of an SFT pair (default: the model's context); prompts are cut from the left."""
    min_tokens: int = 2
    """Discard rule: samples with fewer new tokens (or empty text) get reward -inf."""
    min_reward: float | None = None
    """Keep a selected sample only if its reward is at least this (None: keep the best whatever it scores). With a
    0/1 verifiable reward, 0.5 keeps correct answers only: rejection-sampling fine-tuning, never the best wrong one."""
    max_repetition: float = 0.5
    """Discard rule: samples whose share of repeated word 3-grams exceeds this get reward -inf (1.0 = off)."""
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.85, max_new_tokens=128))
    """Sampling of the data collection (LMFlow: temperature 0.85 for HH, 0.7 for IMDB; top-k 0, top-p 1)."""
    eval: Eval = field(default_factory=lambda: Eval(temperature=0.85, max_new_tokens=127))
    """The held-out evaluation, every iteration (iteration 0 is the base model)."""
    lora: Lora = field(default_factory=Lora)
    """LoRA or full fine-tuning of the SFT step."""
    optim: Optim = field(default_factory=lambda: Optim(lr=2e-5, epochs=4, batch_size=8))
    """The SFT step: constant lr 2e-5 and 4 epochs over the kept set per iteration (HH recipe; IMDB: 2e-5 -> 2e-4).
    One optimiser for the whole run: its state carries across iterations."""
    runtime: Runtime = field(default_factory=Runtime)
    """Device, precision, threads, seed."""

    def __post_init__(self):
        check_choices(self)
        _check([
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.raft_batch_size >= 1, f"raft_batch_size must be >= 1, got {self.raft_batch_size}"),
            (self.num_samples >= 1, f"num_samples (K) must be >= 1, got {self.num_samples}"),
            (0 < self.alpha <= 1, f"alpha must be in (0, 1], got {self.alpha}"),
            (1 <= self.min_new_tokens < self.sampling.max_new_tokens,
             f"need 1 <= min_new_tokens < sampling.max_new_tokens (the range is [min, max)), got "
             f"[{self.min_new_tokens}, {self.sampling.max_new_tokens})"),
            (self.max_length is None or self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}"),
            (self.min_tokens >= 0, f"min_tokens must be >= 0, got {self.min_tokens}"),
            (0 <= self.max_repetition <= 1, f"max_repetition must be in [0, 1], got {self.max_repetition}"),
        ])

    @property
    def prompts_per_iteration(self) -> int:
        """Prompts drawn per iteration: b (local) or b / alpha (global, LMFlow ``M = raft_batch_size / alpha``)."""
        if self.selection in ("local", "random"):
            return self.raft_batch_size
        return max(self.raft_batch_size, int(round(self.raft_batch_size / self.alpha)))

    @property
    def samples_per_prompt(self) -> int:
        """K for local (and random) selection, 1 for global selection."""
        return self.num_samples if self.selection in ("local", "random") else 1


# ----------------------------------------------------------------------------------------------------------------
# RRHF
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RRHFConfig:
    """RRHF settings (Yuan et al. 2023, arXiv 2304.05302): response collection (Table 1) and training (Eq. 5).
    Defaults from the reference train.sh (8 GPUs x 1 query x 8 accumulation = 64 queries per step)."""
    model: str = "tiny"
    """Policy: a preset of labcore.models.PRESETS or a local Hugging Face directory."""
    reward: str = "sentiment"
    """Reward: sentiment | gold | length | a labcore reward-model directory | a HF classifier path or name."""
    task: str = "tiny-sentiment"
    """Queries, dataset responses and held-out set: a task of labcore.tasks.TASKS."""
    policy: Literal["BP", "DP", "D"] = "BP"
    """Sampling policy of Table 1: BP (beam + dataset), DP (diverse beam + dataset), D (samples only)."""
    iterations: int = 1
    """Rounds of collect + train: 1 = the policy alone, n = IP-n (collect again with the n-1-th trained model)."""
    queries: int = 256
    """Training queries (distinct, drawn once with the seed; every round re-collects the same queries)."""
    num_samples: int = 4
    """Policy responses per query (beams, diverse groups or samples)."""
    num_beams: int = 4
    """Beam width of BP (at least num_samples)."""
    diversity_penalty: float = 1.0
    """Hamming penalty of DP (paper: 1.0)."""
    dataset_responses: int = 8
    """Dataset responses per query at most (BP/DP; 0 = none)."""
    heldout_queries: int = 64
    """Held-out queries (with dataset responses) for the ranking accuracy of p_i."""
    length_penalty: float = 1.0
    """alpha of Eq. 1; larger favours longer responses (log-probs are negative)."""
    rrhf_weight: float = 1.0
    """Weight on L_rank in Eq. 5 (paper: 1; 10 and 100 were worse)."""
    sft_reduction: Literal["masked_mean", "sum", "reference"] = "masked_mean"
    """L_ft over the best response's tokens: masked_mean (issue #51 fix) | sum (Eq. 4 as printed) | reference."""
    batch_reduction: Literal["sum", "mean"] = "mean"
    """Over a micro-batch's queries; 'mean' / accumulation = mean over the step's queries (as the reference)."""
    max_length: int = 192
    """Longest query + response, in tokens (train.sh: 192); queries are cut from the left."""
    min_query_tokens: int = 1
    """Query tokens always kept when responses are long."""
    response_logits_only: bool = True
    """Apply the LM head only where response tokens are predicted (False: full logits at every position)."""
    share_query_prefix: bool = False
    """Run each query once and its K responses on its KV cache (faster; the query's dropout masks are shared)."""
    eval_every: int = 0
    """Optimiser steps between evaluations (0 = after every epoch)."""
    checkpoint_every: int = 0
    """Optimiser steps between checkpoints (0 = after every epoch)."""
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.8, max_new_tokens=128))
    """Collection: temperature of D (DP in the paper: 0.8; search ignores it), new-token limit (128)."""
    eval: Eval = field(default_factory=lambda: Eval(temperature=0.85, max_new_tokens=127))
    """The held-out evaluation (at step 0 and every eval_every steps)."""
    lora: Lora = field(default_factory=lambda: Lora(use=False, r=8, alpha=16))
    """LoRA (issue #31, never done in the reference) or full fine-tuning (the reference)."""
    optim: Optim = field(default_factory=lambda: Optim(lr=2e-5, epochs=3, scheduler="cosine", warmup_ratio=0.03,
                                                       batch_size=4, grad_accum=16, max_grad_norm=1.0))
    """train.sh: lr 2e-5, 3 epochs, cosine, warm-up 3%, weight decay 0; batch_size x grad_accum = 64 queries/step."""
    runtime: Runtime = field(default_factory=lambda: Runtime(seed=42))
    """Device, precision, threads, seed."""

    def __post_init__(self):
        check_choices(self)
        _check([
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.queries >= 1, f"queries must be >= 1, got {self.queries}"),
            (self.num_samples >= 1, f"num_samples must be >= 1, got {self.num_samples}"),
            (self.num_beams >= 1, f"num_beams must be >= 1, got {self.num_beams}"),
            (self.diversity_penalty >= 0, f"diversity_penalty must be >= 0, got {self.diversity_penalty}"),
            (self.dataset_responses >= 0, f"dataset_responses must be >= 0, got {self.dataset_responses}"),
            (self.heldout_queries >= 0, f"heldout_queries must be >= 0, got {self.heldout_queries}"),
            (self.length_penalty >= 0, f"length_penalty must be >= 0, got {self.length_penalty}"),
            (self.rrhf_weight >= 0, f"rrhf_weight must be >= 0, got {self.rrhf_weight}"),
            (self.max_length >= 2 and 1 <= self.min_query_tokens < self.max_length,
             f"need max_length >= 2 and 1 <= min_query_tokens < max_length, got {self.max_length} and "
             f"{self.min_query_tokens}"),
            (not self.share_query_prefix or self.response_logits_only,
             "share_query_prefix needs response_logits_only=True"),
            (min(self.eval_every, self.checkpoint_every) >= 0, "eval_every and checkpoint_every must be >= 0"),
        ])

    @property
    def queries_per_step(self) -> int:
        """Queries per optimiser step: optim.batch_size x optim.grad_accum (train.sh: 64)."""
        return self.optim.batch_size * self.optim.grad_accum


# ----------------------------------------------------------------------------------------------------------------
# The core-set experiment
# ----------------------------------------------------------------------------------------------------------------
CORESET_ARMS = ("coreset", "random", "stratified", "full")


@dataclass
class CoresetExperimentConfig:
    """The 0.5% experiment (Chen et al. 2023, arXiv 2305.09246): instruction-tune on the core-set vs random 0.5% vs
    all task data. Defaults fit 20 minutes on 2 shared CPU cores (docs/coreset.md)."""
    task: str = "sentiment"
    """Target task category (the records' 'task' field); sentiment has 8,052 train examples, so 0.5% = 40."""
    budget: float | int = 0.005
    """Core-set size: a fraction in (0, 1) of the task's train examples (the paper's 0.5%) or a count."""
    n_clusters: int = 32
    """K of K-means over all tasks' train examples (the paper leaves K open; labcore select's default)."""
    encoder: str = "minilm"
    """Sentence encoder of labcore.embed.embed_texts (minilm works offline)."""
    data: str = str(DATA_DIR / "instructions.jsonl.gz")
    """Instruction set (.jsonl / .jsonl.gz) with train and test splits."""
    model: str = "tiny"
    """Base model: a preset of labcore.models.PRESETS or a local Hugging Face directory."""
    arms: tuple[str, ...] = CORESET_ARMS
    """Training sets to compare: any of coreset, random, stratified, full."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One run per arm per seed: the seed draws the random/stratified sample and the training order."""
    steps: int = 150
    """S: optimiser steps of EVERY arm (compute-matched rule); the full arm is capped at S x optim.batch_size."""
    max_length: int | None = None
    """Token budget of a training pair (default: the model's context); prompts are cut from the left."""
    eval_per_source: int = 100
    """Held-out test examples per source dataset (a fixed seeded sample, the same for every arm)."""
    max_new_tokens: int = 8
    """New-token limit of the greedy answers (every gold answer is at most 4 words)."""
    eval_batch_size: int = 64
    """Prompts per generation batch of the evaluation."""
    cache: bool = True
    """Cache embeddings and K-means on disk ($LABCORE_CACHE, default ~/.cache/labcore)."""
    lora: Lora = field(default_factory=lambda: Lora(use=False, r=16, alpha=32))
    """Full fine-tuning by default (learns best on the tiny model); lora.use=true for LoRA."""
    optim: Optim = field(default_factory=lambda: Optim(lr=1e-3, scheduler="cosine", warmup_ratio=10 / 150,
                                                       batch_size=16))
    """AdamW, 10 warm-up steps of 150 then cosine to 0, 16 pairs per optimiser step."""
    runtime: Runtime = field(default_factory=lambda: Runtime(threads=1))
    """threads 1 is ~10x faster than 2 on a busy 2-core machine; seed: K-means, KCenterGreedy, evaluation sample."""

    def __post_init__(self):
        self.arms = tuple(self.arms)
        self.seeds = tuple(int(s) for s in self.seeds)
        _check([
            (bool(self.task), "task must be a non-empty task name"),
            (self.n_clusters >= 1, f"n_clusters must be >= 1, got {self.n_clusters}"),
            (len(self.arms) >= 1 and set(self.arms) <= set(CORESET_ARMS) and len(set(self.arms)) == len(self.arms),
             f"arms must be distinct names among {CORESET_ARMS}, got {self.arms}"),
            (len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds),
             f"seeds must be one or more distinct ints, got {self.seeds}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.optim.warmup_steps(self.steps) < self.steps, "the warm-up must be shorter than the run"),
            (self.optim.grad_accum == 1, "the experiment counts one micro-batch per step: optim.grad_accum must be 1"),
            (self.max_length is None or self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}"),
            (self.eval_per_source >= 1, f"eval_per_source must be >= 1, got {self.eval_per_source}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
        ])
        from labcore.coreset import resolve_budget

        resolve_budget(self.budget, n_task=10**9)  # raises a clear ValueError on a bad budget


__all__ = ["Sampling", "Eval", "Lora", "Optim", "Runtime", "RAFTConfig", "RRHFConfig", "CoresetExperimentConfig",
           "CORESET_ARMS", "check_choices", "union_members"]
