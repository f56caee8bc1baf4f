"""Prompt formats: the HH dialogue format's speaker tags, formatting a turn, cutting a response at its turn's end.

GPT-2, Pythia and the tiny model have no chat template, so dialogues use the Anthropic HH-RLHF text format
``"\\n\\nHuman: {message}\\n\\nAssistant:"``; a response ends at EOS or where the model starts a new speaker tag.
Importable without torch (datasets, the app and the tiny-world loaders use it).
"""
from __future__ import annotations

from typing import Sequence

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


def as_chat_prompt(text: str) -> str:
    """A prompt already in HH format (ending with ``"Assistant:"``) as it is; a bare message wrapped by
    :func:`format_chat`."""
    return text if text.rstrip().endswith(ASSISTANT.strip()) else format_chat(text)


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
