"""The 0.5% experiment: instruction-tune on a core-set, a random sample, or the whole task, and compare.

Chen et al. 2023, "Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training Data Instruction
Tuning", arXiv 2305.09246, run as the paper runs it, in the tiny world. For one target task category (the paper's
P3 categories have several source datasets each; so do the tiny world's, see data/README.md):

  (a) ``coreset``     the paper's selection (``labcore.coreset.select_coreset``): embed every train example of
                      ALL tasks, K-means over all of them, distribution centre -> task centre -> KCenterGreedy up
                      to the budget (0.5% of the task's train examples);
  (b) ``random``      a uniform random sample of the task's train examples of the same size (several seeds);
  (b') ``stratified`` a cluster-stratified random sample of the same size (same K-means clusters);
  (c) ``full``        every train example of the task;

each instruction-tunes a fresh copy of the base model (response-only SFT with EOS, ``labcore.sft``), then answers
held-out test examples greedily; the score is exact match per source dataset,

    acc_s = (1 / |T_s|) * sum_{(x, y) in T_s} [ norm(generate(x)) == norm(y) ],   norm(t) = lower(strip(t))

(inner whitespace collapsed to single spaces), reported with the untuned base model as a floor.

Deliberate deviations / choices the paper leaves open (all documented in docs/coreset.md):
  * Fair comparison rule: every arm trains for the SAME number of optimiser steps S with the same batch size B,
    learning-rate schedule and seed (compute-matched). A small arm therefore repeats its examples for about
    S * B / n epochs; the full arm sees S * B examples (a fraction of an epoch when S * B < n: then it is capped,
    and results.json says so). The paper trains every arm "to convergence"; on 2 shared CPU cores a fixed,
    equal step budget is the affordable proxy, and the training losses in results.json show where each arm got.
  * Prompt format: the base model was pretrained on "\\n\\nHuman: ...\\n\\nAssistant: ..." dialogues, so the
    instruction is the Human turn (``format_chat``) and " " + output the Assistant turn (+ EOS).
  * Full fine-tuning by default: on the 2.5M-parameter tiny model it learns faster than LoRA at the same step
    budget (``finetune="lora"`` switches; see docs/coreset.md for the pilot numbers).
  * Every arm is repeated for every seed in ``seeds``: the seed picks the random / stratified sample AND the
    training order; the core-set and the full set stay fixed, so their spread is training noise alone.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from labcore.coreset import (
    CoresetResult,
    example_text,
    fit_kmeans,
    load_instruction_set,
    parse_budget,
    random_baseline,
    resolve_budget,
    select_coreset,
    stratified_baseline,
)
from labcore import DATA_DIR, fast_mode
from labcore.utils import resolve_device

ARMS = ("coreset", "random", "stratified", "full")
"""The training sets compared, in table order (the untuned base model is always evaluated too)."""
FINETUNES = ("full", "lora")
RADIUS_BUDGETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)
"""Budgets (fractions of the task) of the covering-radius comparison in results.json / results.md."""


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ExperimentConfig:
    """Settings of the 0.5% experiment. Defaults fit 20 minutes on 2 shared CPU cores (docs/coreset.md)."""
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
    arms: tuple[str, ...] = ARMS
    """Training sets to compare: any of coreset, random, stratified, full."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One run per arm per seed: the seed draws the random/stratified sample and the training order."""
    finetune: str = "full"
    """'full' (every weight trains; default, learns best on the tiny model) or 'lora'."""
    lora_r: int = 16
    """LoRA rank (finetune='lora'); alpha = 2 r."""
    lr: float = 1e-3
    """Peak learning rate (AdamW), after warmup; cosine decay to 0 over the steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 10
    """Linear warmup steps."""
    batch_size: int = 16
    """Pairs per optimiser step (B)."""
    steps: int = 150
    """S: optimiser steps of EVERY arm (compute-matched rule); the full arm is capped at S * B examples."""
    max_length: int | None = None
    """Token budget of a training pair (default: the model's context); prompts are cut from the left."""
    eval_per_source: int = 100
    """Held-out test examples per source dataset (a fixed seeded sample, the same for every arm)."""
    max_new_tokens: int = 8
    """New-token limit of the greedy answers (every gold answer is at most 4 words)."""
    eval_batch_size: int = 64
    """Prompts per generation batch."""
    device: str = "auto"
    """Device: auto (cuda > mps > cpu), cpu, cuda, ..."""
    num_threads: int = 1
    """torch CPU threads during the run (0 = torch's default; 1 is ~10x faster than 2 on a busy 2-core machine)."""
    cache: bool = True
    """Cache embeddings and K-means on disk ($LABCORE_CACHE, default ~/.cache/labcore)."""
    seed: int = 0
    """Seed of K-means, of the core-set's KCenterGreedy and of the evaluation sample."""

    def __post_init__(self):
        self.arms = tuple(self.arms)
        self.seeds = tuple(int(s) for s in self.seeds)
        checks = [
            (bool(self.task), "task must be a non-empty task name"),
            (self.n_clusters >= 1, f"n_clusters must be >= 1, got {self.n_clusters}"),
            (len(self.arms) >= 1 and set(self.arms) <= set(ARMS) and len(set(self.arms)) == len(self.arms),
             f"arms must be distinct names among {ARMS}, got {self.arms}"),
            (len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds),
             f"seeds must be one or more distinct ints, got {self.seeds}"),
            (self.finetune in FINETUNES, f"finetune must be one of {FINETUNES}, got {self.finetune!r}"),
            (self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.warmup_steps < self.steps, f"need 0 <= warmup_steps < steps, got {self.warmup_steps} "
                                                  f"and {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.max_length is None or self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}"),
            (self.eval_per_source >= 1, f"eval_per_source must be >= 1, got {self.eval_per_source}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.num_threads >= 0, f"num_threads must be >= 0, got {self.num_threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        resolve_budget(self.budget, n_task=10**9)  # raises a clear ValueError on a bad budget


def default_config(fast: bool | None = None, **overrides: Any) -> ExperimentConfig:
    """The default config, or the fast one (``LABCORE_FAST=1``: one seed, 5 steps, 8 test examples per source).

    Args:
        fast: force fast mode on/off (default: ``labcore.utils.fast_mode()``).
        **overrides: ExperimentConfig fields; None values are ignored.
    Returns:
        ExperimentConfig.
    """
    fast = fast_mode() if fast is None else fast
    base: dict[str, Any] = dict(seeds=(0,), steps=5, warmup_steps=1, eval_per_source=8) if fast else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ExperimentConfig(**base)


# ----------------------------------------------------------------------------------------------------------------
# Pure pieces: training sets, step stream, scoring
# ----------------------------------------------------------------------------------------------------------------
def arm_indices(selection: CoresetResult, arm: str, seed: int) -> np.ndarray:
    """Dataset indices of an arm's training set.

    Args:
        selection: the core-set selection of the target task (indices into the train records).
        arm: coreset | random | stratified | full.
        seed: seed of the random and stratified samples (ignored by coreset and full).
    Returns:
        (n,) indices: the core-set in pick order; a random / cluster-stratified sample of the same size from the
        task; or every train example of the task.
    """
    if arm == "coreset":
        return np.asarray(selection.selected_indices)
    if arm == "random":
        return random_baseline(selection.task_indices, selection.budget, random_state=seed)
    if arm == "stratified":
        labels_task = selection.labels[selection.task_indices]  # (n,) cluster of each task example
        return stratified_baseline(selection.task_indices, labels_task, selection.budget, random_state=seed)
    if arm == "full":
        return np.asarray(selection.task_indices)
    raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}")


def training_stream(n: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """The S * B example positions one arm trains on: seeded epochs (permutations of 0..n-1) joined and cut.

    Every example appears floor(S B / n) or ceil(S B / n) times, so a small set is repeated evenly and a set
    larger than S * B is seen at most once (a capped fraction of an epoch).

    Args:
        n: examples in the arm's training set.
        steps: S, optimiser steps.
        batch_size: B, examples per step.
        seed: seed of the permutations.
    Returns:
        (steps * batch_size,) int64 positions in 0..n-1.
    """
    if n < 1 or steps < 1 or batch_size < 1:
        raise ValueError(f"need n, steps and batch_size >= 1, got {n}, {steps}, {batch_size}")
    rng = np.random.default_rng(seed)
    total = steps * batch_size
    epochs = [rng.permutation(n) for _ in range(-(-total // n))]  # ceil(S B / n) permutations of (n,)
    return np.concatenate(epochs)[:total]  # (S * B,)


def normalise_answer(text: str) -> str:
    """The exact-match normal form: strip, lower-case, inner whitespace collapsed to one space."""
    return " ".join(text.split()).lower()


def exact_match(prediction: str, gold: str) -> bool:
    """True when the normalised prediction equals the normalised gold answer."""
    return normalise_answer(prediction) == normalise_answer(gold)


def prompt_of(record: dict[str, Any]) -> str:
    """The training / evaluation prompt of an instruction example: its instruction as the Human turn."""
    from labcore.formats import format_chat

    return format_chat(record["instruction"])


def response_of(record: dict[str, Any]) -> str:
    """The training target: " " + output (the Assistant turn; EOS is appended by the SFT batcher)."""
    return " " + record["output"]


def eval_examples(test_records: Sequence[dict[str, Any]], per_source: int, seed: int) -> list[dict[str, Any]]:
    """A fixed evaluation sample: up to ``per_source`` test examples of each source, drawn with ``seed``.

    Returns:
        The records, grouped by source (sources sorted), each group in its drawn order.
    """
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in test_records:
        by_source.setdefault(r["source"], []).append(r)
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for source in sorted(by_source):
        group = by_source[source]
        out += [group[i] for i in rng.permutation(len(group))[:per_source]]
    return out


def majority_baseline(train_records: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy per source of always answering the source's most frequent train output (no model): the floor a
    tuned model must beat to show it reads the input. Ties go to the alphabetically first output.

    Args:
        train_records: the task's train examples (fields source, output).
        examples: the evaluation examples.
    Returns:
        {source: accuracy} over the sources of ``examples``.
    """
    counts: dict[str, dict[str, int]] = {}
    for r in train_records:
        c = counts.setdefault(r["source"], {})
        key = normalise_answer(r["output"])
        c[key] = c.get(key, 0) + 1
    mode = {s: min(c, key=lambda k: (-c[k], k)) for s, c in counts.items()}
    return summarise_predictions([{"source": r["source"], "correct": mode.get(r["source"]) ==
                                   normalise_answer(r["output"])} for r in examples])["accuracy"]


@torch.no_grad()
def evaluate(model, tokenizer, examples: Sequence[dict[str, Any]], max_new_tokens: int = 8,
             batch_size: int = 64, progress: bool = False) -> dict[str, Any]:
    """Greedy answers to ``examples`` and exact-match accuracy per source.

    Args:
        model, tokenizer: the (tuned or base) model.
        examples: instruction records (fields instruction, output, source).
        max_new_tokens: new-token limit of an answer (answers also stop at EOS or a new "Human:" turn).
        batch_size: prompts per generation batch.
        progress: show a progress bar.
    Returns:
        {"accuracy": {source: acc}, "n": {source: count}, "macro": mean of the per-source accuracies,
         "micro": accuracy over all examples, "predictions": [{id, source, output, prediction, correct}]}.
    """
    from labcore.generation import generate

    rows = generate(model, tokenizer, [prompt_of(r) for r in examples], max_new_tokens=max_new_tokens,
                    do_sample=False, stop_at_turn=True, batch_size=batch_size, progress=progress)
    preds = []
    for r, row in zip(examples, rows, strict=True):
        preds.append({"id": r["id"], "source": r["source"], "output": r["output"],
                      "prediction": row["response"], "correct": exact_match(row["response"], r["output"])})
    return summarise_predictions(preds)


def summarise_predictions(preds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-source exact-match accuracy of scored predictions (dicts with "source" and "correct").

    When the dicts also carry "prediction" and "output", ``in_label_set`` is the share of predictions per source
    whose normal form is one of the source's gold answers in ``preds`` (the answer format was learned, right or
    wrong).
    """
    hits: dict[str, list[bool]] = {}
    for p in preds:
        hits.setdefault(p["source"], []).append(bool(p["correct"]))
    acc = {s: float(np.mean(h)) for s, h in sorted(hits.items())}
    out = {"accuracy": acc, "n": {s: len(h) for s, h in sorted(hits.items())},
           "macro": float(np.mean(list(acc.values()))) if acc else float("nan"),
           "micro": float(np.mean([p["correct"] for p in preds])) if preds else float("nan"),
           "predictions": list(preds)}
    if preds and all("prediction" in p and "output" in p for p in preds):
        labels: dict[str, set[str]] = {}
        for p in preds:
            labels.setdefault(p["source"], set()).add(normalise_answer(p["output"]))
        out["in_label_set"] = {s: float(np.mean([normalise_answer(p["prediction"]) in labels[s]
                                                 for p in preds if p["source"] == s])) for s in acc}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Training one arm
# ----------------------------------------------------------------------------------------------------------------
def load_base(config: ExperimentConfig):
    """A fresh copy of the base model (+ a fresh LoRA adapter when finetune='lora') and its tokenizer."""
    from labcore.models import add_lora, load_model

    model, tok = load_model(config.model, device=config.device)
    if config.finetune == "lora":
        model = add_lora(model, r=config.lora_r, alpha=2 * config.lora_r)
    return model, tok


def train_arm(config: ExperimentConfig, records: Sequence[dict[str, Any]], seed: int,
              progress: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """Instruction-tune a fresh base model on ``records`` for ``config.steps`` optimiser steps.

    Args:
        config: the experiment settings (lr, schedule, batch size, steps, fine-tuning mode).
        records: the arm's training examples.
        seed: seed of the training order, of dropout and of the Learner.
    Returns:
        (tuned model, tokenizer, info: n_train, steps, examples_seen, epochs, train_time_s, loss_first/last
        (mean of the first / last 10 steps)).
    """
    from labcore.sft import sft_epochs
    from labcore.training import Learner, OptimConfig

    model, tok = load_base(config)
    optim = OptimConfig(lr=config.lr, weight_decay=config.weight_decay, scheduler="cosine",
                        warmup_steps=config.warmup_steps, total_steps=config.steps,
                        cpu=resolve_device(config.device).type == "cpu")
    learner = Learner(model, optim, seed=seed)
    pairs = [(prompt_of(r), response_of(r)) for r in records]
    stream = training_stream(len(pairs), config.steps, config.batch_size, seed)  # (S * B,)
    t0 = time.perf_counter()
    # one pass over the stream = exactly S micro-batches of B = S optimiser steps (grad_accum 1)
    logs = sft_epochs(learner, tok, [pairs[i] for i in stream], epochs=1, batch_size=config.batch_size, seed=seed,
                      max_length=config.max_length, progress=progress)
    train_time = time.perf_counter() - t0
    losses = [log["loss"] for log in logs]
    info = {"n_train": len(pairs), "steps": learner.optimizer_steps, "examples_seen": len(stream),
            "epochs": len(stream) / len(pairs), "capped": len(stream) < len(pairs),
            "train_time_s": train_time, "loss_first": float(np.mean(losses[:10])),
            "loss_last": float(np.mean(losses[-10:]))}
    return learner.unwrapped(), tok, info


# ----------------------------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------------------------
def _selection_summary(sel: CoresetResult, train: Sequence[dict[str, Any]], emb: np.ndarray, tasks: list[str],
                       config: ExperimentConfig) -> dict[str, Any]:
    """Selection facts for results.json: sizes, centres, sources per arm and the radius-vs-budget table."""
    n_task = len(sel.task_indices)
    ks = sorted({resolve_budget(b, n_task) for b in RADIUS_BUDGETS} | {sel.budget})
    # one selection at the largest budget: greedy picks, random permutation prefixes and the stratified quota
    # sequence are all prefix-consistent, so its curves give the radius at every smaller budget
    big = select_coreset(emb, tasks, config.task, max(ks), random_state=config.seed, kmeans=sel.kmeans,
                         device=config.device)
    radius = [{"k": k, "fraction": k / n_task, "coreset": float(big.radius_curve[k - 1]),
               "random": float(big.random_radius_curve[k - 1]),
               "stratified": float(big.stratified_radius_curve[k - 1])} for k in ks]
    return {"n_train_all_tasks": len(train), "n_task_train": n_task, "budget": sel.budget,
            "budget_fraction": sel.budget / n_task, "n_clusters": len(sel.centroids),
            "distribution_cluster": sel.distribution_cluster,
            "task_examples_in_that_cluster": int(sel.cluster_counts[sel.distribution_cluster]),
            "task_centre_id": train[sel.task_centre_index]["id"],
            "coreset_ids": [train[int(i)]["id"] for i in sel.selected_indices],
            "radius_vs_budget": radius}


def _source_counts(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    return dict(sorted(counts.items()))


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, sample standard deviation (ddof 1; 0 for one run), min and max over seeds, per arm.

    Args:
        runs: rows with "arm", "accuracy" {source: acc}, "macro", "n_train", "train_time_s".
    Returns:
        {arm: {"seeds", "accuracy": {source: {mean, std, min, max}}, "macro": {...}, "n_train", "epochs",
        "train_time_s" (mean)}}.
    """
    def stats(values: list[float]) -> dict[str, float]:
        v = np.asarray(values, dtype=np.float64)
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "min": float(v.min()), "max": float(v.max())}

    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r for r in runs if r["arm"] == arm]
        sources = list(rows[0]["accuracy"])
        out[arm] = {"seeds": [r["seed"] for r in rows],
                    "accuracy": {s: stats([r["accuracy"][s] for r in rows]) for s in sources},
                    "macro": stats([r["macro"] for r in rows]),
                    "n_train": rows[0]["n_train"], "steps": rows[0].get("steps"),
                    "epochs": float(np.mean([r.get("epochs", 0.0) for r in rows])),
                    "capped": any(r.get("capped", False) for r in rows),
                    "train_time_s": float(np.mean([r.get("train_time_s", 0.0) for r in rows])),
                    "loss_last": float(np.mean([r.get("loss_last", float("nan")) for r in rows]))}
        if all("in_label_set" in r for r in rows):
            out[arm]["in_label_set"] = {s: float(np.mean([r["in_label_set"][s] for r in rows])) for s in sources}
    return out


def run_experiment(config: ExperimentConfig, out_dir: str | Path, *, records: Sequence[dict[str, Any]] | None = None,
                   embeddings: np.ndarray | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every arm for every seed plus the untuned base model; write results.json and results.md.

    Results are rewritten after every run, so an interrupted experiment leaves the runs finished so far.

    Args:
        config: the settings.
        out_dir: folder for results.json and results.md.
        records: the instruction set (default: read ``config.data``); "train" records are selected from and
            trained on, the target task's "test" records are evaluated.
        embeddings: (N_train, d) L2-normalised embeddings of the train records in order (default: embed them
            with ``config.encoder``).
        progress: progress bars.
    Returns:
        The results dict written to results.json.
    """
    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return _run(config, Path(out_dir), records, embeddings, progress, tqdm)
    finally:
        torch.set_num_threads(threads)  # leave the process as we found it


def _run(config: ExperimentConfig, out: Path, records, embeddings, progress: bool, tqdm) -> dict[str, Any]:
    t_start = time.perf_counter()
    records = list(records) if records is not None else load_instruction_set(config.data)
    train = [r for r in records if r["split"] == "train"]
    test = [r for r in records if r["split"] == "test" and r["task"] == config.task]
    if not test:
        raise ValueError(f"task {config.task!r} has no test examples in {config.data}")
    tasks = [r["task"] for r in train]

    # Steps 1-5 of the paper: embed all train examples, K-means over all tasks, task centre, KCenterGreedy.
    if embeddings is None:
        from labcore.embed import embed_texts

        embeddings = embed_texts([example_text(r) for r in train], model=config.encoder, cache=config.cache,
                                 progress=progress)
    emb = np.asarray(embeddings, dtype=np.float32)  # (N_train, d)
    if len(emb) != len(train):
        raise ValueError(f"embeddings have {len(emb)} rows for {len(train)} train records")
    kmeans = fit_kmeans(emb, n_clusters=config.n_clusters, random_state=config.seed, cache=config.cache)
    sel = select_coreset(emb, tasks, config.task, config.budget, random_state=config.seed, kmeans=kmeans,
                         device=config.device)
    selection = _selection_summary(sel, train, emb, tasks, config)
    evalset = eval_examples(test, config.eval_per_source, config.seed)

    results: dict[str, Any] = {
        "paper": "Chen et al. 2023, Maybe Only 0.5% Data is Needed, arXiv 2305.09246",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "rule": (f"every arm: {config.steps} optimiser steps x batch {config.batch_size} "
                 f"({config.steps * config.batch_size} examples seen), same lr schedule and seeds"),
        "selection": selection, "eval_n": _source_counts(evalset),
        "majority": majority_baseline([r for r in train if r["task"] == config.task], evalset),
        "runs": [], "arms": {},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "device": str(resolve_device(config.device)), "threads": torch.get_num_threads()},
        "finished": False,
    }

    predictions: list[dict[str, Any]] = []

    def save() -> None:
        results["arms"] = aggregate([r for r in results["runs"] if r["arm"] != "base"])
        results["wall_clock_s"] = time.perf_counter() - t_start
        write_results(results, out)
        from labcore.datasets import write_jsonl

        write_jsonl(out / "predictions.jsonl.gz", predictions)  # every greedy answer of every run

    # The floor: the base model without tuning.
    jobs = [("base", config.seeds[0])] + [(arm, s) for s in config.seeds for arm in config.arms]
    bar = tqdm(jobs, desc="arms", disable=not progress)
    for arm, seed in bar:
        bar.set_postfix(arm=arm, seed=seed)
        if arm == "base":
            from labcore.models import load_model

            model, tok = load_model(config.model, device=config.device)
            info: dict[str, Any] = {"n_train": 0, "steps": 0, "examples_seen": 0, "epochs": 0.0,
                                    "train_time_s": 0.0, "train_sources": {}}
            train_ids: list[str] = []
        else:
            idx = arm_indices(sel, arm, seed)
            arm_records = [train[int(i)] for i in idx]
            model, tok, info = train_arm(config, arm_records, seed, progress=progress)
            info["train_sources"] = _source_counts(arm_records)
            train_ids = [r["id"] for r in arm_records] if arm != "full" else []
        t0 = time.perf_counter()
        ev = evaluate(model, tok, evalset, config.max_new_tokens, config.eval_batch_size)
        row = {"arm": arm, "seed": seed, **info, "eval_time_s": time.perf_counter() - t0,
               "accuracy": ev["accuracy"], "macro": ev["macro"], "micro": ev["micro"],
               "in_label_set": ev["in_label_set"], "train_ids": train_ids, "predictions_head": ev["predictions"][:3]}
        results["runs"].append(row)
        predictions += [{"arm": arm, "seed": seed, **p} for p in ev["predictions"]]
        if arm == "base":
            results["base"] = {"accuracy": ev["accuracy"], "macro": ev["macro"], "micro": ev["micro"]}
        del model
        save()
    results["finished"] = True
    save()
    return results


# ----------------------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------------------
def _pm(s: dict[str, float], n_runs: int) -> str:
    return f"{s['mean']:.3f}" if n_runs == 1 else f"{s['mean']:.3f} ± {s['std']:.3f}"


def results_markdown(results: dict[str, Any]) -> str:
    """The results tables (arm x source accuracy, sizes, times; radius vs budget) as markdown."""
    cfg, sel = results["config"], results["selection"]
    sources = list(results["eval_n"])
    lines = [f"# Core-set experiment: task `{cfg['task']}`",
             "",
             f"Chen et al. 2023 (arXiv 2305.09246) in the tiny world. Budget {sel['budget']} of "
             f"{sel['n_task_train']} train examples ({100 * sel['budget_fraction']:.2f}%); K-means K = "
             f"{sel['n_clusters']} over {sel['n_train_all_tasks']} train examples of all tasks. Base model "
             f"`{cfg['model']}`, {cfg['finetune']} fine-tuning, lr {cfg['lr']:g} (cosine, {cfg['warmup_steps']} "
             f"warmup). Rule: {results['rule']}. Exact match after strip/lower, greedy, "
             f"max_new_tokens {cfg['max_new_tokens']}. Mean ± sample std over seeds {cfg['seeds']}.",
             ""]
    head = "| arm | runs | n train | epochs | " + " | ".join(f"{s} (n={results['eval_n'][s]})" for s in sources) \
        + " | macro | final loss | train s |"
    lines += [head, "|" + "---|" * (len(sources) + 7)]
    if "base" in results:
        b = results["base"]
        lines.append("| base (no tuning) | 1 | 0 | 0 | " + " | ".join(f"{b['accuracy'][s]:.3f}" for s in sources)
                     + f" | {b['macro']:.3f} | – | – |")
    if "majority" in results:
        m = results["majority"]
        lines.append("| majority label (no model) | – | – | – | " + " | ".join(f"{m[s]:.3f}" for s in sources)
                     + f" | {np.mean([m[s] for s in sources]):.3f} | – | – |")
    for arm, a in results["arms"].items():
        n = len(a["seeds"])
        epochs = f"{a['epochs']:.2f}" + (" (capped)" if a["capped"] else "")
        lines.append(f"| {arm} | {n} | {a['n_train']} | {epochs} | "
                     + " | ".join(_pm(a["accuracy"][s], n) for s in sources)
                     + f" | {_pm(a['macro'], n)} | {a['loss_last']:.3f} | {a['train_time_s']:.0f} |")
    valid = [(r["arm"], r["in_label_set"]) for r in results["runs"] if r["arm"] == "base" and "in_label_set" in r]
    valid += [(arm, a["in_label_set"]) for arm, a in results["arms"].items() if "in_label_set" in a]
    if valid:
        lines += ["", "Share of answers that are one of the source's labels (format learned, right or wrong; mean "
                      "over seeds): " + "; ".join(f"{arm} " + ", ".join(f"{v[s]:.2f}" for s in sources)
                                                  for arm, v in valid)]
    lines += ["", "Per run (macro accuracy): " + ", ".join(
        f"{r['arm']}/{r['seed']} {r['macro']:.3f}" for r in results["runs"]), ""]
    lines += ["Training-set sources (run of the first seed):", ""]
    for r in results["runs"]:
        if r["arm"] != "base" and r["seed"] == cfg["seeds"][0]:
            lines.append(f"- {r['arm']}: " + ", ".join(f"{s} {c}" for s, c in r["train_sources"].items()))
    lines += ["", "## Covering radius vs budget (max distance of a task example to its nearest pick; lower is "
                  "better)", "",
              "| k | % of task | core-set (KCenterGreedy) | random | stratified |", "|---|---|---|---|---|"]
    for row in sel["radius_vs_budget"]:
        lines.append(f"| {row['k']} | {100 * row['fraction']:.2f} | {row['coreset']:.3f} | {row['random']:.3f} | "
                     f"{row['stratified']:.3f} |")
    lines += ["", f"Distribution centre: cluster {sel['distribution_cluster']} "
                  f"({sel['task_examples_in_that_cluster']} of the task's examples); task centre "
                  f"`{sel['task_centre_id']}`. Wall clock {results.get('wall_clock_s', 0):.0f} s on "
                  f"{results['environment']['device']} ({results['environment']['threads']} torch threads)"
                  + ("" if results.get("finished") else " — UNFINISHED (partial results)") + "."]
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write results.json and results.md into ``out_dir`` (atomically, via temporary files)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "results.json", out / "results.md")
    for path, text in zip(paths, (json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                                  results_markdown(results))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return paths


# ----------------------------------------------------------------------------------------------------------------
# CLI glue: labcore coreset-experiment
# ----------------------------------------------------------------------------------------------------------------
def add_coreset_experiment_args(parser) -> None:
    """Options of ``labcore coreset-experiment``."""
    d = ExperimentConfig()
    parser.add_argument("--task", default=None, help=f"target task category (default {d.task})")
    parser.add_argument("--budget", default=None, help="core-set size: a fraction (default 0.005) or a count")
    parser.add_argument("--out", default="docs/results/coreset", help="folder for results.json / results.md")
    parser.add_argument("--seed", type=int, default=None, help="seed of K-means, selection and eval sample (0)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"training / sampling seeds, one run per arm each (default {' '.join(map(str, d.seeds))})")
    parser.add_argument("--arms", nargs="+", default=None, choices=ARMS, help="arms to run (default: all)")
    parser.add_argument("--steps", type=int, default=None, help=f"optimiser steps of every arm (default {d.steps})")
    parser.add_argument("--finetune", default=None, choices=FINETUNES, help="full (default) or lora")
    parser.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {d.lr:g})")
    parser.add_argument("--eval-per-source", type=int, default=None,
                        help=f"test examples per source (default {d.eval_per_source})")
    parser.add_argument("--clusters", type=int, default=None, help=f"K of K-means (default {d.n_clusters})")
    parser.add_argument("--model", default=None, help="base model preset or directory (default tiny)")
    parser.add_argument("--data", default=None, help="instruction set (default data/instructions.jsonl.gz)")
    parser.add_argument("--device", default=None, help="auto (cuda > mps > cpu), cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1; 0 = torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_coreset_experiment(args) -> dict[str, Any]:
    """``labcore coreset-experiment``: build the config (fast mode honoured), run, print the table."""
    config = default_config(
        task=args.task, budget=parse_budget(args.budget) if args.budget is not None else None, seed=args.seed,
        seeds=tuple(args.seeds) if args.seeds else None, arms=tuple(args.arms) if args.arms else None,
        steps=args.steps, finetune=args.finetune, lr=args.lr, eval_per_source=args.eval_per_source,
        n_clusters=args.clusters, model=args.model, data=args.data, device=args.device, num_threads=args.threads)
    results = run_experiment(config, args.out, progress=not args.no_progress)
    print(results_markdown(results))
    print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'results.md'}", file=sys.stderr)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m labcore.coreset_experiment ...`` (the same options as ``labcore coreset-experiment``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m labcore.coreset_experiment", description=__doc__.split("\n")[0])
    add_coreset_experiment_args(parser)
    run_coreset_experiment(parser.parse_args(argv))


if __name__ == "__main__":
    main()


__all__ = ["ARMS", "ExperimentConfig", "default_config", "arm_indices", "training_stream", "normalise_answer",
           "exact_match", "eval_examples", "majority_baseline", "evaluate", "train_arm", "run_experiment", "aggregate",
           "results_markdown", "write_results", "add_coreset_experiment_args", "run_coreset_experiment"]
