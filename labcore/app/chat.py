"""The "Chat" tab: the unaligned base model and an aligned policy answer the same message side by side.

Both panes stream from ONE base model in memory (``labcore.app.models.ModelHub``) in ONE forward pass per token:
``labcore.generation.stream_batch`` decodes the two dialogues as two rows of a batch, the left row with the adapter
off (peft's ``"__base__"``), the right one with the chosen RAFT (arXiv 2304.06767) or RRHF (arXiv 2304.05302)
LoRA adapter (peft's mixed-adapter batches, ``adapter_names`` per row). Every step takes the hub's lock, so several
users' streams interleave safely; ``benchmarks/chat_batch.py`` measures tokens/s against one pass per pane.

Cancellation: each running answer owns a ``threading.Event``. It is set when the user presses *Stop* (the stop
handler, and Gradio closing the cancelled generator), when the user leaves the page (``Blocks.unload``), and when
the generator is closed for any other reason (``finally``); ``stream_batch`` checks it before every token.

Histories are Gradio "messages" lists ({"role", "content"}); the prompt of each pane is its own dialogue so far,
written by the model's prompt format (``labcore.formats.prompt_format``: SmolLM2's chat template, or the HH format).
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Iterator, Sequence

from labcore.app.models import ModelHub, method_of

NO_ADAPTER = "(no aligned adapter found)"
"""Choice shown in the adapter dropdown when no adapter exists."""

Messages = list[dict[str, Any]]


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message, whatever shape Gradio gives it.

    Gradio 6 preprocesses a Chatbot value into {"role", "content": [{"type": "text", "text": ...}, ...]};
    our own outputs (and API clients) use {"role", "content": str}. Both are accepted.
    """
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content)
    return str(content)


def normalise_history(history: Sequence[dict[str, Any]] | None) -> Messages:
    """Copy of a history as plain {"role", "content": str} messages (None -> [])."""
    return [{"role": m.get("role", "user"), "content": message_text(m)} for m in (history or [])]


def history_pairs(history: Messages) -> list[tuple[str, str]]:
    """(user, assistant) pairs of a messages history; a user message without an answer gets an empty answer."""
    pairs: list[tuple[str, str]] = []
    user: str | None = None
    for m in history:
        if m["role"] == "user":
            if user is not None:
                pairs.append((user, ""))
            user = m["content"]
        elif m["role"] == "assistant" and user is not None:
            pairs.append((user, m["content"]))
            user = None
    if user is not None:
        pairs.append((user, ""))
    return pairs


class ChatHandlers:
    """Handlers of the chat tab, plain functions of their inputs (Gradio calls them; so do the tests).

    Args:
        hub: the shared model.
        max_input_chars: longer messages are cut to this many characters (the user is told).
    """

    def __init__(self, hub: ModelHub, max_input_chars: int = 2000):
        self.hub = hub
        self.max_input_chars = max_input_chars
        self._events: dict[str, set[threading.Event]] = {}
        self._events_lock = threading.Lock()

    # -- choices -----------------------------------------------------------------------------------------------------
    def adapter_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs for the aligned pane's dropdown, RAFT and RRHF adapters first."""
        names = self.hub.adapter_names
        if not names:
            return [(NO_ADAPTER, NO_ADAPTER)]
        return [(f"{method_of(n)} · {n}", n) for n in names]

    def default_adapter(self) -> str:
        """An adapter trained on chat prompts if there is one (helpful, then arithmetic), else the first adapter."""
        names = self.hub.adapter_names
        for word in ("helpful", "arithmetic"):
            for n in names:
                if word in n:
                    return n
        return names[0] if names else NO_ADAPTER

    # -- cancellation ------------------------------------------------------------------------------------------------
    @staticmethod
    def _session(request: Any) -> str:
        return str(getattr(request, "session_hash", None) or "local")

    def _register(self, session: str) -> threading.Event:
        ev = threading.Event()
        with self._events_lock:
            self._events.setdefault(session, set()).add(ev)
        return ev

    def _unregister(self, session: str, ev: threading.Event) -> None:
        ev.set()
        with self._events_lock:
            evs = self._events.get(session)
            if evs is not None:
                evs.discard(ev)
                if not evs:
                    del self._events[session]

    def running(self, request: Any = None) -> int:
        """Number of answers being generated for this session."""
        with self._events_lock:
            return len(self._events.get(self._session(request), ()))

    def stop(self, request: Any = None) -> str:
        """Stop every answer this session is generating (the *Stop* button; also run when the user leaves).

        Returns:
            A notice for the status line.
        """
        with self._events_lock:
            evs = list(self._events.get(self._session(request), ()))
        for ev in evs:
            ev.set()
        return f"Stopped {len(evs)} running answer{'s' if len(evs) != 1 else ''}." if evs else "Nothing to stop."

    def on_leave(self, request: Any = None) -> None:
        """``Blocks.unload``: the user closed or reloaded the page; stop their generation."""
        self.stop(request)

    # -- the conversation --------------------------------------------------------------------------------------------
    def clear(self) -> tuple[str, Messages, Messages, str]:
        """Empty both panes. Returns (message box, unaligned history, aligned history, notice)."""
        return "", [], [], "Cleared."

    def send(self, message: str, history_base: Sequence[dict] | None, history_aligned: Sequence[dict] | None,
             adapter: str | None, temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 64,
             request: Any = None) -> Iterator[tuple[str, Messages, Messages, str]]:
        """Send one message to both panes and stream both answers.

        Args:
            message: the user's message (empty: ignored with a notice; longer than ``max_input_chars``: cut).
            history_base: the unaligned pane's messages so far.
            history_aligned: the aligned pane's messages so far.
            adapter: name of the aligned pane's adapter (``adapter_choices``).
            temperature: sampling temperature (0 = greedy).
            top_p: nucleus sampling mass.
            max_new_tokens: longest answer in tokens.
            request: Gradio's request (its session keys the stop events); None outside Gradio.
        Yields:
            (message box value, unaligned history, aligned history, notice), after every decoding step.
        """
        hb, ha = normalise_history(history_base), normalise_history(history_aligned)
        text = (message or "").strip()
        if not text:
            _notify("warning", "Empty message ignored: type something first.")
            yield message or "", hb, ha, "Empty message ignored: type something first."
            return
        yield from self._answer(text, hb, ha, adapter, temperature, top_p, max_new_tokens, request)

    def regenerate(self, history_base: Sequence[dict] | None, history_aligned: Sequence[dict] | None,
                   adapter: str | None, temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 64,
                   request: Any = None) -> Iterator[tuple[str, Messages, Messages, str]]:
        """Answer the last user message again in both panes (their last answers are dropped first).

        Yields:
            (message box value, unaligned history, aligned history, notice), as ``send``.
        """
        hb, ha = normalise_history(history_base), normalise_history(history_aligned)
        last = next((m["content"] for m in reversed(hb) if m["role"] == "user"), None)
        if last is None:
            yield "", hb, ha, "Nothing to regenerate yet."
            return

        def drop_last_exchange(h: Messages) -> Messages:
            i = max((j for j, m in enumerate(h) if m["role"] == "user"), default=len(h))
            return h[:i]

        yield from self._answer(last, drop_last_exchange(hb), drop_last_exchange(ha), adapter, temperature, top_p,
                                max_new_tokens, request)

    def _answer(self, text: str, hb: Messages, ha: Messages, adapter: str | None, temperature: float, top_p: float,
                max_new_tokens: int, request: Any) -> Iterator[tuple[str, Messages, Messages, str]]:
        from labcore.formats import prompt_format

        notes = []
        if len(text) > self.max_input_chars:
            text = text[: self.max_input_chars]
            notes.append(f"Your message was cut to its first {self.max_input_chars} characters.")
        hb = hb + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        ha = ha + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        try:
            model, tok = self.hub.get()
        except RuntimeError as err:
            hb[-1]["content"] = ha[-1]["content"] = f"(model unavailable: {err})"
            yield "", hb, ha, str(err)
            return
        from labcore.generation import stream_batch  # after the model: transformers' lazy imports are not thread-safe

        fmt = prompt_format(tok)
        prompt_b = fmt.prompt(history_pairs(hb[:-2]) + [text])
        prompt_a = fmt.prompt(history_pairs(ha[:-2]) + [text])
        aligned = adapter if adapter in self.hub.adapter_names else None
        if aligned is None:
            ha[-1]["content"] = ("(no aligned adapter available: train one with `labcore raft` or `labcore rrhf`; "
                                 "it is picked up from data/models/ at the next start)")
        context = self.hub.context_length()
        max_new = max(1, int(max_new_tokens))
        if context and max_new > context // 2:
            max_new = context // 2
            notes.append(f"Answers are limited to {max_new} tokens (half of the model's context of {context}).")
        if context and len(tok(prompt_b, add_special_tokens=False)["input_ids"]) > context - max_new:
            notes.append(f"The conversation is longer than the model's context ({context} tokens): "
                         "its oldest part is left out of the prompt.")
        for n in notes:
            _notify("info", n)
        notice = " ".join(notes)

        session = self._session(request)
        stop_event = self._register(session)
        # one batch: row 0 the base model (adapter off), row 1 the aligned adapter, one forward pass per token
        panes, prompts = [hb], [prompt_b]
        if aligned is not None:
            panes.append(ha)
            prompts.append(prompt_a)
        names = [self.hub.peft_key(None)] + ([self.hub.peft_key(aligned)] if aligned is not None else []) \
            if self.hub.has_adapters else None
        stream = stream_batch(model, tok, prompts, adapter_names=names, max_new_tokens=max_new,
                              temperature=float(temperature), top_p=float(top_p), stop_event=stop_event,
                              lock=self.hub.step_lock(None))
        try:
            yield "", hb, ha, notice
            for states in stream:
                for history, state in zip(panes, states):
                    history[-1]["content"] = state.text
                yield "", hb, ha, notice
            if stop_event.is_set():
                yield "", hb, ha, (notice + " Stopped.").strip()
        finally:  # stop, leave, cancel or done: the stream must not run on
            self._unregister(session, stop_event)
            stream.close()


def _notify(kind: str, text: str) -> None:
    """A toast in the browser when called inside a Gradio event; silent elsewhere (tests, scripts)."""
    if "gradio" not in sys.modules:  # not running inside the app
        return
    try:
        import gradio as gr
        from gradio.context import LocalContext

        if LocalContext.blocks.get(None) is None or LocalContext.event_id.get(None) is None:
            return
        (gr.Warning if kind == "warning" else gr.Info)(text)
    except Exception:  # noqa: BLE001 - a notice must never break a handler
        pass
