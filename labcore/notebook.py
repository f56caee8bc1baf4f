"""The set-up every class notebook runs in its first cell, and its closing line.

``setup()`` works offline (``HF_HUB_OFFLINE=1`` unless already set: class machines have no Hugging Face Hub; set it
to 0 to allow the Hub), runs torch on one thread on a small CPU (tiny models on a few shared cores are faster that
way), seeds Python, NumPy and torch, widens pandas' columns, starts the notebook's timer and prints what it chose.
``finish()`` prints how long the notebook took. Sizes come from ``labcore.fast_mode()`` (``LABCORE_FAST=1``).
Also the helpers of the notebooks' SmolLM2 sections: ``with_adapters``, ``user_text``, ``answer_prompts``,
``task_scorers``, ``compare_answers``.
"""
from __future__ import annotations

import os
import time

_START: float | None = None


def setup(seed: int = 0) -> None:
    """Call first, before anything loads transformers (it reads ``HF_HUB_OFFLINE`` when imported)."""
    global _START
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import pandas as pd
    import torch

    from labcore import fast_mode
    from labcore.utils import resolve_device, set_seed

    if (os.cpu_count() or 1) <= 4:
        torch.set_num_threads(1)
    if os.environ.get("LABCORE_PLOTLY_RENDERER"):  # notebooks/run_all.py --html: figures a static page can show
        import plotly.io as pio

        pio.renderers.default = os.environ["LABCORE_PLOTLY_RENDERER"]
    pd.set_option("display.max_colwidth", 120)
    set_seed(seed)
    _START = time.perf_counter()
    print(f"fast mode: {fast_mode()}   device: {resolve_device('auto')}   torch threads: {torch.get_num_threads()}")


def finish() -> None:
    """The notebook's last line: its wall-clock time since :func:`setup`."""
    from labcore import fast_mode

    seconds = time.perf_counter() - _START if _START is not None else float("nan")
    print(f"notebook ran in {seconds:.0f} s (fast mode: {fast_mode()})")


# ----------------------------------------------------------------------------------------------------------------
# The SmolLM2 sections of notebooks 03-05
# ----------------------------------------------------------------------------------------------------------------
def with_adapters(model, adapters: dict):
    """``model`` with every LoRA adapter of ``{name: directory}`` on it (one copy of the base weights): switch with
    ``model.set_adapter(name)``, or ``labcore.models.adapter_disabled(model)`` for the base model."""
    from peft import PeftModel

    for i, (name, path) in enumerate(adapters.items()):
        if i == 0:
            model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
        else:
            model.load_adapter(str(path), adapter_name=name)
    return model.eval()


def user_text(prompt: str) -> str:
    """What the user wrote: the last user message of a chat prompt (a template's or the HH format); plain text as is."""
    from labcore.formats import ASSISTANT, hh_to_messages

    if "<|im_start|>user\n" in prompt:
        return prompt.rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
    if prompt.rstrip().endswith(ASSISTANT.strip()):
        return hh_to_messages(prompt)[-1]["content"]
    return prompt


def answer_prompts(model, tok, task_name: str, columns: dict, n: int = 6, seed: int = 7):
    """n held-out prompts of a task answered by each column's model with the task's sampling protocol (EVAL) and
    the same seed.

    Args:
        columns: {label: name of an adapter of ``model``, or None for the base model (adapters switched off)}.
    Returns:
        (task, prompts, {label: [response, ...]}).
    """
    from labcore.config import Eval
    from labcore.formats import prompt_format
    from labcore.generation import generate
    from labcore.models import adapter_disabled
    from labcore.presets import EVAL
    from labcore.tasks import load_task

    ev = Eval(**EVAL[task_name])
    task = load_task(task_name, ev, fmt=prompt_format(tok))
    prompts = task.eval_prompts[:n]
    gen = {"max_new_tokens": ev.max_new_tokens, "temperature": ev.temperature, "stop_at_turn": task.chat, "seed": seed}
    answers = {}
    for label, name in columns.items():
        if name is None:
            with adapter_disabled(model):
                answers[label] = [o["response"] for o in generate(model, tok, prompts, **gen)]
        else:
            model.set_adapter(name)
            answers[label] = [o["response"] for o in generate(model, tok, prompts, **gen)]
    return task, prompts, answers


def task_scorers(task_name: str, task) -> dict:
    """{("reward" | "judge", name): scoring function}: the task's RAFT-preset reward and, when it is another
    function, its independent judge."""
    from labcore.presets import RAFT
    from labcore.rewards import get_reward
    from labcore.tasks import load_judge

    reward = RAFT[task_name]["reward"]
    scorers = {("reward", reward): get_reward(reward)}
    if task.judge and task.judge != reward:
        scorers[("judge", task.judge)] = load_judge(task)
    return scorers


def compare_answers(model, tok, task_name: str, columns: dict, n: int = 6, seed: int = 7):
    """:func:`answer_prompts` as a table, scored by :func:`task_scorers`.

    Returns:
        a pandas DataFrame: prompt, one answer column per label, one score column per (scorer, label).
    """
    import pandas as pd

    task, prompts, answers = answer_prompts(model, tok, task_name, columns, n, seed)
    table = pd.DataFrame({"prompt": [user_text(p) for p in prompts], **answers})
    for (kind, name), fn in task_scorers(task_name, task).items():
        for label, ys in answers.items():
            table[f"{name if kind == 'reward' else 'judge ' + name}: {label}"] = fn(prompts, ys).numpy().round(2)
    return table
