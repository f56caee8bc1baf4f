"""Continuous batching (``labcore.batching.BatchDecoder``): rows that join a running batch, leave it early or are
removed get, greedy, exactly the tokens ``stream_generate`` gives each of them alone, on GPT-2 (learned positions),
GPT-NeoX and Llama (rotary positions, as SmolLM2), with and without mixed LoRA adapters."""
from __future__ import annotations

import pytest
import torch

from labcore.batching import BatchDecoder, DecodeRow
from labcore.generation import stream_batch, stream_generate

PROMPTS = ["\n\nHuman: How do I water a tomato plant?\n\nAssistant:",
           "\n\nHuman: hi\n\nAssistant:",
           "This film was a delight from start to finish, with a moving score",
           "The plot dragged",
           "\n\nHuman: Can you recommend a film?\n\nAssistant: Figure"]


def _alone(model, tok, prompt, max_new_tokens, use_adapter=True):
    state = None
    for state in stream_generate(model, tok, prompt, max_new_tokens=max_new_tokens, temperature=0.0,
                                 use_adapter=use_adapter):
        pass
    return state.text, state.num_tokens


def _row(tok, prompt, max_new_tokens, adapter=None):
    return DecodeRow(tok(prompt, add_special_tokens=False)["input_ids"], adapter=adapter,
                     max_new_tokens=max_new_tokens, temperature=0.0)


def _run(decoder, until_done):
    while any(not r.done for r in until_done):
        decoder.step()


def test_rows_joining_and_leaving_match_generating_alone(tiny_lm):
    model, tok = tiny_lm
    limits = [20, 3, 14, 9, 11]
    rows = [_row(tok, p, n) for p, n in zip(PROMPTS, limits)]
    decoder = BatchDecoder(model, tok)
    decoder.add(rows[:1])
    for _ in range(4):  # row 0 is 5 tokens in when rows 1 and 2 join (different prompt lengths: padding on both)
        decoder.step()
    decoder.add(rows[1:3])
    assert len(decoder) == 3
    decoder.step()
    decoder.step()
    decoder.add(rows[3:])  # row 1 (3 tokens) has left by now; rows 3 and 4 join the two still running
    assert rows[1].done and rows[1] not in decoder.rows
    most = len(decoder)
    _run(decoder, rows)
    assert most == 4 and len(decoder) == 0 and decoder.cache is None
    for row, prompt, n in zip(rows, PROMPTS, limits):
        assert (row.state.text, row.state.num_tokens) == _alone(model, tok, prompt, n)


def test_removed_row_leaves_at_once_and_the_others_are_unchanged(tiny_lm):
    model, tok = tiny_lm
    rows = [_row(tok, p, 16) for p in PROMPTS[:3]]
    decoder = BatchDecoder(model, tok)
    decoder.add(rows)
    decoder.step()
    before = rows[1].state.num_tokens
    width = decoder.attention.shape[1]
    decoder.remove([rows[1]])  # the user pressed Stop or left
    assert rows[1] not in decoder.rows and len(decoder) == 2
    assert all(layer.keys.shape[0] == 2 for layer in decoder.cache.layers)  # its cache rows are freed
    assert decoder.attention.shape[1] <= width  # and the padding only it needed is cut
    _run(decoder, [rows[0], rows[2]])
    assert rows[1].state.num_tokens == before
    for i in (0, 2):
        assert rows[i].state.text == _alone(model, tok, PROMPTS[i], 16)[0]


def test_mixed_adapters_join_a_running_batch(tiny_tokenizer):
    from conftest import make_model
    from labcore.models import add_lora

    tok = tiny_tokenizer
    model = add_lora(make_model("llama", len(tok)), r=4, dropout=0.0)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0.0, 0.5)
    model.eval()
    plan = [("__base__", PROMPTS[0]), ("default", PROMPTS[0]), ("default", PROMPTS[1]), ("__base__", PROMPTS[3])]
    rows = [_row(tok, p, 12, adapter=a) for a, p in plan]
    decoder = BatchDecoder(model, tok)
    decoder.add(rows[:2])
    decoder.step()
    decoder.step()
    decoder.add(rows[2:])
    _run(decoder, rows)
    expected = [_alone(model, tok, p, 12, use_adapter=a != "__base__")[0] for a, p in plan]
    assert [r.state.text for r in rows] == expected
    assert expected[0] != expected[1]  # the adapter really changes the answer


@pytest.mark.parametrize("stop_first", [False, True])
def test_stream_batch_is_the_decoder_with_every_row_at_once(tiny_lm, stop_first):
    import threading

    model, tok = tiny_lm
    stop = threading.Event()
    if stop_first:
        stop.set()
    out = list(stream_batch(model, tok, PROMPTS[:3], max_new_tokens=8, temperature=0.0, stop_event=stop))
    if stop_first:
        assert len(out) == 1 and all(s.num_tokens == 0 for s in out[0])
    else:
        assert [s.text for s in out[-1]] == [_alone(model, tok, p, 8)[0] for p in PROMPTS[:3]]
