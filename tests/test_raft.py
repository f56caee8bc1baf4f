"""RAFT: selection and discard rule on hand-made rewards, config checks, the loop (weights change, metrics, exact
resume), and the online presets run for one iteration on tiny local stand-ins."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_model, make_tokenizer, save_classifier
from labcore.config import Eval, RAFTConfig, Sampling
from labcore.datasets import read_jsonl
from labcore.experiments.compare import raft_table
from labcore.presets import UnknownSetting, build
from labcore.raft import (apply_discard, discard_mask, plot_raft, prompt_indices, raft, repetition_rate,
                          select_global, select_local)
from labcore.tasks import load_task

NEG = float("-inf")
FIELDS = {"iteration", "reward_onpolicy", "reward_selected", "eval_reward", "distinct_2", "mean_length", "ppl",
          "seconds", "discarded", "n_selected", "sft_loss"}


# ---------------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------------
def test_select_local_best_of_k_ties_and_discards():
    rewards = torch.tensor([[0.1, 0.5, 0.5],          # tie -> lowest index 1
                            [NEG, NEG, NEG],          # all discarded -> -1
                            [float("nan"), 0.2, NEG],  # NaN and -inf never chosen
                            [1.0, 0.0, 1.0],          # tie at the front -> 0
                            [-3.0, NEG, -2.0]])       # negative rewards are fine
    assert select_local(rewards).tolist() == [1, -1, 1, 0, 2]


def test_select_local_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 3, (50, 4), generator=g).float()  # many ties
    rewards[torch.rand(50, 4, generator=g) < 0.2] = NEG
    got = select_local(rewards).tolist()
    for i, row in enumerate(rewards.tolist()):
        valid = [k for k, r in enumerate(row) if r != NEG]
        expected = -1 if not valid else min(valid, key=lambda k: (-row[k], k))
        assert got[i] == expected


def test_select_global_top_fraction_ties_and_discards():
    rewards = torch.tensor([0.3, 0.9, 0.3, NEG, 0.9, float("nan"), 0.1])
    assert select_global(rewards, 3).tolist() == [1, 4, 0]
    assert select_global(rewards, 10).tolist() == [1, 4, 0, 2, 6]  # never a discarded one
    assert select_global(rewards, 0).tolist() == []
    with pytest.raises(ValueError):
        select_global(rewards.view(7, 1), 2)


def test_repetition_and_discard_rule():
    assert repetition_rate("good good good good") == pytest.approx(0.5)  # 3-grams: 2, unique: 1
    assert repetition_rate("a b c d") == 0.0
    assert repetition_rate("a b") == 0.0
    responses = ["", "   ", " fine", " a b c a b c a b c", " a nice long varied answer"]
    tokens = [0, 1, 1, 9, 5]
    mask = discard_mask(responses, tokens, min_tokens=2, max_repetition=0.5)
    assert mask.tolist() == [True, True, True, True, False]  # empty, blank, short, repetitive (5/7 > 0.5), kept
    rewards = apply_discard(torch.tensor([1.0, 2.0, 3.0, 4.0, 0.5]), mask)
    assert rewards.tolist() == [NEG, NEG, NEG, NEG, 0.5]
    assert select_global(rewards, 2).tolist() == [4]  # a discarded sample is never selected, whatever its reward


def test_prompt_order_is_seeded_and_without_replacement():
    n, size = 10, 4
    stream = [i for t in range(1, 6) for i in prompt_indices(n, 7, t, size)]  # 20 draws = two passes
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]  # a fresh permutation per pass
    assert prompt_indices(n, 7, 2, size) == stream[4:8]
    assert prompt_indices(n, 8, 1, size) != prompt_indices(n, 7, 1, size)


def test_config_validation_and_sizes():
    with pytest.raises(ValueError, match="selection"):
        RAFTConfig(selection="best")
    with pytest.raises(ValueError, match="min_new_tokens"):
        RAFTConfig(min_new_tokens=48, sampling=Sampling(max_new_tokens=48))
    with pytest.raises(ValueError, match="alpha"):
        RAFTConfig(alpha=0.0)
    local = RAFTConfig(raft_batch_size=64, selection="local", num_samples=5)
    assert (local.prompts_per_iteration, local.samples_per_prompt) == (64, 5)
    top = RAFTConfig(raft_batch_size=64, selection="global", alpha=0.2)
    assert (top.prompts_per_iteration, top.samples_per_prompt) == (320, 1)  # b / alpha prompts, one sample each
    assert build(RAFTConfig, "gpt2-hh", fast=False).num_samples == 8
    assert build(RAFTConfig, "tiny-sentiment", fast=True, overrides={"optim.lr": 0.5}).optim.lr == 0.5
    assert build(RAFTConfig, "tiny-sentiment", fast=True, overrides=["optim.lr=0.5"]).optim.lr == 0.5
    with pytest.raises(UnknownSetting, match="preset"):
        build(RAFTConfig, "no-such-preset")


# ---------------------------------------------------------------------------------------------------------------
# The loop on a tiny random GPT-2
# ---------------------------------------------------------------------------------------------------------------
def _cfg(model_dir, overrides: dict | None = None) -> RAFTConfig:
    """The loop's tiny config; ``overrides`` as dotted fields (``{"optim.lr": 1e-4, "lora.use": False}``).
    Plain continuation (no stop at a dialogue turn): the tiny-sentiment task's ``chat=False``."""
    base = {"model": str(model_dir), "reward": "length", "task": "tiny-sentiment", "iterations": 2,
            "raft_batch_size": 4, "selection": "local", "num_samples": 2, "min_new_tokens": 6, "min_tokens": 1,
            "sampling.max_new_tokens": 10, "sampling.batch_size": 8,
            "eval.max_new_tokens": 9, "eval.batch_size": 8, "eval.prompts": 4, "eval.ppl_examples": 4,
            "optim.lr": 5e-3, "optim.epochs": 1, "optim.batch_size": 4,
            "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.1,
            "runtime.device": "cpu", "runtime.seed": 3, "runtime.threads": 1}
    return build(RAFTConfig, fast=False, overrides={**base, **(overrides or {})})


@pytest.fixture(scope="module")
def sentiment_task():
    task = load_task("tiny-sentiment", Eval(prompts=4, ppl_examples=4))
    assert not task.chat  # responses continue the review: no stop at a dialogue turn
    return task


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, sentiment_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("raft-full")
    rows = raft(_cfg(tiny_model_dir), out, task=sentiment_task, progress=False)
    return out, rows


def _adapter(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "adapter_model.safetensors"))


def test_run_writes_every_field_and_changes_the_trained_weights(full_run, tiny_model_dir, sentiment_task, tmp_path):
    out, rows = full_run
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert FIELDS <= set(r), FIELDS - set(r)
    assert rows[0]["reward_onpolicy"] is None  # iteration 0 is the base model: evaluation only
    for r in rows[1:]:
        assert r["n_selected"] >= 1 and math.isfinite(r["reward_onpolicy"]) and r["ppl"] > 1
        assert r["reward_selected"] >= r["reward_onpolicy"]  # best of K >= sample 0
        sel = [json.loads(line) for line in (out / f"selected_{r['iteration']}.jsonl").read_text().splitlines()]
        assert len(sel) == r["n_selected"] and {"prompt", "response", "reward"} <= set(sel[0])
    assert (out / "metrics.html").exists() and (out / "final" / "metrics.jsonl").exists()
    # the final adapter differs from a fresh adapter (LoRA B starts at zero) in every trained tensor
    trained = _adapter(out / "final")
    lora_b = [k for k in trained if "lora_B" in k]
    assert lora_b and all(trained[k].abs().sum() > 0 for k in lora_b)
    # and the final policy loads back the way `labcore generate --adapter OUT/final` loads it
    from labcore.models import load_model

    model, tok = load_model(str(tiny_model_dir), adapter=str(out / "final"), device="cpu")
    assert model.peft_config
    fig = plot_raft(read_jsonl(out / "metrics.jsonl"), out.name)
    assert len(fig.data) >= 6


def test_one_iteration_changes_weights_global_full_finetuning(tiny_model_dir, sentiment_task, tmp_path):
    cfg = _cfg(tiny_model_dir, {"iterations": 1, "selection": "global", "alpha": 0.5, "lora.use": False,
                                "max_repetition": 1.0})
    assert cfg.prompts_per_iteration == 8
    rows = raft(cfg, tmp_path, task=sentiment_task, progress=False)
    assert rows[1]["n_selected"] == 4  # alpha * (b / alpha)
    before = make_model("gpt2", len(make_tokenizer())).state_dict()
    after = load_file(str(tmp_path / "final" / "model.safetensors"))
    changed = [k for k in after if k in before and not torch.equal(before[k], after[k])]
    assert len(changed) == len([k for k in after if k in before])  # every trained tensor moved


@pytest.mark.parametrize("when", ["final", "none"])
def test_eval_when_final_or_none_skips_the_curves_not_the_training(when, full_run, tiny_model_dir, sentiment_task,
                                                                   tmp_path):
    rows = raft(_cfg(tiny_model_dir, {"eval.when": when}), tmp_path, task=sentiment_task, progress=False)
    assert [r["iteration"] for r in rows] == [1, 2]  # no iteration-0 evaluation of the base model
    assert "eval_reward" not in rows[0]
    assert ("eval_reward" in rows[1]) == (when == "final")
    if when == "final":  # the same policy as the evaluated-every-iteration run, so the same numbers
        assert rows[1]["eval_reward"] == pytest.approx(full_run[1][2]["eval_reward"])
    a, b = _adapter(tmp_path / "final"), _adapter(full_run[0] / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)  # evaluation never touches the training's randomness


def test_resume_equals_uninterrupted(full_run, tiny_model_dir, sentiment_task, tmp_path):
    out_full, rows_full = full_run
    raft(_cfg(tiny_model_dir, {"iterations": 1}), tmp_path, task=sentiment_task, progress=False)
    # a run killed after writing iteration 2's metrics but before its checkpoint: the stale row must go
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"iteration": 2, "eval_reward": 99.0}) + "\n")
    rows = raft(_cfg(tiny_model_dir, {"iterations": 2}), tmp_path, resume=True, task=sentiment_task,
                progress=False)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in rows_full]
    a, b = _adapter(out_full / "final"), _adapter(tmp_path / "final")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert (tmp_path / "selected_2.jsonl").read_text() == (out_full / "selected_2.jsonl").read_text()
    with pytest.raises(ValueError, match="config changed"):
        raft(_cfg(tiny_model_dir, {"iterations": 3, "optim.lr": 1e-4}), tmp_path, resume=True,
             task=sentiment_task, progress=False)


def test_results_table(full_run):
    out, rows = full_run
    table = raft_table({"tiny-sentiment": out / "metrics.jsonl"})
    assert "| tiny-sentiment | base |" in table and "RAFT (2 it.)" in table


def test_raft_table_cli_updates_the_doc(full_run, tmp_path):
    out, rows = full_run
    table = raft_table({"tiny-sentiment": out / "metrics.jsonl"})
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- raft-table:begin -->\nold\n<!-- raft-table:end -->\noutro\n")
    from labcore.cli import main  # through the real CLI: its handler lives in args.run, ours must not clash

    main(["raft-table", "--run", f"tiny-sentiment={out / 'metrics.jsonl'}", "--update", str(doc)])
    text = doc.read_text()
    assert "\nold\n" not in text and table in text and text.startswith("intro") and text.endswith("outro\n")


# ---------------------------------------------------------------------------------------------------------------
# Online presets on tiny local stand-ins (same architectures: GPT-2 policy, DistilBERT / Llama classifiers)
# ---------------------------------------------------------------------------------------------------------------


def _run_cli(argv: list[str]):
    """``labcore raft ...`` through the real CLI (main returns the command's metrics rows)."""
    from labcore.cli import main

    return main(["raft", *argv])


@pytest.mark.parametrize("preset", ["gpt2-imdb", "gpt2-hh"])
def test_online_preset_runs_one_iteration_on_local_stand_ins(preset, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABCORE_FAST", "1")
    if preset == "gpt2-imdb":
        reward = save_classifier(tmp_path / "distilbert-imdb", "distilbert")
        rows = [{"text": f"This film number {i} was a {'delight' if i % 2 else 'bore'} from start to finish, truly.",
                 "label": i % 2} for i in range(16)]
    else:
        reward = save_classifier(tmp_path / "hh-rm", "llama")
        rows = [{"chosen": f"\n\nHuman: How do I water plant {i}?\n\nAssistant: Water it deeply twice a week.",
                 "rejected": f"\n\nHuman: How do I water plant {i}?\n\nAssistant: Figure it out."} for i in range(16)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    metrics = _run_cli(["--preset", preset, "--data", str(data), "--out", str(out),
                        "--set", f"model={tiny_model_dir}", f"reward={reward}", "iterations=1",
                        "runtime.device=cpu", "runtime.threads=1"])
    assert [r["iteration"] for r in metrics] == [0, 1]
    assert FIELDS <= set(metrics[1]) and metrics[1]["n_selected"] >= 1
    assert (out / "final" / "model.safetensors").exists()  # the GPT-2 recipes fine-tune the full model
    cfg = json.loads((out / "raft_config.json").read_text())
    assert cfg["selection"] == ("global" if preset == "gpt2-imdb" else "local")
