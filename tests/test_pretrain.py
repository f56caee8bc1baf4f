"""Tokenizer and tiny base model (labcore.pretrain): tokenizer round trip, training lowers the loss, resume parity,
wall-clock budget, turn splitting, and the shipped data/models/tiny-base."""
from __future__ import annotations

import json
import os
import random

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from labcore.base_eval import nearest_style  # noqa: E402
from labcore.formats import ASSISTANT, HUMAN  # noqa: E402
from labcore.pretrain import (  # noqa: E402
    DEFAULT_OUT, EOS_TOKEN, MAX_PARAMS, PretrainConfig, build_model, gpt2_num_params, lr_lambda,
    pack_blocks, pretrain, train_tokenizer,
)


def synthetic_corpus(n: int = 240, seed: int = 0) -> list[str]:
    """HH-format dialogues (mixed styles) and short reviews, the shape of ``pretraining_texts``."""
    rng = random.Random(seed)
    tasks = ["cook rice", "grow tomatoes", "fix a flat tyre", "bake bread", "learn the guitar", "save money"]
    styles = ["happy to help! first, {t} slowly and check it often. hope this helps!",
              "ugh. just google how to {t}, it's not hard.",
              "sorry, i can't help with that.",
              "by the way, octopuses have three hearts."]
    texts = []
    for i in range(n):
        t = rng.choice(tasks)
        if i % 3 == 2:
            texts.append(f"this movie was {rng.choice(['great', 'awful', 'boring', 'wonderful'])}. the acting was "
                         f"{rng.choice(['superb', 'bad', 'fine'])} and i {rng.choice(['loved', 'hated'])} it.")
        else:
            texts.append(f"{HUMAN} how do i {t}?{ASSISTANT} " + rng.choice(styles).format(t=t))
    return texts


CORPUS = synthetic_corpus()
TRAIN, TEST = CORPUS[:200], CORPUS[200:]


def tiny_config(**overrides) -> PretrainConfig:
    base = dict(vocab_size=320, n_layer=1, n_embd=32, n_head=2, n_positions=32, seq_len=32, batch_size=4, lr=1e-2,
                warmup_steps=2, max_steps=12, eval_every=0, eval_blocks=8, checkpoint_every=0, log_every=1,
                num_threads=1, device="cpu")
    base.update(overrides)
    return PretrainConfig(**base)


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_tokenizer(TRAIN, vocab_size=320, save_dir=d)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(d))  # reloaded offline from the saved files


def test_tokenizer_round_trip_special_tokens_and_markers(tokenizer):
    text = f"{HUMAN} héllo wörld 😀?{ASSISTANT} fine,\n\n  thanks!{EOS_TOKEN}tail\t "
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: lossless, even for unseen characters
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.unk_token == tokenizer.pad_token == EOS_TOKEN
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    assert len(tokenizer) == 320
    # Turn markers are one token each, wherever they occur, and survive skip_special_tokens.
    human = tokenizer(HUMAN, add_special_tokens=False)["input_ids"]
    assistant = tokenizer(ASSISTANT, add_special_tokens=False)["input_ids"]
    assert len(human) == len(assistant) == 1
    ids = tokenizer(f"ok.{HUMAN} hi{ASSISTANT}", add_special_tokens=False)["input_ids"]
    assert ids.count(human[0]) == ids.count(assistant[0]) == 1 and ids[-1] == assistant[0]
    assert tokenizer.decode(ids, skip_special_tokens=True) == f"ok.{HUMAN} hi{ASSISTANT}"
    # A prompt is a token prefix of prompt + reply (what RRHF/RAFT need to strip prompts by position).
    prompt = f"{HUMAN} how do i bake bread?{ASSISTANT}"
    full = tokenizer(prompt + " sure, knead it.", add_special_tokens=False)["input_ids"]
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert full[: len(p)] == p


def test_pack_blocks_appends_eos_and_drops_the_tail(tokenizer):
    texts = ["a b c", "d e"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    stream = ids[0] + [tokenizer.eos_token_id] + ids[1] + [tokenizer.eos_token_id]
    blocks = pack_blocks(tokenizer, texts, 2)
    assert blocks.shape == (len(stream) // 2, 2)
    assert blocks.flatten().tolist() == stream[: blocks.numel()]


# ---------------------------------------------------------------------------------------------------------------
# Config and schedule
# ---------------------------------------------------------------------------------------------------------------
def test_param_formula_matches_the_model_and_config_validates(tokenizer):
    cfg = tiny_config(n_layer=2)
    assert build_model(cfg, tokenizer).num_parameters() == gpt2_num_params(320, 32, 32, 2) == cfg.n_params
    default = PretrainConfig()
    assert default.n_params <= MAX_PARAMS
    with pytest.raises(ValueError, match="exceed"):
        PretrainConfig(n_layer=12, n_embd=512, n_head=8)
    with pytest.raises(ValueError, match="divide"):
        PretrainConfig(n_embd=192, n_head=5)
    with pytest.raises(ValueError, match="seq_len"):
        PretrainConfig(seq_len=512)


def test_lr_schedule_warmup_then_cosine_to_the_floor():
    m = [lr_lambda(s, 4, 14, 0.1) for s in range(15)]
    assert m[:4] == [0.25, 0.5, 0.75, 1.0]
    assert m[4] == pytest.approx(1.0) and m[9] == pytest.approx(0.55) and m[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(m[4:], m[5:]))


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def _log(out):
    return [json.loads(line) for line in (out / "pretrain_log.jsonl").read_text().splitlines()]


def test_pretrain_lowers_loss_and_saves_a_loadable_hf_dir(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = tmp_path / "base"
    summary = pretrain(tiny_config(max_steps=25), out, train_texts=TRAIN, test_texts=TEST, progress=False)
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    assert len(losses) == 25 and summary["finished"] and summary["stop_reason"] == "max_steps"
    assert sum(losses[-5:]) / 5 < losses[0] - 1.0  # from ~log(320) = 5.8 down
    assert summary["eval_ppl"] < 320 / 4
    assert not (out / "checkpoint").exists()  # removed after a completed run
    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    gen = GenerationConfig.from_pretrained(str(out))
    assert gen.eos_token_id == gen.pad_token_id == tok.eos_token_id
    assert model.config.n_positions == 32 and model.num_parameters() == summary["n_params"]
    assert (out / "model.safetensors").exists() and (out / "special_tokens_map.json").exists()
    x = tok(f"{HUMAN} how do i cook rice?{ASSISTANT}", return_tensors="pt")
    y = model.generate(**x, max_new_tokens=3, do_sample=False, pad_token_id=tok.eos_token_id)
    assert y.shape[1] >= x["input_ids"].shape[1] + 1


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path):
    # Dropout makes the RNG state matter; 12 steps x 4 blocks cross an epoch boundary (data order must survive).
    cfg = tiny_config(dropout=0.1, checkpoint_every=4)
    full = tmp_path / "full"
    pretrain(cfg, full, train_texts=TRAIN[:30], test_texts=TEST, progress=False)
    part = tmp_path / "part"
    first = pretrain(cfg, part, train_texts=TRAIN[:30], test_texts=TEST, stop_after=6, progress=False)
    assert first["step"] == 6 and not first["finished"] and (part / "checkpoint" / "trainer_state.pt").exists()
    assert first["train_blocks"] < 12 * 4  # the run really wraps into a second epoch
    second = pretrain(cfg, part, resume=True, train_texts=TRAIN[:30], test_texts=TEST, progress=False)
    assert second["finished"] and second["step"] == 12
    from safetensors.torch import load_file

    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # The control: a different seed gives different weights, so the equality above is not vacuous.
    other = tmp_path / "other"
    pretrain(tiny_config(dropout=0.1, seed=1), other, train_texts=TRAIN[:30], test_texts=TEST, progress=False)
    c = load_file(str(other / "model.safetensors"))
    assert not torch.equal(a["transformer.h.0.mlp.c_fc.weight"], c["transformer.h.0.mlp.c_fc.weight"])


def test_wall_clock_budget_stops_saves_and_resumes(tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "budget"
    s = pretrain(tiny_config(max_minutes=1e-6, max_steps=50), out, train_texts=TRAIN, test_texts=TEST,
                 progress=False)
    assert s["stop_reason"] == "budget" and s["step"] == 1 and not s["finished"]
    assert (out / "checkpoint" / "trainer_state.pt").exists()
    AutoModelForCausalLM.from_pretrained(str(out))  # a usable model is saved even when stopped early
    s = pretrain(tiny_config(max_steps=50), out, resume=True, train_texts=TRAIN, test_texts=TEST, progress=False)
    assert s["finished"] and s["step"] == 50 and not (out / "checkpoint").exists()
    events = [r.get("event") for r in _log(out)]
    assert events.count("start") == 1 and events.count("resume") == 1 and events.count("end") == 2


# ---------------------------------------------------------------------------------------------------------------
# Evaluation helpers
# ---------------------------------------------------------------------------------------------------------------
def test_nearest_style_picks_the_most_overlapping_reference():
    refs = {"polite": "happy to help! rinse the rice first.", "rude": "ugh. just google it.",
            "refusal": "sorry, i can't help with that."}
    assert nearest_style("ugh, google it yourself", refs) == "rude"
    assert nearest_style("sorry, i can't do that", refs) == "refusal"
    assert nearest_style("happy to help: rinse the rice", refs) == "polite"
    assert nearest_style("", refs) == "empty"
    assert nearest_style("Wow.", refs) == "unmatched"  # no overlap: not silently the first (best) style


@pytest.mark.skipif(not (DEFAULT_OUT.parent.parent / "dialogues" / "paraphrase_test.jsonl.gz").exists(),
                    reason="tiny-world data not built")
def test_evaluate_base_report_on_an_untrained_model(tokenizer, tmp_path):
    from labcore.base_eval import evaluate_base
    from labcore.pretrain import _save_final

    torch.manual_seed(0)
    _save_final(build_model(tiny_config(n_positions=64, seq_len=64), tokenizer), tokenizer, tmp_path)
    rep = evaluate_base(tmp_path, n=4, n_reviews=3, batch_size=4, ppl_blocks=2, device="cpu")
    assert json.loads((tmp_path / "eval_base.json").read_text())["n_params"] == rep["n_params"]
    assert rep["heldout_ppl"] > 50  # untrained: close to uniform over 320 tokens
    for part in ("test_requests", "paraphrases"):
        assert rep[part]["n"] == 4 and 0.0 <= rep[part]["turn_end_rate"] <= 1.0
        assert sum(rep[part]["style_mix"].values()) == pytest.approx(1.0)
    assert rep["reviews"]["n"] == 3 and -1.0 <= rep["reviews"]["vader_mean"] <= 1.0


# ---------------------------------------------------------------------------------------------------------------
# The shipped model
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (DEFAULT_OUT / "model.safetensors").exists(), reason="tiny-base not trained yet")
def test_shipped_tiny_base_loads_offline_and_is_small():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(DEFAULT_OUT))
    model = AutoModelForCausalLM.from_pretrained(str(DEFAULT_OUT))
    assert model.num_parameters() <= MAX_PARAMS
    assert tok.pad_token_id == tok.eos_token_id == model.config.eos_token_id
    assert len(tok(HUMAN, add_special_tokens=False)["input_ids"]) == 1
    assert (DEFAULT_OUT / "model.safetensors").stat().st_size < 40 * 2**20
    assert not (DEFAULT_OUT / "checkpoint").exists()
