"""The "Chat" tab: the unaligned base model and an aligned policy answer the same message side by side; votes.

Both panes stream from ONE base model in memory (``labcore.app.models.ModelHub``). A message becomes one job of two
rows for the app's generation worker (``labcore.app.worker``): the left row with the adapter off (peft's
``"__base__"``), the right one with the chosen RAFT (arXiv 2304.06767) or RRHF (arXiv 2304.05302) LoRA adapter
(peft's mixed-adapter batches). The worker decodes the rows of EVERY user in one batch, one forward pass per token
(continuous batching: a new message joins the running batch at the next step); each handler only turns the
worker's snapshots into the two panes.

Limits for a shared server, enforced here whatever the sliders say: messages longer than ``max_input_chars`` are
cut; only the last ``max_history_turns`` exchanges go into the prompt (every message cut to ``max_input_chars``);
answers are at most ``max_new_tokens_cap`` tokens (and half the model's context); a session sends at most
``rate_limit`` messages a minute; a full waiting line answers "busy" at once.

Cancellation: each running answer owns a ``threading.Event``, the job's cancel event. It is set when the user
presses *Stop* (the stop handler, and Gradio closing the cancelled generator), when the user leaves the page
(``Blocks.unload``), and when the generator is closed for any other reason (``finally``); the worker then drops the
job's rows from the batch before its next step.

Votes (``vote``): "left is better / right is better / tie / both bad" on the last exchange appends one TRL
preference record to ``votes.jsonl`` (``labcore.app.votes``), with the model, the adapter and the sampling settings
of the answer voted on.

Histories are Gradio "messages" lists ({"role", "content"}); the prompt of each pane is its own dialogue so far,
written by the model's prompt format (``labcore.formats.prompt_format``: SmolLM2's chat template, or the HH format).
"""
from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

from labcore.app.models import ModelHub, method_of
from labcore.app.worker import Busy, GenerationWorker

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
        worker: the generation worker (default: a batched one on ``hub``).
        max_input_chars: longer messages are cut to this many characters (the user is told).
        max_new_tokens_cap: longest answer in tokens, whatever a client asks.
        max_history_turns: earlier exchanges kept in the prompt (older ones stay on screen, left out of the prompt).
        rate_limit: messages per session per minute (0: no limit).
        votes: the vote file (``labcore.app.votes.VoteLog``); None: voting is off.
        clock: seconds, monotonic (the rate limit's; tests pass their own).
    """

    def __init__(self, hub: ModelHub, worker: GenerationWorker | None = None, max_input_chars: int = 2000,
                 max_new_tokens_cap: int = 256, max_history_turns: int = 8, rate_limit: int = 20,
                 votes: Any = None, clock: Callable[[], float] = time.monotonic):
        self.hub = hub
        self.worker = worker if worker is not None else GenerationWorker(hub)
        self.max_input_chars = max_input_chars
        self.max_new_tokens_cap = max_new_tokens_cap
        self.max_history_turns = max_history_turns
        self.rate_limit = rate_limit
        self.votes = votes
        self.clock = clock
        self._events: dict[str, set[threading.Event]] = {}
        self._events_lock = threading.Lock()
        self._sent: dict[str, collections.deque] = {}
        """Per session: the times of its recent messages (the rate limit)."""
        self._answered: dict[str, dict] = {}
        """Per session: the last answer (texts, adapter, sampling settings; whether it was voted on)."""

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
        """``Blocks.unload``: the user closed or reloaded the page; stop their generation, forget the session."""
        self.stop(request)
        session = self._session(request)
        with self._events_lock:
            self._sent.pop(session, None)
            self._answered.pop(session, None)

    # -- limits ------------------------------------------------------------------------------------------------------
    def _rate_limited(self, session: str) -> str | None:
        """None if the session may send now (and counts the message), else the notice to show."""
        if self.rate_limit <= 0:
            return None
        now = self.clock()
        with self._events_lock:
            sent = self._sent.setdefault(session, collections.deque())
            while sent and now - sent[0] >= 60.0:
                sent.popleft()
            if len(sent) >= self.rate_limit:
                wait = 60.0 - (now - sent[0])
                return (f"Slow down: at most {self.rate_limit} messages a minute per user; "
                        f"try again in {max(1, round(wait))} s.")
            sent.append(now)
        return None

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

    def _prompt_history(self, history: Messages, notes: list[str]) -> list[tuple[str, str]]:
        """The (user, assistant) pairs of ``history`` that go into the prompt: the last ``max_history_turns``, each
        message cut to ``max_input_chars``."""
        pairs = history_pairs(history)
        if len(pairs) > self.max_history_turns:
            pairs = pairs[-self.max_history_turns:] if self.max_history_turns else []
            note = (f"Only the last {self.max_history_turns} exchanges go into the prompt "
                    "(the server's history limit).")
            if note not in notes:
                notes.append(note)
        cap = self.max_input_chars
        if any(len(u) > cap or len(a) > cap for u, a in pairs):
            pairs = [(u[:cap], a[:cap]) for u, a in pairs]
        return pairs

    def _answer(self, text: str, hb: Messages, ha: Messages, adapter: str | None, temperature: float, top_p: float,
                max_new_tokens: int, request: Any) -> Iterator[tuple[str, Messages, Messages, str]]:
        from labcore.formats import prompt_format

        session = self._session(request)
        limited = self._rate_limited(session)
        if limited:
            _notify("warning", limited)
            yield text, hb, ha, limited
            return
        notes = []
        if len(text) > self.max_input_chars:
            text = text[: self.max_input_chars]
            notes.append(f"Your message was cut to its first {self.max_input_chars} characters.")
        pairs_b, pairs_a = self._prompt_history(hb, notes), self._prompt_history(ha, notes)
        hb = hb + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        ha = ha + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        try:
            model, tok = self.hub.get()
        except RuntimeError as err:
            hb[-1]["content"] = ha[-1]["content"] = f"(model unavailable: {err})"
            yield "", hb, ha, str(err)
            return
        from labcore.batching import DecodeRow  # after the model: transformers' lazy imports are not thread-safe

        fmt = prompt_format(tok)
        prompt_b = fmt.prompt(pairs_b + [text])
        prompt_a = fmt.prompt(pairs_a + [text])
        aligned = adapter if adapter in self.hub.adapter_names else None
        if aligned is None:
            ha[-1]["content"] = ("(no aligned adapter available: train one with `labcore raft` or `labcore rrhf`; "
                                 "it is picked up from data/models/ at the next start)")
        temperature = min(max(float(temperature), 0.0), 2.0)
        top_p = min(max(float(top_p), 0.01), 1.0)
        context = self.hub.context_length()
        max_new = max(1, int(max_new_tokens))
        if max_new > self.max_new_tokens_cap:
            max_new = self.max_new_tokens_cap
            notes.append(f"Answers are limited to {max_new} tokens on this server.")
        if context and max_new > context // 2:
            max_new = context // 2
            notes.append(f"Answers are limited to {max_new} tokens (half of the model's context of {context}).")
        ids_b = tok(prompt_b, add_special_tokens=False)["input_ids"]
        if context and len(ids_b) > context - max_new:
            notes.append(f"The conversation is longer than the model's context ({context} tokens): "
                         "its oldest part is left out of the prompt.")
        for n in notes:
            _notify("info", n)
        notice = " ".join(notes)

        # one job, two rows: the base model (adapter off) and the aligned adapter, decoded with every other user's
        peft = self.hub.has_adapters
        rows = [DecodeRow(ids_b, adapter=self.hub.peft_key(None) if peft else None, max_new_tokens=max_new,
                          temperature=temperature, top_p=top_p)]
        panes = [hb]
        if aligned is not None:
            rows.append(DecodeRow(tok(prompt_a, add_special_tokens=False)["input_ids"],
                                  adapter=self.hub.peft_key(aligned), max_new_tokens=max_new,
                                  temperature=temperature, top_p=top_p))
            panes.append(ha)
        stop_event = self._register(session)
        try:
            job = self.worker.submit(rows, cancel=stop_event)
        except Busy as err:
            self._unregister(session, stop_event)
            message = f"Busy: {err.waiting} answers are waiting already; try again in a minute."
            _notify("warning", message)
            yield text, hb[:-2], ha[:-2], message  # the message stays in the box, to send again
            return
        try:
            yield "", hb, ha, notice
            shown_ahead = None
            snap = None
            while not stop_event.is_set():
                try:
                    snap = job.updates.get(timeout=0.2)
                except queue.Empty:
                    if self.worker.waiting(job):
                        ahead = self.worker.ahead(job)
                        if ahead != shown_ahead:
                            shown_ahead = ahead
                            yield "", hb, ha, (f"Busy — {ahead} ahead of you; {self.worker.active_jobs} answers "
                                               "are being generated. Yours starts when rows free up.")
                    continue
                while True:  # the UI may be slower than the worker: show the newest snapshot only
                    try:
                        snap = job.updates.get_nowait()
                    except queue.Empty:
                        break
                for history, text_so_far in zip(panes, snap.texts):
                    history[-1]["content"] = text_so_far
                if snap.done:
                    break
                yield "", hb, ha, notice
            if snap is not None and snap.error:
                raise RuntimeError(f"generation failed: {snap.error}")
            if stop_event.is_set():
                yield "", hb, ha, (notice + " Stopped.").strip()
                return
            with self._events_lock:
                self._answered[session] = {
                    "left": hb[-1]["content"], "right": ha[-1]["content"] if aligned is not None else None,
                    "adapter": aligned, "voted": None,
                    "sampling": {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new}}
            yield "", hb, ha, notice
        finally:  # stop, leave, cancel or done: the job must not run on
            self._unregister(session, stop_event)
            self.worker.cancel(job)

    # -- votes -------------------------------------------------------------------------------------------------------
    def vote(self, history_base: Sequence[dict] | None, history_aligned: Sequence[dict] | None, adapter: str | None,
             choice: str, request: Any = None) -> tuple[str, int]:
        """Record a vote on the last exchange of the two panes as one preference record (``votes.jsonl``).

        Args:
            history_base: the unaligned (left) pane's messages.
            history_aligned: the aligned (right) pane's messages.
            adapter: the aligned pane's adapter.
            choice: "left", "right", "tie" or "both bad" (``labcore.app.votes.CHOICES``).
            request: Gradio's request (its session remembers the answer's sampling settings).
        Returns:
            (notice, number of records in the vote file).
        Raises:
            ValueError: voting is off, an unknown choice, nothing to vote on, or the panes answer different messages.
        """
        from labcore.app.votes import LABELS, vote_record
        from labcore.formats import prompt_format

        if self.votes is None:
            raise ValueError("voting is off on this server")
        hb, ha = normalise_history(history_base), normalise_history(history_aligned)
        if adapter not in self.hub.adapter_names:
            raise ValueError(f"no aligned adapter {adapter!r} on this server: nothing to compare with")
        session = self._session(request)
        with self._events_lock:
            last = self._answered.get(session)
        answers = (hb[-1]["content"] if hb else None, ha[-1]["content"] if ha else None)
        same = last is not None and (last["left"], last["right"]) == answers
        if same and last["voted"] is not None:
            return (f"Already voted on this answer ({LABELS[last['voted']]}); send a new message to vote again.",
                    self.votes.count())
        _, tok = self.hub.get()
        record = vote_record(choice, hb, ha, fmt=prompt_format(tok), model=self.hub.model_name,
                             adapter=last["adapter"] if same else adapter, sampling=last["sampling"] if same else None)
        n = self.votes.append(record)
        if same:
            last["voted"] = choice
        return f"Vote recorded ({LABELS[choice]}): {n} vote{'s' if n != 1 else ''} in {self.votes.path.name}.", n


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
