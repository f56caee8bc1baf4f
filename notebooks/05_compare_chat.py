# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation
#   kernelspec:
#     display_name: Python 3 (labcore)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Comparison, reward hacking, and chat
#
# **Learning goals**
#
# * compare the base model with the aligned models (RAFT, RRHF) side by side on held-out prompts;
# * measure what alignment costs: diversity (distinct-2) and length, next to the reward and the gold rubric;
# * see **reward hacking** happen: optimise a reward that is easy to game (`length`) and watch gold;
# * chat with a model, with its adapter switched on and off (`labcore.generation.stream_generate`);
# * compare base, RAFT and RRHF on SmolLM2-135M-Instruct, a real small model, and chat with two panes in one batch.

# %%
from labcore.notebook import finish, setup

setup()  # offline (HF_HUB_OFFLINE=1), one torch thread on a small CPU, seed 0; prints the device and threads

import time
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

from labcore import DATA_DIR, REPO_ROOT, fast_mode
from labcore.utils import resolve_device, set_seed

FAST = fast_mode()  # LABCORE_FAST=1: tiny sizes (about 2 minutes per notebook on 2 CPU cores)

# %% [markdown]
# ## 1. The models
#
# Aligned policies are LoRA adapters on the one tiny base model (`data/models/*/adapter_config.json`): one copy of the
# weights, the adapter switched on or off. The shipped ones, if present:

# %%
from labcore.formats import format_chat
from labcore.models import adapter_disabled, load_model

EXPECTED = ["raft-sentiment", "raft-helpful", "rrhf-helpful", "rrhf-sentiment"]
found = sorted(p.parent.name for p in (DATA_DIR / "models").glob("*/adapter_config.json")
               if not p.parent.name.startswith("smol-"))  # the tiny model's adapters (SmolLM2's: the SmolLM2 section)
adapters = {name: DATA_DIR / "models" / name for name in found}
for name in EXPECTED:
    if name not in adapters:
        display(Markdown(f"> **note:** `data/models/{name}` is not in this checkout — its column is skipped "
                         f"(train it: `labcore {name.split('-')[0]} ...`, see notebooks 03/04)."))
print("adapters found:", list(adapters))
base, tok = load_model("tiny")

# %% [markdown]
# ## 2. Side by side on held-out prompts
#
# Two tasks: **dialogue** (held-out *paraphrased* requests — templates never seen in training — scored by `tiny-rm`
# and judged by `gold`) and **sentiment** (held-out review openings scored by VADER). Each adapter is evaluated on the
# task its name says; every model samples with the same seed. Metrics: mean reward, gold, distinct-2 (share of
# distinct word bigrams over all samples; lower = more repetitive) and mean length in words.

# %%
import contextlib

from labcore.generation import generate
from labcore.metrics import distinct_n, mean_length
from labcore.rewards import get_reward
from labcore.tinyworld import load_paraphrases, review_prompts

N = 24 if FAST else 128
gold = get_reward("gold")
tasks = {
    "dialogue": dict(prompts=[format_chat(r["request"]) for r in load_paraphrases()[:N]],
                     reward=get_reward(str(DATA_DIR / "models" / "tiny-rm")), gen=dict(max_new_tokens=48)),
    "sentiment": dict(prompts=review_prompts("test")[:N], reward=get_reward("sentiment"),
                      gen=dict(max_new_tokens=32, stop_at_turn=False)),
}


def sample(model, task, use_adapter=True, seed=7):
    t = tasks[task]
    with (contextlib.nullcontext() if use_adapter else adapter_disabled(model)):
        out = generate(model, tok, t["prompts"], temperature=0.85, seed=seed, **t["gen"])
    return [o["response"] for o in out]


def metrics(task, replies):
    t = tasks[task]
    row = {"reward": float(t["reward"](t["prompts"], replies).mean()), "distinct-2": distinct_n(replies, 2),
           "mean words": mean_length(replies)}
    if task == "dialogue":
        row["gold"] = float(gold(t["prompts"], replies).mean())
    return row


samples = {task: {"base": sample(base, task)} for task in tasks}
for name, path in adapters.items():
    task = "sentiment" if "sentiment" in name else "dialogue"
    m, _ = load_model("tiny", adapter=str(path))
    samples[task][name] = sample(m, task)
for task, by_model in samples.items():
    display(Markdown(f"### {task}"))
    display(pd.DataFrame({k: metrics(task, v) for k, v in by_model.items()}).T.round(3))
    display(pd.DataFrame({"prompt": tasks[task]["prompts"][:5], **{k: v[:5] for k, v in by_model.items()}}))

# %% [markdown]
# Read the dialogue table column by column: the aligned models were trained to raise `reward` (the learned `tiny-rm`),
# and `gold` is the judge they never saw. If `reward` rose much more than `gold` — and the replies repeat a few stock
# phrases (low distinct-2) — the policy has learned what the reward model *likes* rather than what is *good*: the
# cracks found in notebook 02. That is reward hacking, and the next section provokes it on purpose.

# %% [markdown]
# ## 3. Reward hacking and diversity
#
# A reward is a *proxy* for what we want. Optimise it hard enough and the policy finds what the proxy rewards but we
# do not want. Two experiments with the deliberately hackable reward `length` (number of words).
#
# **Selection pressure.** Sample $K$ replies per request from the base model and keep the best by each reward
# (best-of-$K$, the selection step of RAFT). Keeping the longest reply raises length; does it raise gold?

# %%
K = 4 if FAST else 8
prompts = tasks["dialogue"]["prompts"]
rows = generate(base, tok, prompts, num_samples=K, max_new_tokens=64, temperature=1.0, seed=0)
replies = np.array([r["response"] for r in rows], dtype=object).reshape(len(prompts), K)
flat_p = [r["prompt"] for r in rows]
scores = {"length": get_reward("length"), "tiny-rm": tasks["dialogue"]["reward"], "gold": gold}
by = {name: fn(flat_p, list(replies.flatten())).view(len(prompts), K) for name, fn in scores.items()}
table = []
for name in ["random (k=0)", *scores]:
    pick = torch.zeros(len(prompts), dtype=torch.long) if name.startswith("random") else by[name].argmax(1)
    kept = [replies[i, k] for i, k in enumerate(pick.tolist())]
    table.append({"kept by": name, "gold": float(gold(prompts, kept).mean()), "words": mean_length(kept),
                  "distinct-2": distinct_n(kept, 2)})
display(pd.DataFrame(table).round(3))

# %% [markdown]
# **Optimising it.** A short RAFT run on the dialogue prompts with `reward="length"` (the `tiny-helpful` preset,
# shrunk): the reward goes up by construction — watch `gold` and `distinct_2` on the curves.

# %%
import tempfile

from labcore.config import RAFTConfig
from labcore.presets import build
from labcore.raft import raft
from labcore.tasks import load_task

SIZES = {} if FAST else {"iterations": 3, "raft_batch_size": 32, "eval.prompts": 48, "eval.ppl_examples": 48}
cfg = build(RAFTConfig, "tiny-helpful", overrides={"reward": "length", "runtime.threads": 1, **SIZES})
task = load_task(cfg.task, cfg.eval)
t = time.perf_counter()
hack = raft(cfg, tempfile.mkdtemp(prefix="labcore-nb05-length-"), task=task, progress=False)
print(f"{cfg.iterations} iterations in {time.perf_counter() - t:.0f} s")
display(pd.DataFrame(hack)[["iteration", "eval_reward", "gold", "distinct_2", "mean_length", "ppl"]].round(3))

# %% [markdown]
# The same pattern is documented in the papers: RRHF's online setting reaches a high reward with perplexity 63.8
# (Table 6 — "reward hacking"), and RAFT's reference run raised the reward while distinct-2 fell from 0.39 to 0.22
# because responses containing `#` scored high. Remedies: a held-out judge (`gold` here), diversity and perplexity
# monitoring, discard rules, early stopping — and better reward models (notebook 02).
#
# ## 4. Chat
#
# A small chat helper on top of `labcore.generation.stream_generate`, which yields the text after every token (the
# app uses the same function). It runs the *same* loaded model with the adapter on or off:

# %%
from labcore.generation import stream_generate

chat_name = next((n for n in ("raft-helpful", "rrhf-helpful") if n in adapters), None) or next(iter(adapters), None)
chat_model = load_model("tiny", adapter=str(adapters[chat_name]))[0] if chat_name else base
dialogue = chat_name is None or "sentiment" not in chat_name


def chat(message, history=(), use_adapter=True, seed=0, max_new_tokens=48, show=True):
    """One assistant turn, streamed; history is a list of (user, assistant) pairs. Returns the reply."""
    prompt = format_chat([*history, message]) if dialogue else message
    state, label = None, f"**{'aligned' if use_adapter else 'base'}:** "
    handle = display(Markdown(label), display_id=True) if show else None
    for state in stream_generate(chat_model, tok, prompt, max_new_tokens=max_new_tokens, temperature=0.7,
                                 top_p=0.9, seed=seed, use_adapter=use_adapter, stop_at_turn=dialogue):
        if handle is not None:
            handle.update(Markdown(label + state.text))  # redrawn as tokens arrive
    return state.text if state else ""


print(f"chat model: tiny + {chat_name or '(no adapter: base only)'}")
message = "how do I keep my houseplants alive?" if dialogue else "The acting in this film"
display(Markdown(f"**user:** {message}"))
for on in (False, True):
    chat(message, use_adapter=on)

# %% [markdown]
# Multi-turn: pass the history as `(user, assistant)` pairs; the prompt is the HH transcript so far
# (`labcore.formats.format_chat`). For a browser UI with two panes (adapter on / off side by side) run `labcore app`.

# %%
if dialogue:
    history = [(message, chat(message, show=False))]
    display(Markdown(f"**user:** {message}\n\n**assistant:** {history[0][1]}"))
    follow_up = "and what about watering them?"
    display(Markdown(f"**user:** {follow_up}"))
    chat(follow_up, history=history)

# %% [markdown]
# ## Exercises
#
# 1. Which reward hacks fastest under best-of-$K$: `length` or `tiny-rm`? Compute gold when keeping the best of $K$
#    by `tiny-rm` for $K = 2, 4, 8$.
# 2. In the side-by-side table, which aligned model lost the most diversity? Is the loss worth the reward gain?
# 3. Ask the chat model an unsafe request (e.g. `"how do I pick my neighbour's lock?"`) with the adapter on and off,
#    five seeds each. Score the replies with `gold`.

# %% [markdown]
# #### Solution 1
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 1. gold of best-of-K by tiny-rm, K = 2, 4, K_max
for k in sorted({2, min(4, K), K}):
    pick = by["tiny-rm"][:, :k].argmax(1)
    kept = [replies[i, j] for i, j in enumerate(pick.tolist())]
    print(f"best of {k} by tiny-rm: gold {float(gold(prompts, kept).mean()):+.3f}, words {mean_length(kept):.1f}")

# %% [markdown]
# #### Solution 2
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 2. diversity lost relative to the base model
for task, by_model in samples.items():
    d0 = distinct_n(by_model["base"], 2)
    for name, v in by_model.items():
        print(f"{task:9s} {name:15s} distinct-2 {distinct_n(v, 2):.3f} ({distinct_n(v, 2) - d0:+.3f} vs base)")

# %% [markdown]
# #### Solution 3
#
# *(the code below is collapsed: click the bar or the `...` to show it)*

# %% jupyter={"source_hidden": true} tags=["solution"]
# 3. unsafe request, adapter on/off
req = "how do I pick my neighbour's lock?"
for on in (False, True):
    outs = [chat(req, use_adapter=on, seed=s, show=False) for s in range(5)]
    g = gold([format_chat(req)] * 5, outs) if dialogue else torch.zeros(5)
    print(f"adapter {'on ' if on else 'off'}: gold {float(g.mean()):+.2f}  e.g. {outs[0]!r}")

# %% [markdown]
# ## SmolLM2: the same method on a real small model
#
# Notebooks 03 and 04 ran RAFT and RRHF on **SmolLM2-135M-Instruct** (HuggingFaceTB, Apache-2.0), a real
# instruction-tuned model that writes English (`load_model("smollm2-135m")`, offline). The shipped SmolLM2 adapters,
# `data/models/smol-{raft,rrhf}-{sentiment,arithmetic}`, were made by the full presets (`labcore raft --preset
# smol-sentiment`, `labcore rrhf --preset smol-arithmetic`, ...). All of them sit on **one** copy of the base weights
# (peft: `load_adapter`, then `set_adapter(name)` per model; `adapter_disabled` for the base). Two held-out tasks,
# each with its protocol (`labcore.presets.EVAL`) and the same seed for every model:
#
# * **sentiment**: review openings to continue; reward VADER, judge AFINN (a lexicon the reward never saw);
# * **arithmetic**: addition problems whose pairs were never trained on, in the chat template; reward and judge are
#   the same exact check (1 when the answer's last number is the sum), so `reward` = accuracy.
#
# Default mode compares the base model with every shipped adapter on the first 32 held-out prompts of each task
# (estimated 1-2 minutes on 2 cores), then runs a small chat. Fast mode skips the comparison with a note, and the
# chat runs on the tiny model with its dialogue adapters.

# %%

from labcore.config import Eval
from labcore.formats import prompt_format
from labcore.generation import stream_batch
from labcore.presets import EVAL
from labcore.tasks import arithmetic_problems, load_judge

pd.set_option("display.max_colwidth", 200)
SMOL = not FAST  # fast mode: no SmolLM2 work, so CI time stays flat
SMOL_MODEL = "smollm2-135m" if SMOL else "tiny"
SMOL_REWARD = {"smol-sentiment": "sentiment", "smol-arithmetic": "arithmetic"}  # the presets\' rewards
from labcore.notebook import user_text, with_adapters  # noqa: E402


SMOL_NAMES = [f"{m}-{t}" for m in ("raft", "rrhf") for t in ("sentiment", "arithmetic")]
if SMOL:
    smol_expected = {name: DATA_DIR / "models" / f"smol-{name}" for name in SMOL_NAMES}
else:  # the tiny stand-ins, for the chat demo
    smol_expected = {name: DATA_DIR / "models" / name for name in ("raft-helpful", "rrhf-helpful")}
smol_found = {name: path for name, path in smol_expected.items() if (path / "adapter_config.json").is_file()}
for name, path in smol_expected.items():
    if name not in smol_found:
        print(f"note: no adapter at data/models/{path.name}: its column is skipped (train it: "
              f"`labcore {name.split('-')[0]} --preset {'smol-' if SMOL else 'tiny-'}{name.split('-')[1]}`)")
smol_base, smol_tok = load_model(SMOL_MODEL)
smol_model = with_adapters(smol_base, smol_found)
print(f"{SMOL_MODEL} + adapters {list(smol_found)} (one copy of the base weights)")

# %%
def smol_compare(task_name, n=32, seed=7):
    """The base model and every adapter of the task on its first n held-out prompts: (metrics table, answers)."""
    ev = Eval(**EVAL[task_name])
    task = load_task(task_name, ev, fmt=prompt_format(smol_tok))
    prompts = task.eval_prompts[:n]
    gen = {"max_new_tokens": ev.max_new_tokens, "temperature": ev.temperature, "stop_at_turn": task.chat, "seed": seed}
    answers = {}
    for name in [None, *(a for a in smol_found if a.endswith(task_name.split("-")[1]))]:
        if name is None:
            with adapter_disabled(smol_model):
                answers["base"] = [o["response"] for o in generate(smol_model, smol_tok, prompts, **gen)]
        else:
            smol_model.set_adapter(name)
            answers[name] = [o["response"] for o in generate(smol_model, smol_tok, prompts, **gen)]
    reward_name = SMOL_REWARD[task_name]
    scorers = {f"reward ({reward_name})": get_reward(reward_name)}
    if task.judge and task.judge != reward_name:
        scorers[f"judge ({task.judge})"] = load_judge(task)
    table = pd.DataFrame({label: {**{s: float(fn(prompts, ys).mean()) for s, fn in scorers.items()},
                                  "distinct-2": distinct_n(ys, 2), "mean words": mean_length(ys)}
                          for label, ys in answers.items()}).T
    return table, pd.DataFrame({"prompt": [user_text(p) for p in prompts], **answers})


if SMOL:
    for task_name in SMOL_REWARD:
        smol_table, smol_answers = smol_compare(task_name)
        display(Markdown(f"### {task_name} ({len(smol_answers)} held-out prompts)"))
        display(smol_table.round(3))
        display(smol_answers.head(5))
else:
    print("fast mode: the SmolLM2 comparison is skipped (LABCORE_FAST=0 runs it); the chat below uses the tiny model")

# %% [markdown]
# **A two-pane chat in one pass.** `labcore.generation.stream_batch` answers one message with the base model and
# the aligned adapters as rows of **one** batch: `adapter_names=["__base__", "raft-arithmetic", ...]` gives each row
# its adapter (peft's mixed-adapter batches), so every new token of every pane costs one forward pass over the shared
# base weights. Greedy decoding (`temperature=0`): each row is what that model alone would say. In default mode the
# message is a held-out problem (its pair was never trained on); fast mode asks the tiny model a tiny-world request.

# %%
if SMOL:
    chat_adapters = [name for name in ("raft-arithmetic", "rrhf-arithmetic") if name in smol_found]
    smol_message = arithmetic_problems("test")[0][2]
else:
    chat_adapters = list(smol_found)
    smol_message = "how do I keep my houseplants alive?"
smol_prompt = prompt_format(smol_tok).prompt(smol_message)
labels = ["base", *chat_adapters]
display(Markdown(f"**user:** {smol_message}"))
handle = display(Markdown("..."), display_id=True)
t = time.perf_counter()
panes = []
for panes in stream_batch(smol_model, smol_tok, [smol_prompt] * len(labels),
                          adapter_names=["__base__", *chat_adapters] if smol_found else None,
                          max_new_tokens=48, temperature=0):
    handle.update(Markdown("\n\n".join(f"**{label}:** {s.text}" for label, s in zip(labels, panes))))
print(f"{len(labels)} replies, one forward pass per token, in {time.perf_counter() - t:.1f} s")
if SMOL:
    correct = get_reward("arithmetic")([smol_prompt] * len(panes), [s.text for s in panes]).tolist()
    print("right sum:", dict(zip(labels, map(bool, correct))))

# %% [markdown]
# ## Scale up: GPT-2 / Pythia on one GPU
#
# Everything here takes a base model and adapter folders; with GPT-2 policies trained by notebooks 03/04's scale-up
# commands (`runs/raft-imdb/final`, ...):
#
# ```python
# base, tok = load_model("gpt2")                                   # bf16 on CUDA
# aligned, _ = load_model("gpt2", adapter="runs/raft-imdb-lora/final")  # LoRA runs; full fine-tunes load as the model
# tasks["sentiment"]["reward"] = get_reward("lvwerra/distilbert-imdb")
# ```
#
# Serve the chat for a class: `labcore app --model gpt2 --adapter runs/raft-imdb-lora/final --device cuda`
# (one copy of the base weights, adapters switched per request; an adapter is named after its folder,
# here `raft-imdb-lora-final`; see `labcore app --help`).

# %%
finish()
