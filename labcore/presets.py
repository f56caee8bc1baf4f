"""Named settings as data, in one place: RAFT and RRHF presets, each task's evaluation protocol, one fast-mode
overlay per config class, and one override parser (``--set optim.lr=1e-4 num_samples=8``).

A preset is a dict of the fields it changes (nested pieces as nested dicts); :func:`build` lays it over the config's
defaults, then the fast overlay (``LABCORE_FAST=1``), then the overrides, and constructs the config (so every value is
validated where it is declared, in :mod:`labcore.config`). To add a preset, add an entry below; to add a task, add it
to :mod:`labcore.tasks` and its evaluation protocol to :data:`EVAL`.
Importable without torch.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any, Literal, Mapping, Sequence

from labcore import DATA_DIR, fast_mode
from labcore.config import CoresetExperimentConfig, RAFTConfig, RRHFConfig, union_members

TINY_RM = str(DATA_DIR / "models" / "tiny-rm")
#: SmolLM2's LoRA: rank 8 on the attention projections (an adapter of 3.7 MB; all seven linear layers at r 16: 20 MB).
SMOL_LORA = dict(use=True, r=8, alpha=16, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))

#: The held-out evaluation of each task (labcore.config.Eval fields), shared by every method evaluated on it.
EVAL: dict[str, dict[str, Any]] = {
    "tiny-sentiment": dict(temperature=0.85, max_new_tokens=47, batch_size=64, prompts=128, ppl_examples=128),
    "tiny-helpful": dict(temperature=0.85, max_new_tokens=47, batch_size=64, prompts=128, ppl_examples=128),
    "imdb": dict(temperature=0.7, max_new_tokens=47, batch_size=64, prompts=256, ppl_examples=256),
    "hh": dict(temperature=0.85, max_new_tokens=127, batch_size=32, prompts=256, ppl_examples=256),
    # SmolLM2 on 2 CPU cores: fewer held-out prompts (one evaluation ~20 s)
    "smol-sentiment": dict(temperature=0.85, max_new_tokens=40, batch_size=64, prompts=64, ppl_examples=64),
    "smol-arithmetic": dict(temperature=0.7, max_new_tokens=32, batch_size=64, prompts=128, ppl_examples=64),
}

#: RAFT presets: ``help`` + RAFTConfig fields. Tuned for <= 10 minutes on 2 CPU cores (docs/raft.md).
RAFT: dict[str, dict[str, Any]] = {
    "tiny-sentiment": dict(
        help="tiny base, review openings, VADER sentiment reward (the IMDB/DistilBERT role)",
        # later iterations raise the reward further, but distinct-2 falls below that of real positive reviews
        model="tiny", reward="sentiment", task="tiny-sentiment", iterations=4, raft_batch_size=128,
        selection="local", num_samples=4, min_new_tokens=24, min_tokens=4, max_repetition=0.3,
        sampling=dict(temperature=0.85, max_new_tokens=48, batch_size=64), eval=EVAL["tiny-sentiment"],
        lora=dict(r=16, alpha=32), optim=dict(lr=5e-4, epochs=2, batch_size=16)),
    "tiny-helpful": dict(
        help="tiny base, dialogue requests, learned reward model data/models/tiny-rm; gold logged",
        # min_tokens=8 discards the 2-4 token "Happy to help!" answers that the learned reward model over-rates
        # (with min_tokens=2 they take over: distinct-2 0.71 -> 0.11)
        model="tiny", reward=TINY_RM, task="tiny-helpful", iterations=4, raft_batch_size=64, selection="local",
        num_samples=8, min_new_tokens=32, min_tokens=8, max_repetition=0.3,
        sampling=dict(temperature=0.85, max_new_tokens=48, batch_size=64), eval=EVAL["tiny-helpful"],
        lora=dict(r=16, alpha=32), optim=dict(lr=5e-4, epochs=2, batch_size=16)),
    "smol-sentiment": dict(
        help="SmolLM2-135M-Instruct + LoRA, review openings, VADER reward; AFINN judges",
        model="smollm2-135m", reward="sentiment", task="smol-sentiment", iterations=4, raft_batch_size=64,
        # eos_on_truncated=False: with EOS after cut-off samples, iteration 2's answers halved in length (39 -> 20
        # tokens) and the eval reward fell back (0.43 -> 0.27)
        selection="local", num_samples=4, min_new_tokens=24, min_tokens=4, max_repetition=0.3, eos_on_truncated=False,
        sampling=dict(temperature=0.85, max_new_tokens=40, batch_size=64), eval=EVAL["smol-sentiment"],
        lora=SMOL_LORA, optim=dict(lr=3e-4, epochs=2, batch_size=8)),
    "smol-arithmetic": dict(
        help="SmolLM2-135M-Instruct + LoRA, addition problems, exact-answer reward (rejection-sampling fine-tuning)",
        model="smollm2-135m", reward="arithmetic", task="smol-arithmetic", iterations=3, raft_batch_size=64,
        # min_reward=0.5: only correct answers are kept (without it, the best of 8 wrong answers was trained on for
        # the 59% of problems with no correct sample)
        selection="local", num_samples=8, min_new_tokens=24, min_tokens=1, max_repetition=0.5, eos_on_truncated=False,
        min_reward=0.5,
        sampling=dict(temperature=0.7, max_new_tokens=32, batch_size=64), eval=EVAL["smol-arithmetic"],
        lora=SMOL_LORA, optim=dict(lr=3e-4, epochs=2, batch_size=8)),
    "gpt2-imdb": dict(
        help="GPT-2, IMDB openings (Hub or --data), DistilBERT IMDB reward (the reference IMDB recipe)",
        # IMDB recipe: lr 2e-4 constant, 5 iterations, 4 epochs, 320 prompts per iteration (b = 64 kept at
        # alpha 0.2, global), output length [16, 48), temperature 0.7; full fine-tuning of GPT-2
        model="gpt2", reward="lvwerra/distilbert-imdb", task="imdb", iterations=5, raft_batch_size=64,
        selection="global", alpha=0.2, min_new_tokens=16,
        sampling=dict(temperature=0.7, max_new_tokens=48, batch_size=64), eval=EVAL["imdb"],
        lora=dict(use=False), optim=dict(lr=2e-4, epochs=4, batch_size=8)),
    "gpt2-hh": dict(
        help="GPT-2, Anthropic HH prompts (Hub or --data), HH reward model (the reference HH recipe)",
        # HH recipe: gpt2, 20 iterations, lr 2e-5 constant, 4 epochs, local selection K = 8, b = 1024
        model="gpt2", reward="weqweasdas/hh_rlhf_rm_open_llama_3b", task="hh", iterations=20,
        raft_batch_size=1024, selection="local", num_samples=8, min_new_tokens=64,
        sampling=dict(temperature=0.85, max_new_tokens=128, batch_size=32), eval=EVAL["hh"],
        lora=dict(use=False), optim=dict(lr=2e-5, epochs=4, batch_size=8)),
}

#: RRHF presets: ``help`` + RRHFConfig fields.
RRHF: dict[str, dict[str, Any]] = {
    "tiny-sentiment": dict(
        help="tiny base + LoRA, review openings, VADER; BP = beam search + review continuations",
        model="tiny", reward="sentiment", task="tiny-sentiment", policy="BP", queries=256, num_samples=4,
        dataset_responses=4, heldout_queries=64, max_length=96,
        sampling=dict(max_new_tokens=48, batch_size=64), eval=EVAL["tiny-sentiment"],
        lora=dict(use=True, r=16, alpha=32), optim=dict(lr=5e-4, epochs=2, batch_size=4, grad_accum=4),
        runtime=dict(seed=0)),
    "tiny-helpful": dict(
        help="tiny base + LoRA, dialogue requests, reward model tiny-rm; BP = beam + styled answers",
        # lr 1e-3 collapsed into word salad (ppl 66): ~36 summed pairs per query make L_rank dominate L_ft
        model="tiny", reward=TINY_RM, task="tiny-helpful", policy="BP", queries=256, num_samples=4,
        dataset_responses=8, heldout_queries=64, max_length=128,
        sampling=dict(max_new_tokens=48, batch_size=64), eval=EVAL["tiny-helpful"],
        lora=dict(use=True, r=16, alpha=32), optim=dict(lr=3e-4, epochs=2, batch_size=4, grad_accum=4),
        runtime=dict(seed=0)),
    "smol-sentiment": dict(
        help="SmolLM2-135M-Instruct + LoRA, review openings, VADER; IP-2 of D (6 samples of the model per opening)",
        # BP (4 beams + 2 review continuations) barely moved the policy: eval VADER 0.263 -> 0.268, AFINN 0.22 ->
        # 0.33 (the beams are near-copies; the continuations are of both labels); one round of D at lr 3e-4 (12
        # steps) did not either (0.244, AFINN 0.27). Two rounds (IP-2) at lr 1e-3 give it RAFT's chance to move.
        model="smollm2-135m", reward="sentiment", task="smol-sentiment", policy="D", iterations=2, queries=48,
        num_samples=6, dataset_responses=0, heldout_queries=32, max_length=96,
        sampling=dict(temperature=0.85, max_new_tokens=40, batch_size=64), eval=EVAL["smol-sentiment"],
        lora=SMOL_LORA, optim=dict(lr=1e-3, epochs=2, batch_size=4, grad_accum=2), runtime=dict(seed=0)),
    "smol-arithmetic": dict(
        help="SmolLM2-135M-Instruct + LoRA, addition problems, exact-answer reward; D = 6 samples per problem",
        # D, not BP: the dataset responses hold the worked answer, so BP would be supervised learning on the
        # solutions; D learns from the reward of the model's own samples only, as RAFT does
        model="smollm2-135m", reward="arithmetic", task="smol-arithmetic", policy="D", queries=64, num_samples=6,
        dataset_responses=0, heldout_queries=32, max_length=96,
        sampling=dict(temperature=0.7, max_new_tokens=32, batch_size=64), eval=EVAL["smol-arithmetic"],
        lora=SMOL_LORA, optim=dict(lr=3e-4, epochs=2, batch_size=4, grad_accum=2), runtime=dict(seed=0)),
    "gpt2-imdb": dict(
        help="GPT-2 (full), IMDB openings (Hub or --data), DistilBERT IMDB reward (Table 10)",
        # Table 10: GPT-2, DistilBERT IMDB reward, 48 new tokens, top-k 50, batch 64, 5 epochs; BP
        model="gpt2", reward="lvwerra/distilbert-imdb", task="imdb", policy="BP", queries=4096, num_samples=4,
        dataset_responses=1, heldout_queries=128, max_length=192,
        sampling=dict(top_k=50, max_new_tokens=48, batch_size=64), eval=EVAL["imdb"],
        lora=dict(use=False), optim=dict(epochs=5, batch_size=8, grad_accum=8)),
    "pythia-hh": dict(
        help="Pythia-160m (full), Anthropic HH (Hub or --data), HH reward model; DP (Table 2)",
        # Table 2 setting on a small open model: DP (diverse beam + chosen/rejected), train.sh defaults
        model="pythia-160m", reward="weqweasdas/hh_rlhf_rm_open_llama_3b", task="hh", policy="DP", queries=4096,
        num_samples=4, dataset_responses=2, heldout_queries=128, max_length=192,
        sampling=dict(max_new_tokens=128, batch_size=32), eval=EVAL["hh"],
        lora=dict(use=False), optim=dict(batch_size=4, grad_accum=16)),
}

#: Core-set experiment presets (labcore coreset-experiment --preset NAME): CoresetExperimentConfig fields.
CORESET: dict[str, dict[str, Any]] = {
    "tiny": dict(help="the tiny base model, full fine-tuning, 150 steps of 16 (the defaults; ~20 min on 2 cores)"),
    "smollm2": dict(
        help="SmolLM2-135M-Instruct + LoRA r 8, 24 steps of 8 (compute capped to fit ~20 min on 2 cores)",
        # a pretrained instruct model: LoRA at lr 3e-4, far fewer steps than the tiny model needs; the full arm is
        # capped at 24 x 8 = 192 examples (results.json says so), like every arm's compute
        model="smollm2-135m", lora=SMOL_LORA, steps=24, eval_per_source=40,
        optim=dict(lr=3e-4, scheduler="cosine", warmup_ratio=0.1, batch_size=8), runtime=dict(threads=2)),
}

#: Fast mode (LABCORE_FAST=1): tiny sizes and few steps, laid over any preset of the config class.
_FAST_EVAL = dict(prompts=8, ppl_examples=8, max_new_tokens=11, batch_size=16)
FAST: dict[type, dict[str, Any]] = {
    RAFTConfig: dict(iterations=2, raft_batch_size=8, num_samples=2, min_new_tokens=8,
                     sampling=dict(max_new_tokens=12, batch_size=16), eval=_FAST_EVAL,
                     optim=dict(epochs=1, batch_size=4)),
    RRHFConfig: dict(queries=8, num_samples=2, num_beams=2, dataset_responses=2, heldout_queries=4, max_length=96,
                     eval_every=0, checkpoint_every=0, sampling=dict(max_new_tokens=8, batch_size=8),
                     eval=_FAST_EVAL, optim=dict(epochs=1, batch_size=2, grad_accum=2)),
    CoresetExperimentConfig: dict(seeds=(0,), steps=5, eval_per_source=8, optim=dict(warmup_ratio=0.2)),
}

PRESETS: dict[type, dict[str, dict[str, Any]]] = {RAFTConfig: RAFT, RRHFConfig: RRHF, CoresetExperimentConfig: CORESET}


class UnknownSetting(ValueError):
    """An unknown preset, field or value: the message names it and what is known."""


# ----------------------------------------------------------------------------------------------------------------
# Building a config
# ----------------------------------------------------------------------------------------------------------------
def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _construct(cls: type, values: Mapping) -> Any:
    """``cls(**values)`` with nested config pieces built from nested dicts."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise UnknownSetting(f"unknown {cls.__name__} field(s) {', '.join(sorted(unknown))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            f = fields[name]  # a piece's defaults are the ones this config declares for it (its default_factory)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else hint()
            try:
                value = _construct(hint, _merge(_shallow(default), value))
            except ValueError as e:  # name the piece: "sampling.temperature must be > 0"
                raise type(e)(f"{name}.{e}") from None
        kwargs[name] = value
    return cls(**kwargs)


def _shallow(piece) -> dict[str, Any]:
    return {f.name: getattr(piece, f.name) for f in dataclasses.fields(piece)}


def to_dict(config) -> dict[str, Any]:
    """A config as nested plain dicts (what run folders save as JSON)."""
    return dataclasses.asdict(config)


def build(cls: type, preset: str | None = None, *, fast: bool | None = None,
          overrides: Mapping[str, Any] | Sequence[str] | None = None) -> Any:
    """A config of ``cls`` (RAFTConfig, RRHFConfig, CoresetExperimentConfig) from a preset, fast mode and overrides.

    Args:
        preset: a name in ``PRESETS[cls]`` (None: the class defaults).
        fast: lay the fast overlay on top (default: ``LABCORE_FAST=1``).
        overrides: ``{"optim.lr": 1e-4, "lora": {"r": 4}}`` or ``["optim.lr=1e-4", ...]`` (:func:`parse_overrides`);
            values of None are ignored.
    Raises:
        UnknownSetting / ValueError: an unknown preset or field, or a value the config rejects (one line, naming it).
    """
    values: dict[str, Any] = {}
    if preset is not None:
        known = PRESETS.get(cls, {})
        if preset not in known:
            raise UnknownSetting(f"unknown preset {preset!r}; known: {', '.join(known)}")
        values = {k: v for k, v in known[preset].items() if k != "help"}
    if fast_mode() if fast is None else fast:
        values = _merge(values, FAST.get(cls, {}))
    if overrides:
        pairs = parse_overrides(cls, overrides) if not isinstance(overrides, Mapping) else \
            {k: v for k, v in overrides.items() if v is not None}
        for key, value in pairs.items():
            values = _merge(values, _nest(cls, key, value))
    return _construct(cls, values)


def _nest(cls: type, key: str, value: Any) -> dict:
    """``"optim.lr"`` -> ``{"optim": {"lr": value}}``; a bare leaf name is found in the config if it is unique."""
    hints = typing.get_type_hints(cls)
    if key in hints and dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
        return {key: dict(value)}  # a whole piece: {"lora": {"r": 4}}
    path = resolve_field(cls, key)
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


def _leaves(cls: type, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(_leaves(hint, prefix + (f.name,)))
        else:
            out[prefix + (f.name,)] = hint
    return out


def resolve_field(cls: type, key: str) -> tuple[str, ...]:
    """The path of a field: ``"optim.lr"`` as written, or a leaf name such as ``"lr"`` when only one field has it."""
    leaves = _leaves(cls)
    path = tuple(key.split("."))
    if path in leaves:
        return path
    hits = [p for p in leaves if p[-1] == key]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UnknownSetting(f"{key!r} is ambiguous in {cls.__name__}: say {' or '.join('.'.join(p) for p in hits)}")
    raise UnknownSetting(f"unknown {cls.__name__} field {key!r}")


def _coerce(hint: Any, text: str, key: str) -> Any:
    """Parse ``text`` as a value of type ``hint`` (bool, int, float, str, Literal, tuples, Optional)."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    members = union_members(hint)
    if members:
        if text.lower() in ("none", "null") and type(None) in members:
            return None
        for arg in members:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, text, key)
            except ValueError:
                continue
        raise UnknownSetting(f"{key}: cannot read {text!r} as {hint}")
    if origin is Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise UnknownSetting(f"{key} must be one of {', '.join(map(repr, args))}, got {text!r}")
    if origin is tuple:
        parts = [p for p in text.split(",") if p.strip()]
        item = args[0] if args else str
        return tuple(_coerce(item, p.strip(), key) for p in parts)
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise UnknownSetting(f"{key} takes true or false, got {text!r}")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise UnknownSetting(f"{key} takes a number ({hint.__name__}), got {text!r}") from None
    return text


def parse_overrides(cls: type, pairs: Sequence[str]) -> dict[str, Any]:
    """``["optim.lr=1e-4", "num_samples=8", "lora.use=false"]`` -> ``{"optim.lr": 1e-4, ...}``, typed by the field.

    A field is named by its dotted path or, when unique, by its leaf name; tuples are comma-separated; ``none``
    clears an optional field.
    """
    leaves = _leaves(cls)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise UnknownSetting(f"--set takes FIELD=VALUE, got {pair!r}")
        path = resolve_field(cls, key.strip())
        out[".".join(path)] = _coerce(leaves[path], text.strip(), ".".join(path))
    return out


__all__ = ["EVAL", "RAFT", "RRHF", "CORESET", "FAST", "PRESETS", "TINY_RM", "SMOL_LORA", "UnknownSetting", "build", "parse_overrides",
           "resolve_field", "to_dict"]
