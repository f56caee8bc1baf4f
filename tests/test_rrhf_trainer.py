"""RRHF in practice (labcore.rrhf_trainer, arXiv 2304.05302): response collection from mixed sources, diverse beam
search, the training loop (weights change, metrics, exact resume), IP-n, the CLI presets on tiny local stand-ins,
and rrhf_score ranking as trained."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_model, make_tokenizer, save_classifier
from labcore.config import RRHFConfig, Sampling
from labcore.datasets import load_rrhf
from labcore.presets import UnknownSetting, build
from labcore.rewards import get_reward
from labcore.rrhf import rrhf_score
from labcore.rrhf_trainer import (FixedResponses, HammingDiversity, PolicySamples, collect, diverse_beam_search,
                                  prepare, ranking_accuracy, train_rrhf, write_rrhf)

FIELDS = {"iteration", "step", "epoch", "loss", "rank_loss", "sft_loss", "train_rank_acc", "eval_reward",
          "distinct_2", "mean_length", "ppl", "rank_acc", "seconds"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():  # module scope: before the module's other fixtures (a busy shared CPU is slow on more threads)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------------------------------------------
def test_collect_mixed_sources_dedupes_scores_and_round_trips(tiny_tokenizer, tmp_path):
    model = make_model("gpt2", len(tiny_tokenizer))
    prompts = ["\n\nHuman: How do I water a plant?\n\nAssistant:", "\n\nHuman: A film?\n\nAssistant:"]
    dataset = FixedResponses({prompts[0]: [" Water it deeply.", " Figure it out."]})
    hand = FixedResponses({prompts[0]: [" Water it deeply.", "  "], prompts[1]: [" Try a comedy tonight."]},
                          name="hand")

    def echo(ps):  # any function is a source
        return [[" Water it deeply.", " Figure it out yourself, really."] for _ in ps]

    sampler = PolicySamples(model, tiny_tokenizer, num_samples=3, sampling=Sampling(temperature=0.8, max_new_tokens=5),
                            stop_at_turn=True, seed=1, name="policy")
    reward = get_reward("length")
    records = collect(prompts + prompts[:1], [dataset, hand, echo, sampler], reward)  # a repeated query too
    assert [r["query"] for r in records] == prompts
    first = records[0]
    assert first["responses"][:3] == [" Water it deeply.", " Figure it out.", " Figure it out yourself, really."]
    assert first["sources"][:3] == ["dataset", "dataset", "echo"]  # the duplicate keeps its first source
    assert len(first["responses"]) == len(set(first["responses"]))  # de-duplicated
    assert all(y.strip() for r in records for y in r["responses"])  # the blank one is dropped
    assert set(first["sources"][3:]) <= {"policy"}
    for r in records:  # scores are the reward's
        assert r["scores"] == reward([r["query"]] * len(r["responses"]), r["responses"]).tolist()
    path = write_rrhf(tmp_path / "data.jsonl.gz", records)
    back = load_rrhf(path)
    assert [(r["query"], r["responses"], r["scores"]) for r in back] == \
        [(r["query"], r["responses"], r["scores"]) for r in records]


def test_hamming_diversity_by_hand():
    # two prompts x two groups, vocabulary of 4; token 3 = EOS
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.5, 0.3, 0.1, 0.1],
                                     [0.1, 0.6, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1]]))
    ids = torch.tensor([[7, 1], [7, 1], [7, 3], [7, 2]])  # row 2 (group 0 of prompt 2) has finished: EOS
    out = HammingDiversity(2, 1.0, [3])(ids, scores)
    assert out[0].argmax() == 0 and out[1].argmax() == 1  # group 1 avoids group 0's token: log .5 - 1 < log .3
    torch.testing.assert_close(out[1, 0], torch.log(torch.tensor(0.5)) - 1.0)
    torch.testing.assert_close(out[0], scores[0].log_softmax(-1))  # group 0 is plain greedy
    torch.testing.assert_close(out[3], scores[3].log_softmax(-1))  # a finished group does not penalise
    out = HammingDiversity(2, 0.1, [3])(ids, scores)
    assert out[1].argmax() == 0  # a small penalty does not move it


def test_diverse_beam_search_group_zero_is_greedy(tiny_tokenizer):
    from labcore.generation import generate

    model = make_model("gpt2", len(tiny_tokenizer))
    prompts = ["\n\nHuman: How do I water a plant?\n\nAssistant:", "This film was"]
    groups = diverse_beam_search(model, tiny_tokenizer, prompts, num_groups=3, diversity_penalty=50.0,
                                 max_new_tokens=6, stop_at_turn=False)
    greedy = generate(model, tiny_tokenizer, prompts, max_new_tokens=6, do_sample=False, stop_at_turn=False)
    assert [g[0] for g in groups] == [r["response"] for r in greedy]
    assert all(len(set(g)) == 3 for g in groups)  # a huge penalty forces different first tokens


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
RECORDS = [
    {"query": "\n\nHuman: How do I water a tomato plant?\n\nAssistant:",
     "responses": [" Water it deeply twice a week, happy to help.", " Figure it out yourself."], "scores": [1.0, -1.0]},
    {"query": "\n\nHuman: What is a good warm-up?\n\nAssistant:",
     "responses": [" Jog slowly for five minutes, then stretch.", " Figure it out yourself.", " Stretch."],
     "scores": [1.0, -1.0, 0.2]},
    {"query": "\n\nHuman: Can you recommend a film?\n\nAssistant:",
     "responses": [" Figure it out yourself.", " This film was a delight from start to finish."], "scores": [-1.0, 1.0]},
    {"query": "The plot dragged and", "responses": [" the dialogue was dull.", " a moving score."],
     "scores": [-0.5, 0.7]},
]


def _cfg(model_dir, overrides: dict | None = None) -> RRHFConfig:
    """The fast tiny-sentiment preset (its evaluation protocol) with the loop's tiny training settings; ``overrides``
    as dotted fields. batch_size 1 x grad_accum 2 = 2 queries per optimiser step."""
    base = {"model": str(model_dir), "reward": "length", "max_length": 64, "eval_every": 0, "checkpoint_every": 0,
            "optim.lr": 5e-3, "optim.epochs": 2, "optim.batch_size": 1, "optim.grad_accum": 2,
            "lora.use": True, "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.1,
            "runtime.device": "cpu", "runtime.seed": 3}
    return build(RRHFConfig, "tiny-sentiment", fast=True, overrides={**base, **(overrides or {})})


@pytest.fixture(scope="module")
def experiment(tiny_model_dir):
    """Task, reward and held-out records of the fast tiny-sentiment preset (labcore.rrhf_trainer.prepare)."""
    data = prepare(_cfg(tiny_model_dir))
    assert data.judge_fn is not None and not data.task.chat  # review continuations: AFINN judges, no dialogue turn
    return data


def _train(out, tiny_model_dir, experiment, **kw):
    config = dataclasses.replace(kw.pop("config", None) or _cfg(tiny_model_dir), eval_every=1, checkpoint_every=1)
    return train_rrhf(config, RECORDS, out, task=experiment.task, reward_fn=kw.pop("reward_fn", experiment.reward_fn),
                      judge_fn=experiment.judge_fn, heldout=RECORDS[:2], progress=False, **kw)


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("rrhf-full")
    return out, _train(out, tiny_model_dir, experiment)


def test_training_changes_lora_weights_and_logs_every_field(full_run, tiny_model_dir):
    out, rows = full_run
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]  # 4 queries, 2 per step, 2 epochs; step 0 = start
    for r in rows:
        assert FIELDS <= set(r), FIELDS - set(r)
    assert rows[0]["loss"] is None and all(r["loss"] > 0 for r in rows[1:])
    for r in rows[1:]:
        assert r["loss"] == pytest.approx(r["rank_loss"] + r["sft_loss"], rel=1e-5)  # Eq. 5, weight 1
    trained = load_file(str(out / "final" / "adapter_model.safetensors"))
    lora_b = [k for k in trained if "lora_B" in k]
    assert lora_b and all(trained[k].abs().sum() > 0 for k in lora_b)  # LoRA B starts at 0: every one moved
    assert (out / "final" / "metrics.jsonl").exists()
    from labcore.models import load_model

    model, _ = load_model(str(tiny_model_dir), adapter=str(out / "final"), device="cpu")  # labcore generate --adapter
    assert model.peft_config



def test_eval_when_final_evaluates_once_at_the_end(full_run, tiny_model_dir, experiment, tmp_path):
    config = dataclasses.replace(_cfg(tiny_model_dir, {"eval.when": "final"}), eval_every=1, checkpoint_every=1)
    rows = train_rrhf(config, RECORDS, tmp_path, task=experiment.task, reward_fn=experiment.reward_fn,
                      judge_fn=experiment.judge_fn, heldout=RECORDS[:2], progress=False)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # no step-0 row; training rows still logged
    assert ["eval_reward" in r for r in rows] == [False, False, False, True]
    assert rows[-1]["eval_reward"] == pytest.approx(full_run[1][-1]["eval_reward"])  # the same final policy
    assert rows[-1]["rank_acc"] == pytest.approx(full_run[1][-1]["rank_acc"])


def test_one_step_full_finetuning_changes_every_weight(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, {"lora.use": False, "optim.epochs": 1, "optim.batch_size": 4, "optim.grad_accum": 1,
                                "optim.lr": 1e-3})
    assert cfg.queries_per_step == 4
    train_rrhf(cfg, RECORDS, tmp_path, progress=False)
    before = make_model("gpt2", len(make_tokenizer())).state_dict()
    after = load_file(str(tmp_path / "final" / "model.safetensors"))
    shared = [k for k in after if k in before]
    assert shared and all(not torch.equal(before[k], after[k]) for k in shared)


def test_resume_equals_uninterrupted(full_run, tiny_model_dir, experiment, tmp_path):
    out_full, rows_full = full_run
    calls = {"n": 0}

    def failing_reward(prompts, responses):  # the 4th evaluation (step 3) dies: checkpoint of step 2 remains
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return experiment.reward_fn(prompts, responses)

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, tiny_model_dir, experiment, reward_fn=failing_reward)
    assert json.loads((tmp_path / "checkpoint" / "labcore_state.json").read_text())["optimizer_steps"] == 2
    rows = _train(tmp_path, tiny_model_dir, experiment, resume=True)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rows) == strip(rows_full)
    a = load_file(str(out_full / "final" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="config changed"):
        (tmp_path / "final").rename(tmp_path / "final.old")
        _train(tmp_path, tiny_model_dir, experiment, resume=True, config=_cfg(tiny_model_dir, {"optim.lr": 1e-4}))


def test_trained_model_scores_rank_as_trained(tiny_tokenizer, tiny_model_dir, tmp_path):
    """A tiny overfit check: after RRHF on one query, rrhf_score (Eq. 1) orders its responses as the rewards do."""
    record = {"query": "\n\nHuman: What is a good warm-up?\n\nAssistant:",
              "responses": [" Figure it out yourself.", " Stretch.", " Jog slowly for five minutes, then stretch."],
              "scores": [-1.0, 0.0, 1.0]}
    cfg = _cfg(tiny_model_dir, {"lora.use": False, "optim.epochs": 25, "optim.batch_size": 1, "optim.grad_accum": 1,
                                "optim.lr": 3e-3})
    assert cfg.queries_per_step == 1
    train_rrhf(cfg, [record], tmp_path, progress=False)
    from labcore.models import load_model

    model, tok = load_model(str(tmp_path / "final"), device="cpu")
    p = rrhf_score(model, tok, record["query"], record["responses"])
    assert p[0] < p[1] < p[2]
    assert ranking_accuracy(model, tok, [record]) == 1.0


# ---------------------------------------------------------------------------------------------------------------
# CLI: tiny presets (IP-2, --data) and the online presets on tiny local stand-ins
# ---------------------------------------------------------------------------------------------------------------
def _cli(argv: list[str]):
    """``labcore rrhf ...`` through the real CLI (main returns the command's metrics rows)."""
    from labcore.cli import main

    return main(["rrhf", *argv])


def test_cli_ip2_writes_both_rounds(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABCORE_FAST", "1")
    out = tmp_path / "run"
    rows = _cli(["--preset", "tiny-helpful", "--out", str(out), "--set", f"model={tiny_model_dir}", "reward=gold",
                 "iterations=2", "runtime.device=cpu", "runtime.threads=1", "queries=4"])
    assert [r["iteration"] for r in rows] == [1, 1, 2] and "gold" in rows[-1]
    for k in (1, 2):
        recs = load_rrhf(out / f"data_{k}.jsonl")
        assert len(recs) == 4 and all(len(r["responses"]) >= 2 for r in recs)  # beams + styled answers
    assert (out / "policy_1" / "adapter_config.json").exists() and (out / "final" / "adapter_config.json").exists()
    # --data: train on an RRHF file instead of collecting
    data = write_rrhf(tmp_path / "given.jsonl", RECORDS[:2])
    rows = _cli(["--preset", "tiny-helpful", "--data", str(data), "--out", str(tmp_path / "given"),
                 "--set", f"model={tiny_model_dir}", "reward=gold", "runtime.device=cpu", "runtime.threads=1"])
    assert load_rrhf(tmp_path / "given" / "data_1.jsonl") == load_rrhf(data)


@pytest.mark.parametrize("preset", ["gpt2-imdb", "pythia-hh"])
def test_online_presets_run_on_local_stand_ins(preset, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABCORE_FAST", "1")
    if preset == "gpt2-imdb":
        policy, reward = tiny_model_dir, save_classifier(tmp_path / "distilbert-imdb", "distilbert")
        rows = [{"text": f"This film number {i} was a {'delight' if i % 2 else 'bore'} from start to finish, truly.",
                 "label": i % 2} for i in range(16)]
    else:
        policy, reward = tmp_path / "neox", save_classifier(tmp_path / "hh-rm", "llama")
        model = make_model("gpt_neox", len(make_tokenizer()))
        model.generation_config.pad_token_id = 0
        model.save_pretrained(policy)
        make_tokenizer().save_pretrained(policy)
        rows = [{"chosen": f"\n\nHuman: How do I water plant {i}?\n\nAssistant: Water it deeply twice a week.",
                 "rejected": f"\n\nHuman: How do I water plant {i}?\n\nAssistant: Figure it out."} for i in range(16)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    metrics = _cli(["--preset", preset, "--data", str(data), "--out", str(out),
                    "--set", f"model={policy}", f"reward={reward}", "runtime.device=cpu", "runtime.threads=1"])
    assert [r["step"] for r in metrics] == [0, 2] and {"eval_reward", "ppl", "distinct_2"} <= set(metrics[-1])
    assert (out / "final" / "model.safetensors").exists()  # the online recipes fine-tune the full model
    recs = load_rrhf(out / "data_1.jsonl")
    assert recs and max(len(r["responses"]) for r in recs) >= 2
    if preset == "pythia-hh":
        assert metrics[-1]["rank_acc"] is not None  # held-out chosen / rejected pairs


def test_preset_overrides_and_validation():
    cfg = build(RRHFConfig, "pythia-hh", fast=False, overrides={"optim.lr": 1e-4, "policy": "D"})
    assert (cfg.policy, cfg.optim.lr, cfg.batch_reduction) == ("D", 1e-4, "mean")
    assert build(RRHFConfig, "pythia-hh", fast=False, overrides=["optim.lr=1e-4", "policy=D"]) == cfg
    with pytest.raises(UnknownSetting, match="unknown RRHF"):
        build(RRHFConfig, "tiny-sentiment", fast=True, overrides={"nonsense": 1})
    with pytest.raises(ValueError, match="policy"):
        build(RRHFConfig, "tiny-sentiment", fast=True, overrides={"policy": "OP"})
    with pytest.raises(ValueError, match="policy"):
        build(RRHFConfig, "tiny-sentiment", fast=True, overrides=["policy=OP"])
