"""Shared fixtures: tiny random causal LMs (GPT-2, GPT-NeoX, Llama) and a tiny byte-level tokenizer, built offline."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "\n\nHuman: How do I water a tomato plant?\n\nAssistant: Water it deeply twice a week, happy to help.",
    "\n\nHuman: What is a good warm-up?\n\nAssistant: Jog slowly for five minutes, then stretch.",
    "\n\nHuman: Can you recommend a film?\n\nAssistant: Figure it out yourself.",
    "This film was a delight from start to finish, with a moving score and sharp acting.",
    "The plot dragged and the dialogue was dull; I would not watch it again.",
]


def make_tokenizer():
    """A byte-level BPE tokenizer trained in memory on a few sentences (GPT-2 conventions: eos = pad)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.padding_side = "left"
    return fast


def make_model(arch: str, vocab_size: int, seed: int = 0):
    """A tiny random causal LM of the given architecture ("gpt2", "gpt_neox", "llama")."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=128, vocab_size=vocab_size, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=0, eos_token_id=0, pad_token_id=0)
        return GPT2LMHeadModel(cfg).eval()
    if arch == "gpt_neox":
        cfg = GPTNeoXConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=128, vocab_size=vocab_size, bos_token_id=0, eos_token_id=0,
                            pad_token_id=0)
        return GPTNeoXForCausalLM(cfg).eval()
    if arch == "llama":
        cfg = LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                          intermediate_size=64, max_position_embeddings=128, vocab_size=vocab_size,
                          bos_token_id=0, eos_token_id=0, pad_token_id=0)
        return LlamaForCausalLM(cfg).eval()
    raise ValueError(arch)


def save_classifier(path, arch: str):
    """A tiny random sequence classifier saved as a Hugging Face folder: "distilbert" (2 labels, the IMDB reward's
    stand-in) or "llama" (1 label, the HH reward model's stand-in)."""
    from transformers import (DistilBertConfig, DistilBertForSequenceClassification, LlamaConfig,
                              LlamaForSequenceClassification)

    tok = make_tokenizer()
    tok.model_input_names = ["input_ids", "attention_mask"]
    torch.manual_seed(0)
    if arch == "distilbert":
        model = DistilBertForSequenceClassification(DistilBertConfig(
            vocab_size=len(tok), dim=16, hidden_dim=32, n_layers=1, n_heads=2, num_labels=2,
            max_position_embeddings=256, pad_token_id=0))
    else:
        model = LlamaForSequenceClassification(LlamaConfig(
            vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, num_labels=1, pad_token_id=0, max_position_embeddings=256))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session", params=["gpt2", "gpt_neox", "llama"])
def arch(request):
    return request.param


@pytest.fixture()
def tiny_lm(tiny_tokenizer, arch):
    """(model, tokenizer) for each architecture."""
    return make_model(arch, len(tiny_tokenizer)), tiny_tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny random GPT-2 saved as a local Hugging Face directory (for the CLI and loaders)."""
    path = tmp_path_factory.mktemp("tiny-gpt2")
    model = make_model("gpt2", len(tiny_tokenizer))
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path
