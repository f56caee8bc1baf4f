"""Metrics (perplexity, distinct-n, lengths, summaries) and the reward interface."""
import math

import pytest
import torch

from labcore.metrics import distinct_n, mean_length, perplexity, reward_summary
from labcore.rewards import get_reward


def test_distinct_n_by_hand():
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == 4 / 6  # the, cat, sat, ran of 6 words
    assert distinct_n(texts, 2) == 3 / 4  # (the cat) twice, (cat sat), (cat ran)
    assert distinct_n(["a"], 2) == 0.0


def test_mean_length_and_summary(tiny_tokenizer):
    assert mean_length(["a b", "c d e f"]) == 3
    assert mean_length([" a", " b"], tiny_tokenizer) >= 1
    s = reward_summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2 and s["median"] == 2 and s["min"] == 1 and s["max"] == 3 and s["n"] == 3
    assert math.isclose(s["std"], math.sqrt(2 / 3))


def test_perplexity_equals_exp_mean_nll(tiny_lm):
    from labcore.generation import response_logprobs

    model, tok = tiny_lm
    prompts, responses = ["a", "the film"], [" b c", " was good"]
    lps = response_logprobs(model, tok, prompts, responses)
    expected = math.exp(-float(torch.cat(lps).mean()))
    assert math.isclose(perplexity(model, tok, prompts, responses), expected, rel_tol=1e-6)
    assert 1 < expected < len(tok) * 10  # a random model is near-uniform


def test_sentiment_reward_orders_reviews():
    r = get_reward("sentiment")(["", "", ""], ["a wonderful, moving film", "it was a film", "dull and awful"])
    assert r.dtype == torch.float32 and r.shape == (3,)
    assert r[0] > r[1] > r[2]


def test_length_reward():
    assert get_reward("length")(["p", "p"], ["one two", ""]).tolist() == [2.0, 0.0]


def test_gold_reward_available():
    pytest.importorskip("labcore.tinyworld.gold")
    r = get_reward("gold")(["\n\nHuman: How do I water a tomato plant?\n\nAssistant:"] * 2,
                           [" Water it deeply at the base twice a week; happy to help!", " Figure it out yourself."])
    assert r[0] > r[1]


def test_hf_classifier_reward_from_local_dir(tmp_path, tiny_tokenizer):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tiny_tokenizer), num_labels=2, pad_token_id=0)
    GPT2ForSequenceClassification(cfg).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    r = get_reward(str(tmp_path), device="cpu")(["a", "b", "c"], [" x", " yy", " z"])
    assert r.shape == (3,) and torch.isfinite(r).all()
