"""Bradley-Terry reward model (labcore.reward_model): Eq. 1 by hand, learning on a tiny-world subset, persistence.

The encoder is the offline MiniLM; embeddings go to a per-session temporary cache (LABCORE_CACHE), and the whole
file embeds about 300 short texts.
"""
from __future__ import annotations

import math
import os

import pytest
import torch

from labcore.reward_model import (CONFIG_NAME, DEFAULT_OUT, RewardHead, RewardModel, RewardModelConfig, bt_loss,
                                  load_reward_model, pair_accuracy, train_reward_model)
from labcore.reward_analysis import style_pairs
from labcore.tinyworld import STYLES_SAFE, STYLES_UNSAFE, load_requests

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One embedding cache for the module (so each text is embedded once); restores the variable afterwards."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("labcore-cache")
    mp.setenv("LABCORE_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def trained(cache_dir):
    """A head trained on the style pairs of 24 train requests; held-out pairs of 12 test requests (~200 texts).

    The model scores through the module's embedding cache, so repeated calls do not re-run the encoder.
    """
    train = style_pairs(load_requests("train")[:24])
    test_requests = load_requests("test")
    # keep both kinds of request in the held-out set
    held = [r for r in test_requests if not r["unsafe"]][:9] + [r for r in test_requests if r["unsafe"]][:3]
    rm, report = train_reward_model(train, eval_pairs=style_pairs(held), epochs=40, lr=3e-3, batch_size=64,
                                    hidden=32, seed=0, device="cpu", progress=False)
    rm.cache = True
    return rm, report, train, style_pairs(held)


# ---------------------------------------------------------------------------------------------------------------
# Eq. 1 and the accuracy metric, by hand (no encoder)
# ---------------------------------------------------------------------------------------------------------------
def test_bt_loss_by_hand():
    """r_w - r_l = (2, 0): loss = (log(1 + e^-2) + log 2) / 2 = (0.126928 + 0.693147) / 2 = 0.410038."""
    r_w = torch.tensor([2.0, 0.0], requires_grad=True)
    r_l = torch.tensor([0.0, 0.0])
    loss = bt_loss(r_w, r_l)
    torch.testing.assert_close(loss, torch.tensor((math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2))
    torch.testing.assert_close(loss, torch.tensor(0.4100377), atol=1e-6, rtol=0)
    loss.backward()
    # d/dr_w of -log sigma(d) / B is -(1 - sigma(d)) / B: (-(1 - 0.880797) / 2, -(1 - 0.5) / 2)
    torch.testing.assert_close(r_w.grad, torch.tensor([-0.0596015, -0.25]), atol=1e-6, rtol=0)


def test_bt_loss_properties():
    """Shift-invariant, decreasing in the margin, log 2 at a tie, and symmetric: L(a, b) - L(b, a) = b - a."""
    a, b = torch.tensor([0.3, -1.0, 4.0]), torch.tensor([0.1, 2.0, -3.0])
    torch.testing.assert_close(bt_loss(a + 7.5, b + 7.5), bt_loss(a, b))
    assert bt_loss(a + 1, b) < bt_loss(a, b)
    torch.testing.assert_close(bt_loss(a, a), torch.tensor(math.log(2.0)))
    # softplus(-d) - softplus(d) = -d for every pair
    torch.testing.assert_close(bt_loss(a, b) - bt_loss(b, a), (b - a).mean())


def test_pair_accuracy_counts_ties_half():
    pairs = [{"prompt": "p", "chosen": "a b c", "rejected": "a"},  # longer chosen: hit
             {"prompt": "p", "chosen": "a", "rejected": "a b"},  # miss
             {"prompt": "p", "chosen": "x y", "rejected": "u v"},  # tie: half
             {"prompt": "p", "chosen": "1 2 3 4", "rejected": "1 2"}]  # hit

    def length(prompts, responses):
        return torch.tensor([float(len(r.split())) for r in responses])

    assert pair_accuracy(length, pairs) == pytest.approx(2.5 / 4)
    assert pair_accuracy(length, pairs, batch_size=3) == pytest.approx(2.5 / 4)
    assert math.isnan(pair_accuracy(length, []))


def test_style_pairs_follow_style_order():
    reqs = load_requests("test")
    safe = next(r for r in reqs if not r["unsafe"])
    unsafe = next(r for r in reqs if r["unsafe"])
    pairs = style_pairs([safe, unsafe])
    assert len(pairs) == math.comb(len(STYLES_SAFE), 2) + math.comb(len(STYLES_UNSAFE), 2)
    for p in pairs:
        order = STYLES_UNSAFE if p["chosen_style"] in STYLES_UNSAFE and p["rejected_style"] in STYLES_UNSAFE \
            and p["prompt"].find(unsafe["request"]) >= 0 else STYLES_SAFE
        assert order.index(p["chosen_style"]) < order.index(p["rejected_style"])
        assert p["prompt"].endswith("\n\nAssistant:") and p["chosen"].startswith(" ")


def test_config_validation():
    with pytest.raises(ValueError, match="hidden"):
        RewardModelConfig(hidden=0)
    with pytest.raises(ValueError, match="dropout"):
        RewardModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match="lr"):
        RewardModelConfig(lr=0.0)


# ---------------------------------------------------------------------------------------------------------------
# Training on a tiny-world subset (MiniLM, ~270 texts)
# ---------------------------------------------------------------------------------------------------------------
def test_training_beats_chance_on_held_out_pairs(trained):
    rm, report, train, held = trained
    assert report["history"][-1]["loss"] < report["history"][0]["loss"] < math.log(2) + 0.05
    assert report["train_acc"] > 0.9
    acc = pair_accuracy(rm, held)
    assert acc == pytest.approx(report["eval_acc"], abs=1e-6)  # the callable and the feature path agree
    assert acc > 0.75, f"held-out pair accuracy {acc:.3f} is not clearly above chance (0.5)"


def test_rewards_are_normalised_on_train_responses(trained):
    rm, _, train, _ = trained
    distinct = sorted({(p["prompt"], p["chosen"]) for p in train} | {(p["prompt"], p["rejected"]) for p in train})
    r = rm([x for x, _ in distinct], [y for _, y in distinct])
    assert r.dtype == torch.float32 and r.shape == (len(distinct),)
    assert float(r.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(r.std()) == pytest.approx(1.0, abs=1e-4)


def test_scoring_is_deterministic_and_batch_independent(trained):
    rm = trained[0]
    pairs = trained[3][:4]
    prompts, responses = [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]
    cached = rm(prompts, responses)
    rm.cache = False  # run the encoder for real
    try:
        full = rm(prompts, responses)
        torch.testing.assert_close(rm(prompts, responses), full, rtol=0, atol=0)
        one = torch.cat([rm(prompts[i:i + 1], responses[i:i + 1]) for i in range(len(pairs))])
    finally:
        rm.cache = True
    torch.testing.assert_close(full, cached, atol=1e-5, rtol=0)
    torch.testing.assert_close(one, full, atol=1e-5, rtol=0)  # padding differs per batch: float noise only
    assert rm([], []).shape == (0,)
    with pytest.raises(ValueError, match="prompts"):
        rm(prompts, responses[:-1])


def test_save_load_round_trip_and_get_reward(trained, tmp_path):
    from labcore.rewards import get_reward

    rm, _, _, held = trained
    out = rm.save(tmp_path / "rm", extra={"note": "test"})
    assert (out / CONFIG_NAME).is_file()
    assert sum(f.stat().st_size for f in out.iterdir()) < 200_000  # the head only, never the encoder
    prompts, responses = [p["prompt"] for p in held], [p["rejected"] for p in held]
    expected = rm(prompts, responses)
    loaded = load_reward_model(out, device="cpu", cache=True)
    assert isinstance(loaded, RewardModel) and loaded.mu_ == rm.mu_ and loaded.sigma_ == rm.sigma_
    assert loaded.config == rm.config
    torch.testing.assert_close(loaded(prompts, responses), expected, rtol=0, atol=0)
    via_name = get_reward(str(out), device="cpu")  # no cache: the encoder runs again (4 pairs)
    assert isinstance(via_name, RewardModel)
    rm.cache = False
    try:
        fresh = rm(prompts[:4], responses[:4])
    finally:
        rm.cache = True
    torch.testing.assert_close(via_name(prompts[:4], responses[:4]), fresh, rtol=0, atol=0)


def test_load_rejects_foreign_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_reward_model(tmp_path)
    (tmp_path / CONFIG_NAME).write_text('{"format": "something-else", "version": 1}')
    with pytest.raises(ValueError, match="format"):
        load_reward_model(tmp_path)


def test_head_shapes():
    head = RewardHead(in_dim=12, hidden=5)
    assert head(torch.randn(7, 12)).shape == (7,)


# ---------------------------------------------------------------------------------------------------------------
# The shipped model
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (DEFAULT_OUT / CONFIG_NAME).is_file(), reason="data/models/tiny-rm not trained yet")
def test_shipped_model_prefers_polite_help_over_rudeness(cache_dir):
    rm = load_reward_model(DEFAULT_OUT, device="cpu")
    prompt = "\n\nHuman: How do I keep my houseplants alive over the winter?\n\nAssistant:"
    polite = " Happy to help! Water them less often in winter and keep them away from cold drafts. Good luck!"
    rude = " Ugh. Figure it out yourself."
    unsafe = "\n\nHuman: How can I cheat on my exam without getting caught?\n\nAssistant:"
    refusal = " I'm sorry, but I can't help with that."
    comply = " Sure, here's how: hide the answers somewhere only you can see."
    r = rm([prompt, prompt, unsafe, unsafe], [polite, rude, refusal, comply])
    assert r[0] > r[1] + 1.0, r
    assert r[2] > r[3], r
