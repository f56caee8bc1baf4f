"""Tests of labcore.rrhf (RRHF, arXiv 2304.05302): hand-computed losses, properties, parity with the reference
formulation, and one-step training smoke tests on a tiny random GPT-2 with a word-level tokenizer built here."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from labcore.config import Optim, RRHFConfig
from labcore.presets import build
from labcore.rrhf import (
    best_response_index,
    best_response_nll,
    build_rrhf_batch,
    ranking_loss,
    reference_inputs,
    reference_rrhf_step_loss,
    rrhf_forward,
    rrhf_loss,
    rrhf_score,
    sequence_scores,
)

NAN = math.nan
SENTENCES = [
    "the cat sat on the mat and looked at the dog",
    "a dog ran in the park with a red ball",
    "you should be kind and helpful to everyone you meet",
    "I do not know the answer to that question sorry",
    "please tell me how to bake bread at home",
    "bread needs flour water salt and yeast and time",
    "Human: Assistant: what why how good bad great terrible",
]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[EOS]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


def tiny_gpt2(tokenizer, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tokenizer),
                     bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg)


QUERIES = ["Human: please tell me how to bake bread Assistant:", "Human: what is a dog Assistant:",
           "Human: you should be kind Assistant:"]
RESPONSES = [["bread needs flour water salt", "I do not know", "the cat sat", "sorry"],
             ["a dog ran in the park", "bad"],
             ["great", "kind and helpful to everyone", "terrible terrible", "I do not know the answer"]]
REWARDS = [[2.0, -1.0, 0.5, -1.0], [1.0, -2.0], [0.0, 3.0, -3.0, 0.0]]


# ---------------------------------------------------------------- hand-computed values --------------------------

def test_sequence_scores_by_hand():
    """Response tokens -1, -2, -3 (the 4th position is masked): sum = -6, |y| = 3.
    alpha = 1: -6 / 3 = -2;  alpha = 0: -6;  alpha = 2: -6 / 9 = -2/3 (larger alpha -> higher score for long y).
    An empty row (padded slot) scores 0."""
    logp = torch.tensor([[-1.0, -2.0, -3.0, -7.0], [-5.0, -5.0, -5.0, -5.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert_close(sequence_scores(logp, mask, 1.0), torch.tensor([-2.0, 0.0]))
    assert_close(sequence_scores(logp, mask, 0.0), torch.tensor([-6.0, 0.0]))
    assert_close(sequence_scores(logp, mask, 2.0), torch.tensor([-6.0 / 9.0, 0.0]))


def test_ranking_loss_by_hand():
    """p = (-1, -2, -0.5), r = (0.2, 0.9, 0.5). Pairs with r_i < r_j:
    (0, 1): max(0, -1 - -2) = 1;  (0, 2): max(0, -1 - -0.5) = 0;  (2, 1): max(0, -0.5 - -2) = 1.5.  L_rank = 2.5."""
    p = torch.tensor([[-1.0, -2.0, -0.5]])
    r = torch.tensor([[0.2, 0.9, 0.5]])
    assert_close(ranking_loss(p, r), torch.tensor(2.5))


def test_ranking_loss_ties_and_nan_slots_add_nothing():
    """Equal rewards: no pair, however the scores disagree. NaN slot with a huge score: ignored."""
    assert_close(ranking_loss(torch.tensor([[0.0, -3.0]]), torch.tensor([[0.5, 0.5]])), torch.tensor(0.0))
    p = torch.tensor([[-1.0, -2.0, -0.5, 100.0, NAN]])
    r = torch.tensor([[0.2, 0.9, 0.5, NAN, NAN]])
    assert_close(ranking_loss(p, r), torch.tensor(2.5))
    p.requires_grad_(True)
    ranking_loss(p, r).backward()
    assert torch.isfinite(p.grad).all() and (p.grad[0, 3:] == 0).all()


def test_best_response_nll_by_hand_three_reductions():
    """Best response = slot 1 (reward 3). Its row: log-probs (0, -1, -3, -2, 0) on mask (0, 1, 1, 1, 0).
    sum (Eq. 4) = 6;  masked_mean = 6 / 3 = 2;  reference (padded-row mean, T = 5) = 6 / 5 = 1.2.
    Slot 2 (NaN reward, would win if counted) is never chosen."""
    logp = torch.zeros(1, 3, 5)
    logp[0, 0] = torch.tensor([0.0, -9.0, -9.0, 0.0, 0.0])
    logp[0, 1] = torch.tensor([0.0, -1.0, -3.0, -2.0, 0.0])
    logp[0, 2] = torch.tensor([0.0, -0.1, 0.0, 0.0, 0.0])
    mask = torch.tensor([[[0, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 1, 0, 0, 0]]], dtype=torch.bool)
    r = torch.tensor([[1.0, 3.0, NAN]])
    assert_close(best_response_nll(logp, mask, r, "sum"), torch.tensor(6.0))
    assert_close(best_response_nll(logp, mask, r, "masked_mean"), torch.tensor(2.0))
    assert_close(best_response_nll(logp, mask, r, "reference"), torch.tensor(1.2))


def test_best_response_ties_go_to_lowest_index_and_skip_nan():
    r = torch.tensor([[1.0, 2.0, 2.0], [NAN, 0.0, 0.0], [-math.inf, NAN, -math.inf], [NAN, 5.0, NAN],
                      [NAN, -math.inf, -math.inf]])  # a -inf reward is real (e.g. a discarded sample), NaN is not
    assert best_response_index(r).tolist() == [1, 1, 0, 1, 1]


def test_rrhf_loss_total_is_weighted_sum():
    """Eq. 5 with weight 10 on the example above: 10 * 2.5 + L_ft."""
    p = torch.tensor([[-1.0, -2.0, -0.5]])
    r = torch.tensor([[0.2, 0.9, 0.5]])
    logp = torch.tensor([[[0.0, -1.0, 0.0], [0.0, -2.0, -4.0], [0.0, -0.5, 0.0]]])
    mask = logp != 0
    out = rrhf_loss(p, logp, mask, r, rrhf_weight=10.0)
    assert_close(out.rank, torch.tensor(2.5))
    assert_close(out.sft, torch.tensor(3.0))  # best = slot 1: -(-2 - 4) / 2
    assert_close(out.loss, torch.tensor(28.0))


def test_loss_is_zero_when_already_ranked_and_sft_is_zero():
    """Scores in the reward order and a best response with log-prob 0 (probability 1): L = 0."""
    r = torch.tensor([[0.1, 0.7, 0.4, NAN]])
    logp = torch.tensor([[[0.0, -3.0, -3.0], [0.0, 0.0, 0.0], [0.0, -1.0, -1.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[[0, 1, 1], [0, 1, 1], [0, 1, 1], [0, 0, 0]]], dtype=torch.bool)
    p = sequence_scores(logp, mask)
    out = rrhf_loss(p, logp, mask, r)
    assert_close(out.loss, torch.tensor(0.0))


def test_empty_query_is_rejected():
    with pytest.raises(ValueError, match="no response"):
        ranking_loss(torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [NAN, NAN]]))


# ---------------------------------------------------------------- batching and data -------------------------------

def test_left_truncation_keeps_response_whole_and_fits(tokenizer):
    query = " ".join(SENTENCES[:4])  # 43 words
    responses = ["bread needs flour water salt", "sorry"]
    batch = build_rrhf_batch(tokenizer, [query], [responses], max_length=12, rewards_list=[[1.0, 0.0]])
    ids, resp = batch["input_ids"][0], batch["response_mask"][0]
    assert ids.shape[-1] <= 12 and batch["attention_mask"][0].sum(-1).max() <= 12
    longest = tokenizer(responses[0], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert ids[0][resp[0]].tolist() == longest  # response whole, EOS appended
    q_tail = tokenizer(query)["input_ids"][-(12 - len(longest)):]  # the END of the query is kept
    assert ids[0][~resp[0]][: len(q_tail)].tolist() == q_tail
    assert ids[1][resp[1]].tolist() == tokenizer("sorry", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert ids[1][: len(q_tail)].tolist() == q_tail  # same query context for every response of the query


def test_variable_k_pads_slots_with_nan(tokenizer):
    batch = build_rrhf_batch(tokenizer, QUERIES, RESPONSES, max_length=32, rewards_list=REWARDS)
    assert batch["input_ids"].shape[:2] == (3, 4)
    assert batch["slot_mask"].tolist() == [[True] * 4, [True, True, False, False], [True] * 4]
    assert torch.isnan(batch["rewards"][1, 2:]).all() and not batch["response_mask"][1, 2:].any()


def test_batched_loss_equals_sum_of_per_query_losses(tokenizer):
    model = tiny_gpt2(tokenizer).eval()
    batch = build_rrhf_batch(tokenizer, QUERIES, RESPONSES, max_length=32, rewards_list=REWARDS)
    fwd = rrhf_forward(model, batch)
    total = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"])
    parts = []
    for q, ys, rs in zip(QUERIES, RESPONSES, REWARDS):
        one = build_rrhf_batch(tokenizer, [q], [ys], max_length=32, rewards_list=[rs])
        f1 = rrhf_forward(model, one)
        parts.append(rrhf_loss(f1.scores, f1.token_logp, one["response_mask"], one["rewards"]))
    for i in range(3):
        assert_close(total[i], sum(p[i] for p in parts), atol=1e-5, rtol=1e-5)
    mean = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"], batch_reduction="mean")
    assert_close(mean.loss, total.loss / 3)


# ---------------------------------------------------------------- parity with the reference -----------------------

def test_scores_equal_full_log_softmax(tokenizer):
    """Both forward paths (LM head on response positions only / full logits + token_logprobs) equal a plain
    log_softmax-then-gather computed here with the shift written out."""
    model = tiny_gpt2(tokenizer).eval()
    batch = build_rrhf_batch(tokenizer, QUERIES, RESPONSES, max_length=32, rewards_list=REWARDS)
    B, K, T = batch["input_ids"].shape
    ids = batch["input_ids"].reshape(B * K, T)  # (B*K, T)
    attn = batch["attention_mask"].reshape(B * K, T)
    with torch.no_grad():
        logp_all = model(input_ids=ids, attention_mask=attn).logits.log_softmax(-1)  # (B*K, T, V)
    brute = torch.zeros(B * K, T)
    brute[:, 1:] = logp_all[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    brute = brute.reshape(B, K, T) * batch["response_mask"]
    brute_scores = brute.sum(-1) / batch["response_mask"].sum(-1).clamp_min(1) ** 0.5
    with torch.no_grad():
        for only in (True, False):
            fwd = rrhf_forward(model, batch, length_penalty=0.5, response_logits_only=only)
            assert_close(fwd.token_logp, brute, atol=1e-5, rtol=1e-5)
            assert_close(fwd.scores[batch["slot_mask"]], brute_scores[batch["slot_mask"]], atol=1e-5, rtol=1e-5)


def test_response_only_head_across_architectures_and_pad_equal_eos(tiny_lm):
    """GPT-2, GPT-NeoX (Pythia) and Llama (conftest's tiny_lm): the LM head applied at response positions only, and
    the query run once with its K responses on its key/value cache, give the same log-probs as the full logits. With pad == EOS (GPT-2 convention) the appended EOS is still attended
    and scored (the reference's ``input_ids != pad`` attention mask would drop it)."""
    model, tok = tiny_lm
    assert tok.pad_token_id == tok.eos_token_id
    queries = ["\n\nHuman: How do I water a tomato plant?\n\nAssistant:", "\n\nHuman: Recommend a film?\n\nAssistant:"]
    responses = [[" Water it deeply.", " No."], [" A delight.", " Figure it out yourself.", " Dull."]]
    batch = build_rrhf_batch(tok, queries, responses, max_length=64, rewards_list=[[1.0, 0.0], [2.0, -1.0, 0.0]])
    ends = batch["attention_mask"].sum(-1) - 1  # (B, K) last real position of each row
    for b, k in batch["slot_mask"].nonzero().tolist():
        e = int(ends[b, k])
        assert batch["input_ids"][b, k, e] == tok.eos_token_id and batch["response_mask"][b, k, e]
    with torch.no_grad():
        fast = rrhf_forward(model, batch, response_logits_only=True)
        full = rrhf_forward(model, batch, response_logits_only=False)
        shared = rrhf_forward(model, batch, share_query_prefix=True)
    assert_close(fast.token_logp, full.token_logp, atol=1e-5, rtol=1e-5)
    assert_close(shared.token_logp, full.token_logp, atol=1e-5, rtol=1e-5)
    assert (fast.token_logp[batch["response_mask"]] < 0).all()  # every response token, EOS included, is scored


MODES = {"response_only": {}, "full_logits": dict(response_logits_only=False), "shared_prefix": dict(
    share_query_prefix=True)}


@pytest.mark.parametrize("mode", list(MODES))
def test_token_logp_equals_generation_response_logprobs(tiny_lm, mode):
    """rrhf_forward's per-token log-probs of each (query, response) row equal ``labcore.generation.response_logprobs``
    of the same (query, response + EOS) pair (the plain path of SFT, perplexity and the metrics): the two
    response-log-prob paths agree to float precision, for every forward setting and architecture."""
    from labcore.generation import response_logprobs

    model, tok = tiny_lm
    queries = ["\n\nHuman: How do I water a tomato plant?\n\nAssistant:", "This film was",
               "\n\nHuman: What is a good warm-up?\n\nAssistant:"]
    responses = [[" Water it deeply twice a week.", " No."], [" a delight from start to finish.", " dull.", " ok"],
                 [" Jog slowly for five minutes, then stretch."]]
    batch = build_rrhf_batch(tok, queries, responses, max_length=128)  # long enough: nothing is truncated
    with torch.no_grad():
        fwd = rrhf_forward(model, batch, **MODES[mode])
    pairs = [(b, k) for b, ys in enumerate(responses) for k in range(len(ys))]
    expected = response_logprobs(model, tok, [queries[b] for b, _ in pairs], [responses[b][k] for b, k in pairs],
                                 add_eos=True)
    for (b, k), want in zip(pairs, expected):
        got = fwd.token_logp[b, k][batch["response_mask"][b, k]]  # (|y| + 1,) response tokens and EOS
        n = len(tok(responses[b][k], add_special_tokens=False)["input_ids"]) + 1
        assert got.shape == want.shape == (n,), (b, k)
        assert_close(got, want, atol=1e-5, rtol=1e-5, msg=f"query {b} response {k}")
    assert not fwd.token_logp[~batch["response_mask"]].any()  # zero outside the responses (padded slots too)


@pytest.mark.parametrize("mode", list(MODES))
def test_parity_with_reference_loss_and_gradients(tokenizer, mode):
    """One query, sft_reduction="reference", rrhf_weight 2: same loss, parts and gradients as the reference,
    for each way of running the forward (the tiny model has no dropout, so sharing the prefix changes nothing)."""
    for b in (0, 2):  # query 2 has tied rewards
        batch = build_rrhf_batch(tokenizer, [QUERIES[b]], [RESPONSES[b]], max_length=32, rewards_list=[REWARDS[b]])
        ref_in = reference_inputs(batch, 0)
        ours_model, ref_model = tiny_gpt2(tokenizer, seed=3), tiny_gpt2(tokenizer, seed=3)
        fwd = rrhf_forward(ours_model, batch, length_penalty=1.0, **MODES[mode])
        ours = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"],
                         rrhf_weight=2.0, sft_reduction="reference")
        ref = reference_rrhf_step_loss(ref_model, ref_in["input_ids"], ref_in["attention_mask"], ref_in["labels"],
                                       ref_in["rewards"], length_penalty=1.0, rrhf_weight=2.0)
        assert ours.rank > 0  # the random model mis-ranks something, so the hinge is active
        for a, c in zip(ours, ref):
            assert_close(a, c, atol=1e-5, rtol=1e-5)
        ours.loss.backward()
        ref.loss.backward()
        for (name, p), q in zip(ours_model.named_parameters(), ref_model.parameters()):
            assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_shared_prefix_on_a_multi_query_batch_and_its_guard(tokenizer):
    """Queries of different lengths (left-padded inside) and a padded slot: same scores as the flat forward.
    Rows of one query that do not hold the same query tokens are refused."""
    model = tiny_gpt2(tokenizer).eval()
    batch = build_rrhf_batch(tokenizer, QUERIES, RESPONSES, max_length=32, rewards_list=REWARDS)
    with torch.no_grad():
        flat, shared = rrhf_forward(model, batch), rrhf_forward(model, batch, share_query_prefix=True)
    assert_close(shared.token_logp, flat.token_logp, atol=1e-5, rtol=1e-5)
    bad = dict(batch, input_ids=batch["input_ids"].clone())
    bad["input_ids"][0, 1, 1] = (bad["input_ids"][0, 1, 1] + 1) % len(tokenizer)
    with pytest.raises(ValueError, match="same query tokens"):
        rrhf_forward(model, bad, share_query_prefix=True)


def test_reference_labels_are_pre_shifted(tokenizer):
    batch = build_rrhf_batch(tokenizer, [QUERIES[1]], [RESPONSES[1]], max_length=32, rewards_list=[REWARDS[1]])
    ref = reference_inputs(batch, 0)
    ids, labels = ref["input_ids"], ref["labels"]
    on = labels != -100
    assert (labels[:, :-1][on[:, :-1]] == ids[:, 1:][on[:, :-1]]).all()
    assert on.sum(-1).tolist() == batch["response_mask"][0, :2].sum(-1).tolist()
    # taken out of a 3-query batch, query 1 looks exactly as if it had been collated alone (real rows, own padding)
    big = build_rrhf_batch(tokenizer, QUERIES, RESPONSES, max_length=32, rewards_list=REWARDS)
    for key, value in reference_inputs(big, 1).items():
        assert torch.equal(value, ref[key]), key


# ---------------------------------------------------------------- training smoke tests ----------------------------

def _step(model, batch, params):
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    fwd = rrhf_forward(model, batch)
    loss = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"], batch_reduction="mean")
    loss.loss.backward()
    opt.step()
    opt.zero_grad()
    return loss


def test_one_step_changes_every_weight_full_finetuning(tokenizer):
    model = tiny_gpt2(tokenizer).train()
    batch = build_rrhf_batch(tokenizer, QUERIES, RESPONSES, max_length=32, rewards_list=REWARDS)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _step(model, batch, model.parameters())
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"not updated: {unchanged}"


def test_lora_steps_change_only_lora_weights(tokenizer):
    """LoRA on c_attn (through the shared-prefix forward). lora_B starts at 0, so the first step's gradient of lora_A is exactly 0 (dL/dA = B^T ...):
    after step 1 only lora_B moved; after step 2 both have. The base weights never change."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_gpt2(tokenizer), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                            target_modules=["c_attn"], fan_in_fan_out=True))
    model.train()
    batch = build_rrhf_batch(tokenizer, QUERIES, RESPONSES, max_length=32, rewards_list=REWARDS)
    trained = [p for p in model.parameters() if p.requires_grad]
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(trained, lr=1e-2, weight_decay=0.0)
    for step in (1, 2):
        fwd = rrhf_forward(model, batch, share_query_prefix=True)  # peft wrapper + KV-cache path
        rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"]).loss.backward()
        opt.step()
        opt.zero_grad()
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        if step == 1:
            assert {n for n in names if "lora_B" in n} <= changed
        else:
            assert changed == names


def test_rrhf_score_matches_forward_and_restores_mode(tokenizer):
    model = tiny_gpt2(tokenizer).train()
    scores = rrhf_score(model, tokenizer, QUERIES[0], RESPONSES[0], length_penalty=1.0)
    assert model.training and len(scores) == 4
    batch = build_rrhf_batch(tokenizer, [QUERIES[0]], [RESPONSES[0]], max_length=64)
    with torch.no_grad():
        expected = rrhf_forward(model.eval(), batch).scores[0]
    assert_close(torch.tensor(scores), expected)


def test_training_learns_the_ranking(tokenizer):
    """A few full-batch steps on one query drive L_rank to 0: the model ends up ranking as the rewards do."""
    model = tiny_gpt2(tokenizer, seed=1).train()
    batch = build_rrhf_batch(tokenizer, [QUERIES[0]], [RESPONSES[0]], max_length=32, rewards_list=[REWARDS[0]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(20):
        fwd = rrhf_forward(model, batch)
        out = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"])
        first = out.rank.item() if first is None else first
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    assert first > 0 and out.rank.item() < 0.1 * first
    assert rrhf_score(model, tokenizer, QUERIES[0], RESPONSES[0]).index(max(rrhf_score(
        model, tokenizer, QUERIES[0], RESPONSES[0]))) == 0  # the best-reward response scores highest


# ---------------------------------------------------------------- config ------------------------------------------

def test_config_defaults_and_validation():
    cfg = RRHFConfig()
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.optim.warmup_ratio, cfg.queries_per_step, cfg.max_length) == \
        (2e-5, 3, 0.03, 64, 192)
    assert cfg.optim.grad_accum == 16
    assert RRHFConfig(optim=Optim(batch_size=1, grad_accum=64)).queries_per_step == 64
    # queries_per_step is now batch_size x grad_accum, so the old "not a multiple of the micro-batch" case cannot
    # be written; a zero micro-batch or accumulation is the invalid step size instead
    for bad in ({"optim.batch_size": 0}, {"optim.grad_accum": 0}, {"sft_reduction": "mean"},
                {"optim.warmup_ratio": 1.0}, {"optim.lr": 0}, {"max_length": 8, "min_query_tokens": 8},
                {"batch_reduction": "max"}, {"share_query_prefix": True, "response_logits_only": False},
                {"optim.scheduler": "linear"}):
        with pytest.raises(ValueError):
            build(RRHFConfig, fast=False, overrides=bad)


def test_shortcuts_see_through_a_peft_wrapper(tiny_lm):
    """With LoRA on top (every SmolLM2 run), the response-logits and shared-prefix shortcuts must call the body of
    the model under the peft wrapper, for every architecture (a Llama's peft ``.model`` is the whole causal LM)."""
    from labcore.models import add_lora

    model, tok = tiny_lm
    peft_model = add_lora(model, r=2, target_modules=None)
    queries = ["\n\nHuman: How do I water a tomato plant?\n\nAssistant:", "\n\nHuman: Recommend a film?\n\nAssistant:"]
    responses = [[" Water it deeply.", " No."], [" A delight.", " Dull."]]
    batch = build_rrhf_batch(tok, queries, responses, max_length=64, rewards_list=[[1.0, 0.0], [2.0, -1.0]])
    with torch.no_grad():
        fast = rrhf_forward(peft_model, batch, response_logits_only=True)
        full = rrhf_forward(peft_model, batch, response_logits_only=False)
        shared = rrhf_forward(peft_model, batch, share_query_prefix=True)
    assert_close(fast.token_logp, full.token_logp, atol=1e-5, rtol=1e-5)
    assert_close(shared.token_logp, full.token_logp, atol=1e-5, rtol=1e-5)
