"""Prompt formats: how a dialogue becomes the text a model answers, and where its answer ends.

One function decides, :func:`prompt_format` (tokenizer -> :class:`PromptFormat`), and everything that prompts a model
goes through it (generation, tasks, RAFT, RRHF, SFT, the app):

* a tokenizer **with a chat template** (SmolLM2) is prompted through ``tokenizer.apply_chat_template`` with messages
  as in TRL's conversational datasets (``[{"role": "user", "content": ...}, ...]``, ``add_generation_prompt=True``);
  the answer follows the template's assistant header with no leading space and ends at the template's end-of-turn
  token (``<|im_end|>`` for SmolLM2), which training appends after every response;
* a tokenizer **without one** (tiny, GPT-2, Pythia) keeps the Anthropic HH-RLHF text format
  ``"\\n\\nHuman: {message}\\n\\nAssistant:"``; the answer starts with a space and ends at EOS or where the model
  starts a new speaker tag.

Importable without torch (datasets, the app and the tiny-world loaders use it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
TURN_MARKERS = (HUMAN, ASSISTANT)


def format_chat(turns: str | Sequence[tuple[str, str] | str]) -> str:
    """Build an HH-format prompt that ends with ``"\\n\\nAssistant:"``, ready for the model to answer.

    Args:
        turns: one user message, or the dialogue so far: a list of ``(user, assistant)`` pairs followed by the final
            user message (a plain string).
    Returns:
        ``"\\n\\nHuman: m1\\n\\nAssistant: a1\\n\\nHuman: m2\\n\\nAssistant:"``
    """
    if isinstance(turns, str):
        turns = [turns]
    parts = []
    for turn in turns:
        if isinstance(turn, str):
            parts.append(f"{HUMAN} {turn.strip()}{ASSISTANT}")
        else:
            user, assistant = turn
            parts.append(f"{HUMAN} {user.strip()}{ASSISTANT} {assistant.strip()}")
    if not parts[-1].endswith(ASSISTANT):
        raise ValueError("the last turn must be a user message (a plain string)")
    return "".join(parts)


def cut_turn(text: str) -> tuple[str, bool]:
    """Cut generated text where the model starts a new turn (a ``"\\n\\nHuman:"`` or ``"\\n\\nAssistant:"`` tag).

    Returns:
        (text before the first tag, whether a tag was found).
    """
    cuts = [i for i in (text.find(m) for m in TURN_MARKERS) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


def split_transcript(transcript: str) -> tuple[str, str]:
    """Split an HH transcript into (prompt up to and including the last ``"\\n\\nAssistant:"``, final response).

    Raises:
        ValueError: the transcript has no Assistant turn.
    """
    i = transcript.rfind(ASSISTANT)
    if i < 0:
        raise ValueError("transcript has no '\\n\\nAssistant:' turn")
    cut = i + len(ASSISTANT)
    return transcript[:cut], transcript[cut:]



# ----------------------------------------------------------------------------------------------------------------
# One prompt format per tokenizer
# ----------------------------------------------------------------------------------------------------------------
def to_messages(turns: Any) -> list[dict[str, str]]:
    """A dialogue as TRL conversational messages: a user message, ``[(user, assistant), ..., user]`` or messages.

    Returns:
        ``[{"role": "user", "content": ...}, {"role": "assistant", ...}, ..., {"role": "user", ...}]``
    """
    if isinstance(turns, str):
        return [{"role": "user", "content": turns.strip()}]
    messages: list[dict[str, str]] = []
    for turn in turns:
        if isinstance(turn, dict):
            messages.append({"role": turn["role"], "content": str(turn["content"]).strip()})
        elif isinstance(turn, str):
            messages.append({"role": "user", "content": turn.strip()})
        else:
            user, assistant = turn
            messages += [{"role": "user", "content": user.strip()},
                         {"role": "assistant", "content": assistant.strip()}]
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("the last turn must be a user message")
    return messages


_PROBE = "\x1flabcore-probe\x1f"


@dataclass(frozen=True)
class PromptFormat:
    """How one tokenizer's model is prompted: its chat template (``template=True``) or the HH text format."""
    template: bool
    """The tokenizer's chat template is used (False: the HH format)."""
    end_of_turn: str | None = None
    """The token that ends an assistant turn (template formats; the HH format ends at EOS or a speaker tag)."""
    tokenizer: Any = None

    @property
    def name(self) -> str:
        return "chat-template" if self.template else "hh"

    def prompt(self, turns: Any) -> str:
        """The text the model answers: a user message, ``[(user, assistant), ..., user]`` pairs, or messages."""
        messages = to_messages(turns)
        if not self.template:
            pairs: list = []
            for m in messages:
                if m["role"] == "user":
                    pairs.append(m["content"])
                elif m["role"] == "assistant" and pairs and isinstance(pairs[-1], str):
                    pairs[-1] = (pairs[-1], m["content"])
            return format_chat(pairs)
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def response(self, text: str) -> str:
        """A response exactly as it follows :meth:`prompt`: ``" " + text`` in the HH format, ``text`` in a template."""
        return text.strip() if self.template else " " + text.strip()

    def cut(self, text: str) -> tuple[str, bool]:
        """Cut generated text (decoded with special tokens) at its turn's end. Returns (text, whether it ended)."""
        if self.template:
            i = text.find(self.end_of_turn) if self.end_of_turn else -1
            return (text[:i], True) if i >= 0 else (text, False)
        return cut_turn(text)


def _end_of_turn(tokenizer) -> str | None:
    """The special token a chat template writes right after an assistant message's content (e.g. ``<|im_end|>``)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}],
                                         tokenize=False)
    after = text[text.index(_PROBE) + len(_PROBE):]
    for token in sorted(getattr(tokenizer, "all_special_tokens", []) or [], key=len, reverse=True):
        if token and after.startswith(token):
            return token
    eos = getattr(tokenizer, "eos_token", None)
    return eos if eos and eos in after else None


def prompt_format(tokenizer) -> PromptFormat:
    """The prompt format of a tokenizer: its chat template when it has one, else the HH text format."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return HH_FORMAT
    cached = getattr(tokenizer, "_labcore_prompt_format", None)
    if cached is None:
        cached = PromptFormat(template=True, end_of_turn=_end_of_turn(tokenizer), tokenizer=tokenizer)
        try:
            tokenizer._labcore_prompt_format = cached
        except AttributeError:
            pass
    return cached


def hh_to_messages(transcript: str) -> list[dict[str, str]]:
    """An HH prompt (``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant:"``) as messages
    (the final, empty Assistant turn dropped); a text without speaker tags is one user message."""
    import re

    parts = re.split(r"\n\n(Human|Assistant):", transcript)
    if len(parts) == 1:
        return to_messages(transcript)
    messages = [{"role": "user" if role == "Human" else "assistant", "content": text.strip()}
                for role, text in zip(parts[1::2], parts[2::2])]
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return to_messages(messages)


HH_FORMAT = PromptFormat(template=False)
"""The HH text format (models without a chat template)."""
