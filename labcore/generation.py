"""Batched sampling, streaming chat and per-token log-probabilities of responses."""
from __future__ import annotations

import contextlib
import inspect
import threading
from dataclasses import dataclass
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
    so one pass of the shared base weights serves both panes. A ``labcore.batching.BatchDecoder`` whose rows all join
    at once:
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
    from labcore.batching import BatchDecoder, DecodeRow

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
