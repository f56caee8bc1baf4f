"""Batched sampling, turn cutting, streaming and response log-probs on tiny random GPT-2 / GPT-NeoX / Llama."""
import threading

import torch

from labcore.generation import encode_pairs, generate, response_logprobs, sample_token, stream_generate, token_logprobs
from labcore.formats import format_chat


def _reference_logprobs(model, tok, prompt, response):
    """Unpadded, one sequence, full log-softmax: the straightforward formulation."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"]
    logits = model(torch.tensor([p + r])).logits[0]  # (T, V)
    return logits.log_softmax(-1)[len(p) - 1:-1].gather(-1, torch.tensor(r)[:, None])[:, 0]


def test_token_logprobs_equals_log_softmax_gather():
    logits, labels = torch.randn(3, 7, 50), torch.randint(0, 50, (3, 7))
    ref = logits.log_softmax(-1).gather(-1, labels[..., None])[..., 0]
    torch.testing.assert_close(token_logprobs(logits, labels), ref)


def test_response_logprobs_match_unpadded_reference(tiny_lm):
    model, tok = tiny_lm
    prompts = [format_chat("How do I water a tomato plant?"), "This film", format_chat("Hi")]
    responses = [" Water it deeply.", " was a delight from start to finish, with a moving score", " Figure it out."]
    got = response_logprobs(model, tok, prompts, responses, batch_size=3)
    for p, r, lp in zip(prompts, responses, got):
        torch.testing.assert_close(lp, _reference_logprobs(model, tok, p, r), atol=1e-5, rtol=1e-4)


def test_encode_pairs_truncates_prompt_from_the_left(tiny_tokenizer):
    prompt = format_chat("How do I water a tomato plant? " * 5)
    seqs, n = encode_pairs(tiny_tokenizer, [prompt], [" Water it deeply."], max_length=20)
    r = tiny_tokenizer(" Water it deeply.")["input_ids"]
    assert len(seqs[0]) == 20 and n[0] == len(r)
    assert seqs[0][-len(r):] == r  # the response is kept whole
    full = tiny_tokenizer(prompt)["input_ids"]
    assert seqs[0][:-len(r)] == full[-(20 - len(r)):]  # the prompt's end is kept


def test_generate_shapes_order_and_seed(tiny_lm):
    model, tok = tiny_lm
    prompts = [format_chat("Hi"), format_chat("How do I water a tomato plant?"), "This film"]
    a = generate(model, tok, prompts, num_samples=2, max_new_tokens=6, seed=3, batch_size=2)
    b = generate(model, tok, prompts, num_samples=2, max_new_tokens=6, seed=3, batch_size=2)
    assert [(r["prompt_index"], r["sample_index"]) for r in a] == [(i, k) for i in range(3) for k in range(2)]
    assert [r["prompt"] for r in a] == [p for p in prompts for _ in range(2)]
    assert [r["response"] for r in a] == [r["response"] for r in b]
    assert all(r["num_tokens"] <= 6 for r in a)


def test_generate_is_independent_of_left_padding(tiny_tokenizer):
    """Greedy output of a prompt must not change when a longer prompt pads it in the same batch."""
    from conftest import make_model

    model = make_model("gpt2", len(tiny_tokenizer))
    short, long = format_chat("Hi"), format_chat("How do I water a tomato plant in the hot summer?")
    alone = generate(model, tiny_tokenizer, [short], max_new_tokens=8, do_sample=False, stop_at_turn=False)
    batched = generate(model, tiny_tokenizer, [long, short], max_new_tokens=8, do_sample=False, stop_at_turn=False)
    assert alone[0]["response"] == batched[1]["response"]




def test_turn_end_cut_by_token_position(tiny_tokenizer):
    """A model that writes a reply then '\\n\\nHuman:' ends its turn there; the prompt is never string-replaced."""
    from conftest import make_model

    tok = tiny_tokenizer
    model = make_model("gpt2", len(tok))
    reply = tok(" Water it.\n\nHuman: more", add_special_tokens=False)["input_ids"]
    prompt = format_chat("Water it.")  # the reply's text also appears in the prompt: string replace would break
    plen = len(tok(prompt, add_special_tokens=False)["input_ids"])

    from transformers import LogitsProcessor, LogitsProcessorList

    class Force(LogitsProcessor):  # force the scripted reply, then EOS
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - plen
            target = reply[step] if step < len(reply) else tok.eos_token_id
            out = torch.full_like(scores, -1e9)
            out[:, target] = 0
            return out

    rows = generate(model, tok, [prompt], max_new_tokens=40, do_sample=False, logits_processor=LogitsProcessorList([Force()]))
    assert rows[0]["response"] == " Water it."
    assert rows[0]["finished"] is True


def test_unfinished_when_limit_hit(tiny_lm):
    model, tok = tiny_lm
    from transformers import LogitsProcessor, LogitsProcessorList

    a = tok(" a", add_special_tokens=False)["input_ids"][0]

    class OnlyA(LogitsProcessor):
        def __call__(self, input_ids, scores):
            out = torch.full_like(scores, -1e9)
            out[:, a] = 0
            return out

    rows = generate(model, tok, ["x"], max_new_tokens=5, do_sample=False, stop_at_turn=False,
                    logits_processor=LogitsProcessorList([OnlyA()]))
    assert rows[0]["finished"] is False and rows[0]["num_tokens"] == 5


def test_stream_matches_greedy_generate_and_stops(tiny_lm):
    model, tok = tiny_lm
    prompt = format_chat("How do I water a tomato plant?")
    full = generate(model, tok, [prompt], max_new_tokens=8, do_sample=False, stop_at_turn=False)[0]["response"]
    states = [s.text for s in stream_generate(model, tok, prompt, max_new_tokens=8, temperature=0, stop_at_turn=False)]
    assert states[-1] == full
    stop = threading.Event()
    n = 0
    for _ in stream_generate(model, tok, prompt, max_new_tokens=50, temperature=1.0, seed=0, stop_event=stop):
        n += 1
        if n == 3:
            stop.set()
    assert n <= 4  # stopped right after the event (one final state may follow)


def test_stream_with_adapter_disabled_equals_base(tiny_tokenizer):
    from conftest import make_model

    from labcore.models import add_lora

    base = make_model("gpt2", len(tiny_tokenizer))
    prompt = format_chat("Hi there")
    ref = [s.text for s in stream_generate(base, tiny_tokenizer, prompt, max_new_tokens=6, temperature=0)][-1]
    peft_model = add_lora(base, r=4, alpha=8, dropout=0.0)
    for n, p in peft_model.named_parameters():  # make the adapter matter
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=1.0)
    off = [s.text for s in stream_generate(peft_model, tiny_tokenizer, prompt, max_new_tokens=6, temperature=0,
                                           use_adapter=False)][-1]
    on = [s.text for s in stream_generate(peft_model, tiny_tokenizer, prompt, max_new_tokens=6, temperature=0)][-1]
    assert off == ref
    assert on != ref


def test_sample_token_filters():
    logits = torch.tensor([0.0, 5.0, 4.9, -3.0])
    assert sample_token(logits, 0.0, 0, 1.0) == 1  # greedy
    g = torch.Generator().manual_seed(0)
    draws = {sample_token(logits, 1.0, 2, 1.0, g) for _ in range(200)}
    assert draws == {1, 2}  # top-k 2 keeps the two best
    draws = {sample_token(logits, 1.0, 0, 0.5, g) for _ in range(200)}
    assert draws == {1}  # the best token alone has over half the mass
