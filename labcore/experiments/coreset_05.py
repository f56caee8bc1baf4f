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
  * Prompt format: the model's own (``labcore.formats.prompt_format``): the tiny model was pretrained on
    "\\n\\nHuman: ...\\n\\nAssistant: ..." dialogues, so the instruction is the Human turn and " " + output the
    Assistant turn (+ EOS); SmolLM2 gets its chat template (the instruction as the user message, the output as the
    assistant message + its end-of-turn token).
  * Full fine-tuning by default: on the 2.5M-parameter tiny model it learns faster than LoRA at the same step
    budget (``lora.use=true`` switches; see docs/coreset.md for the pilot numbers).
  * Every arm is repeated for every seed in ``seeds``: the seed picks the random / stratified sample AND the
    training order; the core-set and the full set stay fixed, so their spread is training noise alone.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from labcore.coreset import (
    CoresetResult,
    example_text,
    fit_kmeans,
    load_instruction_set,
    random_baseline,
    resolve_budget,
    select_coreset,
    stratified_baseline,
)
from labcore.config import CORESET_ARMS, CoresetExperimentConfig
from labcore.utils import resolve_device, torch_threads

ARMS = CORESET_ARMS
"""The training sets compared, in table order (the untuned base model is always evaluated too)."""
RADIUS_BUDGETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)
"""Budgets (fractions of the task) of the covering-radius comparison in results.json / results.md."""


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


def prompt_of(record: dict[str, Any], fmt=None) -> str:
    """The training / evaluation prompt of an instruction example: its instruction as the user turn, in the model's
    prompt format ``fmt`` (default: the HH format)."""
    from labcore.formats import HH_FORMAT

    return (fmt or HH_FORMAT).prompt(record["instruction"])


def response_of(record: dict[str, Any], fmt=None) -> str:
    """The training target: the output as the assistant turn (" " + output in the HH format; the end token is
    appended by the SFT batcher)."""
    from labcore.formats import HH_FORMAT

    return (fmt or HH_FORMAT).response(record["output"])


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
    from labcore.formats import prompt_format
    from labcore.generation import generate

    fmt = prompt_format(tokenizer)
    rows = generate(model, tokenizer, [prompt_of(r, fmt) for r in examples], max_new_tokens=max_new_tokens,
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
def load_base(config: CoresetExperimentConfig):
    """A fresh copy of the base model (+ a fresh LoRA adapter when finetune='lora') and its tokenizer."""
    from labcore.models import add_lora, load_model

    model, tok = load_model(config.model, device=config.runtime.device)
    if config.lora.use:
        targets = list(config.lora.target_modules) if config.lora.target_modules else None
        model = add_lora(model, r=config.lora.r, alpha=config.lora.alpha, dropout=config.lora.dropout,
                         target_modules=targets)
    return model, tok


def train_arm(config: CoresetExperimentConfig, records: Sequence[dict[str, Any]], seed: int,
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
    from labcore.formats import prompt_format
    from labcore.sft import sft_epochs
    from labcore.training import Learner, mixed_precision

    model, tok = load_base(config)
    fmt = prompt_format(tok)
    learner = Learner(model, config.optim, total_steps=config.steps, mixed_precision=mixed_precision(config.runtime),
                      cpu=resolve_device(config.runtime.device).type == "cpu", seed=seed)
    pairs = [(prompt_of(r, fmt), response_of(r, fmt)) for r in records]
    stream = training_stream(len(pairs), config.steps, config.optim.batch_size, seed)  # (S * B,)
    t0 = time.perf_counter()
    # one pass over the stream = exactly S micro-batches of B = S optimiser steps (grad_accum 1)
    logs = sft_epochs(learner, tok, [pairs[i] for i in stream], epochs=1, batch_size=config.optim.batch_size, seed=seed,
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
                       config: CoresetExperimentConfig) -> dict[str, Any]:
    """Selection facts for results.json: sizes, centres, sources per arm and the radius-vs-budget table."""
    n_task = len(sel.task_indices)
    ks = sorted({resolve_budget(b, n_task) for b in RADIUS_BUDGETS} | {sel.budget})
    # one selection at the largest budget: greedy picks, random permutation prefixes and the stratified quota
    # sequence are all prefix-consistent, so its curves give the radius at every smaller budget
    big = select_coreset(emb, tasks, config.task, max(ks), random_state=config.runtime.seed, kmeans=sel.kmeans,
                         device=config.runtime.device)
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


def run_experiment(config: CoresetExperimentConfig, out_dir: str | Path, *, records: Sequence[dict[str, Any]] | None = None,
                   embeddings: np.ndarray | None = None, progress: bool = True, resume: bool = True) -> dict[str, Any]:
    """Run every arm for every seed plus the untuned base model; write results.json and results.md.

    Results are rewritten after every run, so an interrupted experiment leaves the runs finished so far, and a
    rerun into the same folder resumes: runs already in its results.json (same settings; ``seeds`` may differ, so
    seeds can be added later) are kept, not repeated. Other settings in that folder raise an error, never overwrite.

    Args:
        config: the settings.
        out_dir: folder for results.json and results.md.
        records: the instruction set (default: read ``config.data``); "train" records are selected from and
            trained on, the target task's "test" records are evaluated.
        embeddings: (N_train, d) L2-normalised embeddings of the train records in order (default: embed them
            with ``config.encoder``).
        progress: progress bars.
        resume: keep the finished runs of an earlier call with the same settings in ``out_dir`` (False: start
            over and overwrite them).
    Returns:
        The results dict written to results.json.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    done = finished_runs(config, out) if resume else None
    with torch_threads(config.runtime.threads, config.runtime.device):
        return _run(config, out, records, embeddings, progress, tqdm, done)


def _settings(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide a run's result: the config without ``seeds`` (which only lists the runs) and
    without ``runtime.threads`` (speed only)."""
    d = {k: v for k, v in config_dict.items() if k != "seeds"}
    d["runtime"] = {k: v for k, v in d.get("runtime", {}).items() if k != "threads"}
    return d


def finished_runs(config: CoresetExperimentConfig, out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The earlier results in ``out`` to resume from: (results dict, predictions), or None if there are none.

    Raises:
        ValueError: ``out`` holds results of other settings (one line naming the differing fields).
    """
    path = out / "results.json"
    if not path.is_file():
        return None
    old = json.loads(path.read_text(encoding="utf-8"))
    new = _settings(json.loads(json.dumps(asdict(config))))
    prev = _settings(old.get("config", {}))
    if prev != new:
        diff = sorted(k for k in set(new) | set(prev) if new.get(k) != prev.get(k))
        raise ValueError(f"{path} holds an experiment with other settings ({', '.join(diff)}): pass another "
                         "--out, or --restart to overwrite it")
    from labcore.datasets import read_jsonl

    preds_path = out / "predictions.jsonl.gz"
    preds = list(read_jsonl(preds_path)) if preds_path.is_file() else []
    return old, preds


def _run(config: CoresetExperimentConfig, out: Path, records, embeddings, progress: bool, tqdm,
         done: tuple[dict[str, Any], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
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
    kmeans = fit_kmeans(emb, n_clusters=config.n_clusters, random_state=config.runtime.seed, cache=config.cache)
    sel = select_coreset(emb, tasks, config.task, config.budget, random_state=config.runtime.seed, kmeans=kmeans,
                         device=config.runtime.device)
    selection = _selection_summary(sel, train, emb, tasks, config)
    evalset = eval_examples(test, config.eval_per_source, config.runtime.seed)

    results: dict[str, Any] = {
        "paper": "Chen et al. 2023, Maybe Only 0.5% Data is Needed, arXiv 2305.09246",
        "config": json.loads(json.dumps(asdict(config))),
        "rule": (f"every arm: {config.steps} optimiser steps x batch {config.optim.batch_size} "
                 f"({config.steps * config.optim.batch_size} examples seen), same lr schedule and seeds"),
        "selection": selection, "eval_n": _source_counts(evalset),
        "majority": majority_baseline([r for r in train if r["task"] == config.task], evalset),
        "runs": [], "arms": {},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "device": str(resolve_device(config.runtime.device)), "threads": torch.get_num_threads()},
        "finished": False,
    }

    predictions: list[dict[str, Any]] = []

    # The floor: the base model without tuning.
    jobs = [("base", config.seeds[0])] + [(arm, s) for s in config.seeds for arm in config.arms]
    earlier_s = 0.0
    if done is not None:  # resume: keep the earlier runs that this call would repeat
        old, old_preds = done
        before = old.get("selection", {}).get("coreset_ids")
        if before is not None and before != selection["coreset_ids"]:  # same settings, other embeddings
            raise ValueError(f"{out / 'results.json'} was made with another core-set (the embeddings or K-means "
                             "changed since): pass another --out, or --restart to run every arm again")
        keep = {(r["arm"], r["seed"]) for r in old["runs"]} & set(jobs)
        results["runs"] = [r for r in old["runs"] if (r["arm"], r["seed"]) in keep]
        predictions = [p for p in old_preds if (p["arm"], p["seed"]) in keep]
        if "base" in old and ("base", config.seeds[0]) in keep:
            results["base"] = old["base"]
        earlier_s = float(old.get("wall_clock_s", 0.0))
        jobs = [j for j in jobs if j not in keep]
        if keep:
            print(f"resuming {out}: {len(keep)} runs kept, {len(jobs)} to go", file=sys.stderr)

    def save() -> None:
        order = {arm: i for i, arm in enumerate(("base",) + config.arms)}
        results["runs"].sort(key=lambda r: (r["arm"] != "base", r["seed"], order.get(r["arm"], -1)))
        results["arms"] = aggregate([r for r in results["runs"] if r["arm"] != "base"])
        results["wall_clock_s"] = earlier_s + time.perf_counter() - t_start  # summed over resumed calls
        write_results(results, out)
        from labcore.datasets import write_jsonl

        write_jsonl(out / "predictions.jsonl.gz", predictions)  # every greedy answer of every run

    bar = tqdm(jobs, desc="arms", disable=not progress)
    for arm, seed in bar:
        bar.set_postfix(arm=arm, seed=seed)
        if arm == "base":
            from labcore.models import load_model

            model, tok = load_model(config.model, device=config.runtime.device)
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
    steps = cfg["steps"]
    if "optim" in cfg:
        optim, finetune = cfg["optim"], "LoRA" if cfg["lora"]["use"] else "full"
        warmup = int(round(optim["warmup_ratio"] * steps))
    else:  # results.json written before the config was nested (the shipped docs/results/coreset)
        optim, finetune, warmup = {"lr": cfg["lr"]}, cfg["finetune"], cfg["warmup_steps"]
    sources = list(results["eval_n"])
    lines = [f"# Core-set experiment: task `{cfg['task']}`",
             "",
             f"Chen et al. 2023 (arXiv 2305.09246) in the tiny world. Budget {sel['budget']} of "
             f"{sel['n_task_train']} train examples ({100 * sel['budget_fraction']:.2f}%); K-means K = "
             f"{sel['n_clusters']} over {sel['n_train_all_tasks']} train examples of all tasks. Base model "
             f"`{cfg['model']}`, {finetune} fine-tuning, lr {optim['lr']:g} (cosine, {warmup} "
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


__all__ = ["ARMS", "CoresetExperimentConfig", "arm_indices", "training_stream", "normalise_answer",
           "exact_match", "eval_examples", "majority_baseline", "evaluate", "train_arm", "run_experiment", "aggregate",
           "results_markdown", "write_results"]
