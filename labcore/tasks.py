"""Tasks: what the methods train and are evaluated on, shared by RAFT, RRHF and the comparison.

A :class:`Task` is a training prompt pool, a fixed held-out prompt set, held-out (prompt, reference response) pairs
for perplexity, the dataset's own responses (RRHF's BP/DP sources, the held-out ranking set), whether responses end at
a dialogue turn, and whether the tiny world's gold rubric judges it. Rewards and judges are loaded here too, with one
clear error when a file is missing.

    tiny-sentiment   review openings (~30 characters) to continue; VADER reward (the IMDB/DistilBERT role); AFINN judge
    smol-sentiment   the same openings for SmolLM2 (its own evaluation protocol); VADER reward, AFINN judge
    smol-arithmetic  "What is 7 + 12?" in the model's chat format; exact-answer reward; held-out problems as judge
    tiny-helpful     dialogue requests in the model's chat format; learned reward model tiny-rm; gold rubric as judge
    imdb             IMDB review openings (first 30 characters, as the reference); the Hub or a local --data file
    hh               Anthropic HH-RLHF helpful-base prompts; the Hub or a local --data file

Dialogue prompts are written by the policy's :class:`labcore.formats.PromptFormat` (``load_task(..., fmt=)``): its
chat template (SmolLM2) or the HH format (tiny, GPT-2, Pythia; the default).

To add a task: write a builder ``(eval: Eval, data: str | None, fmt: PromptFormat) -> Task`` below, register it in
:data:`TASKS`, and give it an evaluation protocol in ``labcore.presets.EVAL``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from labcore import DATA_DIR
from labcore.config import Eval
from labcore.formats import HH_FORMAT, PromptFormat, hh_to_messages

RewardFn = Callable[[Sequence[str], Sequence[str]], "object"]  # (prompts, responses) -> (N,) tensor of rewards

HH_TRAIN = "hf://datasets/Anthropic/hh-rlhf/helpful-base/train.jsonl.gz"
HH_TEST = "hf://datasets/Anthropic/hh-rlhf/helpful-base/test.jsonl.gz"
HELDOUT_ROWS = 128  # a single local --data file: its last rows are held out


@dataclass
class Task:
    """Prompts, held-out evaluation and dataset responses of one task (prompts already formatted)."""
    name: str
    """The task's name in :data:`TASKS`."""
    prompts: list[str]
    """Training prompt pool (chat prompts end with 'Assistant:')."""
    eval_prompts: list[str]
    """Held-out prompts, sampled at every evaluation with a fixed seed."""
    ppl_pairs: list[tuple[str, str]] = field(default_factory=list)
    """Held-out (prompt, reference response) pairs whose perplexity under the policy is logged."""
    responses: dict[str, list[str]] = field(default_factory=dict)
    """Dataset responses of training prompts: prompt -> responses (exactly as they follow it)."""
    heldout_responses: dict[str, list[str]] = field(default_factory=dict)
    """Dataset responses of held-out prompts (the ranking-accuracy set)."""
    chat: bool = True
    """Responses end at a new dialogue turn (False: plain continuation of the text)."""
    judge: str | None = None
    """The reward name (``labcore.rewards``) of the independent judge of evaluation samples, logged as ``gold``:
    ``gold`` (the tiny world's rubric), ``afinn`` (a second sentiment lexicon), ``arithmetic`` (exact answers of
    held-out problems), or None."""
    description: str = ""
    """One line for logs."""


def split_heldout(rows: list, n_eval: int = HELDOUT_ROWS) -> tuple[list, list]:
    """Train / held-out split of a single local file: the last ``n_eval`` rows (at least 1, at most half) held out."""
    n = max(1, min(n_eval, len(rows) // 2))
    return rows[:-n], rows[-n:]


def _group(pairs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prompt, response in pairs:
        out.setdefault(prompt, []).append(response)
    return out


# ----------------------------------------------------------------------------------------------------------------
# The tiny world
# ----------------------------------------------------------------------------------------------------------------
def review_continuations(split: str) -> dict[str, list[str]]:
    """Tiny-world review openings -> the rest of every review that opens that way (mixed labels, file order)."""
    from labcore.tinyworld import load_reviews
    from labcore.tinyworld.reviews import opening_prompt

    pairs = []
    for r in load_reviews(split):
        prompt = opening_prompt(r["text"])
        if len(r["text"]) > len(prompt):
            pairs.append((prompt, r["text"][len(prompt):]))
    return _group(pairs)


def tiny_sentiment(eval: Eval, data: str | None = None, fmt: PromptFormat = HH_FORMAT,
                   name: str = "tiny-sentiment") -> Task:
    """Review openings to continue positively (plain text, no chat format); perplexity of held-out positive
    continuations; AFINN, a lexicon VADER's reward never saw, judges."""
    from labcore.tinyworld import load_reviews, review_prompts
    from labcore.tinyworld.reviews import opening_prompt

    pos = [r for r in load_reviews("test") if r["label"] == "pos"]
    ppl_pairs = []
    for r in pos[:eval.ppl_examples]:
        prompt = opening_prompt(r["text"])
        ppl_pairs.append((prompt, r["text"][len(prompt):]))
    return Task(name, review_prompts("train"), review_prompts("test")[:eval.prompts], ppl_pairs,
                review_continuations("train"), review_continuations("test"), chat=False, judge="afinn",
                description=f"{name}: positive continuation of review openings, VADER reward, AFINN judge")


def smol_sentiment(eval: Eval, data: str | None = None, fmt: PromptFormat = HH_FORMAT) -> Task:
    """tiny-sentiment's openings and references under SmolLM2's evaluation protocol (``presets.EVAL``)."""
    return tiny_sentiment(eval, data, fmt, name="smol-sentiment")


def arithmetic_problems(split: str, seed: int = 0) -> list[tuple[int, int, str]]:
    """Addition problems ``(a, b, question)``, a and b in 0..30: the 961 pairs split 80/20 by a seeded shuffle
    (held-out pairs never appear in training), each asked in one of four phrasings."""
    import random

    pairs = [(a, b) for a in range(31) for b in range(31)]
    random.Random(seed).shuffle(pairs)
    cut = int(len(pairs) * 0.8)
    chosen = pairs[:cut] if split == "train" else pairs[cut:]
    phrasings = ("What is {a} + {b}?", "Compute {a} + {b}.", "What do you get if you add {a} and {b}?",
                 "{a} + {b} = ?")
    rng = random.Random(seed + 1 if split == "train" else seed + 2)
    return [(a, b, rng.choice(phrasings).format(a=a, b=b)) for a, b in chosen]


def smol_arithmetic(eval: Eval, data: str | None = None, fmt: PromptFormat = HH_FORMAT) -> Task:
    """Addition word problems in the model's chat format: a verifiable task (RAFT = rejection-sampling fine-tuning).

    The reward and the judge check the last number of the answer against the sum (``labcore.rewards.arithmetic``);
    the judge sees only held-out problems (pairs a, b never trained on). Dataset responses (RRHF's BP source): the
    worked answer and an off-by-one wrong one."""
    def worked(a, b):
        return fmt.response(f"{a} + {b} = {a + b}.")

    def responses(rows):
        return {fmt.prompt(q): [worked(a, b), fmt.response(f"{a} + {b} = {a + b + 1}.")] for a, b, q in rows}

    train, test = arithmetic_problems("train"), arithmetic_problems("test")
    return Task("smol-arithmetic", [fmt.prompt(q) for _, _, q in train], [fmt.prompt(q) for _, _, q in test][:eval.prompts],
                [(fmt.prompt(q), worked(a, b)) for a, b, q in test[:eval.ppl_examples]], responses(train),
                responses(test), chat=True, judge="arithmetic",
                description="smol-arithmetic: addition problems, exact-answer reward, held-out problems judged")


def best_reference(rec: dict) -> str:
    """The best-style response of a tiny-world request (helpful_polite, or polite_refusal for unsafe requests)."""
    from labcore.tinyworld import STYLES_SAFE, STYLES_UNSAFE

    styles = STYLES_UNSAFE if rec["unsafe"] else STYLES_SAFE
    return rec["responses"][styles[0]]


def styled_responses(split: str) -> dict[str, list[str]]:
    """The styled responses of the tiny world's requests (``data/dialogues/rrhf_{split}.jsonl.gz``)."""
    from labcore.datasets import load_rrhf

    out: dict[str, list[str]] = {}
    for rec in load_rrhf(DATA_DIR / "dialogues" / f"rrhf_{split}.jsonl.gz"):
        out.setdefault(rec["query"], []).extend(rec["responses"])
    return out


def tiny_helpful(eval: Eval, data: str | None = None, fmt: PromptFormat = HH_FORMAT) -> Task:
    """Dialogue requests in the model's chat format; perplexity of the best-style responses of held-out requests."""
    from labcore.tinyworld import load_requests

    train, test = load_requests("train"), load_requests("test")
    # a fixed mix of safe and unsafe test requests, in file order (the file is already shuffled)
    eval_prompts = [fmt.prompt(r["request"]) for r in test[:eval.prompts]]
    ppl_pairs = [(fmt.prompt(r["request"]), fmt.response(best_reference(r))) for r in test[:eval.ppl_examples]]

    def styled(split):
        if not fmt.template:
            return styled_responses(split)
        return {fmt.prompt(hh_to_messages(q)): [fmt.response(y) for y in ys] for q, ys in styled_responses(split).items()}

    return Task("tiny-helpful", [fmt.prompt(r["request"]) for r in train], eval_prompts, ppl_pairs,
                styled("train"), styled("test"), chat=True, judge="gold",
                description="tiny-helpful: dialogue requests, learned reward model (tiny-rm), gold logged")


# ----------------------------------------------------------------------------------------------------------------
# Online tasks (the Hub, or a local file standing in for it)
# ----------------------------------------------------------------------------------------------------------------
def imdb_rows(data: str | None) -> tuple[list[dict], list[dict]]:
    """IMDB reviews {'text', 'label'}: a local JSONL file (split train / held-out), or the Hub via ``datasets``."""
    if data:
        from labcore.datasets import iter_records

        rows = [{"text": rec["text"], "label": rec.get("label", 1)} for _, rec in iter_records(data)]
        return split_heldout(rows)
    try:
        import datasets  # optional: only the online task needs it
    except ImportError:
        raise RuntimeError("the imdb task loads IMDB with the 'datasets' package (pip install datasets), "
                           "or pass --data FILE.jsonl with a 'text' field per review") from None
    from labcore.hub import OFFLINE_HINT, hub_reachable

    if not hub_reachable():
        raise RuntimeError(f"IMDB needs the Hugging Face Hub; pass --data FILE.jsonl instead. {OFFLINE_HINT}")
    ds = datasets.load_dataset("stanfordnlp/imdb")
    return list(ds["train"]), list(ds["test"].shuffle(seed=0))


def imdb(eval: Eval, data: str | None = None, fmt: PromptFormat = HH_FORMAT) -> Task:
    """IMDB: prompt = the first 30 characters of a review (as the reference); ppl on held-out positive reviews."""
    train, test = imdb_rows(data)
    pos = [r for r in test if r["label"] in (1, "pos", "positive")][:eval.ppl_examples]

    def continuations(rows):
        return _group((r["text"][:30], r["text"][30:]) for r in rows if len(r["text"]) > 30)

    return Task("imdb", [r["text"][:30] for r in train], [r["text"][:30] for r in test[:eval.prompts]],
                [(r["text"][:30], r["text"][30:]) for r in pos if len(r["text"]) > 30],
                continuations(train), continuations(test), chat=False, judge=None,
                description="imdb: IMDB review openings, DistilBERT IMDB classifier reward")


def hh(eval: Eval, data: str | None = None, fmt: PromptFormat = HH_FORMAT) -> Task:
    """Anthropic HH-RLHF: prompt = the dialogue up to the last 'Assistant:' (rewritten in the model's chat template
    when it has one); ppl on held-out chosen responses; dataset responses = chosen and rejected."""
    from labcore.datasets import load_preferences

    if data:
        train, test = split_heldout(load_preferences(data))
    else:
        train, test = load_preferences(HH_TRAIN), load_preferences(HH_TEST)
    if fmt.template:
        train, test = ([{**r, "prompt": fmt.prompt(hh_to_messages(r["prompt"])), "chosen": fmt.response(r["chosen"]),
                         "rejected": fmt.response(r["rejected"])} for r in rows] for rows in (train, test))

    def pairs(rows):
        return _group((r["prompt"], y) for r in rows for y in (r["chosen"], r["rejected"]))

    prompts = list(dict.fromkeys(r["prompt"] for r in train))
    ppl_pairs = [(r["prompt"], r["chosen"]) for r in test[:eval.ppl_examples] if r["chosen"].strip()]
    return Task("hh", prompts, [r["prompt"] for r in test[:eval.prompts]], ppl_pairs, pairs(train), pairs(test),
                chat=True, judge=None, description="hh: Anthropic HH dialogues, HH reward model")


#: task name -> (builder, needs the Hub or a --data file, one-line help)
TASKS: dict[str, tuple[Callable[[Eval, str | None, PromptFormat], Task], bool, str]] = {
    "tiny-sentiment": (tiny_sentiment, False, "tiny-world review openings to continue positively (AFINN judge)"),
    "smol-sentiment": (smol_sentiment, False, "the same openings under SmolLM2's evaluation protocol (AFINN judge)"),
    "smol-arithmetic": (smol_arithmetic, False, "addition problems in the chat format, exact answers judged held out"),
    "tiny-helpful": (tiny_helpful, False, "tiny-world dialogue requests (safe and unsafe), gold rubric as judge"),
    "imdb": (imdb, True, "IMDB review openings (Hub or --data FILE with 'text' [+ 'label'])"),
    "hh": (hh, True, "Anthropic HH-RLHF helpful-base (Hub or --data FILE in HH or preference format)"),
}


def load_task(name: str, eval: Eval, data: str | None = None, fmt: PromptFormat | None = None) -> Task:
    """Build a task of :data:`TASKS` for an evaluation protocol (its number of prompts and perplexity pairs).

    Args:
        name: the task.
        eval: how many held-out prompts / perplexity references to take.
        data: a local file standing in for an online task's Hub dataset (its last rows are held out).
        fmt: the policy's prompt format (``labcore.formats.prompt_format(tokenizer)``); default the HH format.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    task = TASKS[name][0](eval, data, fmt or HH_FORMAT)
    if not task.prompts or not task.eval_prompts:
        raise ValueError(f"task {name!r} has no training or no evaluation prompts")
    return task


# ----------------------------------------------------------------------------------------------------------------
# Rewards and judges
# ----------------------------------------------------------------------------------------------------------------
def load_reward(name: str, device: str = "auto") -> RewardFn:
    """``labcore.rewards.get_reward(name)``, with one clear error when a reward-model directory is missing."""
    from labcore.rewards import REWARD_NAMES, get_reward

    path = Path(name).expanduser()
    tiny_rm = DATA_DIR / "models" / "tiny-rm"
    if path == tiny_rm and not (path / "labcore_reward.json").exists():
        raise FileNotFoundError(f"the tiny reward model is missing from {tiny_rm} (train it with `labcore train-rm`), "
                                f"or pass another reward, e.g. --set reward=gold")
    if name not in REWARD_NAMES and (path.is_absolute() or name.startswith(".")) and not path.exists():
        raise FileNotFoundError(f"no reward model at {name!r}")
    return get_reward(name, device=device)


def load_judge(task: Task) -> RewardFn | None:
    """The independent judge of a task's evaluation samples (``task.judge``), or None."""
    if not task.judge:
        return None
    from labcore.rewards import get_reward

    return get_reward(task.judge)


__all__ = ["Task", "TASKS", "load_task", "load_reward", "load_judge", "split_heldout", "imdb_rows",
           "arithmetic_problems",
           "review_continuations", "styled_responses", "best_reference", "HH_TRAIN", "HH_TEST"]
