"""The 0.5% experiment (arXiv 2305.09246): arm training sets, the step stream, exact-match scoring, a tiny end-to-end
run on a random model and a synthetic instruction set (no encoder: embeddings are injected)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from labcore.config import CoresetExperimentConfig, Optim, Runtime
from labcore.coreset import select_coreset
from labcore.experiments.coreset_05 import (
    ARMS,
    aggregate,
    arm_indices,
    eval_examples,
    exact_match,
    majority_baseline,
    normalise_answer,
    run_experiment,
    summarise_predictions,
    training_stream,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, by far on a busy machine; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clustered(n: int, d: int = 8, centres: int = 4, seed: int = 0) -> np.ndarray:
    """(n, d) unit vectors around a few random centres."""
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(centres, d))
    X = C[rng.integers(centres, size=n)] + 0.3 * rng.normal(size=(n, d))  # (n, d)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def selection():
    tasks = np.array(["a"] * 120 + ["b"] * 80)
    X = _clustered(len(tasks))
    return X, tasks, select_coreset(X, tasks, "a", 0.1, n_clusters=4, random_state=0, device="cpu")


# ------------------------------------------------------------------------------------------------ training sets
def test_coreset_arm_is_select_coreset_output(selection):
    X, tasks, sel = selection
    again = select_coreset(X, tasks, "a", 0.1, n_clusters=4, random_state=0, device="cpu")
    np.testing.assert_array_equal(arm_indices(sel, "coreset", seed=5), again.selected_indices)
    assert len(sel.selected_indices) == 12  # round(0.1 * 120)


def test_arms_draw_from_the_task_with_the_expected_sizes(selection):
    _, tasks, sel = selection
    task_set = set(np.flatnonzero(tasks == "a").tolist())
    full = arm_indices(sel, "full", seed=0)
    assert set(full.tolist()) == task_set and len(full) == 120
    for arm in ("coreset", "random", "stratified"):
        for seed in (0, 1):
            idx = arm_indices(sel, arm, seed)
            assert len(idx) == sel.budget == 12
            assert len(set(idx.tolist())) == 12, f"{arm} repeats an example"
            assert set(idx.tolist()) <= task_set, f"{arm} picked outside the task"
    r0, r1 = arm_indices(sel, "random", 0), arm_indices(sel, "random", 1)
    assert set(r0.tolist()) != set(r1.tolist())  # the seed draws a new sample
    np.testing.assert_array_equal(arm_indices(sel, "coreset", 0), arm_indices(sel, "coreset", 1))
    with pytest.raises(ValueError, match="unknown arm"):
        arm_indices(sel, "oracle", 0)


def test_stratified_arm_follows_the_task_cluster_shares(selection):
    _, _, sel = selection
    idx = arm_indices(sel, "stratified", seed=3)
    labels_task = sel.labels[sel.task_indices]
    for c in np.unique(labels_task):
        expected = sel.budget * np.mean(labels_task == c)
        assert abs(np.sum(sel.labels[idx] == c) - expected) < 1.0 + 1e-9


@pytest.mark.parametrize("n, steps, batch", [(5, 7, 3), (40, 10, 16), (100, 3, 8), (1, 2, 2)])
def test_training_stream_repeats_evenly_and_never_more_than_needed(n, steps, batch):
    s = training_stream(n, steps, batch, seed=0)
    assert s.shape == (steps * batch,) and s.min() >= 0 and s.max() < n
    counts = np.bincount(s, minlength=n)
    if n <= steps * batch:
        assert counts.max() - counts.min() <= 1  # floor or ceil of S B / n
        assert counts.sum() == steps * batch
    else:
        assert counts.max() == 1  # a capped fraction of one epoch: no example twice
    np.testing.assert_array_equal(s, training_stream(n, steps, batch, seed=0))


# ------------------------------------------------------------------------------------------------ scoring
def test_exact_match_by_hand():
    assert normalise_answer("  Positive \n") == "positive"
    assert normalise_answer(" The  Wild\tIslands ") == "the wild islands"
    assert exact_match(" positive", "positive")
    assert exact_match("The Wild Islands", "the wild  islands")
    assert not exact_match("positive.", "positive")  # punctuation is not stripped
    assert not exact_match("positive review", "positive")  # no prefix credit
    assert not exact_match("", "no")


def test_per_source_accuracy_by_hand():
    preds = [{"source": "x", "correct": True}, {"source": "x", "correct": False}, {"source": "x", "correct": True},
             {"source": "y", "correct": False}]
    s = summarise_predictions(preds)
    assert s["accuracy"] == {"x": pytest.approx(2 / 3), "y": 0.0}
    assert s["n"] == {"x": 3, "y": 1}
    assert s["macro"] == pytest.approx((2 / 3 + 0.0) / 2)  # mean over sources
    assert s["micro"] == pytest.approx(2 / 4)  # over examples


def test_aggregate_mean_and_sample_std():
    runs = [{"arm": "random", "seed": s, "accuracy": {"x": a}, "macro": a, "n_train": 4, "train_time_s": 1.0}
            for s, a in [(0, 0.2), (1, 0.4), (2, 0.6)]]
    agg = aggregate(runs)["random"]
    assert agg["accuracy"]["x"]["mean"] == pytest.approx(0.4)
    assert agg["accuracy"]["x"]["std"] == pytest.approx(0.2)  # sqrt(((-.2)^2 + 0 + .2^2) / 2)
    assert (agg["macro"]["min"], agg["macro"]["max"]) == (0.2, 0.6)


def test_eval_examples_fixed_sample_per_source():
    recs = [{"source": s, "id": f"{s}{i}"} for s in ("b", "a") for i in range(5)]
    ev = eval_examples(recs, per_source=3, seed=0)
    assert [r["source"] for r in ev] == ["a"] * 3 + ["b"] * 3
    assert ev == eval_examples(recs, per_source=3, seed=0)
    assert len(eval_examples(recs, per_source=10, seed=0)) == 10  # all of each source


def test_config_validation_and_fast_mode(monkeypatch):
    from labcore.presets import UnknownSetting, build

    with pytest.raises(ValueError, match="arms"):
        CoresetExperimentConfig(arms=("coreset", "oracle"))
    with pytest.raises(ValueError, match="budget"):
        CoresetExperimentConfig(budget=1.5)
    with pytest.raises(ValueError, match="warm-up"):  # 5 warm-up steps of a 5-step run
        CoresetExperimentConfig(steps=5, optim=Optim(warmup_ratio=0.95))
    with pytest.raises(UnknownSetting, match="lora.use"):  # the fine-tuning mode is lora.use (true / false)
        build(CoresetExperimentConfig, fast=False, overrides=["lora.use=adapters"])
    monkeypatch.setenv("LABCORE_FAST", "1")
    fast = build(CoresetExperimentConfig, overrides={"task": "topic"})
    assert fast.steps < CoresetExperimentConfig().steps and fast.seeds == (0,) and fast.task == "topic"


# ------------------------------------------------------------------------------------------------ end to end
def _synthetic_instructions() -> list[dict]:
    """2 tasks x 2 sources; task "mood" answers are one word, the other task's a digit."""
    rows = []
    words = ["sunny day", "rainy night", "happy song", "sad story", "bright smile", "dark cloud"]
    for i in range(60):
        w = words[i % len(words)]
        split = "test" if i % 6 == 5 else "train"
        rows.append({"id": f"m1:{i}:0", "task": "mood", "source": "m1", "split": split,
                     "instruction": f"Is '{w}' happy or sad?", "output": "happy" if i % 2 == 0 else "sad"})
        rows.append({"id": f"m2:{i}:0", "task": "mood", "source": "m2", "split": split,
                     "instruction": f"Mood of {w}? good/bad", "output": "good" if i % 2 == 0 else "bad"})
        rows.append({"id": f"c:{i}:0", "task": "count", "source": "c", "split": split,
                     "instruction": f"How many words in '{w}'?", "output": "2"})
    return rows


def test_fast_run_writes_every_arm_and_source(tmp_path, tiny_model_dir):
    records = _synthetic_instructions()
    train = [r for r in records if r["split"] == "train"]
    emb = _clustered(len(train), d=16, centres=3, seed=1)
    cfg = CoresetExperimentConfig(task="mood", budget=0.1, n_clusters=3, model=str(tiny_model_dir), seeds=(0, 1),
                                  steps=3, optim=Optim(lr=1e-3, scheduler="cosine", warmup_ratio=1 / 3, batch_size=4),
                                  eval_per_source=3, max_new_tokens=3, runtime=Runtime(device="cpu", threads=1),
                                  cache=False)
    assert cfg.optim.warmup_steps(cfg.steps) == 1 and not cfg.lora.use  # 1 warm-up step; full fine-tuning
    res = run_experiment(cfg, tmp_path, records=records, embeddings=emb, progress=False)

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["finished"] and (tmp_path / "results.md").is_file()
    assert saved["config"]["optim"]["batch_size"] == 4 and saved["config"]["lora"]["use"] is False  # nested config
    assert set(saved["arms"]) == set(ARMS) and "base" in saved
    assert saved["eval_n"] == {"m1": 3, "m2": 3}
    for arm, a in saved["arms"].items():
        assert set(a["accuracy"]) == {"m1", "m2"} and a["seeds"] == [0, 1]
    assert len(saved["runs"]) == 1 + len(ARMS) * 2  # base + every arm for every seed

    # the arms trained on the expected subsets of the task's train examples, for exactly S steps each
    task_train = [r["id"] for r in train if r["task"] == "mood"]
    sel = select_coreset(emb, [r["task"] for r in train], "mood", 0.1, n_clusters=3, random_state=0, device="cpu")
    coreset_ids = [train[int(i)]["id"] for i in sel.selected_indices]
    assert saved["selection"]["coreset_ids"] == coreset_ids
    for run in saved["runs"]:
        if run["arm"] == "base":
            assert run["n_train"] == 0
            continue
        assert run["steps"] == 3 and run["examples_seen"] == 12
        if run["arm"] == "full":
            assert run["n_train"] == len(task_train) and run["capped"]
        else:
            assert run["n_train"] == len(coreset_ids) == 10  # round(0.1 * 100 train examples of "mood")
            assert set(run["train_ids"]) <= set(task_train)
        if run["arm"] == "coreset":
            assert run["train_ids"] == coreset_ids
    rand = {r["seed"]: set(r["train_ids"]) for r in saved["runs"] if r["arm"] == "random"}
    assert rand[0] != rand[1]
    assert set(saved["majority"]) == {"m1", "m2"}
    import gzip

    with gzip.open(tmp_path / "predictions.jsonl.gz", "rt") as f:
        preds = [json.loads(line) for line in f]
    assert len(preds) == len(saved["runs"]) * 6  # every answer of every run
    assert all(set(r["in_label_set"]) == {"m1", "m2"} for r in saved["runs"])
    assert res["runs"][0]["arm"] == "base"
    md = (tmp_path / "results.md").read_text()
    assert "| coreset |" in md and "| full |" in md and "Covering radius" in md


def test_rerun_resumes_adds_seeds_and_refuses_other_settings(tmp_path, tiny_model_dir, monkeypatch):
    import labcore.experiments.coreset_05 as exp

    records = _synthetic_instructions()
    emb = _clustered(sum(r["split"] == "train" for r in records), d=16, centres=3, seed=1)
    cfg = CoresetExperimentConfig(task="mood", budget=0.1, n_clusters=3, model=str(tiny_model_dir), seeds=(0,),
                                  arms=("coreset", "random"), steps=2,
                                  optim=Optim(lr=1e-3, scheduler="constant", warmup_ratio=0.0, batch_size=4),
                                  eval_per_source=3, max_new_tokens=3, runtime=Runtime(device="cpu", threads=1),
                                  cache=False)
    first = run_experiment(cfg, tmp_path, records=records, embeddings=emb, progress=False)
    assert [(r["arm"], r["seed"]) for r in first["runs"]] == [("base", 0), ("coreset", 0), ("random", 0)]

    trained = []
    real_train_arm = exp.train_arm
    monkeypatch.setattr(exp, "train_arm", lambda c, recs, seed, **kw: trained.append(seed) or real_train_arm(
        c, recs, seed, **kw))
    more = dataclasses.replace(cfg, seeds=(0, 1))
    second = run_experiment(more, tmp_path, records=records, embeddings=emb, progress=False)
    assert trained == [1, 1]  # only the new seed's two arms trained; base and seed 0 were kept
    assert [(r["arm"], r["seed"]) for r in second["runs"]] == [("base", 0), ("coreset", 0), ("random", 0),
                                                               ("coreset", 1), ("random", 1)]
    assert second["runs"][1] == first["runs"][1] and second["arms"]["random"]["seeds"] == [0, 1]
    import gzip

    with gzip.open(tmp_path / "predictions.jsonl.gz", "rt") as f:
        assert len([json.loads(line) for line in f]) == 5 * 6  # 2 sources x 3, the kept runs' answers too

    with pytest.raises(ValueError, match=r"other settings \(steps\).*--restart"):
        run_experiment(dataclasses.replace(cfg, steps=3), tmp_path, records=records, embeddings=emb,
                       progress=False)
    # same settings, other embeddings (e.g. the shipped float16 rows): another core-set, so no resume
    other = _clustered(len(emb), d=16, centres=3, seed=7)
    with pytest.raises(ValueError, match=r"another core-set.*--restart"):
        run_experiment(cfg, tmp_path, records=records, embeddings=other, progress=False)
    trained.clear()
    run_experiment(cfg, tmp_path, records=records, embeddings=emb, progress=False, resume=False)
    assert trained == [0, 0]  # restart: retrained


def test_majority_baseline_by_hand():
    train = [{"source": "x", "output": "Yes"}, {"source": "x", "output": "yes "}, {"source": "x", "output": "no"},
             {"source": "y", "output": "b"}, {"source": "y", "output": "a"}]  # y: a tie, "a" wins
    ev = [{"source": "x", "output": "yes"}, {"source": "x", "output": "no"}, {"source": "y", "output": "a"}]
    assert majority_baseline(train, ev) == {"x": 0.5, "y": 1.0}


def test_in_label_set_by_hand():
    preds = [{"source": "x", "output": "yes", "prediction": " Yes", "correct": True},
             {"source": "x", "output": "no", "prediction": "yes", "correct": False},  # a label, the wrong one
             {"source": "x", "output": "no", "prediction": "maybe", "correct": False},  # not a label
             {"source": "y", "output": "a", "prediction": "yes", "correct": False}]  # x's label, not y's
    s = summarise_predictions(preds)
    assert s["in_label_set"] == {"x": pytest.approx(2 / 3), "y": 0.0}
