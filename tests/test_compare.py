"""labcore compare's use of shipped runs: a shipped RRHF run stands in for training only with the same settings."""
from __future__ import annotations

import json
import shutil

import pytest

from labcore.config import RRHFConfig
from labcore.datasets import load_rrhf
from labcore.experiments import compare as cmp
from labcore.presets import build


@pytest.mark.parametrize("task", sorted(cmp.SHIPPED_RRHF))
def test_shipped_rrhf_runs_match_their_presets(task):
    cfg = build(RRHFConfig, task, fast=False)
    found = cmp.shipped_rrhf_run(task, cfg)
    assert found is not None, f"{cmp.SHIPPED_RRHF[task]} does not stand in for `labcore rrhf --preset {task}`"
    data, rounds = found
    assert set(range(1, cfg.iterations + 1)) <= set(rounds)  # every round of the preset is shipped
    records = load_rrhf(data)
    assert len(records) == cfg.queries  # one record per query; identical samples are kept once (<= K responses)
    assert all(2 <= len(r["responses"]) <= cfg.num_samples for r in records)
    assert cmp.shipped_rrhf_run(task, build(RRHFConfig, task, fast=True)) is None  # fast sizes: trained here


def test_other_settings_or_a_missing_collection_mean_training_here(tmp_path, monkeypatch):
    src = cmp.SHIPPED_RRHF["smol-arithmetic"]
    run = tmp_path / "run"
    shutil.copytree(src, run)
    monkeypatch.setattr(cmp, "SHIPPED_RRHF", {"smol-arithmetic": run})
    cfg = build(RRHFConfig, "smol-arithmetic", fast=False)
    assert cmp.shipped_rrhf_run("smol-arithmetic", cfg) == (run / "data_1.jsonl", {1: run})
    (run / "policy_2").mkdir()  # another round's policy (labcore rrhf --set iterations=2, its round 2)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(run / name, run / "policy_2" / name)
    assert cmp.shipped_rrhf_run("smol-arithmetic", cfg) == (run / "data_1.jsonl", {1: run, 2: run / "policy_2"})
    more = build(RRHFConfig, "smol-arithmetic", fast=False, overrides={"iterations": 2, "eval.when": "final"})
    assert cmp.shipped_rrhf_run("smol-arithmetic", more) is not None  # iterations and eval.when may differ
    other = build(RRHFConfig, "smol-arithmetic", fast=False, overrides={"optim.lr": 1e-4})
    assert cmp.shipped_rrhf_run("smol-arithmetic", other) is None
    saved = json.loads((run / "rrhf_config.json").read_text())
    saved["num_samples"] += 1
    (run / "rrhf_config.json").write_text(json.dumps(saved))
    assert cmp.shipped_rrhf_run("smol-arithmetic", cfg) is None
    (run / "data_1.jsonl").unlink()
    assert cmp.shipped_rrhf_run("tiny-sentiment", build(RRHFConfig, "tiny-sentiment", fast=False)) is None
