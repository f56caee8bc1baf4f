"""The chat's generation worker: one thread decodes every user's answers as rows of ONE batch (continuous batching).

A chat message is a :class:`Job` of one or two rows (the unaligned pane: adapter off, peft's ``"__base__"``; the
aligned pane: its LoRA adapter). Jobs wait in a bounded line; the worker thread owns the decoding
(``labcore.batching.BatchDecoder``) and repeats:

1. rows of cancelled jobs (*Stop*, the page closed, the client gone) leave the batch — their cache rows are freed;
2. ``batched``: every waiting job that fits under ``max_rows`` joins now — its rows are prefilled in one forward
   pass and merged into the running KV cache, so a new user waits for one step, never for the others to finish;
   ``sequential`` (one-at-a-time serving, kept to measure against): the next job starts when the previous one ended;
3. one forward pass over all rows (each row its own adapter, sampling settings and seeded generator);
4. each job gets a snapshot of its rows; a row that ends its turn or reaches its limit leaves at once.

A full line answers :class:`Busy` (the app says so) instead of hanging; a waiting job can ask how many are ahead
(:meth:`GenerationWorker.ahead`). An error in a forward pass fails the jobs in the batch with one line and the
worker goes on. Greedy, a row's tokens equal generating it alone, whoever joins or leaves (``tests/test_app.py``,
``tests/test_batch_decoder.py``). ``benchmarks/app_load.py`` measures both modes with 1, 8 and 24 users.
"""
from __future__ import annotations

import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

MODES = ("batched", "sequential")
Mode = Literal["batched", "sequential"]


class Busy(RuntimeError):
    """The waiting line is full."""

    def __init__(self, waiting: int):
        self.waiting = waiting
        super().__init__(f"busy: {waiting} answers are waiting already; try again in a minute")


@dataclass
class Snapshot:
    """What a job's rows have produced so far (one entry per row, in the job's order)."""
    texts: tuple[str, ...]
    num_tokens: tuple[int, ...]
    done: bool
    """Every row has ended (turn, limit, cancel or error)."""
    error: str | None = None


@dataclass(eq=False)
class Job:
    """One chat message: its rows (``labcore.generation.DecodeRow``), a cancel event and the snapshots sent back."""
    rows: list
    cancel: threading.Event = field(default_factory=threading.Event)
    updates: "queue.SimpleQueue[Snapshot]" = field(default_factory=queue.SimpleQueue)
    error: str | None = None

    def snapshot(self, done: bool = False) -> Snapshot:
        return Snapshot(tuple(r.state.text for r in self.rows), tuple(r.state.num_tokens for r in self.rows),
                        done or all(r.done for r in self.rows), self.error)


class GenerationWorker:
    """The thread that decodes every chat answer (see the module docstring).

    Args:
        hub: the app's model (``labcore.app.models.ModelHub``); each forward pass takes ``hub.lock``.
        mode: "batched" (continuous batching) or "sequential" (one job at a time).
        max_rows: most rows in the batch (two per user); more jobs wait.
        max_waiting: most jobs waiting; beyond, ``submit`` raises :class:`Busy`.
    """

    def __init__(self, hub: Any, mode: Mode = "batched", max_rows: int = 48, max_waiting: int = 64):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if max_rows < 2 or max_waiting < 0:
            raise ValueError(f"need max_rows >= 2 and max_waiting >= 0, got {max_rows}, {max_waiting}")
        self.hub, self.mode, self.max_rows, self.max_waiting = hub, mode, max_rows, max_waiting
        self._cv = threading.Condition()
        self._waiting: list[Job] = []
        self._active: list[Job] = []
        self._thread: threading.Thread | None = None
        self._decoder = None
        self._closed = False
        self.stats = {"forward_passes": 0, "prefills": 0, "jobs": 0, "most_rows": 0, "most_jobs": 0}
        """Counters for tests and the benchmark: forward passes, prefills, jobs admitted, largest batch."""

    # -- the callers' side ---------------------------------------------------------------------------------------------
    def submit(self, rows: Sequence[Any], cancel: threading.Event | None = None) -> Job:
        """Put one job in line (the worker starts on first use).

        Args:
            rows: ``labcore.generation.DecodeRow`` objects, each with its prompt ids, adapter and sampling settings.
            cancel: set it to end the job (its rows leave the batch before the next step).
        Raises:
            Busy: ``max_waiting`` jobs are waiting already.
        """
        job = Job(list(rows), cancel or threading.Event())
        for r in job.rows:
            r.tag = job
        if len(job.rows) > self.max_rows:
            raise ValueError(f"a job of {len(job.rows)} rows never fits a batch of {self.max_rows}")
        with self._cv:
            if self._closed:
                raise RuntimeError("the generation worker is closed")
            if len(self._waiting) >= self.max_waiting:
                raise Busy(len(self._waiting))
            self._waiting.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="labcore-chat-worker", daemon=True)
                self._thread.start()
            self._cv.notify()
        return job

    def cancel(self, job: Job) -> None:
        """End ``job`` now: out of the line if it waits, out of the batch before the next step if it runs."""
        job.cancel.set()
        with self._cv:
            if job in self._waiting:
                self._waiting.remove(job)
                job.updates.put(job.snapshot(done=True))
            self._cv.notify()

    def ahead(self, job: Job) -> int:
        """Jobs waiting before ``job`` (0 when it is next or already running)."""
        with self._cv:
            return self._waiting.index(job) if job in self._waiting else 0

    def waiting(self, job: Job) -> bool:
        """True while ``job`` has not joined the batch yet."""
        with self._cv:
            return job in self._waiting

    @property
    def active_rows(self) -> int:
        """Rows in the batch now."""
        with self._cv:
            return sum(1 for j in self._active for r in j.rows if not r.done)

    @property
    def active_jobs(self) -> int:
        """Jobs with a row in the batch now."""
        with self._cv:
            return len(self._active)

    def close(self) -> None:
        """Stop the thread (the jobs in flight end as cancelled)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(30)

    # -- the worker thread ---------------------------------------------------------------------------------------------
    def _admissible(self) -> list[Job]:
        """Jobs that join the batch now (called with the lock held)."""
        take: list[Job] = []
        if self.mode == "sequential":
            if not self._active and self._waiting:
                take.append(self._waiting.pop(0))
            return take
        rows = sum(len(j.rows) for j in self._active)
        while self._waiting and rows + len(self._waiting[0].rows) <= self.max_rows:
            job = self._waiting.pop(0)
            rows += len(job.rows)
            take.append(job)
        return take

    @property
    def decoder_rows(self) -> int:
        """Rows in the decoder's KV cache now (what a cancelled job must free)."""
        decoder = self._decoder
        return len(decoder) if decoder is not None else 0

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._waiting and not self._active:
                    self._cv.wait()
                if self._closed:
                    for job in self._waiting + self._active:
                        job.cancel.set()
                        job.updates.put(job.snapshot(done=True))
                    return
                joining = self._admissible()
                self._active += joining
            try:
                if self._decoder is None:
                    from labcore.batching import BatchDecoder

                    model, tok = self.hub.get()
                    self._decoder = BatchDecoder(model, tok, lock=self.hub.lock)
                decoder = self._decoder
                decoder.remove([r for r in decoder.rows if r.tag.cancel.is_set()])
                joining = [j for j in joining if not j.cancel.is_set()]
                running = len(decoder)
                if joining:
                    decoder.add([r for j in joining for r in j.rows])
                    self.stats["prefills"] += 1
                    self.stats["jobs"] += len(joining)
                if running:
                    decoder.step()
                decoder.remove([r for r in decoder.rows if r.tag.cancel.is_set()])  # cancelled during the step
                self.stats["forward_passes"] = decoder.forward_passes
                self.stats["most_rows"] = max(self.stats["most_rows"], running + sum(len(j.rows) for j in joining))
            except Exception as err:  # noqa: BLE001 - fail the jobs in the batch with one line, keep serving
                print(f"labcore chat worker: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                with self._cv:
                    for job in self._active:
                        job.error = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
                        for r in job.rows:
                            r.done = True
                self._decoder = None
            self._publish()

    def _publish(self) -> None:
        """Send every running job its snapshot; finished and cancelled jobs leave the active list."""
        with self._cv:
            self.stats["most_jobs"] = max(self.stats["most_jobs"], len(self._active))
            still = []
            for job in self._active:
                done = job.cancel.is_set() or all(r.done for r in job.rows)
                job.updates.put(job.snapshot(done=done))
                if not done:
                    still.append(job)
            self._active = still
