"""Model loading: presets, local directories, offline failures that are immediate and helpful, LoRA, adapters."""
import time

import pytest
import torch

from labcore import models
from labcore.hub import HubUnavailableError
from labcore.formats import cut_turn, format_chat
from labcore.models import adapter_disabled, add_lora, count_parameters, load_model, save_policy


def test_format_chat_single_and_multi_turn():
    assert format_chat("Hi") == "\n\nHuman: Hi\n\nAssistant:"
    assert format_chat([("Hi", "Hello!"), "How are you?"]) == \
        "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant:"
    with pytest.raises(ValueError):
        format_chat([("Hi", "Hello!")])


def test_cut_turn():
    assert cut_turn(" Sure.\n\nHuman: and") == (" Sure.", True)
    assert cut_turn(" Sure.") == (" Sure.", False)
    assert cut_turn(" Sure.\n\nAssistant: again\n\nHuman: x") == (" Sure.", True)


def test_hub_preset_offline_fails_fast_with_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-labcore-hf-home")
    start = time.time()
    with pytest.raises(HubUnavailableError, match="--model tiny"):
        load_model("pythia-70m")
    assert time.time() - start < 10


def test_hub_preset_without_network_fails_fast(monkeypatch):
    """Even without HF_HUB_OFFLINE, an unreachable Hub is detected at once (no retry loop)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-labcore-hf-home")
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(HubUnavailableError, match="offline preset 'tiny'"):
        load_model("gpt2")


def test_missing_local_dir_is_clear():
    with pytest.raises(FileNotFoundError, match="no model directory"):
        load_model("./no/such/model")


def test_load_local_dir_and_adapter_roundtrip(tiny_model_dir, tmp_path):
    model, tok = load_model(str(tiny_model_dir), device="cpu")
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert next(model.parameters()).dtype == torch.float32
    peft_model = add_lora(model, r=4, alpha=8, dropout=0.0)
    assert 0 < count_parameters(peft_model, trainable_only=True) < count_parameters(peft_model)
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        aligned = peft_model(ids).logits
        with adapter_disabled(peft_model):
            base = peft_model(ids).logits
    save_policy(peft_model, tok, tmp_path / "adapter")
    reloaded, _ = load_model(str(tiny_model_dir), adapter=str(tmp_path / "adapter"), device="cpu")
    fresh, _ = load_model(str(tiny_model_dir), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, aligned)
        torch.testing.assert_close(fresh(ids).logits, base)
    assert not torch.allclose(aligned, base)


def test_lora_targets_for_each_architecture(tiny_lm):
    model, _ = tiny_lm
    peft_model = add_lora(model, r=2, alpha=4)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)


def test_unknown_architecture_needs_targets():
    from transformers import BertConfig, BertForMaskedLM

    with pytest.raises(ValueError, match="target_modules"):
        add_lora(BertForMaskedLM(BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2,
                                            intermediate_size=16, vocab_size=50)))
