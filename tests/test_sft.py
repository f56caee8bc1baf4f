"""SFT loss and loop: hand-computed NLL, parity with Hugging Face's masked-label loss, response-only mask, training."""
from __future__ import annotations

import pytest
import torch

from conftest import make_model
from labcore.models import add_lora
from labcore.config import Optim
from labcore.sft import response_nll, sft_batch, sft_epochs
from labcore.training import Learner

PROMPTS = ["\n\nHuman: How do I water a tomato plant?\n\nAssistant:", "This film was"]
RESPONSES = [" Water it deeply twice a week.", " a delight from start to finish"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, by far on a busy machine; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hand_nll(model, tok, prompts, responses, response_only: bool) -> torch.Tensor:
    """Brute force: one unpadded forward per pair, full log-softmax, sum of -log p over the target tokens."""
    total, count = torch.zeros(()), 0
    for prompt, response in zip(prompts, responses):
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([p + r])
        logp = model(input_ids=ids).logits[0].log_softmax(-1)  # (T, V)
        first = len(p) if response_only else 1  # the first target position
        for t in range(first, ids.shape[1]):
            total = total - logp[t - 1, ids[0, t]]
            count += 1
    return total / count


@pytest.mark.parametrize("response_only", [True, False])
def test_response_nll_equals_hand_computed_mean_nll(tiny_tokenizer, response_only):
    model = make_model("gpt2", len(tiny_tokenizer))
    batch = sft_batch(tiny_tokenizer, PROMPTS, RESPONSES, add_eos=True)
    loss, logs = response_nll(model, batch, response_only=response_only)
    expected = _hand_nll(model, tiny_tokenizer, PROMPTS, RESPONSES, response_only)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    n_resp = sum(batch["n_resp"])
    assert logs["tokens"] == (n_resp if response_only else sum(len(s) - 1 for s in batch["seqs"]))


def test_response_only_matches_hf_loss_with_masked_prompt_labels(tiny_tokenizer):
    """Parity: HF's built-in loss with labels = -100 on prompt and padding is the same token-weighted mean."""
    tok = tiny_tokenizer
    model = make_model("gpt2", len(tok))
    batch = sft_batch(tok, PROMPTS, RESPONSES, add_eos=True)
    width = max(len(s) for s in batch["seqs"])
    ids = torch.tensor([s + [0] * (width - len(s)) for s in batch["seqs"]])  # (B, T) right-padded
    attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch["seqs"]])  # (B, T)
    labels = torch.full_like(ids, -100)
    for i, (s, n) in enumerate(zip(batch["seqs"], batch["n_resp"])):
        labels[i, len(s) - n:len(s)] = ids[i, len(s) - n:len(s)]
    hf = model(input_ids=ids, attention_mask=attn, labels=labels).loss
    ours, _ = response_nll(model, batch, response_only=True)
    torch.testing.assert_close(ours, hf, rtol=1e-5, atol=1e-5)


def test_prompt_tokens_carry_no_gradient(tiny_tokenizer):
    """The logits that predict prompt (or padding) tokens get exactly zero gradient; response ones do not.

    Responses are right-aligned in a window of R + 1 head positions (R = longest response), so the row with the
    shorter response has prompt tokens inside the window: the mask must cut them out of the loss.
    """
    model = make_model("gpt2", len(tiny_tokenizer))
    kept = []

    def hook(module, inputs, output):
        output.retain_grad()
        kept.append(output)

    handle = model.lm_head.register_forward_hook(hook)
    batch = sft_batch(tiny_tokenizer, PROMPTS, ["ok", RESPONSES[1]], add_eos=True)
    loss, _ = response_nll(model, batch, response_only=True)
    handle.remove()
    loss.backward()
    grad = kept[0].grad  # (B, R + 1, V): position j predicts window token j + 1
    R = max(batch["n_resp"])
    assert grad.shape[1] == R + 1  # only the response window reaches the LM head
    for i, n in enumerate(batch["n_resp"]):
        per_position = grad[i, :R].abs().sum(-1)  # (R,)
        assert torch.all(per_position[:R - n] == 0), "a prompt token contributed to the loss"
        assert torch.all(per_position[R - n:] > 0), "a response token carried no loss"
    assert batch["n_resp"][0] < R  # the test really has prompt tokens in the window


def test_sft_epochs_trains_lora_and_is_seeded(tiny_tokenizer):
    pairs = list(zip(PROMPTS * 3, RESPONSES * 3))

    def run(seed):
        torch.manual_seed(0)
        model = add_lora(make_model("gpt2", len(tiny_tokenizer)), r=4, alpha=8, dropout=0.0)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        learner = Learner(model, Optim(lr=1e-2), cpu=True, seed=0)
        logs = sft_epochs(learner, tiny_tokenizer, pairs, epochs=2, batch_size=4, seed=seed, progress=False)
        after = {n: p.detach().clone() for n, p in learner.unwrapped().named_parameters() if p.requires_grad}
        return before, after, logs

    before, after, logs = run(seed=3)
    assert len(logs) == 2 * 2  # 2 epochs x ceil(6 / 4) micro-batches
    assert [g["epoch"] for g in logs] == [0, 0, 1, 1]
    # every LoRA B matrix starts at zero and must have moved; (A moves too once B is non-zero)
    for name in before:
        assert not torch.equal(before[name], after[name]), f"{name} did not change"
    _, again, logs2 = run(seed=3)
    assert [g["loss"] for g in logs] == [g["loss"] for g in logs2]
    for name in after:
        torch.testing.assert_close(after[name], again[name], rtol=0, atol=0)
    _, other, _ = run(seed=4)
    assert any(not torch.equal(after[n], other[n]) for n in after)  # a different order gives different weights


def test_sft_epochs_rejects_bad_arguments(tiny_tokenizer):
    model = add_lora(make_model("gpt2", len(tiny_tokenizer)), r=2, alpha=4, dropout=0.0)
    learner = Learner(model, Optim(lr=1e-3), cpu=True)
    with pytest.raises(ValueError):
        sft_epochs(learner, tiny_tokenizer, [("a", "b")], epochs=0, progress=False)
    assert sft_epochs(learner, tiny_tokenizer, [], epochs=1, progress=False) == []
