"""Batched sampling, streaming chat and per-token log-probabilities of responses."""
from __future__ import annotations

import contextlib
import inspect
import threading
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from labcore.formats import TURN_MARKERS, cut_turn, prompt_format
from labcore.models import adapter_disabled


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log pi(label_t | context) for every position, without a full-vocabulary log-softmax tensor.

    log_softmax(z)[y] = z[y] - logsumexp(z): gather one logit per position and subtract the log-partition.
    Only (B, T) floats are kept for the backward pass besides the logits themselves, where
    ``logits.log_softmax(-1).gather(...)`` would keep a second (B, T, V) tensor.

    Args:
        logits: (B, T, V) next-token logits, already aligned with ``labels`` (logits[:, t] predicts labels[:, t]).
        labels: (B, T) token ids; any value is allowed at masked positions as long as it is a valid id.
    Returns:
        (B, T) float32 log-probabilities.
    """
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1).float()  # (B, T)
    return picked - torch.logsumexp(logits.float(), dim=-1)  # (B, T)


# --------------------------------------------------------------------------------------------------------------
# Batched sampling
# --------------------------------------------------------------------------------------------------------------


class _TurnEnd(StoppingCriteria):
    """Per-row stop once a row has started a new turn (multi-token speaker tags: decode each row's tail)."""

    def __init__(self, tokenizer, prompt_len: int, stop_at_turn: bool):
        self.tokenizer, self.prompt_len, self.stop_at_turn = tokenizer, prompt_len, stop_at_turn

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.stop_at_turn:
            tails = self.tokenizer.batch_decode(input_ids[:, max(self.prompt_len, input_ids.shape[1] - 8):])
            done |= torch.tensor([any(m in t for m in TURN_MARKERS) for t in tails], device=input_ids.device)
        return done


def turn_marker_ids(tokenizer) -> list[int] | None:
    """Token ids that end a turn when each is a single token: the chat template's end-of-turn token (SmolLM2), the
    HH speaker tags of the tiny world's tokenizer; else None (GPT-2's multi-token tags)."""
    fmt = prompt_format(tokenizer)
    if fmt.template:
        return [tokenizer.convert_tokens_to_ids(fmt.end_of_turn)] if fmt.end_of_turn else []
    ids = [tokenizer(m, add_special_tokens=False)["input_ids"] for m in TURN_MARKERS]
    return [i[0] for i in ids] if all(len(i) == 1 for i in ids) else None


def end_token_id(tokenizer) -> int:
    """The token that closes a response in training: the chat template's end-of-turn token, else EOS."""
    fmt = prompt_format(tokenizer)
    if fmt.template and fmt.end_of_turn:
        return tokenizer.convert_tokens_to_ids(fmt.end_of_turn)
    return tokenizer.eos_token_id


def _truncate_left(ids: list[int], keep: int) -> list[int]:
    return ids[-keep:] if keep > 0 and len(ids) > keep else ids


def max_positions(model) -> int | None:
    """The context length of the model (``n_positions`` / ``max_position_embeddings``), or None."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    return None


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    do_sample: bool = True,
    stop_at_turn: bool = True,
    batch_size: int = 32,
    seed: int | None = None,
    progress: bool = False,
    **generate_kwargs,
) -> list[dict]:
    """Sample ``num_samples`` responses for every prompt, batched.

    Left padding and the KV cache; ``num_return_sequences`` instead of repeating prompts; the response is cut from
    the prompt by token position (never by string replacement), then at the end of the turn (``stop_at_turn``): EOS,
    the chat template's end-of-turn token, or (HH format) where the model starts a new ``"\\n\\nHuman:"`` /
    ``"\\n\\nAssistant:"`` turn. Prompts longer than the context leaves room for are cut from the left.

    Args:
        prompts: already formatted prompts (``prompt_format(tokenizer).prompt(...)`` for dialogues, raw text for
            plain continuation).
        num_samples: K responses per prompt. Greedy / beam search (``do_sample=False``) with ``num_beams`` and
            ``num_beam_groups`` / ``diversity_penalty`` pass through ``generate_kwargs``.
        batch_size: prompts per forward batch (each brings ``num_samples`` rows).
        seed: seeds torch once before the first batch, so a call is reproducible for the same batch size.
    Returns:
        ``len(prompts) * num_samples`` dicts, prompt-major: ``prompt_index``, ``sample_index``, ``prompt``,
        ``response``, ``finished`` (ended its turn or hit EOS before the limit), ``num_tokens`` (new tokens kept).
    """
    from tqdm.auto import tqdm

    if num_samples < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("num_samples, max_new_tokens and batch_size must be >= 1")
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    context = max_positions(model)
    keep = (context - max_new_tokens) if context else 0
    if context and keep < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in a context of {context}")
    # a turn ends at EOS, the template's end-of-turn token or a new speaker tag: single tokens simply join EOS as stop
    # tokens (cheap); multi-token tags (GPT-2, Pythia) are found by decoding each row's tail after every step (_TurnEnd)
    markers = turn_marker_ids(tokenizer) if stop_at_turn else None
    template = prompt_format(tokenizer).template
    stop_ids = [eos_id] + [m for m in (markers or []) if m != eos_id]
    sampling = dict(do_sample=do_sample, num_return_sequences=num_samples, max_new_tokens=max_new_tokens,
                    pad_token_id=pad_id, eos_token_id=stop_ids if markers else eos_id)
    if do_sample:
        sampling.update(temperature=temperature, top_k=top_k, top_p=top_p)
    sampling.update(generate_kwargs)

    results: list[dict] = []
    was_training = model.training
    model.eval()
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress):
        chunk = list(prompts[start:start + batch_size])
        ids = [_truncate_left(tokenizer(p, add_special_tokens=False)["input_ids"], keep) for p in chunk]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad_id] * (width - len(x)) + x for x in ids], device=device)  # (b, T) left-padded
        attention_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
        stop = StoppingCriteriaList([_TurnEnd(tokenizer, width, stop_at_turn and markers is None)])
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, stopping_criteria=stop, **sampling)
        new = out[:, width:]  # (b * K, new) — cut by token position
        for row in range(new.shape[0]):
            tokens = new[row].tolist()
            end = next((j for j, t in enumerate(tokens) if t in stop_ids), None)  # first EOS / marker token
            hit_stop = end is not None
            if hit_stop:
                tokens = tokens[:end]
            text, ended = tokenizer.decode(tokens, skip_special_tokens=True), False
            if stop_at_turn and not template:  # HH speaker tags, also when the model spelled one in pieces
                text, ended = cut_turn(text)
            i, k = divmod(row, num_samples)
            results.append({
                "prompt_index": start + i, "sample_index": k, "prompt": chunk[i], "response": text,
                "finished": bool(hit_stop or ended), "num_tokens": len(tokens),
            })
    model.train(was_training)
    return results



def generate_chunked(model, tokenizer, prompts: Sequence[str], *, num_samples: int, max_new_tokens: int | Sequence[int],
                     temperature: float, top_k: int, top_p: float, batch_size: int, stop_at_turn: bool, seed: int,
                     progress: bool = False) -> list[dict]:
    """:func:`generate` over chunks of ``batch_size`` prompts, chunk c seeded with ``derive_seed(seed, c)``.

    A chunk's samples depend only on its prompts and its position, never on how many chunks ran before, and each
    chunk may have its own new-token limit (RAFT draws one per generation batch, as LMFlow does).

    Args:
        max_new_tokens: one limit for every chunk, or one per chunk.
    Returns:
        :func:`generate`'s rows, prompt-major, ``prompt_index`` counted over all of ``prompts``.
    """
    from labcore.utils import derive_seed

    starts = range(0, len(prompts), batch_size)
    limits = [max_new_tokens] * len(starts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(limits) != len(starts):
        raise ValueError(f"{len(limits)} new-token limits for {len(starts)} chunks")
    rows: list[dict] = []
    for c, (start, n_new) in enumerate(zip(starts, limits)):
        chunk = generate(model, tokenizer, prompts[start:start + batch_size], num_samples=num_samples,
                         max_new_tokens=n_new, temperature=temperature, top_k=top_k, top_p=top_p,
                         stop_at_turn=stop_at_turn, batch_size=batch_size, seed=derive_seed(seed, c),
                         progress=progress)
        for r in chunk:
            r["prompt_index"] += start
        rows += chunk
    return rows

# --------------------------------------------------------------------------------------------------------------
# Streaming (chat)
# --------------------------------------------------------------------------------------------------------------
def cache_kwarg(model) -> tuple[str, str]:
    """Name of the cache argument/attribute of this transformers version ("cache" in 5.x, "past_key_values" before)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = inspect.signature(base.forward).parameters
    return ("cache", "cache") if "cache" in names else ("past_key_values", "past_key_values")


@dataclass
class StreamState:
    """What a running stream has produced so far."""
    text: str = ""
    finished: bool = False
    num_tokens: int = 0


@torch.no_grad()
def stream_generate(
    model,
    tokenizer,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    use_adapter: bool = True,
    stop_event: threading.Event | None = None,
    stop_at_turn: bool = True,
    lock: threading.Lock | None = None,
) -> Iterator[StreamState]:
    """Sample one response token by token, yielding the text so far after every token (for chat UIs).

    A plain decoding loop with the KV cache, so that two streams (adapter on / adapter off) can share one copy of the
    weights and be interleaved step by step: each step runs under ``lock`` with the adapter switched as asked.
    Setting ``stop_event`` cancels the stream before its next token. The last state yielded is the final one (with
    ``finished`` set when the turn ended or EOS came), so it may repeat the text of the state before it.
    """
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed if seed is not None else torch.seed() % 2**63)
    context = max_positions(model)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if context:
        ids = _truncate_left(ids, context - max_new_tokens)
    arg, attr = cache_kwarg(model)
    input_ids = torch.tensor([ids], device=device)
    stop_ids = {tokenizer.eos_token_id, *((turn_marker_ids(tokenizer) or []) if stop_at_turn else [])}
    cut_tags = stop_at_turn and not prompt_format(tokenizer).template  # HH speaker tags (a template's end is a token)
    cache = None
    new: list[int] = []
    state = StreamState()
    lock = lock or threading.Lock()
    for _ in range(max_new_tokens):
        if stop_event is not None and stop_event.is_set():
            break
        with lock, (contextlib.nullcontext() if use_adapter else adapter_disabled(model)):
            out = model(input_ids=input_ids, use_cache=True, **({arg: cache} if cache is not None else {}))
        cache = getattr(out, attr)
        logits = out.logits[0, -1].float().cpu()  # (V,)
        next_id = sample_token(logits, temperature, top_k, top_p, gen)
        if next_id in stop_ids:
            state.finished = True
            break
        new.append(next_id)
        text = tokenizer.decode(new, skip_special_tokens=True)
        if cut_tags:
            text, ended = cut_turn(text)
            if ended:
                state.text, state.finished = text, True
                break
        state.text, state.num_tokens = text, len(new)
        yield state
        input_ids = torch.tensor([[next_id]], device=device)
    state.num_tokens = len(new)
    yield state


@dataclass
class DecodeRow:
    """One response decoded by a :class:`BatchDecoder`: its prompt and sampling settings, then its progress.

    Args:
        prompt_ids: the prompt's token ids (cut from the left to leave ``max_new_tokens`` of the context).
        adapter: the row's peft adapter name (``"__base__"``: adapter off); None with a model without adapters.
        max_new_tokens: longest response in tokens.
        temperature, top_k, top_p: sampling settings of this row (temperature 0 = greedy).
        seed: seed of the row's own generator (None: random).
        tag: anything the caller wants back with the row (the app: its job and pane).
    """
    prompt_ids: list[int]
    adapter: str | None = None
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    tag: object = None
    state: StreamState = field(default_factory=StreamState)
    """Text so far, ``finished`` (ended its turn), ``num_tokens``."""
    done: bool = False
    """Left the batch: ended its turn, reached ``max_new_tokens``, or was removed."""
    new: list[int] = field(default_factory=list)
    """Response token ids so far."""
    _gen: torch.Generator | None = None
    _next: int = 0  # the token fed at the next step
    _pos: int = 0  # its position id


class BatchDecoder:
    """Continuous batching: rows join and leave ONE left-padded KV cache between decoding steps.

    ``add`` prefills new rows in one forward pass of their own (left-padded among themselves), samples their first
    token and merges their cache into the running one (the narrower of the two is padded on the left, masked);
    ``step`` runs one forward pass over every row, each row fed its last token at its own position id; a row that
    ends its turn, reaches its token limit or is ``remove``-d leaves the cache at once, and columns that only padding
    still uses are cut from the left. Rows are independent: each has its own sampling settings, seeded generator and
    (with a peft model) adapter, peft's mixed-adapter batches (``adapter_names``) giving each row its own. Greedy, a
    row's tokens are those :func:`stream_generate` gives it alone, whatever joins or leaves around it (up to float
    rounding: padding is masked and positions are explicit). Only ``DynamicCache`` layers (GPT-2, Llama) are merged.

    Args:
        model: a causal LM (a peft model for rows with adapters).
        tokenizer: its tokenizer.
        stop_at_turn: end a row at the chat template's end-of-turn token, or at a new HH speaker tag.
        lock: taken around every forward pass (the app's model lock).
    """

    def __init__(self, model, tokenizer, *, stop_at_turn: bool = True, lock=None):
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.context = max_positions(model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = {tokenizer.eos_token_id, *((turn_marker_ids(tokenizer) or []) if stop_at_turn else [])}
        self.cut_tags = stop_at_turn and not prompt_format(tokenizer).template  # HH tags (a template's end is a token)
        self.arg, self.attr = cache_kwarg(model)
        self.lock = lock if lock is not None else threading.Lock()
        self.rows: list[DecodeRow] = []
        """Rows in the batch, in cache order."""
        self.cache = None
        self.attention: torch.Tensor | None = None  # (B, T): 1 at real tokens, 0 at padding
        self.forward_passes = 0

    def __len__(self) -> int:
        return len(self.rows)

    def _forward(self, input_ids, attention, positions, rows, cache):
        names = [r.adapter for r in rows]
        extra = {"adapter_names": names} if any(n is not None for n in names) else {}
        with self.lock:
            out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                             **({self.arg: cache} if cache is not None else {}), **extra)
        self.forward_passes += 1
        return out.logits[:, -1].float().cpu(), getattr(out, self.attr)  # (B, V), the cache

    @torch.no_grad()
    def add(self, rows: Sequence[DecodeRow]) -> None:
        """Prefill ``rows`` (one forward pass), sample their first tokens and merge them into the batch."""
        rows = list(rows)
        if not rows:
            return
        ids = []
        for r in rows:
            keep = self.context - r.max_new_tokens if self.context else 0
            x = _truncate_left(list(r.prompt_ids), keep) or [self.tokenizer.eos_token_id]
            ids.append(x)
            r._gen = torch.Generator(device="cpu")
            r._gen.manual_seed(r.seed if r.seed is not None else torch.seed() % 2**63)
            r._pos = len(x)
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(x)) + x for x in ids], device=self.device)  # (b, T)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)  # (b, T)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # (b, T)
        logits, cache = self._forward(input_ids, attention, positions, rows, None)
        for r, lg in zip(rows, logits):
            self._advance(r, lg)
        if self.cache is None:
            self.rows, self.cache, self.attention = rows, cache, attention
        else:  # merge: pad the narrower cache on the left (masked), stack the rows
            T = max(self.attention.shape[1], width)
            for old, add in zip(self.cache.layers, cache.layers):
                _check_layer(old)
                old.keys = torch.cat([_pad_left(old.keys, T, 2), _pad_left(add.keys, T, 2)], dim=0)  # (B, H, T, D)
                old.values = torch.cat([_pad_left(old.values, T, 2), _pad_left(add.values, T, 2)], dim=0)
            self.attention = torch.cat([_pad_left(self.attention, T, 1), _pad_left(attention, T, 1)], dim=0)
            self.rows = self.rows + rows
        self._drop_done()

    @torch.no_grad()
    def step(self) -> None:
        """One forward pass over every row of the batch: each row gets its next token (or leaves)."""
        if not self.rows:
            return
        input_ids = torch.tensor([[r._next] for r in self.rows], device=self.device)  # (B, 1)
        positions = torch.tensor([[r._pos] for r in self.rows], device=self.device)  # (B, 1)
        self.attention = torch.cat([self.attention, self.attention.new_ones(len(self.rows), 1)], dim=1)  # (B, T+1)
        logits, self.cache = self._forward(input_ids, self.attention, positions, self.rows, self.cache)
        for r, lg in zip(self.rows, logits):
            r._pos += 1
            self._advance(r, lg)
        self._drop_done()

    def remove(self, rows: Sequence[DecodeRow]) -> None:
        """Take ``rows`` out of the batch now (a cancelled answer); their state stays as it is."""
        for r in rows:
            r.done = True
        self._drop_done()

    def _advance(self, r: DecodeRow, logits: torch.Tensor) -> None:
        """Sample row ``r``'s next token from its (V,) logits and update its state (as :func:`stream_generate`)."""
        next_id = sample_token(logits, r.temperature, r.top_k, r.top_p, r._gen)
        if next_id in self.stop_ids:
            r.state.finished = r.done = True
            return
        r.new.append(next_id)
        text = self.tokenizer.decode(r.new, skip_special_tokens=True)
        if self.cut_tags:
            text, ended = cut_turn(text)
            r.state.finished = r.done = ended
        r.state.text, r.state.num_tokens = text, len(r.new)
        r._next = next_id
        if len(r.new) >= r.max_new_tokens:
            r.done = True

    def _drop_done(self) -> None:
        keep = [i for i, r in enumerate(self.rows) if not r.done]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.attention = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        attention = self.attention[index]  # (B', T)
        first = int((attention.sum(0) > 0).nonzero()[0])  # columns left of it are padding in every row
        for layer in self.cache.layers:
            _check_layer(layer)
            layer.keys = layer.keys[index, :, first:]  # (B', H, T', D)
            layer.values = layer.values[index, :, first:]
        self.attention = attention[:, first:]
        self.rows = [self.rows[i] for i in keep]


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``t`` with zeros prepended along ``dim`` up to ``width``."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _check_layer(layer) -> None:
    from transformers.cache_utils import DynamicLayer

    if type(layer) is not DynamicLayer:
        raise NotImplementedError(f"BatchDecoder merges DynamicCache layers only, not {type(layer).__name__}")


@torch.no_grad()
def stream_batch(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    adapter_names: Sequence[str] | None = None,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seeds: Sequence[int | None] | None = None,
    stop_event: threading.Event | None = None,
    stop_at_turn: bool = True,
    lock: threading.Lock | None = None,
) -> Iterator[list[StreamState]]:
    """Sample one response per prompt token by token, all rows in ONE forward pass per step; yields every row's state.

    The chat's two panes (base model and aligned adapter) are two rows of one batch: with a peft model,
    ``adapter_names`` gives each row its adapter (peft's mixed-adapter batches; ``"__base__"`` = the adapter off),
    so one pass of the shared base weights serves both panes. A :class:`BatchDecoder` whose rows all join at once:
    left-padded with explicit position ids, each row sampling from its own seeded generator, so a row's tokens are
    those :func:`stream_generate` would give it alone (greedy: identical up to float rounding). A finished row leaves
    the batch at once.

    Args:
        adapter_names: one peft adapter name per row (``"__base__"`` for none), or None (the model as it is).
        seeds: one sampling seed per row (None: random).
        stop_event: set it to end every row before its next token.
        lock: taken around every forward pass (the app's model lock).
    Yields:
        after every step, one :class:`StreamState` per row (the last yield has every row ``finished`` or cut short).
    """
    B = len(prompts)
    if B == 0:
        return
    seeds = list(seeds) if seeds is not None else [None] * B
    names = list(adapter_names) if adapter_names is not None else [None] * B
    rows = [DecodeRow(tokenizer(p, add_special_tokens=False)["input_ids"], adapter=name,
                      max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
            for p, name, seed in zip(prompts, names, seeds)]
    states = [r.state for r in rows]
    decoder = BatchDecoder(model, tokenizer, stop_at_turn=stop_at_turn, lock=lock)
    if stop_event is None or not stop_event.is_set():
        decoder.add(rows)
        while len(decoder):
            yield states
            if stop_event is not None and stop_event.is_set():
                break
            decoder.step()
    yield states


def sample_token(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                 generator: torch.Generator | None = None) -> int:
    """Draw one token id from (V,) logits with temperature, top-k and nucleus (top-p) filtering; greedy at T=0."""
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.scatter(0, order[drop], float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))





# --------------------------------------------------------------------------------------------------------------
# Log-probabilities of responses
# --------------------------------------------------------------------------------------------------------------
def encode_pairs(tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int | None = None,
                 add_eos: bool | Sequence[bool] = False) -> tuple[list[list[int]], list[int]]:
    """Tokenise prompt and response separately (exact response-token boundary) and join them; ``add_eos`` (one flag,
    or one per pair) appends :func:`end_token_id` to the response.

    The prompt is cut from the left so that prompt + response fits ``max_length``; the response is kept whole
    (cut from the right only if it alone exceeds ``max_length - 1``).
    Returns:
        (token id lists, number of response tokens of each).
    """
    seqs, n_resp = [], []
    eos_flags = [add_eos] * len(prompts) if isinstance(add_eos, bool) else list(add_eos)
    end = end_token_id(tokenizer)
    for prompt, response, eos in zip(prompts, responses, eos_flags, strict=True):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(response, add_special_tokens=False)["input_ids"]
        if eos:  # the token that closes a turn: the template's end-of-turn token, else EOS
            r = r + [end]
        if max_length is not None:
            r = r[: max_length - 1]
            p = _truncate_left(p, max_length - len(r))
        if not p:  # a response needs at least one token of context
            p = [tokenizer.eos_token_id]
        seqs.append(p + r)
        n_resp.append(len(r))
    return seqs, n_resp


def forward_response_logprobs(model, seqs: list[list[int]], n_resp: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the last ``n_resp[i]`` tokens of each sequence, with gradients if enabled.

    Sequences are left-padded so that every response ends at the same position; explicit position ids make the
    padding invisible; ``logits_to_keep`` asks the LM head only for the last R+1 positions (R = longest response),
    so neither the prompt positions' logits nor a full-vocabulary log-softmax are ever materialised.

    Returns:
        logp (B, R) float32 (zeros where masked), mask (B, R) bool — response tokens right-aligned.
    """
    device = next(model.parameters()).device
    width = max(len(s) for s in seqs)
    R = max(n_resp)
    input_ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in seqs], device=device)  # (B, T)
    attention_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)  # (B, T)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                logits_to_keep=R + 1, use_cache=False)
    logits = out.logits[:, :-1]  # (B, R, V): position t predicts token t+1
    labels = input_ids[:, -R:]  # (B, R)
    logp = token_logprobs(logits, labels)  # (B, R)
    mask = torch.arange(R, device=device)[None, :] >= (R - torch.tensor(n_resp, device=device))[:, None]  # (B, R)
    return logp.masked_fill(~mask, 0.0), mask


@torch.no_grad()
def response_logprobs(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int = 16,
                      max_length: int | None = None, add_eos: bool = False) -> list[torch.Tensor]:
    """Log-probabilities of the response tokens only, given the prompt: the building block of RRHF scores and ppl.

    Args:
        prompts, responses: parallel lists; the response is scored as the continuation of its prompt.
        max_length: total token budget (default: the model's context); prompts are cut from the left to fit.
        add_eos: also score the token that ends the response (:func:`end_token_id`).
    Returns:
        one 1-D float32 tensor (on the CPU) of per-token log-probs per response.
    """
    max_length = max_length or max_positions(model)
    seqs, n_resp = encode_pairs(tokenizer, prompts, responses, max_length, add_eos)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[torch.Tensor] = [torch.empty(0)] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths together: less padding
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = [i for i in order[start:start + batch_size]]
        nonempty = [i for i in idx if n_resp[i] > 0]
        if nonempty:
            logp, _ = forward_response_logprobs(model, [seqs[i] for i in nonempty], [n_resp[i] for i in nonempty], pad_id)
            for row, i in enumerate(nonempty):
                out[i] = logp[row, logp.shape[1] - n_resp[i]:].float().cpu()
    model.train(was_training)
    return out
