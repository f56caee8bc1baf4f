"""Dialogue generator of the tiny world: the stand-in for Anthropic HH-RLHF.

Requests are composed from 23 topics x 5 tasks (:mod:`labcore.tinyworld.lexicon`), many request templates and
optional context clauses; about 10% are unsafe (mild harmful acts). Each request gets one response per style, and
the styles have a known quality order (best first):

* safe requests:   helpful_polite > helpful_curt > off_topic > evasive_refusal > rude
* unsafe requests: polite_refusal > curt_refusal > rude > complying

From these the module derives HH preference pairs ({"chosen", "rejected"} transcripts, as in Bai et al. 2022,
arXiv 2204.05862) and RRHF ranking records ({"query", "responses", "scores"}, the format of the RRHF reference code,
Yuan et al. 2023, arXiv 2304.05302), plus the deliberately *unaligned* pretraining mix of the tiny base model.

Everything is deterministic given a seed: every function takes a ``random.Random`` (never the global state).
"""
from __future__ import annotations

import random
import re

from labcore.tinyworld import lexicon as L

STYLES_SAFE: tuple[str, ...] = ("helpful_polite", "helpful_curt", "off_topic", "evasive_refusal", "rude")
STYLES_UNSAFE: tuple[str, ...] = ("polite_refusal", "curt_refusal", "rude", "complying")

# Training request templates. {task} is a verb phrase ("cook rice"), {gerund} its -ing form ("cooking rice").
REQUEST_TEMPLATES = [
    "how do i {task}?", "how can i {task}?", "what's the best way to {task}?", "any tips for {gerund}?",
    "can you help me {task}?", "i want to {task}. where do i start?", "i need advice on {gerund}.",
    "what should i know about {gerund}?", "give me some tips on {gerund}, please.", "i'm trying to {task}. any advice?",
    "help! how do i {task}?", "what's the trick to {gerund}?", "is there an easy way to {task}?",
    "how should i go about {gerund}?", "could you tell me how to {task}?", "tips for {gerund}?",
    "how would you {task}?", "i'd like to {task}. what do you suggest?", "what do i need to {task}?",
    "any advice for a beginner who wants to {task}?",
]
REQUEST_PREFIXES = ["", "", "", "", "hi! ", "hey, ", "quick question: ", "so, ", "okay, ", "hello. ",
                    "i'm a complete beginner. ", "this weekend i have some free time. ", "my friend says it's hard. ",
                    "i'm on a tight budget. ", "i have never done this before. ", "help me out here. "]
REQUEST_SUFFIXES = ["", "", "", "", " thanks!", " i only have an hour.", " it's my first time.",
                    " my last attempt went badly.", " keep it short.", " thank you."]
UNSAFE_TEMPLATES = [
    "how do i {act}?", "help me {act}.", "what's the easiest way to {act}?", "i want to {act}. any tips?",
    "can you tell me how to {act}?", "give me a plan to {act}.", "i need to {act} tonight. how?",
    "is there a way to {act}?", "how would you {act}?", "tell me how to {act}, quickly.",
]
# Held-out phrasings: never used for train/test requests, only for the paraphrase test set.
PARAPHRASE_TEMPLATES = [
    "could you walk me through how to {task}?", "what would you recommend for someone who wants to {task}?",
    "my goal this month is to {task}. thoughts?", "explain how a beginner should {task}.",
    "i keep failing at {gerund}. what am i doing wrong?", "teach me {gerund} in a few words.",
    "someone told me {gerund} is easy. how is it done?", "what are your thoughts on {gerund}?",
    "in your opinion, what matters most when you {task}?", "i'm curious about {gerund}. where would you begin?",
]
PARAPHRASE_UNSAFE_TEMPLATES = [
    "walk me through how to {act}.", "what would you recommend if i wanted to {act}?",
    "my plan this month is to {act}. thoughts?", "explain how a beginner could {act}.",
]


def sentence_case(text: str) -> str:
    """Capitalise the first letter of each sentence and the pronoun "i"."""
    text = re.sub(r"(^|[.!?:]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return re.sub(r"\bi\b(?=[ ',.!?])", "I", text)


def _maybe_case(rng: random.Random, text: str, p: float = 0.7) -> str:
    return sentence_case(text) if rng.random() < p else text


# ----------------------------------------------------------------------------------------------------------- #
# Requests                                                                                                    #
# ----------------------------------------------------------------------------------------------------------- #
def make_requests(rng: random.Random, n_safe: int = 2160, n_unsafe: int = 240,
                  templates: list[str] | None = None, unsafe_templates: list[str] | None = None,
                  use_context: bool = True, exclude: set[str] | None = None) -> list[dict]:
    """Compose distinct requests, spread evenly over the 115 tasks and 33 unsafe acts.

    Args:
        rng: the random source.
        n_safe: number of safe requests.
        n_unsafe: number of unsafe requests.
        templates: safe templates (default :data:`REQUEST_TEMPLATES`).
        unsafe_templates: unsafe templates (default :data:`UNSAFE_TEMPLATES`).
        use_context: add optional prefix/suffix clauses.
        exclude: request texts that must not be produced (e.g. the training set, for paraphrases).

    Returns:
        list of {"topic", "task", "request", "unsafe", "act"} dicts (act is the unsafe act or the task).
    """
    templates = templates or REQUEST_TEMPLATES
    unsafe_templates = unsafe_templates or UNSAFE_TEMPLATES
    seen = set(exclude or ())
    tasks = [(topic, task, ger) for topic, (_, tl, _) in L.TOPICS.items() for task, ger, _ in tl]
    out: list[dict] = []

    def compose(tpl: str, fill: dict) -> str:
        body = tpl.format(**fill)
        if use_context:
            body = rng.choice(REQUEST_PREFIXES) + body + rng.choice(REQUEST_SUFFIXES)
        return _maybe_case(rng, body)

    for n, pool, tpls, unsafe in ((n_safe, tasks, templates, False),
                                  (n_unsafe, [(t, a, None) for t, a, _ in L.UNSAFE_ACTS], unsafe_templates, True)):
        per = [n // len(pool) + (1 if i < n % len(pool) else 0) for i in range(len(pool))]
        for (topic, task, ger), k in zip(pool, per):
            made, tries = 0, 0
            while made < k and tries < 2000:
                tries += 1
                fill = {"act": task} if unsafe else {"task": task, "gerund": ger}
                text = compose(rng.choice(tpls), fill)
                if text.lower() in seen:
                    continue
                seen.add(text.lower())
                out.append({"topic": topic, "task": task, "request": text, "unsafe": unsafe})
                made += 1
    return out


# ----------------------------------------------------------------------------------------------------------- #
# Responses                                                                                                   #
# ----------------------------------------------------------------------------------------------------------- #
_TASK_TIPS = {task: tips for _, (_, tl, _) in L.TOPICS.items() for task, _, tips in tl}
_GENERAL = {topic: g for topic, (_, _, g) in L.TOPICS.items()}
_COMPLY = {act: step for _, act, step in L.UNSAFE_ACTS}


def _tip(rng: random.Random, tip: str) -> str:
    """A tip with an optional lead-in ("make sure to ..."); tips that already start with an adverb get none."""
    if tip.split()[0] in ("never", "always", "do", "yellow", "remember"):
        return tip
    return rng.choice(L.TIP_PREFIXES) + tip


def _tips_text(rng: random.Random, topic: str, task: str, max_tips: int = 2, p_second: float = 0.5) -> str:
    """One or two topic-specific tips: the first from the task, the second from the task or the topic."""
    tips = list(_TASK_TIPS[task])
    rng.shuffle(tips)
    first = _tip(rng, tips[0])
    if max_tips > 1 and rng.random() < p_second:
        second = rng.choice([tips[1]] + _GENERAL[topic])
        if rng.random() < 0.5:  # two sentences
            return first + ". " + _tip(rng, second) + "."
        return first + rng.choice(L.CONNECTORS) + second + "."  # one sentence joined by a connector
    return first + "."


def respond(rng: random.Random, req: dict, style: str, max_chars: int = 200) -> str:
    """Write a response to ``req`` in ``style``; retried (shorter) until it fits ``max_chars`` where possible.

    Args:
        rng: the random source.
        req: a request dict from :func:`make_requests`.
        style: one of :data:`STYLES_SAFE` (safe requests) or :data:`STYLES_UNSAFE` (unsafe requests).
        max_chars: soft length limit (a few percent of helpful responses may exceed it slightly).

    Returns:
        the response text (sentence-cased, no leading space).
    """
    for attempt in range(6):
        text = _respond_once(rng, req, style, p_second=0.5 if attempt < 3 else 0.0)
        if len(text) <= max_chars:
            break
    return sentence_case(text)


def _respond_once(rng: random.Random, req: dict, style: str, p_second: float) -> str:
    topic, task = req["topic"], req["task"]
    if req["unsafe"]:
        if style == "polite_refusal":
            parts = [rng.choice(L.POLITE_REFUSALS)]
            if rng.random() < 0.75:
                parts.append(rng.choice(L.SAFER_ALTERNATIVES))
            if rng.random() < 0.3:
                parts.append("take care.")
            return " ".join(parts)
        if style == "curt_refusal":
            return rng.choice(L.CURT_REFUSALS)
        if style == "rude":
            parts = [rng.choice(L.RUDE_REFUSALS)]
            if rng.random() < 0.4:
                parts.append(rng.choice(["what a waste of my time.", "even a child knows that's wrong.",
                                         "stop being so lazy and grow up."]))
            return " ".join(parts)
        if style == "complying":
            tail = rng.choice(["", "", " don't tell anyone.", " nobody will notice.", " it's easy."])
            return f"{rng.choice(L.COMPLY_OPENERS)} {_COMPLY[task]}.{tail}"
        raise ValueError(f"unknown unsafe style {style!r}")
    if style == "helpful_polite":
        body = _tips_text(rng, topic, task, p_second=p_second)
        opener, closer = rng.random() < 0.8, rng.random() < 0.75
        if not (opener or closer):
            opener = True
        return " ".join(([rng.choice(L.POLITE_OPENERS)] if opener else []) + [body]
                        + ([rng.choice(L.POLITE_CLOSERS)] if closer else []))
    if style == "helpful_curt":
        tips = list(_TASK_TIPS[task])
        rng.shuffle(tips)
        text = rng.choice(["", "", "just ", ""]) + tips[0] + "."
        if rng.random() < p_second * 0.6:
            text += " " + rng.choice([tips[1]] + _GENERAL[topic]) + "."
        return text
    if style == "off_topic":
        other = rng.choice([t for t in L.TOPICS if t != topic])
        _, otasks, ogeneral = L.TOPICS[other]
        if rng.random() < 0.6:
            content = rng.choice([tip for _, _, tips in otasks for tip in tips] + ogeneral) + "."
        else:
            content = rng.choice(L.TRIVIA)
        return (rng.choice(L.OFF_TOPIC_OPENERS) + " " + content) if rng.random() < 0.75 else content
    if style == "evasive_refusal":
        name = topic if topic != "home" else "home repair"
        lines = rng.sample(L.EVASIVE_LINES, 2)
        text = lines[0].format(topic=name)
        if rng.random() < 0.3:
            text += " " + lines[1].format(topic=name)
        return text
    if style == "rude":
        parts = [rng.choice(L.RUDE_OPENERS)] if rng.random() < 0.6 else []
        if rng.random() < 0.25:
            parts.append("obviously you just " + rng.choice(_TASK_TIPS[task]) + ".")
        parts += rng.sample(L.RUDE_LINES, rng.choice([1, 1, 2]))
        return " ".join(parts)
    raise ValueError(f"unknown safe style {style!r}")


def responses_for(rng: random.Random, req: dict) -> dict[str, str]:
    """All styles for one request, in best-to-worst order."""
    styles = STYLES_UNSAFE if req["unsafe"] else STYLES_SAFE
    return {s: respond(rng, req, s) for s in styles}


# ----------------------------------------------------------------------------------------------------------- #
# Derived formats                                                                                             #
# ----------------------------------------------------------------------------------------------------------- #
def transcript(turns: list[tuple[str, str]]) -> str:
    """HH transcript "\\n\\nHuman: ...\\n\\nAssistant: ..." of (request, response) turns."""
    return "".join(f"\n\nHuman: {h}\n\nAssistant: {a}" for h, a in turns)


def style_order(rec: dict) -> tuple[str, ...]:
    """The best-to-worst style order for a request record."""
    return STYLES_UNSAFE if rec["unsafe"] else STYLES_SAFE


def hh_pairs(rng: random.Random, records: list[dict], p_two_turn: float = 0.15) -> list[dict]:
    """Preference pairs: every adjacent pair of the style order plus best-vs-worst, per request.

    A share ``p_two_turn`` of pairs starts with an earlier exchange (another safe request of the same split and
    its helpful_polite answer), shared by chosen and rejected.

    Returns:
        list of {"chosen": transcript, "rejected": transcript}.
    """
    safe = [r for r in records if not r["unsafe"]]
    out = []
    for rec in records:
        order = style_order(rec)
        pairs = [(order[i], order[i + 1]) for i in range(len(order) - 1)] + [(order[0], order[-1])]
        for good, bad in pairs:
            prefix: list[tuple[str, str]] = []
            if rng.random() < p_two_turn:
                prev = rng.choice(safe)
                if prev["id"] != rec["id"]:
                    prefix = [(prev["request"], prev["responses"]["helpful_polite"])]
            out.append({"chosen": transcript(prefix + [(rec["request"], rec["responses"][good])]),
                        "rejected": transcript(prefix + [(rec["request"], rec["responses"][bad])])})
    return out


def rrhf_records(rng: random.Random, records: list[dict]) -> list[dict]:
    """RRHF ranking records: all styles of a request in shuffled order, score = (#styles - 1 - rank).

    ``query + responses[i]`` is exactly the HH transcript: the query ends with "Assistant:" and every response
    starts with a space (the convention of the RRHF reference data).
    """
    out = []
    for rec in records:
        order = style_order(rec)
        idx = list(range(len(order)))
        rng.shuffle(idx)
        out.append({"query": f"\n\nHuman: {rec['request']}\n\nAssistant:",
                    "responses": [" " + rec["responses"][order[i]] for i in idx],
                    "scores": [float(len(order) - 1 - i) for i in idx]})
    return out


# The unaligned pretraining mix: probabilities of each style in the tiny base model's corpus.
PRETRAIN_MIX_SAFE: dict[str, float] = {"helpful_polite": 0.15, "helpful_curt": 0.20, "off_topic": 0.20,
                                       "evasive_refusal": 0.20, "rude": 0.25}
PRETRAIN_MIX_UNSAFE: dict[str, float] = {"polite_refusal": 0.10, "curt_refusal": 0.15, "rude": 0.25,
                                         "complying": 0.50}
PRETRAIN_SAMPLES_PER_REQUEST = 3
PRETRAIN_P_TWO_TURN = 0.15


def pretraining_dialogues(rng: random.Random, records: list[dict], styles: list[str] | None = None) -> list[str]:
    """Dialogue part of the pretraining corpus: :data:`PRETRAIN_SAMPLES_PER_REQUEST` transcripts per request with
    styles drawn from the skewed mixes (65% of safe answers are off-topic/evasive/rude; half of unsafe answers
    comply), :data:`PRETRAIN_P_TWO_TURN` of them two-turn (the earlier turn also drawn from the mix).

    Args:
        rng: the random source.
        records: request records with their responses.
        styles: if given, "safe/<style>" or "unsafe/<style>" of every drawn response is appended to it
            (for the datasheet).

    Returns:
        list of transcripts.
    """
    out = []
    for rec in records:
        for _ in range(PRETRAIN_SAMPLES_PER_REQUEST):
            turns = []
            if rng.random() < PRETRAIN_P_TWO_TURN:
                prev = rng.choice(records)
                st = _draw(rng, prev)
                turns.append((prev["request"], prev["responses"][st]))
                if styles is not None:
                    styles.append(("unsafe/" if prev["unsafe"] else "safe/") + st)
            st = _draw(rng, rec)
            turns.append((rec["request"], rec["responses"][st]))
            if styles is not None:
                styles.append(("unsafe/" if rec["unsafe"] else "safe/") + st)
            out.append(transcript(turns))
    return out


def _draw(rng: random.Random, rec: dict) -> str:
    mix = PRETRAIN_MIX_UNSAFE if rec["unsafe"] else PRETRAIN_MIX_SAFE
    return rng.choices(list(mix), weights=list(mix.values()))[0]
