"""RRHF: rank responses with a hinge on length-normalised log-probabilities, plus SFT on the best one.

Yuan et al. 2023, "RRHF: Rank Responses to Align Language Models with Human Feedback without tears",
arXiv 2304.05302. A query x has k responses y_1..y_k (from any sampling policy) with rewards r_i = R(x, y_i).

    Eq. 1  p_i    = sum_t log pi(y_{i,t} | x, y_{i,<t}) / |y_i|^alpha         (response tokens only)
    Eq. 2  L_rank = sum_{r_i < r_j} max(0, p_i - p_j)                        (no margin; ties add nothing)
    Eq. 3  i'     = argmax_i r_i
    Eq. 4  L_ft   = - sum_t log pi(y_{i',t} | x, y_{i',<t})
    Eq. 5  L      = L_rank + L_ft              (code: rrhf_weight * L_rank + L_ft, weight 1 by default)

No reference model, no KL term, no value model: one model in memory, two losses on its own log-probabilities.

Sign note on alpha (``length_penalty``): log-probabilities are negative, so dividing by a larger |y|^alpha moves a
long response's score towards 0, i.e. *up*. A larger alpha favours longer responses; alpha = 0 is the plain sum.

Deliberate deviations from / fixes to the reference code (GanjinZero/RRHF ``train.py``):
  * Batches of several queries per forward (reference issue #23: its loss indexes ``[0]``, so only one query per
    device works). Queries may have different numbers of responses: missing slots are padded and marked by a NaN
    reward, which every loss ignores. Across queries the losses are summed by default (so a batch's loss is exactly
    the sum of its queries' losses, and one query reproduces the reference); ``batch_reduction="mean"`` averages.
  * Labels are not pre-shifted in the collator (issue #48). The collator marks which tokens of ``input_ids`` belong
    to a response (``response_mask``); the shift "logits at t-1 predict token t" happens once, in ``rrhf_forward``.
    ``token_logp[..., t]`` is the log-probability of ``input_ids[..., t]``, so it lines up with ``response_mask``.
  * L_ft is the mean over the best response's real tokens (``sft_reduction="masked_mean"``, the fix agreed in
    issue #51). The reference averages over the whole padded row, masked zeros included (``"reference"``), and
    Eq. 4 as printed is a plain sum (``"sum"``). We default to the masked mean because it keeps L_ft on the same
    per-token scale as the length-normalised scores p_i in L_rank (alpha = 1) and does not depend on how much
    padding happens to be in the batch.
  * Queries are truncated from the left so that query + response fits ``max_length`` (issue #27: the reference never
    truncates queries); the end of the query, next to the response, is what matters most. EOS is appended to every
    response as a token id (the reference appends ``eos_token`` as text and re-tokenises it).
  * No full-vocabulary log-softmax tensor (reference: B*L*V floats for ``log_softmax`` plus a ``clone``). Log-probs
    come from ``token_logprobs`` (gather minus logsumexp), and by default the LM head is applied only at the
    positions that predict response tokens (``response_logits_only=True``), so prompt and padding positions never
    touch the V-wide output layer. Mathematically identical; faster and smaller.
  * Optionally (``share_query_prefix=True``) each query goes through the model once and its K responses run on top
    of its key/value cache, instead of K copies of the query (the reference's layout). Identical in eval mode; in
    training the query's dropout masks are shared by its K responses. On a 2-core CPU this was the step from
    1.3x to 2.1x the reference's throughput (benchmarks/rrhf_step.py).
  * Log-probabilities and scores are float32 even under bf16 autocast (issue #43: in bf16 the loss read 0.0).
  * Attention masks come from sequence lengths, not ``input_ids != pad_token_id`` (with pad == EOS the reference
    pattern would mask out the appended EOS).
  * LoRA is supported through ``RRHFConfig.lora.use`` (issue #31, never done in the reference).

``reference_rrhf_step_loss`` restates the reference formulation (one query, pre-shifted labels, full-vocabulary
log-softmax then gather, padded-row SFT mean) for parity tests and ``benchmarks/rrhf_step.py``.

Why RRHF has its own response-log-prob path (``rrhf_forward``) beside ``labcore.generation.forward_response_logprobs``
(SFT, perplexity, metrics): the plain path runs the model's own forward with ``logits_to_keep`` on left-padded flat
rows, which works for any Hugging Face causal LM and under DDP. RRHF's (B, K, T) layout shares one query among K
responses: ``share_query_prefix`` runs the query once and the K responses on its KV cache, and ``response_logits_only``
applies the LM head only at response positions, both by calling the backbone and the head directly. Folding both
into one function would either lose that shared-prefix speed (2.1x the reference's throughput at 0.42 of its memory,
``benchmarks/rrhf_step.py``) or give the plain path the backbone/head split that DDP and soft-capped models cannot
take. The two agree to float precision (tested).

Settings: :class:`labcore.config.RRHFConfig`; the loop (collection, training): :mod:`labcore.rrhf_trainer`.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from labcore.generation import cache_kwarg, end_token_id, token_logprobs

IGNORE_INDEX = -100  # label value the reference code uses for "no loss here"
SFT_REDUCTIONS = ("masked_mean", "sum", "reference")
BATCH_REDUCTIONS = ("sum", "mean")


# ----------------------------------------------------------------------------------------------------------------
# The math: pure tensor functions (no model, no tokenizer)
# ----------------------------------------------------------------------------------------------------------------

def sequence_scores(token_logp: torch.Tensor, mask: torch.Tensor, length_penalty: float = 1.0) -> torch.Tensor:
    """Eq. 1: p_i = sum_t log pi(y_{i,t} | x, y_{i,<t}) / |y_i|^alpha over response tokens only.

    A larger ``length_penalty`` (alpha) favours *longer* responses, because the summed log-probability is negative
    and is divided by a larger number. alpha = 0 gives the plain sum, alpha = 1 the mean log-probability.

    Args:
        token_logp: (..., T) per-token log-probabilities, e.g. (B, K, T) or (N, T).
        mask: (..., T) bool or 0/1, True on the response tokens y_i (prompt and padding False).
        length_penalty: alpha in Eq. 1.
    Returns:
        (...) float scores p_i; 0 for a row without response tokens (a padded slot).
    """
    if token_logp.shape != mask.shape:
        raise ValueError(f"token_logp {tuple(token_logp.shape)} and mask {tuple(mask.shape)} must have the same shape")
    mask = mask.bool()
    summed = torch.where(mask, token_logp, torch.zeros_like(token_logp)).sum(-1)  # (...) numerator of Eq. 1
    length = mask.sum(-1).clamp_min(1).to(summed.dtype)  # (...) |y_i|; clamp keeps empty slots at 0, not NaN
    return summed / length.pow(length_penalty)  # Eq. 1


def _check_rewards(rewards: torch.Tensor, other: torch.Tensor, name: str) -> torch.Tensor:
    """Validate (B, K) rewards against a (B, K, ...) tensor; return the (B, K) bool mask of real slots."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (B, K), got shape {tuple(rewards.shape)}")
    if other.shape[:2] != rewards.shape:
        raise ValueError(f"{name} {tuple(other.shape)} does not start with rewards' shape {tuple(rewards.shape)}")
    valid = ~torch.isnan(rewards)  # (B, K) NaN marks a padded slot
    empty = (~valid.any(-1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"queries {empty} have no response with a (non-NaN) reward")
    return valid


def _reduce_queries(per_query: torch.Tensor, batch_reduction: str) -> torch.Tensor:
    """(B,) -> scalar: "sum" (batch loss = sum of query losses) or "mean" over queries."""
    if batch_reduction == "sum":
        return per_query.sum()
    if batch_reduction == "mean":
        return per_query.mean()
    raise ValueError(f"batch_reduction must be one of {BATCH_REDUCTIONS}, got {batch_reduction!r}")


def ranking_loss(scores: torch.Tensor, rewards: torch.Tensor, batch_reduction: str = "sum") -> torch.Tensor:
    """Eq. 2: L_rank = sum over pairs with r_i < r_j of max(0, p_i - p_j), per query.

    No margin. Pairs with equal rewards add nothing (strict <). A NaN reward marks a padded slot: NaN compares
    False, so no pair involves it. With one query this is exactly the reference code's sum over pairs.

    Args:
        scores: (B, K) p_i from Eq. 1.
        rewards: (B, K) r_i; NaN for padded slots.
        batch_reduction: "sum" over queries (default: a batch's loss equals the sum of its queries' losses) or
            "mean" over queries (the B queries of a micro-batch; see ``RRHFConfig.batch_reduction``).
    Returns:
        Scalar loss.
    """
    _check_rewards(rewards, scores, "scores")
    rewards = rewards.to(scores.dtype)
    worse_than = rewards.unsqueeze(-1) < rewards.unsqueeze(-2)  # (B, K, K): [b, i, j] = r_i < r_j; False with NaN
    diff = scores.unsqueeze(-1) - scores.unsqueeze(-2)  # (B, K, K): [b, i, j] = p_i - p_j
    hinge = torch.where(worse_than, F.relu(diff), torch.zeros_like(diff))  # Eq. 2 summand max(0, p_i - p_j)
    return _reduce_queries(hinge.sum(dim=(-2, -1)), batch_reduction)  # Eq. 2 sum over pairs; (B,) -> scalar


def best_response_index(rewards: torch.Tensor) -> torch.Tensor:
    """Eq. 3: i' = argmax_i r_i, ignoring NaN (padded) slots; ties go to the lowest index.

    Args:
        rewards: (B, K), NaN for padded slots.
    Returns:
        (B,) long indices.
    """
    valid = ~torch.isnan(rewards)  # (B, K)
    r = rewards.masked_fill(~valid, -math.inf)  # (B, K)
    is_best = valid & (r == r.max(dim=-1, keepdim=True).values)  # (B, K); robust even if real rewards are -inf
    return is_best.long().argmax(dim=-1)  # Eq. 3; torch.argmax returns the first maximal index


def best_response_nll(
    token_logp: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    reduction: str = "masked_mean",
    batch_reduction: str = "sum",
) -> torch.Tensor:
    """Eq. 3-4: negative log-likelihood of the best response y_{i'}, i' = argmax_i r_i.

    Args:
        token_logp: (B, K, T) per-token log-probabilities (``rrhf_forward`` output).
        mask: (B, K, T) True on response tokens.
        rewards: (B, K); NaN slots are never chosen; ties go to the lowest index.
        reduction: how the tokens of y_{i'} are reduced:
            "masked_mean" - mean over its real tokens (default; the fix of reference issue #51);
            "sum"         - Eq. 4 as printed, -sum_t log pi;
            "reference"   - the reference code: mean over the whole padded row of length T, masked zeros included
                            (so it depends on the batch's padding; for parity with the reference only).
        batch_reduction: "sum" or "mean" over queries, as in ``ranking_loss``.
    Returns:
        Scalar loss.
    """
    _check_rewards(rewards, token_logp, "token_logp")
    if mask.shape != token_logp.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must match token_logp {tuple(token_logp.shape)}")
    if reduction not in SFT_REDUCTIONS:
        raise ValueError(f"reduction must be one of {SFT_REDUCTIONS}, got {reduction!r}")
    B, K, T = token_logp.shape
    best = best_response_index(rewards)  # (B,) Eq. 3
    rows = torch.arange(B, device=token_logp.device)
    logp_best = token_logp[rows, best]  # (B, T)
    mask_best = mask[rows, best].bool()  # (B, T)
    nll_sum = -torch.where(mask_best, logp_best, torch.zeros_like(logp_best)).sum(-1)  # (B,) Eq. 4
    if reduction == "masked_mean":
        per_query = nll_sum / mask_best.sum(-1).clamp_min(1)  # (B,) mean over y_{i'}'s tokens (issue #51 fix)
    elif reduction == "reference":
        per_query = nll_sum / T  # (B,) reference: mean over the padded row
    else:
        per_query = nll_sum  # (B,) Eq. 4 literally
    return _reduce_queries(per_query, batch_reduction)


class RRHFLoss(NamedTuple):
    """Eq. 5 total and its two parts (each already reduced over the batch)."""

    loss: torch.Tensor
    rank: torch.Tensor
    sft: torch.Tensor


def rrhf_loss(
    scores: torch.Tensor,
    token_logp: torch.Tensor,
    response_mask: torch.Tensor,
    rewards: torch.Tensor,
    rrhf_weight: float = 1.0,
    sft_reduction: str = "masked_mean",
    batch_reduction: str = "sum",
) -> RRHFLoss:
    """Eq. 5: L = rrhf_weight * L_rank + L_ft (the paper: weight 1; 10 and 100 were worse).

    Args:
        scores: (B, K) p_i (Eq. 1).
        token_logp: (B, K, T) per-token log-probabilities.
        response_mask: (B, K, T) True on response tokens.
        rewards: (B, K), NaN for padded slots.
        rrhf_weight: weight on L_rank.
        sft_reduction: see ``best_response_nll`` ("masked_mean", "sum", "reference").
        batch_reduction: "sum" or "mean" over queries, for both parts.
    Returns:
        ``RRHFLoss(loss, rank, sft)``, scalars.
    """
    rank = ranking_loss(scores, rewards, batch_reduction)  # Eq. 2
    sft = best_response_nll(token_logp, response_mask, rewards, sft_reduction, batch_reduction)  # Eq. 3-4
    return RRHFLoss(rrhf_weight * rank + sft, rank, sft)  # Eq. 5


# ----------------------------------------------------------------------------------------------------------------
# Data: (query, k responses, k rewards) -> padded (B, K, T) tensors
# ----------------------------------------------------------------------------------------------------------------

def collate_rrhf(
    query_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[Sequence[int]]],
    max_length: int,
    pad_token_id: int,
    eos_token_id: int | None,
    rewards: Sequence[Sequence[float]] | None = None,
    min_query_tokens: int = 1,
) -> dict[str, torch.Tensor]:
    """Token-level collator: one row per (query, response) pair, right-padded to the longest row of the batch.

    Per query: EOS is appended to each response; a response (with its EOS) longer than
    ``max_length - min_query_tokens`` is cut from the right; then the query is cut *from the left* to
    ``max_length - longest response of this query`` tokens, so every response of the query sees the same context
    and every row fits ``max_length`` (reference issue #27). Labels are not built here (issue #48): the shift
    happens in ``rrhf_forward``.

    Args:
        query_ids: B lists of query token ids.
        response_ids: B lists of K_b >= 1 responses, each a list of token ids (K_b may differ between queries).
        max_length: longest allowed query + response length, in tokens.
        pad_token_id: id written into padding (ignored through the masks).
        eos_token_id: appended to every response; None appends nothing.
        rewards: optional B lists of K_b rewards.
        min_query_tokens: query tokens always kept (>= 1: the first response token needs a context to be predicted).
    Returns:
        dict with ``input_ids`` (B, K, T) long, ``attention_mask`` (B, K, T) long, ``response_mask`` (B, K, T)
        bool (True on response tokens incl. EOS), ``slot_mask`` (B, K) bool (False on padded slots) and, when
        ``rewards`` is given, ``rewards`` (B, K) float32 with NaN on padded slots. K = max_b K_b, T = longest row.
    """
    if len(query_ids) != len(response_ids) or not query_ids:
        raise ValueError("need one list of responses per query, and at least one query")
    if rewards is not None and (len(rewards) != len(query_ids)
                                or any(len(r) != len(y) for r, y in zip(rewards, response_ids))):
        raise ValueError("rewards must have one value per response")
    if not 1 <= min_query_tokens < max_length:
        raise ValueError(f"need 1 <= min_query_tokens < max_length, got {min_query_tokens} and {max_length}")
    eos = [] if eos_token_id is None else [int(eos_token_id)]
    rows: list[list[tuple[list[int], list[int]]]] = []  # per query: (query part, response part) per response
    for b, (x, ys) in enumerate(zip(query_ids, response_ids)):
        if not ys:
            raise ValueError(f"query {b} has no responses")
        if not x:
            raise ValueError(f"query {b} is empty: the first response token would have no context")
        ys = [(list(y) + eos)[: max_length - min_query_tokens] for y in ys]
        if any(not y for y in ys):
            raise ValueError(f"query {b} has an empty response and no EOS to stand for it")
        x = list(x)[-(max_length - max(len(y) for y in ys)):]  # left truncation (issue #27)
        rows.append([(x, y) for y in ys])
    B, K = len(rows), max(len(r) for r in rows)
    T = max(len(x) + len(y) for r in rows for x, y in r)
    input_ids = torch.full((B, K, T), int(pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros(B, K, T, dtype=torch.long)
    response_mask = torch.zeros(B, K, T, dtype=torch.bool)
    slot_mask = torch.zeros(B, K, dtype=torch.bool)
    for b, r in enumerate(rows):
        for k, (x, y) in enumerate(r):
            n = len(x) + len(y)
            input_ids[b, k, :n] = torch.tensor(x + y)
            attention_mask[b, k, :n] = 1
            response_mask[b, k, len(x):n] = True
            slot_mask[b, k] = True
    batch = dict(input_ids=input_ids, attention_mask=attention_mask, response_mask=response_mask, slot_mask=slot_mask)
    if rewards is not None:
        r = torch.full((B, K), math.nan, dtype=torch.float32)
        for b, rb in enumerate(rewards):
            r[b, : len(rb)] = torch.tensor([float(v) for v in rb])
        if torch.isnan(r[slot_mask]).any():
            raise ValueError("a real response has a NaN reward; NaN is reserved for padded slots")
        batch["rewards"] = r
    return batch


def build_rrhf_batch(
    tokenizer,
    queries: Sequence[str],
    responses_list: Sequence[Sequence[str]],
    max_length: int,
    rewards_list: Sequence[Sequence[float]] | None = None,
    min_query_tokens: int = 1,
) -> dict[str, torch.Tensor]:
    """Tokenise queries and their responses and collate them (see ``collate_rrhf`` for truncation and layout).

    The query is tokenised with the tokenizer's special tokens (e.g. a BOS), each response without them; the EOS id
    is appended to every response, as in the reference (with a chat template: its end-of-turn token,
    ``labcore.generation.end_token_id``). Padding uses ``pad_token_id``, falling back to EOS.

    Args:
        tokenizer: a Hugging Face tokenizer with an ``eos_token_id``.
        queries: B query strings (already in the prompt format, e.g. "\\n\\nHuman: ...\\n\\nAssistant:").
        responses_list: B lists of K_b response strings.
        max_length: longest allowed query + response length, in tokens (reference: 192).
        rewards_list: optional B lists of K_b rewards.
        min_query_tokens: query tokens always kept.
    Returns:
        The ``collate_rrhf`` dict: input_ids / attention_mask / response_mask (B, K, T), slot_mask (B, K) and,
        with ``rewards_list``, rewards (B, K) with NaN on padded slots.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs an EOS token: RRHF appends it to every response")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    query_ids = [tokenizer(q, add_special_tokens=True)["input_ids"] for q in queries]
    response_ids = [[tokenizer(y, add_special_tokens=False)["input_ids"] for y in ys] for ys in responses_list]
    return collate_rrhf(query_ids, response_ids, max_length, pad, end_token_id(tokenizer), rewards_list,
                        min_query_tokens)


# ----------------------------------------------------------------------------------------------------------------
# Model glue: one forward over all (query, response) rows of the batch
# ----------------------------------------------------------------------------------------------------------------

class RRHFForward(NamedTuple):
    """Per-token log-probabilities (B, K, T) aligned with input_ids, and Eq. 1 scores (B, K)."""

    token_logp: torch.Tensor
    scores: torch.Tensor


def _backbone(model):
    """The transformer body under the LM head (``model.transformer`` of GPT-2, ``model.model`` of Llama), through a
    peft wrapper (whose own ``.model`` is the whole causal LM, not its body)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix)


def rrhf_forward(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    length_penalty: float = 1.0,
    response_logits_only: bool = True,
    share_query_prefix: bool = False,
) -> RRHFForward:
    """Log pi of every response token and the scores p_i, in ONE forward over the flattened (B*K, T) rows.

    The shift happens here and only here: the logits at position t-1 predict ``input_ids[..., t]``, and
    ``token_logp[..., t]`` holds that log-probability (0 where ``response_mask`` is False, incl. position 0).
    Padded slots (``slot_mask`` False) are not run through the model; their scores are 0.

    Args:
        model: a Hugging Face causal LM (or a peft LoRA wrapper of one), on the batch's device.
        batch: ``build_rrhf_batch`` output (tensors on the model's device).
        length_penalty: alpha in Eq. 1.
        response_logits_only: apply the LM head only at positions that predict response tokens (default; assumes
            logits = ``get_output_embeddings()(last hidden state)``, true for GPT-2, Pythia, OPT, Llama, Qwen;
            not for models that rescale or soft-cap logits, nor for peft prompt-learning methods). False runs the
            plain ``model(...).logits`` over every position; so does a DDP-wrapped model (multi-process training),
            whose gradients are all-reduced only through its own forward.
        share_query_prefix: run each query through the model ONCE and its K responses on top of its key/value
            cache (two forwards instead of one over K copies of the query; same assumption on the LM head).
            Identical results in eval mode; in training mode the query's dropout masks are shared by its K
            responses instead of drawn per row. Needs the batch layout of ``collate_rrhf`` (the same query tokens
            in every row of a query) and a model that takes ``past_key_values`` and ``position_ids``.
    Returns:
        ``RRHFForward(token_logp (B, K, T) float32, scores (B, K) float32)``.
    """
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        # DDP all-reduces gradients only through its own forward, so under `accelerate launch` with several processes
        # the two shortcuts (which call the backbone and the LM head directly) give way to the plain model(...) path
        response_logits_only = share_query_prefix = False
    if share_query_prefix:
        if not response_logits_only:
            raise ValueError("share_query_prefix needs response_logits_only=True")
        token_logp = _prefix_shared_token_logp(model, batch)  # (B, K, T)
        return RRHFForward(token_logp, sequence_scores(token_logp, batch["response_mask"], length_penalty))  # Eq. 1
    input_ids, attention_mask, response_mask = batch["input_ids"], batch["attention_mask"], batch["response_mask"]
    B, K, T = input_ids.shape
    slot_mask = batch.get("slot_mask", response_mask.any(-1))  # (B, K)
    if response_mask[..., 0].any():
        raise ValueError("position 0 cannot be a response token: nothing predicts it")
    rows = slot_mask.flatten().nonzero().flatten()  # (N,) indices of real rows in the (B*K) layout
    ids = input_ids.reshape(B * K, T)[rows]  # (N, T)
    attn = attention_mask.reshape(B * K, T)[rows]  # (N, T)
    target = response_mask.reshape(B * K, T)[rows, 1:]  # (N, T-1): True where position t-1 predicts a response token
    labels = ids[:, 1:]  # (N, T-1) the single shift: logits[:, t-1] predict ids[:, t]
    if response_logits_only:
        backbone = _backbone(model)
        hidden = backbone(input_ids=ids, attention_mask=attn)[0]  # (N, T, D) last hidden state
        h = hidden[:, :-1][target]  # (M, D) only the M positions that predict response tokens
        logits = model.get_output_embeddings()(h)  # (M, V)
        picked = token_logprobs(logits.unsqueeze(0), labels[target].unsqueeze(0)).squeeze(0)  # (M,)
        shifted = torch.zeros(target.shape, dtype=picked.dtype, device=picked.device).masked_scatter(target, picked)
    else:
        logits = model(input_ids=ids, attention_mask=attn).logits  # (N, T, V)
        shifted = token_logprobs(logits[:, :-1], labels)  # (N, T-1)
        shifted = torch.where(target, shifted, torch.zeros_like(shifted))  # (N, T-1) zero outside responses
    real = F.pad(shifted, (1, 0))  # (N, T): token_logp[:, t] = log pi(ids[:, t] | ids[:, <t])
    token_logp = real.new_zeros(B * K, T).index_put((rows,), real).reshape(B, K, T)  # (B, K, T)
    return RRHFForward(token_logp, sequence_scores(token_logp, response_mask, length_penalty))  # Eq. 1


def _prefix_shared_token_logp(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``rrhf_forward(share_query_prefix=True)``: queries once (left-padded, cached), then all responses on top."""
    input_ids, response_mask = batch["input_ids"], batch["response_mask"]  # masks are rebuilt from the lengths
    B, K, T = input_ids.shape
    slot_mask = batch.get("slot_mask", response_mask.any(-1))  # (B, K)
    q_len = response_mask.long().argmax(-1)  # (B, K) first response position = query length of each row
    first = slot_mask.long().argmax(-1)  # (B,) a real slot of each query
    q_len_b = q_len[torch.arange(B), first]  # (B,)
    same_len = torch.where(slot_mask, q_len == q_len_b[:, None], torch.ones_like(slot_mask))  # (B, K)
    in_query = torch.arange(T, device=input_ids.device) < q_len_b[:, None, None]  # (B, 1, T)
    same_ids = ((input_ids == input_ids[torch.arange(B), first][:, None]) | ~in_query).all(-1) | ~slot_mask  # (B, K)
    if not bool((same_len & same_ids).all()):
        raise ValueError("share_query_prefix needs the same query tokens in every row of a query (collate_rrhf)")
    rows = slot_mask.flatten().nonzero().flatten()  # (N,) real rows in the (B*K) layout
    q_of_row = rows // K  # (N,) query index of each real row
    device = input_ids.device
    # 1) the B queries, left-padded so that every query ends at position Lq - 1
    Lq = int(q_len_b.max())
    left = Lq - q_len_b  # (B,) padding in front of each query
    cols = torch.arange(Lq, device=device)[None, :] - left[:, None]  # (B, Lq) source column, < 0 on padding
    q_mask = cols >= 0  # (B, Lq)
    q_ids = input_ids[torch.arange(B), first].gather(1, cols.clamp_min(0))  # (B, Lq)
    q_pos = (q_mask.long().cumsum(-1) - 1).clamp_min(0)  # (B, Lq) positions 0.. of the real tokens
    backbone = _backbone(model)
    cache_arg, cache_attr = cache_kwarg(backbone)  # "cache" in transformers 5.x, "past_key_values" before
    out = backbone(input_ids=q_ids, attention_mask=q_mask.long(), position_ids=q_pos, use_cache=True)
    h_last = out[0][:, -1]  # (B, D) predicts each query's first response token
    cache = getattr(out, cache_attr)
    cache.reorder_cache(q_of_row)  # (B, ...) -> (N, ...): each real row gets its query's keys/values
    # 2) the N responses, right-padded, on top of their query's cache
    r_mask = response_mask.reshape(B * K, T)[rows]  # (N, T)
    r_len = r_mask.sum(-1)  # (N,)
    Lr = int(r_len.max())
    r_cols = q_len.reshape(B * K)[rows][:, None] + torch.arange(Lr, device=device)[None, :]  # (N, Lr)
    r_valid = torch.arange(Lr, device=device)[None, :] < r_len[:, None]  # (N, Lr)
    r_ids = input_ids.reshape(B * K, T)[rows].gather(1, r_cols.clamp_max(T - 1))  # (N, Lr)
    r_pos = q_len_b[q_of_row][:, None] + torch.arange(Lr, device=device)[None, :]  # (N, Lr)
    full_mask = torch.cat([q_mask[q_of_row], r_valid], dim=1).long()  # (N, Lq + Lr)
    h_r = backbone(input_ids=r_ids, attention_mask=full_mask, position_ids=r_pos, use_cache=True,
                   **{cache_arg: cache})[0]  # (N, Lr, D)
    # 3) the hidden state before each response token predicts it: the query's last, then the response's own
    h_pred = torch.cat([h_last[q_of_row][:, None], h_r[:, :-1]], dim=1)  # (N, Lr, D)
    logits = model.get_output_embeddings()(h_pred[r_valid])  # (M, V) response positions only
    picked = token_logprobs(logits.unsqueeze(0), r_ids[r_valid].unsqueeze(0)).squeeze(0)  # (M,)
    real = torch.zeros(r_mask.shape, dtype=picked.dtype, device=device).masked_scatter(r_mask, picked)  # (N, T)
    return real.new_zeros(B * K, T).index_put((rows,), real).reshape(B, K, T)  # (B, K, T)


@torch.no_grad()
def rrhf_score(
    model: torch.nn.Module,
    tokenizer,
    query: str,
    responses: Sequence[str],
    length_penalty: float = 1.0,
    max_length: int | None = None,
) -> list[float]:
    """Use a (RRHF-trained) language model as a reward model: p_i of Eq. 1 for each response (paper §3.2, Table 5).

    Args:
        model: causal LM; its train/eval mode is restored afterwards (scoring runs in eval mode, no dropout).
        tokenizer: its tokenizer.
        query: the prompt, already formatted.
        responses: K candidate responses.
        length_penalty: alpha in Eq. 1.
        max_length: truncation length; default the model's context size.
    Returns:
        K floats; higher means the model prefers that response.
    """
    if max_length is None:
        max_length = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in build_rrhf_batch(tokenizer, [query], [list(responses)], max_length).items()}
    was_training = model.training
    model.eval()
    try:
        scores = rrhf_forward(model, batch, length_penalty).scores  # (1, K)
    finally:
        model.train(was_training)
    return scores[0].tolist()


# ----------------------------------------------------------------------------------------------------------------
# The reference formulation, restated for parity tests and the benchmark
# ----------------------------------------------------------------------------------------------------------------

def reference_inputs(batch: dict[str, torch.Tensor], query_index: int) -> dict[str, torch.Tensor]:
    """One query of a labcore batch in the reference collator's format: its real rows only, padded to its own
    longest row, with labels PRE-SHIFTED (``labels[t] = input_ids[t + 1]`` on response tokens, else -100).

    Args:
        batch: ``build_rrhf_batch`` / ``collate_rrhf`` output with ``rewards``.
        query_index: which query b.
    Returns:
        dict with input_ids, attention_mask, labels (K_b, T_b) and rewards (K_b,).
    """
    real = batch["slot_mask"][query_index]  # (K,)
    ids = batch["input_ids"][query_index][real]  # (K_b, T)
    attn = batch["attention_mask"][query_index][real]  # (K_b, T)
    resp = batch["response_mask"][query_index][real]  # (K_b, T)
    T_b = int(attn.sum(-1).max())
    ids, attn, resp = ids[:, :T_b], attn[:, :T_b], resp[:, :T_b]  # (K_b, T_b) pad to this query's longest row
    labels = torch.full_like(ids, IGNORE_INDEX)  # (K_b, T_b)
    labels[:, :-1] = torch.where(resp[:, 1:], ids[:, 1:], torch.full_like(ids[:, 1:], IGNORE_INDEX))
    return dict(input_ids=ids, attention_mask=attn, labels=labels, rewards=batch["rewards"][query_index][real])


def reference_rrhf_step_loss(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    rewards: torch.Tensor,
    length_penalty: float = 1.0,
    rrhf_weight: float = 1.0,
) -> RRHFLoss:
    """The reference RRHFTrainer.compute_loss for ONE query, restated (parity tests, benchmark baseline).

    Full-vocabulary ``log_softmax`` of the logits, a ``clone`` of it, a gather at the pre-shifted labels, scores
    sum / length^alpha, the pairwise hinge summed, and the SFT term as the mean over the best row's whole padded
    length (masked zeros included). The caller's labels are not modified (the reference overwrites -100 in place).

    Args:
        model: causal LM.
        input_ids, attention_mask: (K, T) the K responses of one query.
        labels: (K, T) pre-shifted: labels[t] is the token at t + 1 on response tokens, -100 elsewhere.
        rewards: (K,) rewards.
        length_penalty: alpha in Eq. 1.
        rrhf_weight: weight on L_rank.
    Returns:
        ``RRHFLoss(loss, rank, sft)``.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (K, T, V)
    logp = F.log_softmax(logits, dim=-1)  # (K, T, V) the full-vocabulary tensor (fp32 under autocast)
    mask = (labels != IGNORE_INDEX).float()  # (K, T)
    safe_labels = labels.masked_fill(labels == IGNORE_INDEX, 0)  # (K, T)
    logit_label = logp.clone().gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1) * mask  # (K, T)
    scores = logit_label.sum(-1) / mask.sum(-1) ** length_penalty  # (K,) Eq. 1
    diff = scores.unsqueeze(0) - scores.unsqueeze(-1)  # (K, K): [a, b] = p_b - p_a
    rw_diff = rewards.unsqueeze(0) - rewards.unsqueeze(-1)  # (K, K): [a, b] = r_b - r_a
    rank = -diff[(rw_diff > 0) & (diff < 0)].sum()  # Eq. 2
    sft = -logit_label[torch.argmax(rewards)].mean()  # Eq. 3-4, mean over the padded row
    return RRHFLoss(rrhf_weight * rank + sft, rank, sft)  # Eq. 5
