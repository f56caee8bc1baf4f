"""RRHF in practice: response collection (the sampling policies of Table 1), the training loop, presets, the CLI and
the tiny-world comparison table.

Yuan et al. 2023, "RRHF: Rank Responses to Align Language Models with Human Feedback without tears",
arXiv 2304.05302. The math (Eq. 1-5, the collator, the forward) is in :mod:`labcore.rrhf`, which a student reads
beside the paper; this module is the glue around it (kept apart so that ``rrhf.py`` stays the math).

    collect      for each query x, responses y_1..y_k from any mix of sources (policy samples, beam / diverse beam
                 search, dataset responses, another model, hand-written), identical ones dropped, r_i = R(x, y_i);
                 written as RRHF JSONL {"query", "responses", "scores"} (``labcore.datasets.load_rrhf`` reads it)
    train_rrhf   AdamW on L = rrhf_weight * L_rank + L_ft (Eq. 5) through ``labcore.training.Learner`` (LoRA or full,
                 gradient accumulation, bf16 autocast on a GPU, clipping), evaluation rows in OUT/metrics.jsonl,
                 checkpoints and exact resume, the policy in OUT/final
    policies     BP = beam search by the initial model + dataset responses; DP = diverse beam search (4 groups of
                 one beam, diversity penalty 1.0) + dataset responses; D = samples of the initial model only;
                 IP-n = iterate: collect again with the (n-1)-th trained model, train on, n rounds in all

Deliberate deviations:
  * Diverse beam search. transformers 5 moved group beam search out of the library (to the Hub repository
    ``transformers-community/group-beam-search``, loaded with ``trust_remote_code``), so it is unusable offline.
    The paper's setting (num_beams 4 = num_beam_groups 4: ONE beam per group) is Hamming-diverse greedy decoding:
    group g takes argmax_v log pi(v) - diversity_penalty * #{groups < g that chose v at this step}
    (Vijayakumar et al. 2016). :class:`HammingDiversity` restates it as a logits processor under plain greedy
    decoding. Difference to HF's group beam search: a group ends at its first EOS (HF's one-beam group keeps
    searching and returns its best length-normalised finished hypothesis). Temperature does not apply to search.
  * Identical responses of a query are collected once (exact string equality, first source wins): the ranking loss
    of a duplicated pair is 0 but it would be counted twice in the SFT target choice and the batch. Empty responses
    are dropped. Duplicate queries in the prompt list are collected once.
  * IP-n continues training the policy of the previous round (its LoRA adapter or weights) on freshly collected
    responses of the same queries, with a fresh optimiser and schedule per round.
  * The loss reduction over queries is ``batch_reduction="mean"`` (the Learner divides by the accumulation steps),
    so a step's loss is the mean over its ``queries_per_step`` queries, as in the reference's 8 GPUs x 8 steps.
  * Dropout randomness is re-seeded from (seed, round, epoch, micro-batch) before every micro-batch, so an
    evaluation or a checkpoint in between never changes training, and resume is exact.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from labcore.rrhf import RRHFConfig, build_rrhf_batch, rrhf_forward, rrhf_loss
from labcore import DATA_DIR, fast_mode
from labcore.datasets import append_jsonl, read_jsonl as read_metrics  # metrics.jsonl rows

POLICIES = ("BP", "DP", "D")
DECODINGS = ("sample", "beam", "diverse_beam")
RewardFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]


# ----------------------------------------------------------------------------------------------------------------
# Response sources: each a small callable prompts -> one list of responses per prompt
# ----------------------------------------------------------------------------------------------------------------
class HammingDiversity(LogitsProcessor):
    """Diverse beam search with one beam per group (Vijayakumar et al. 2016), as a greedy-decoding logits processor.

    Rows come in consecutive groups of ``num_groups`` copies of a prompt. At every step group g scores
    log pi(v) - diversity_penalty * c_g(v), where c_g(v) counts the groups before g (still generating) that picked
    token v at this step; greedy decoding then takes the argmax. Group 0 is plain greedy decoding.
    """

    def __init__(self, num_groups: int, diversity_penalty: float, stop_ids: Sequence[int]):
        if num_groups < 1 or diversity_penalty < 0:
            raise ValueError("need num_groups >= 1 and diversity_penalty >= 0")
        self.num_groups, self.diversity_penalty = num_groups, diversity_penalty
        self.stop_ids = torch.tensor(sorted({int(i) for i in stop_ids if i is not None}), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        N, V = scores.shape
        G = self.num_groups
        if N % G:
            raise ValueError(f"{N} rows are not whole groups of {G}")
        logp = scores.float().log_softmax(-1).view(N // G, G, V)  # (b, G, V)
        # a row whose last token is EOS / padding has finished (the prompt itself never ends with one)
        active = ~torch.isin(input_ids[:, -1], self.stop_ids.to(input_ids.device))  # (N,)
        active = active.view(N // G, G).to(logp.dtype)  # (b, G)
        counts = torch.zeros(N // G, V, dtype=logp.dtype, device=logp.device)  # (b, V) c_g(v)
        out = torch.empty_like(logp)  # (b, G, V)
        rows = torch.arange(N // G, device=logp.device)
        for g in range(G):
            out[:, g] = logp[:, g] - self.diversity_penalty * counts  # Hamming diversity penalty
            counts[rows, out[:, g].argmax(-1)] += active[:, g]
        return out.view(N, V).to(scores.dtype)  # (N, V)


@torch.no_grad()
def diverse_beam_search(model, tokenizer, prompts: Sequence[str], *, num_groups: int = 4,
                        diversity_penalty: float = 1.0, max_new_tokens: int = 128, stop_at_turn: bool = True,
                        batch_size: int = 16) -> list[list[str]]:
    """``num_groups`` diverse responses per prompt (DP of Table 1: 4 beams in 4 groups, penalty 1.0).

    Args:
        prompts: formatted prompts.
        num_groups: responses per prompt (one beam per group).
        diversity_penalty: lambda of the Hamming penalty.
        max_new_tokens, stop_at_turn: as in :func:`labcore.generation.generate`.
        batch_size: prompts per forward batch (each brings ``num_groups`` rows).
    Returns:
        one list of ``num_groups`` responses per prompt (group order).
    """
    from labcore.generation import generate

    stop = HammingDiversity(num_groups, diversity_penalty, [tokenizer.eos_token_id, tokenizer.pad_token_id])
    repeated = [p for p in prompts for _ in range(num_groups)]  # (P * G,) groups consecutive
    rows = generate(model, tokenizer, repeated, num_samples=1, max_new_tokens=max_new_tokens, do_sample=False,
                    stop_at_turn=stop_at_turn, batch_size=batch_size * num_groups,
                    logits_processor=LogitsProcessorList([stop]))
    texts = [r["response"] for r in rows]
    return [texts[i * num_groups:(i + 1) * num_groups] for i in range(len(prompts))]


@dataclass
class PolicySamples:
    """Responses from a causal LM: the initial model, the model being trained (IP-n), or another model."""
    model: torch.nn.Module
    """The LM (plain or peft)."""
    tokenizer: object
    """Its tokenizer."""
    num_samples: int = 4
    """Responses per prompt (beams / groups for search)."""
    decoding: str = "sample"
    """'sample', 'beam' (beam search, num_samples beams returned) or 'diverse_beam' (one beam per group)."""
    temperature: float = 0.8
    """Sampling temperature (DP in the paper: 0.8; ignored by search)."""
    top_k: int = 0
    """Top-k filter of sampling (0 = off)."""
    top_p: float = 1.0
    """Nucleus mass of sampling."""
    num_beams: int = 4
    """Beam width of 'beam' (at least num_samples)."""
    diversity_penalty: float = 1.0
    """Hamming penalty of 'diverse_beam'."""
    max_new_tokens: int = 128
    """New-token limit (paper: 128)."""
    stop_at_turn: bool = True
    """Cut at a new dialogue turn (False for plain continuation)."""
    batch_size: int = 32
    """Prompts per generation batch."""
    seed: int = 0
    """Sampling seed."""
    name: str = "policy"
    """Name recorded with every response."""

    def __post_init__(self):
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {DECODINGS}, got {self.decoding!r}")
        if self.num_samples < 1 or self.max_new_tokens < 1:
            raise ValueError("num_samples and max_new_tokens must be >= 1")

    def __call__(self, prompts: Sequence[str]) -> list[list[str]]:
        from labcore.generation import generate

        K = self.num_samples
        if self.decoding == "diverse_beam":
            return diverse_beam_search(self.model, self.tokenizer, prompts, num_groups=K,
                                       diversity_penalty=self.diversity_penalty, max_new_tokens=self.max_new_tokens,
                                       stop_at_turn=self.stop_at_turn, batch_size=self.batch_size)
        if self.decoding == "beam":
            rows = generate(self.model, self.tokenizer, prompts, num_samples=K, max_new_tokens=self.max_new_tokens,
                            do_sample=False, num_beams=max(self.num_beams, K), stop_at_turn=self.stop_at_turn,
                            batch_size=self.batch_size)
        else:
            rows = generate(self.model, self.tokenizer, prompts, num_samples=K, max_new_tokens=self.max_new_tokens,
                            temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                            stop_at_turn=self.stop_at_turn, batch_size=self.batch_size, seed=self.seed)
        texts = [r["response"] for r in rows]  # prompt-major
        return [texts[i * K:(i + 1) * K] for i in range(len(prompts))]


@dataclass
class FixedResponses:
    """Responses known in advance: a dataset's (chosen/rejected, styled, review continuations), another model's
    saved samples, or hand-written ones. Prompts it does not know get none."""
    responses: dict[str, list[str]]
    """query -> its responses (exactly as they follow the query: usually with a leading space)."""
    name: str = "dataset"
    """Name recorded with every response."""

    def __call__(self, prompts: Sequence[str]) -> list[list[str]]:
        return [list(self.responses.get(p, [])) for p in prompts]

    @classmethod
    def from_rrhf(cls, path: str | Path, name: str = "dataset") -> "FixedResponses":
        """The responses of an RRHF JSONL file (e.g. ``data/dialogues/rrhf_train.jsonl.gz``); scores are dropped:
        :func:`collect` scores every response with ITS reward."""
        from labcore.datasets import load_rrhf

        out: dict[str, list[str]] = {}
        for rec in load_rrhf(path):
            out.setdefault(rec["query"], []).extend(rec["responses"])
        return cls(out, name)


def collect(prompts: Sequence[str], sources: Sequence[Callable], reward: RewardFn, *, reward_batch_size: int = 256,
            progress: bool = False) -> list[dict]:
    """RRHF data: for each query, the responses of every source, de-duplicated, scored by the reward.

    Args:
        prompts: queries (formatted). Repeated queries are collected once (first occurrence).
        sources: callables ``prompts -> list (per prompt) of response lists`` (:class:`PolicySamples`,
            :class:`FixedResponses`, or any function); a ``name`` attribute is recorded per response.
        reward: ``fn(prompts, responses) -> (N,)``; r_i = R(x, y_i).
        reward_batch_size: responses per reward call.
        progress: print one line per source.
    Returns:
        records ``{"query", "responses", "scores", "sources"}`` in prompt order; a query left with no (non-empty)
        response is skipped. Identical responses of a query are kept once (exact string equality, first source).
    """
    queries = list(dict.fromkeys(prompts))  # distinct, in order
    merged: list[dict[str, str]] = [{} for _ in queries]  # response -> source name, insertion-ordered
    for source in sources:
        name = getattr(source, "name", getattr(source, "__name__", "source"))
        t0 = time.time()
        per_query = source(queries)
        if len(per_query) != len(queries):
            raise ValueError(f"source {name!r} returned {len(per_query)} lists for {len(queries)} queries")
        for seen, ys in zip(merged, per_query):
            for y in ys:
                if y.strip() and y not in seen:
                    seen[y] = name
        if progress:
            print(f"collect: {name} ({time.time() - t0:.0f}s)", file=sys.stderr)
    flat_q = [q for q, seen in zip(queries, merged) for _ in seen]
    flat_y = [y for seen in merged for y in seen]
    scores: list[float] = []
    for i in range(0, len(flat_y), reward_batch_size):
        scores += [float(s) for s in reward(flat_q[i:i + reward_batch_size], flat_y[i:i + reward_batch_size])]
    records, pos = [], 0
    for q, seen in zip(queries, merged):
        if seen:
            records.append({"query": q, "responses": list(seen), "scores": scores[pos:pos + len(seen)],
                            "sources": list(seen.values())})
        pos += len(seen)
    return records


def write_rrhf(path: str | Path, records: Sequence[dict]) -> Path:
    """Write RRHF records as JSONL (``.gz`` ok); ``labcore.datasets.load_rrhf`` reads them back."""
    from labcore.datasets import write_jsonl

    return write_jsonl(path, records)


def policy_sources(policy: str, model, tokenizer, dataset: FixedResponses | None, run: "RRHFRunConfig",
                   round_: int = 1, seed: int = 0) -> list[Callable]:
    """The sources of a Table 1 policy. BP: beam search by ``model`` + dataset responses; DP: diverse beam search
    + dataset responses; D: samples of ``model`` only. For IP-n, ``model`` is the previous round's policy."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    decoding = {"BP": "beam", "DP": "diverse_beam", "D": "sample"}[policy]
    sampler = PolicySamples(model, tokenizer, num_samples=run.num_samples, decoding=decoding,
                            temperature=run.temperature, top_k=run.top_k, num_beams=run.num_beams,
                            diversity_penalty=run.diversity_penalty, max_new_tokens=run.max_new_tokens,
                            stop_at_turn=run.stop_at_turn, batch_size=run.gen_batch_size,
                            seed=_seed(seed, round_, 7), name=f"{decoding}@{round_ - 1}")
    return [sampler] if policy == "D" or dataset is None else [sampler, dataset]


# ----------------------------------------------------------------------------------------------------------------
# Evaluation helpers
# ----------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def ranking_accuracy(model, tokenizer, records: Sequence[dict], *, length_penalty: float = 1.0,
                     max_length: int = 192, batch_size: int = 8) -> float | None:
    """Pairwise accuracy of p_i (Eq. 1) against the rewards: the share of pairs with r_i < r_j where p_i < p_j.

    Args:
        records: RRHF records (``query``, ``responses``, ``scores``); pairs with equal rewards are not counted.
        length_penalty, max_length: as in training.
        batch_size: queries per forward.
    Returns:
        accuracy in [0, 1], or None without any pair.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    right = total = 0
    try:
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            batch = build_rrhf_batch(tokenizer, [r["query"] for r in chunk], [r["responses"] for r in chunk],
                                     max_length, [r["scores"] for r in chunk])
            batch = {k: v.to(device) for k, v in batch.items()}
            p = rrhf_forward(model, batch, length_penalty).scores  # (B, K)
            r = batch["rewards"]  # (B, K), NaN on padded slots
            pairs = r.unsqueeze(-1) < r.unsqueeze(-2)  # (B, K, K): r_i < r_j
            right += int((pairs & (p.unsqueeze(-1) < p.unsqueeze(-2))).sum())
            total += int(pairs.sum())
    finally:
        model.train(was_training)
    return right / total if total else None


def _evaluate(policy, tok, eval_task, eval_config, reward_fn, gold_fn, heldout, config: RRHFConfig) -> dict:
    """RAFT's held-out evaluation (same prompts, seed and fields) plus the ranking accuracy of p_i."""
    from labcore.raft import evaluate

    out = evaluate(policy, tok, eval_task, reward_fn, eval_config, gold_fn) if eval_task is not None else {}
    if heldout:
        out["rank_acc"] = ranking_accuracy(policy, tok, heldout, length_penalty=config.length_penalty,
                                           max_length=config.max_length, batch_size=config.per_device_batch_size)
    return out


# ----------------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------------
def _seed(*parts: int) -> int:
    """A deterministic 31-bit seed from integers (seed, round, epoch, micro-batch, ...)."""
    import numpy as np

    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def _optim(config: RRHFConfig, total_steps: int):
    from labcore.training import OptimConfig

    if config.lr_scheduler == "linear":
        raise ValueError("labcore.training has no linear schedule; use lr_scheduler='cosine' or 'constant'")
    mp = {"auto": "auto", "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}.get(config.dtype, "no")
    warmup = int(round(config.warmup_ratio * total_steps)) if config.lr_scheduler != "constant" else 0
    return OptimConfig(lr=config.learning_rate, weight_decay=config.weight_decay, grad_accum=config.gradient_accumulation_steps,
                       max_grad_norm=config.max_grad_norm or None,
                       scheduler="cosine" if config.lr_scheduler == "cosine" else "constant",
                       warmup_steps=warmup, total_steps=max(1, total_steps), mixed_precision=mp,
                       cpu=str(config.device) == "cpu")


def build_policy(model: str, config: RRHFConfig, start_from: str | Path | None = None):
    """Load the policy to train (fp32 weights; the Learner's autocast does bf16 on a GPU).

    Args:
        model: preset or directory of the base model.
        config: LoRA settings.
        start_from: a previous round's policy (its adapter directory with LoRA, else its model directory).
    Returns:
        (model with trainable parameters, tokenizer).
    """
    from labcore.models import add_lora, load_model

    if start_from is not None and not config.use_lora:
        policy, tok = load_model(str(start_from), device=config.device, dtype="float32")
    elif start_from is not None:
        policy, tok = load_model(model, adapter=str(start_from), trainable_adapter=True, device=config.device,
                                 dtype="float32")
    else:
        policy, tok = load_model(model, device=config.device, dtype="float32")
        if config.use_lora:
            targets = list(config.lora_target_modules) if config.lora_target_modules else None
            policy = add_lora(policy, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                              target_modules=targets)
    if not config.use_lora:
        for p in policy.parameters():
            p.requires_grad_(True)
    return policy, tok


def _save_final(policy, tok, final: Path, model: str) -> Path:
    from labcore.models import save_policy

    save_policy(policy, tok, final)
    adapter_cfg = final / "adapter_config.json"
    if adapter_cfg.exists():  # name the base as the user did ("tiny"), not by this machine's absolute path
        meta = json.loads(adapter_cfg.read_text())
        meta["base_model_name_or_path"] = model
        adapter_cfg.write_text(json.dumps(meta, indent=2))
    return final


def train_rrhf(config: RRHFConfig, records: Sequence[dict], out_dir: str | Path, resume: bool = False,
               eval_task=None, *, model: str = "tiny", start_from: str | Path | None = None, eval_config=None,
               reward_fn: RewardFn | None = None, gold_fn: RewardFn | None = None,
               heldout: Sequence[dict] | None = None, round_: int = 1, eval_every: int = 0,
               checkpoint_every: int = 0, final_dir: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Train a policy with RRHF (Eq. 5) on collected records; evaluate, checkpoint, save the final policy.

    Args:
        config: training settings (:class:`labcore.rrhf.RRHFConfig`).
        records: RRHF records ``{"query", "responses", "scores"}`` (``collect`` output or ``load_rrhf``).
        out_dir: run folder: ``metrics.jsonl``, ``checkpoint/``, ``final/``, ``rrhf_config.json``.
        resume: continue from ``out_dir/checkpoint`` when it belongs to this round; ends with the same weights and
            metrics as an uninterrupted run.
        eval_task: a :class:`labcore.raft.RAFTTask` (held-out prompts, perplexity references, gold) evaluated at
            step 0 of round 1 and every ``eval_every`` optimiser steps (0 = after every epoch); needs
            ``eval_config`` (the RAFTConfig whose sampling settings the evaluation uses) and ``reward_fn``.
        model: base model preset or directory.
        start_from: previous round's policy (IP-n), see :func:`build_policy`.
        reward_fn: reward of the evaluation samples; gold_fn: optional gold rubric (dialogues).
        heldout: RRHF records of held-out queries for ``rank_acc`` (ranking accuracy of p_i against rewards).
        round_: IP-n round (1-based), written as ``iteration`` in every row.
        eval_every, checkpoint_every: optimiser steps between evaluations / checkpoints (0 = end of every epoch).
            Checkpoints are only written at optimiser-step boundaries.
        final_dir: where the trained policy goes (default ``out_dir/final``).
        progress: progress bar.
    Returns:
        all metrics rows of ``out_dir/metrics.jsonl``.
    """
    from tqdm.auto import tqdm

    from labcore.training import Learner

    if not records:
        raise ValueError("no RRHF records to train on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path, ckpt = out / "metrics.jsonl", out / "checkpoint"
    final = Path(final_dir) if final_dir else out / "final"
    Q, A = config.per_device_batch_size, config.gradient_accumulation_steps
    n_micro = -(-len(records) // Q)  # micro-batches per epoch
    total_steps = (n_micro * config.num_epochs) // A

    torch.manual_seed(config.seed)
    policy, tok = build_policy(model, config, start_from)
    learner = Learner(policy, _optim(config, total_steps), seed=config.seed)
    policy = learner.unwrapped()
    acc = {"loss": 0.0, "rank_loss": 0.0, "sft_loss": 0.0, "train_rank_acc": 0.0, "n": 0}
    epoch0, micro0 = 0, 0
    state = None
    if resume and (ckpt / "labcore_state.json").exists():
        saved = json.loads((ckpt / "labcore_state.json").read_text())
        if saved.get("round") == round_:
            state = learner.load_checkpoint(ckpt)
            if state["rrhf_config"] != json.loads(json.dumps(asdict(config))):
                raise ValueError(f"cannot resume {out}: the RRHF config changed")
            if state["n_records"] != len(records):
                raise ValueError(f"cannot resume {out}: {state['n_records']} records then, {len(records)} now")
            epoch0, micro0, acc = state["epoch"], state["micro"], state["acc"]
            rows = read_metrics(metrics_path)[:state["n_rows"]]
            metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # drop rows after the checkpoint
            print(f"resuming {out}: round {round_}, epoch {epoch0}, micro-batch {micro0}", file=sys.stderr)
    if state is None:
        old = read_metrics(metrics_path) if metrics_path.exists() else []
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in old if r.get("iteration", 0) < round_))
        shutil.rmtree(ckpt, ignore_errors=True)
    (out / "rrhf_config.json").write_text(json.dumps(asdict(config), indent=1))

    def evaluate_row(step: int, epoch: float, t0: float) -> None:
        n = max(acc["n"], 1)
        row = {"iteration": round_, "step": step, "epoch": epoch,
               **{k: (acc[k] / n if acc["n"] else None) for k in ("loss", "rank_loss", "sft_loss", "train_rank_acc")},
               **_evaluate(policy, tok, eval_task, eval_config, reward_fn, gold_fn, heldout, config),
               "seconds": time.time() - t0}
        append_jsonl(metrics_path, row)
        acc.update(loss=0.0, rank_loss=0.0, sft_loss=0.0, train_rank_acc=0.0, n=0)
        if progress:
            shown = {k: round(v, 3) for k, v in row.items() if isinstance(v, float) and k != "seconds"}
            print(f"round {round_} step {step}: {shown}", file=sys.stderr)

    def checkpoint(epoch: int, micro: int) -> None:
        tmp = out / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        learner.save_checkpoint(tmp, extra={"round": round_, "epoch": epoch, "micro": micro, "acc": dict(acc),
                                            "n_rows": len(read_metrics(metrics_path)), "n_records": len(records),
                                            "rrhf_config": asdict(config)})
        shutil.rmtree(ckpt, ignore_errors=True)
        tmp.rename(ckpt)  # a kill never leaves a half-written checkpoint

    def loss_fn(m, batch):
        fwd = rrhf_forward(m, batch, config.length_penalty, config.response_logits_only, config.share_query_prefix)
        parts = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"], config.rrhf_weight,
                          config.sft_reduction, config.batch_reduction)  # Eq. 5
        r, p = batch["rewards"], fwd.scores.detach()  # (B, K)
        pairs = r.unsqueeze(-1) < r.unsqueeze(-2)  # (B, K, K)
        right = (pairs & (p.unsqueeze(-1) < p.unsqueeze(-2))).sum()
        return parts.loss, {"rank_loss": float(parts.rank.detach()), "sft_loss": float(parts.sft.detach()),
                            "train_rank_acc": float(right / pairs.sum()) if pairs.any() else 1.0}

    t0 = time.time()
    if state is None and round_ == 1 and eval_task is not None:
        evaluate_row(0, 0.0, t0)  # the starting policy
        t0 = time.time()
    bar = tqdm(total=n_micro * config.num_epochs, initial=epoch0 * n_micro + micro0, desc=f"rrhf round {round_}",
               disable=not progress, leave=False)
    for epoch in range(epoch0, config.num_epochs):
        order = list(range(len(records)))
        random.Random(_seed(config.seed, round_, epoch)).shuffle(order)
        for b in range(micro0 if epoch == epoch0 else 0, n_micro):
            chunk = [records[i] for i in order[b * Q:(b + 1) * Q]]
            batch = build_rrhf_batch(tok, [r["query"] for r in chunk], [r["responses"] for r in chunk],
                                     config.max_length, [r["scores"] for r in chunk], config.min_query_tokens)
            batch = {k: v.to(learner.device) for k, v in batch.items()}
            torch.manual_seed(_seed(config.seed, round_, epoch, b))  # dropout depends on the position only
            logs = learner.step(batch, loss_fn)
            for k in ("loss", "rank_loss", "sft_loss", "train_rank_acc"):
                acc[k] += logs[k]
            acc["n"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
            if learner.micro_steps % A:
                continue  # mid-accumulation: no evaluation, no checkpoint
            step = learner.optimizer_steps
            end_of_epoch = b == n_micro - 1
            if (eval_every and step % eval_every == 0) or (not eval_every and end_of_epoch):
                evaluate_row(step, epoch + (b + 1) / n_micro, t0)
                t0 = time.time()
            if (checkpoint_every and step % checkpoint_every == 0) or (not checkpoint_every and end_of_epoch):
                nxt = (epoch, b + 1) if b + 1 < n_micro else (epoch + 1, 0)
                checkpoint(*nxt)
    bar.close()
    if acc["n"]:  # micro-batches since the last row (eval_every not dividing the run, or a partial window)
        evaluate_row(learner.optimizer_steps, float(config.num_epochs), t0)
    _save_final(policy, tok, final, model)
    shutil.copy(metrics_path, final / "metrics.jsonl")
    return read_metrics(metrics_path)


# ----------------------------------------------------------------------------------------------------------------
# Experiments: presets (tasks reused from labcore.raft) and the collect -> train (-> collect -> train) pipeline
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RRHFRunConfig:
    """Experiment settings around the training config: model, reward, task, sampling policy, evaluation."""
    model: str = "tiny"
    """Policy: a preset of labcore.models.PRESETS or a local Hugging Face directory."""
    reward: str = "sentiment"
    """Reward: sentiment | gold | length | a labcore reward-model directory | a HF classifier path or name."""
    task: str = "tiny-sentiment"
    """The labcore.raft preset whose task (prompts, eval prompts, ppl references, gold) and eval sampling are used."""
    policy: str = "BP"
    """Sampling policy of Table 1: BP (beam + dataset), DP (diverse beam + dataset), D (samples only)."""
    iterations: int = 1
    """Rounds of collect + train: 1 = the policy alone, n = IP-n."""
    queries: int = 256
    """Training queries (distinct, drawn once with the seed; every round re-collects the same queries)."""
    num_samples: int = 4
    """Policy responses per query (beams, diverse groups or samples)."""
    num_beams: int = 4
    """Beam width of BP."""
    diversity_penalty: float = 1.0
    """Hamming penalty of DP (paper: 1.0)."""
    temperature: float = 0.8
    """Sampling temperature of D (paper: 0.8)."""
    top_k: int = 0
    """Top-k of D (0 = off)."""
    max_new_tokens: int = 48
    """New-token limit of collected responses."""
    stop_at_turn: bool = True
    """Cut responses at a new dialogue turn (False for review continuation)."""
    dataset_responses: int = 8
    """Dataset responses per query at most (BP/DP; 0 = none)."""
    gen_batch_size: int = 32
    """Prompts per generation batch."""
    heldout_queries: int = 64
    """Held-out queries (with dataset responses) for the ranking accuracy of p_i."""
    eval_prompts: int = 128
    """Held-out prompts sampled at every evaluation (as RAFT's)."""
    ppl_examples: int = 128
    """Held-out reference responses scored for perplexity."""
    eval_every: int = 0
    """Optimiser steps between evaluations (0 = after every epoch)."""
    checkpoint_every: int = 0
    """Optimiser steps between checkpoints (0 = after every epoch)."""
    num_threads: int = 0
    """torch CPU threads (0 = torch's default)."""

    def __post_init__(self):
        checks = [(self.policy in POLICIES, f"policy must be one of {POLICIES}, got {self.policy!r}"),
                  (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
                  (self.queries >= 1, f"queries must be >= 1, got {self.queries}"),
                  (self.num_samples >= 1, f"num_samples must be >= 1, got {self.num_samples}"),
                  (self.num_beams >= 1, f"num_beams must be >= 1, got {self.num_beams}"),
                  (self.diversity_penalty >= 0, f"diversity_penalty must be >= 0, got {self.diversity_penalty}"),
                  (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
                  (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
                  (self.dataset_responses >= 0, f"dataset_responses must be >= 0, got {self.dataset_responses}"),
                  (self.heldout_queries >= 0, f"heldout_queries must be >= 0, got {self.heldout_queries}"),
                  (min(self.eval_prompts, self.gen_batch_size) >= 1, "eval_prompts and gen_batch_size must be >= 1"),
                  (min(self.eval_every, self.checkpoint_every, self.num_threads, self.ppl_examples) >= 0,
                   "eval_every, checkpoint_every, num_threads and ppl_examples must be >= 0")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def _cap(mapping: dict[str, list[str]], n: int) -> dict[str, list[str]]:
    return {q: ys[:n] for q, ys in mapping.items()}


def tiny_review_responses(split: str = "train") -> dict[str, list[str]]:
    """Review continuations of the tiny world: opening -> the rest of every review that opens that way (mixed
    labels, file order)."""
    from labcore.tinyworld import load_reviews
    from labcore.tinyworld.reviews import opening_prompt

    out: dict[str, list[str]] = {}
    for r in load_reviews(split):
        prompt = opening_prompt(r["text"])
        if len(r["text"]) > len(prompt):
            out.setdefault(prompt, []).append(r["text"][len(prompt):])
    return out


def tiny_dialogue_responses(split: str = "train") -> dict[str, list[str]]:
    """The styled responses of the tiny world's requests (``data/dialogues/rrhf_{split}.jsonl.gz``)."""
    return FixedResponses.from_rrhf(DATA_DIR / "dialogues" / f"rrhf_{split}.jsonl.gz").responses


def imdb_responses(data: str | None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """IMDB (train, held-out): the first 30 characters -> the rest of the review (RAFT's IMDB rows)."""
    from labcore.raft import _imdb_rows

    def by_prompt(rows):
        out: dict[str, list[str]] = {}
        for r in rows:
            if len(r["text"]) > 30:
                out.setdefault(r["text"][:30], []).append(r["text"][30:])
        return out

    train, test = _imdb_rows(data)
    return by_prompt(train), by_prompt(test)


def hh_responses(data: str | None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """HH-RLHF (train, held-out): prompt -> [chosen, rejected] (a local file's last 128 rows are held out)."""
    from labcore.datasets import load_preferences
    from labcore.raft import HH_TEST, HH_TRAIN, _split_heldout

    def by_prompt(rows):
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["prompt"], []).extend([r["chosen"], r["rejected"]])
        return out

    if data:
        train, test = _split_heldout(load_preferences(data), 128)
    else:
        train, test = load_preferences(HH_TRAIN), load_preferences(HH_TEST)
    return by_prompt(train), by_prompt(test)


@dataclass(frozen=True)
class RRHFPreset:
    """A named experiment: configs (fast mode shrinks them), dataset responses (train, held-out), online or not."""
    make_configs: Callable[[bool], tuple[RRHFRunConfig, RRHFConfig]]
    dataset: Callable[[str | None], tuple[dict[str, list[str]], dict[str, list[str]]]]
    online: bool
    help: str


def _shrink(run: RRHFRunConfig, cfg: RRHFConfig) -> tuple[RRHFRunConfig, RRHFConfig]:
    """Fast mode (LABCORE_FAST=1): tiny sizes."""
    run = RRHFRunConfig(**{**asdict(run), "queries": 8, "num_samples": 2, "num_beams": 2, "max_new_tokens": 8,
                           "dataset_responses": 2, "gen_batch_size": 8, "heldout_queries": 4, "eval_prompts": 8,
                           "ppl_examples": 8, "eval_every": 0, "checkpoint_every": 0})
    cfg = RRHFConfig(**{**asdict(cfg), "num_epochs": 1, "queries_per_step": 4, "per_device_batch_size": 2,
                        "max_length": min(cfg.max_length, 96)})
    return run, cfg


def _tiny_sentiment(fast: bool):
    # the RAFT tiny-sentiment setting: review openings, VADER; LoRA r 16 and lr 5e-4 as RAFT's preset
    run = RRHFRunConfig(model="tiny", reward="sentiment", task="tiny-sentiment", policy="BP", queries=256,
                        num_samples=4, max_new_tokens=48, stop_at_turn=False, dataset_responses=4,
                        gen_batch_size=64, heldout_queries=64)
    cfg = RRHFConfig(learning_rate=5e-4, num_epochs=2, queries_per_step=16, per_device_batch_size=4, max_length=96,
                     use_lora=True, lora_r=16, lora_alpha=32, seed=0)
    return _shrink(run, cfg) if fast else (run, cfg)


def _tiny_helpful(fast: bool):
    from labcore.raft import TINY_RM

    run = RRHFRunConfig(model="tiny", reward=str(TINY_RM), task="tiny-helpful", policy="BP", queries=256,
                        num_samples=4, max_new_tokens=48, stop_at_turn=True, dataset_responses=8,
                        gen_batch_size=64, heldout_queries=64)
    # lr 1e-3 (RAFT's) collapsed into word salad (ppl 66): ~36 summed pairs per query make L_rank dominate L_ft
    cfg = RRHFConfig(learning_rate=3e-4, num_epochs=2, queries_per_step=16, per_device_batch_size=4, max_length=128,
                     use_lora=True, lora_r=16, lora_alpha=32, seed=0)
    return _shrink(run, cfg) if fast else (run, cfg)


def _gpt2_imdb(fast: bool):
    # Table 10: GPT-2, DistilBERT IMDB reward, 48 new tokens, top-k 50, batch 64, 5 epochs; BP (beam + the review)
    run = RRHFRunConfig(model="gpt2", reward="lvwerra/distilbert-imdb", task="gpt2-imdb", policy="BP", queries=4096,
                        num_samples=4, top_k=50, max_new_tokens=48, stop_at_turn=False, dataset_responses=1,
                        gen_batch_size=64, heldout_queries=128, eval_prompts=256)
    cfg = RRHFConfig(num_epochs=5, queries_per_step=64, per_device_batch_size=8, max_length=192, use_lora=False)
    return _shrink(run, cfg) if fast else (run, cfg)


def _pythia_hh(fast: bool):
    # Table 2 setting on a small open model: DP (diverse beam + chosen/rejected), train.sh defaults
    run = RRHFRunConfig(model="pythia-160m", reward="weqweasdas/hh_rlhf_rm_open_llama_3b", task="gpt2-hh",
                        policy="DP", queries=4096, num_samples=4, max_new_tokens=128, stop_at_turn=True,
                        dataset_responses=2, gen_batch_size=32, heldout_queries=128, eval_prompts=256)
    cfg = RRHFConfig(queries_per_step=64, per_device_batch_size=4, max_length=192, use_lora=False)
    return _shrink(run, cfg) if fast else (run, cfg)


def _tiny_dataset(kind: str):
    def make(data: str | None):
        fn = tiny_review_responses if kind == "reviews" else tiny_dialogue_responses
        return fn("train"), fn("test")
    return make


PRESETS: dict[str, RRHFPreset] = {
    "tiny-sentiment": RRHFPreset(_tiny_sentiment, _tiny_dataset("reviews"), False,
                                 "tiny base + LoRA, review openings, VADER; BP = beam search + review continuations"),
    "tiny-helpful": RRHFPreset(_tiny_helpful, _tiny_dataset("dialogues"), False,
                               "tiny base + LoRA, dialogue requests, reward model tiny-rm; BP = beam + styled answers"),
    "gpt2-imdb": RRHFPreset(_gpt2_imdb, imdb_responses, True,
                            "GPT-2 (full), IMDB openings (Hub or --data), DistilBERT IMDB reward (Table 10)"),
    "pythia-hh": RRHFPreset(_pythia_hh, hh_responses, True,
                            "Pythia-160m (full), Anthropic HH (Hub or --data), HH reward model; DP (Table 2)"),
}


def preset_configs(name: str, fast: bool | None = None, **overrides) -> tuple[RRHFRunConfig, RRHFConfig]:
    """The (run, training) configs of a preset (fast mode when LABCORE_FAST=1), with overrides of either's fields."""
    if name not in PRESETS:
        raise ValueError(f"unknown RRHF preset {name!r}; known: {', '.join(PRESETS)}")
    run, cfg = PRESETS[name].make_configs(fast_mode() if fast is None else fast)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    run_fields = {f.name for f in fields(RRHFRunConfig)}
    cfg_fields = {f.name for f in fields(RRHFConfig)}
    unknown = set(overrides) - run_fields - cfg_fields
    if unknown:
        raise ValueError(f"unknown RRHF setting(s) {sorted(unknown)}")
    run = RRHFRunConfig(**{**asdict(run), **{k: v for k, v in overrides.items() if k in run_fields}})
    cfg = RRHFConfig(**{**asdict(cfg), **{k: v for k, v in overrides.items() if k in cfg_fields}})
    return run, cfg


@dataclass
class Experiment:
    """Everything a pipeline needs besides the configs: task, evaluation config, rewards, data sources."""
    task: object
    """labcore.raft.RAFTTask: training prompts, evaluation prompts, perplexity references, gold flag."""
    eval_config: object
    """labcore.raft.RAFTConfig: the evaluation's sampling settings (the same as RAFT's preset)."""
    reward_fn: RewardFn
    """Reward of collection and evaluation."""
    gold_fn: RewardFn | None
    """Gold rubric (dialogue tasks) or None."""
    dataset: FixedResponses | None
    """Dataset responses of the training queries (capped per query)."""
    heldout: list[dict]
    """Scored records of held-out queries for ranking accuracy."""
    queries: list[str]
    """The training queries."""


def make_experiment(preset: str, run: RRHFRunConfig, cfg: RRHFConfig, data: str | None = None,
                    reward_fn: RewardFn | None = None, fast: bool | None = None) -> Experiment:
    """Build the task (from labcore.raft), rewards, dataset responses, held-out records and training queries.

    The evaluation config is the RAFT preset's (fast mode shrinks it alike), with this run's model, reward,
    device, number of evaluation prompts and perplexity references.
    """
    from labcore.raft import PRESETS as RAFT_PRESETS, load_reward, preset_config

    eval_config = preset_config(run.task, fast=fast, model=run.model, reward=run.reward, device=cfg.device,
                                eval_prompts=run.eval_prompts, ppl_examples=run.ppl_examples, seed=cfg.seed)
    task = RAFT_PRESETS[run.task].make_task(eval_config, data)
    reward_fn = reward_fn or load_reward(eval_config)
    gold_fn = None
    if task.gold:
        from labcore.rewards import get_reward

        gold_fn = get_reward("gold")
    train_map, test_map = PRESETS[preset].dataset(data)
    dataset = FixedResponses(_cap(train_map, run.dataset_responses)) if run.dataset_responses else None
    distinct = list(dict.fromkeys(task.prompts))
    random.Random(_seed(cfg.seed, 11)).shuffle(distinct)
    queries = distinct[:run.queries]
    held_prompts = [p for p, ys in test_map.items() if len(ys) >= 2][:run.heldout_queries]  # file order
    heldout = [r for r in collect(held_prompts, [FixedResponses(_cap(test_map, 8))], reward_fn)
               if len(r["responses"]) >= 2]
    return Experiment(task, eval_config, reward_fn, gold_fn, dataset, heldout, queries)


def rrhf_pipeline(run: RRHFRunConfig, cfg: RRHFConfig, out_dir: str | Path, exp: Experiment, *,
                  records: list[dict] | None = None, resume: bool = False, start_round: int = 1,
                  start_from: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Collect with the policy's sources, train, and for IP-n repeat with the trained model.

    Round k writes ``data_{k}.jsonl`` (the collected records, reused on resume) and, before the last round,
    ``policy_{k}/``; the last round's policy is ``final/``. ``records`` (e.g. a ``--data`` RRHF file) replaces
    the first round's collection.

    Returns:
        the metrics rows.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rrhf_run.json").write_text(json.dumps(asdict(run), indent=1))
    threads = torch.get_num_threads()
    if run.num_threads:
        torch.set_num_threads(run.num_threads)
    try:
        prev = Path(start_from) if start_from else None
        for k in range(start_round, run.iterations + 1):
            last = k == run.iterations
            done = out / ("final" if last else f"policy_{k}")
            if resume and (done / "metrics.jsonl").exists():
                prev = done
                continue
            data_path = out / f"data_{k}.jsonl"
            if resume and data_path.exists():
                from labcore.datasets import load_rrhf

                recs = load_rrhf(data_path)
            elif records is not None and k == start_round:
                recs = records
                write_rrhf(data_path, recs)
            else:
                recs = _collect_round(run, cfg, exp, prev, k, progress)
                write_rrhf(data_path, recs)
            train_rrhf(cfg, recs, out, resume=resume, eval_task=exp.task, model=run.model, start_from=prev,
                       eval_config=exp.eval_config, reward_fn=exp.reward_fn, gold_fn=exp.gold_fn,
                       heldout=exp.heldout, round_=k, eval_every=run.eval_every,
                       checkpoint_every=run.checkpoint_every, final_dir=done, progress=progress)
            prev = done
        if (out / "metrics.jsonl").exists():
            _plot(out)
        return read_metrics(out / "metrics.jsonl")
    finally:
        torch.set_num_threads(threads)


def _collect_round(run: RRHFRunConfig, cfg: RRHFConfig, exp: Experiment, prev: Path | None, k: int,
                   progress: bool) -> list[dict]:
    """Collect round k's records with the previous round's policy (the initial model in round 1)."""
    from labcore.models import load_model

    if prev is None:
        model, tok = load_model(run.model, device=cfg.device)
    elif cfg.use_lora:
        model, tok = load_model(run.model, adapter=str(prev), device=cfg.device)
    else:
        model, tok = load_model(str(prev), device=cfg.device)
    sources = policy_sources(run.policy, model, tok, exp.dataset, run, round_=k, seed=cfg.seed)
    recs = collect(exp.queries, sources, exp.reward_fn, progress=progress)
    del model
    return recs


def _plot(out: Path) -> None:
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return
    rows = read_metrics(out / "metrics.jsonl")
    x = [f"{r['iteration']}:{r['step']}" for r in rows]
    panels = [("loss", ["loss", "rank_loss", "sft_loss"]), ("reward", ["eval_reward"]),
              ("ranking accuracy", ["rank_acc", "train_rank_acc"]), ("distinct-2", ["distinct_2"]), ("ppl", ["ppl"])]
    if any(r.get("gold") is not None for r in rows):
        panels.append(("gold", ["gold"]))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    for col, (_, keys) in enumerate(panels, start=1):
        for key in keys:
            fig.add_trace(go.Scatter(x=x, y=[r.get(key) for r in rows], mode="lines+markers", name=key),
                          row=1, col=col)
    fig.update_layout(title=f"RRHF: {out.name} (x = round:step)", height=380, width=300 * len(panels))
    fig.write_html(out / "metrics.html", include_plotlyjs="cdn")


# ----------------------------------------------------------------------------------------------------------------
# CLI glue: labcore rrhf
# ----------------------------------------------------------------------------------------------------------------
def add_rrhf_args(parser) -> None:
    """Options of ``labcore rrhf``."""
    parser.add_argument("--preset", required=True, choices=list(PRESETS),
                        help="; ".join(f"{k}: {v.help}" for k, v in PRESETS.items()))
    parser.add_argument("--data", default=None, help="an RRHF JSONL (query/responses/scores) to train on instead "
                        "of collecting; for the online presets also a local IMDB ('text') or HH ('chosen'/"
                        "'rejected') file standing in for the Hub")
    parser.add_argument("--out", default=None, help="run folder (default runs/rrhf-PRESET)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT (finished rounds, checkpoint)")
    parser.add_argument("--iterations", type=int, default=None, help="rounds of collect + train (IP-n); default 1")
    parser.add_argument("--policy", choices=POLICIES, default=None, help="sampling policy of Table 1 (default: "
                        "the preset's)")
    parser.add_argument("--model", default=None, help="policy: preset or local HF directory")
    parser.add_argument("--reward", default=None, help="reward name or path")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    parser.add_argument("--device", default=None, help="auto (cuda > mps > cpu), cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override any RRHFRunConfig / RRHFConfig field, e.g. --set learning_rate=1e-4 "
                             "num_epochs=3 use_lora=false")


def _parse_overrides(pairs: Sequence[str]) -> dict:
    types = {f.name: str(f.type) for f in (*fields(RRHFRunConfig), *fields(RRHFConfig))}
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types:
            raise ValueError(f"unknown RRHF field {name!r}")
        kind = types[name]
        if value.lower() in ("none", "null"):
            out[name] = None
        elif "bool" in kind:
            out[name] = value.lower() in ("1", "true", "yes")
        elif "tuple" in kind:
            out[name] = tuple(value.split(","))
        elif "int" in kind:
            out[name] = int(value)
        elif "float" in kind:
            out[name] = float(value)
        else:
            out[name] = value
    return out


def _is_rrhf_file(path: str | None) -> bool:
    if not path:
        return False
    from labcore.datasets import detect_format, iter_records

    for _, rec in iter_records(path):
        try:
            return detect_format(rec) == "rrhf"
        except ValueError:  # e.g. IMDB rows {"text", "label"}
            return False
    return False


def run_rrhf(args) -> list[dict]:
    """``labcore rrhf``: build the preset's configs (with overrides), collect (or read --data), train, report."""
    overrides = {"model": args.model, "reward": args.reward, "iterations": args.iterations, "policy": args.policy,
                 "seed": args.seed, "device": args.device, "num_threads": args.threads,
                 **_parse_overrides(args.set or [])}
    run, cfg = preset_configs(args.preset, **overrides)
    rrhf_file = _is_rrhf_file(args.data)
    exp = make_experiment(args.preset, run, cfg, None if rrhf_file else args.data)
    records = None
    if rrhf_file:
        from labcore.datasets import load_rrhf

        records = load_rrhf(args.data)
    out = Path(args.out or f"runs/rrhf-{args.preset}")
    rows = rrhf_pipeline(run, cfg, out, exp, records=records, resume=args.resume)
    print(metrics_table({args.preset: rows}))
    flag = "--adapter" if cfg.use_lora else "--model"
    print(f"final policy: {out / 'final'}  (labcore generate --model {run.model} {flag} {out / 'final'} ...)",
          file=sys.stderr)
    return rows


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def metrics_table(runs: dict[str, list[dict]]) -> str:
    """Markdown: the first and last rows of RRHF runs (reward, gold, perplexity, distinct-2, ranking accuracy)."""
    lines = ["| run | row | eval reward | gold | perplexity | distinct-2 | mean length | rank acc |",
             "|---|---|---|---|---|---|---|---|"]
    for name, rows in runs.items():
        for label, r in (("start", rows[0]), (f"round {rows[-1]['iteration']}, step {rows[-1]['step']}", rows[-1])):
            lines.append(f"| {name} | {label} | {_fmt(r.get('eval_reward'))} | {_fmt(r.get('gold'))} | "
                         f"{_fmt(r.get('ppl'), 2)} | {_fmt(r.get('distinct_2'))} | {_fmt(r.get('mean_length'), 1)} | "
                         f"{_fmt(r.get('rank_acc'))} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# The tiny-world comparison: labcore compare
# ----------------------------------------------------------------------------------------------------------------
COMPARE_TASKS = ("tiny-sentiment", "tiny-helpful")
SHIPPED_RAFT = {"tiny-sentiment": DATA_DIR / "models" / "raft-sentiment",
                "tiny-helpful": DATA_DIR / "models" / "raft-helpful"}
TABLE_BEGIN, TABLE_END = "<!-- compare-table:begin -->", "<!-- compare-table:end -->"


def _eval_policy(model_name: str, adapter: str | Path | None, exp: Experiment, cfg: RRHFConfig) -> dict:
    from labcore.models import load_model

    policy, tok = load_model(model_name, adapter=str(adapter) if adapter else None, device=cfg.device)
    return _evaluate(policy, tok, exp.task, exp.eval_config, exp.reward_fn, exp.gold_fn, exp.heldout, cfg)


def _sft_best(run: RRHFRunConfig, cfg: RRHFConfig, records: list[dict], out: Path, exp: Experiment) -> dict:
    """The "SFT on the best response" baseline: sft_epochs on (x, y_{i'}) with RRHF's optimiser settings."""
    from labcore.sft import sft_epochs
    from labcore.training import Learner

    pairs = [(r["query"], r["responses"][max(range(len(r["scores"])), key=r["scores"].__getitem__)])
             for r in records]  # Eq. 3: i' = argmax_i r_i (first on ties)
    torch.manual_seed(cfg.seed)
    policy, tok = build_policy(run.model, cfg)
    n_micro = -(-len(pairs) // cfg.per_device_batch_size)
    learner = Learner(policy, _optim(cfg, n_micro * cfg.num_epochs // cfg.gradient_accumulation_steps), seed=cfg.seed)
    policy = learner.unwrapped()
    sft_epochs(learner, tok, pairs, epochs=cfg.num_epochs, batch_size=cfg.per_device_batch_size, seed=cfg.seed,
               max_length=cfg.max_length, add_eos=True, response_only=True, progress=False)
    _save_final(policy, tok, out, run.model)
    return _evaluate(policy, tok, exp.task, exp.eval_config, exp.reward_fn, exp.gold_fn, exp.heldout, cfg)


def compare(out_dir: str | Path = "runs/compare", tasks: Sequence[str] = COMPARE_TASKS, *, fast: bool | None = None,
            num_threads: int = 0, progress: bool = True) -> list[dict]:
    """Base, SFT on the best response, RAFT, RRHF-BP and RRHF-IP-2 on the tiny tasks, evaluated alike.

    Per task: one BP collection by the base model (``data_1.jsonl``) feeds SFT-best and RRHF-BP; RRHF-IP-2 is
    RRHF-BP's policy trained one more round on responses collected by itself (so IP-1 = BP); RAFT is the shipped
    adapter in ``data/models/raft-*`` when present, else trained here with ``labcore raft``'s preset. Every arm is
    evaluated by the RAFT preset's evaluation (same prompts, seed, sampling) plus ranking accuracy of p_i.

    Returns:
        one row per (task, arm) with ``task``, ``arm``, ``how``, the evaluation fields and ``seconds``.
    """
    threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    out = Path(out_dir)
    rows: list[dict] = []
    try:
        for task in tasks:
            t_task = time.time()
            run, cfg = preset_configs(task, fast=fast)
            exp = make_experiment(task, run, cfg, fast=fast)
            arms: list[tuple[str, str, Callable[[], dict]]] = []
            base = run.model
            arms.append(("base", f"{base} without training", lambda: _eval_policy(base, None, exp, cfg)))
            raft_dir = SHIPPED_RAFT[task]
            if (raft_dir / "adapter_config.json").exists():
                arms.append(("RAFT", f"shipped adapter {raft_dir.relative_to(DATA_DIR.parent)}",
                             lambda: _eval_policy(base, raft_dir, exp, cfg)))
            else:
                arms.append(("RAFT", f"trained here: labcore raft --preset {task}",
                             lambda: _eval_policy(base, _train_raft(task, out / f"raft-{task}", fast), exp, cfg)))
            rrhf_out = out / f"rrhf-{task}"
            data: dict[str, list[dict]] = {}

            def rrhf_bp():
                rows_ = rrhf_pipeline(RRHFRunConfig(**{**asdict(run), "iterations": 1}), cfg, rrhf_out, exp,
                                      progress=progress)
                from labcore.datasets import load_rrhf

                data["bp"] = load_rrhf(rrhf_out / "data_1.jsonl")
                return {k: v for k, v in rows_[-1].items() if k not in ("iteration", "step", "epoch", "seconds")}

            def sft_best():
                return _sft_best(run, cfg, data["bp"], out / f"sft-best-{task}", exp)

            def rrhf_ip2():
                ip = out / f"rrhf-ip2-{task}"
                shutil.rmtree(ip, ignore_errors=True)
                rows_ = rrhf_pipeline(RRHFRunConfig(**{**asdict(run), "iterations": 2}), cfg, ip, exp,
                                      start_round=2, start_from=rrhf_out / "final", progress=progress)
                return {k: v for k, v in rows_[-1].items() if k not in ("iteration", "step", "epoch", "seconds")}

            n = len(exp.queries)
            arms.append(("RRHF-BP", f"{cfg.num_epochs} epochs on {n} queries (beam {run.num_samples} + dataset "
                                    f"<= {run.dataset_responses}), LoRA r {cfg.lora_r}, lr {cfg.learning_rate:g}",
                         rrhf_bp))
            arms.append(("SFT-best", "sft_epochs on the best response of RRHF-BP's data, same optimiser settings",
                         sft_best))
            arms.append(("RRHF-IP-2", "RRHF-BP's policy + one round on responses it collected itself", rrhf_ip2))
            for arm, how, fn in arms:
                t0 = time.time()
                if progress:
                    print(f"compare: {task} / {arm}", file=sys.stderr)
                result = fn()
                rows.append({"task": task, "arm": arm, "how": how, **result, "seconds": time.time() - t0})
            if progress:
                print(f"compare: {task} done in {time.time() - t_task:.0f}s", file=sys.stderr)
    finally:
        torch.set_num_threads(threads)
    order = {a: i for i, a in enumerate(["base", "SFT-best", "RAFT", "RRHF-BP", "RRHF-IP-2"])}
    return sorted(rows, key=lambda r: (list(tasks).index(r["task"]), order[r["arm"]]))


def _train_raft(task: str, out: Path, fast: bool | None) -> Path:
    from labcore.raft import PRESETS as RAFT_PRESETS, preset_config, raft

    cfg = preset_config(task, fast=fast)
    raft(cfg, out, task=RAFT_PRESETS[task].make_task(cfg, None), progress=False)
    return out / "final"


def compare_table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`compare` rows."""
    lines = ["| task | arm | eval reward | gold | perplexity | distinct-2 | mean length | rank acc | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['arm']} | {_fmt(r.get('eval_reward'))} | {_fmt(r.get('gold'))} | "
                     f"{_fmt(r.get('ppl'), 2)} | {_fmt(r.get('distinct_2'))} | {_fmt(r.get('mean_length'), 1)} | "
                     f"{_fmt(r.get('rank_acc'))} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def add_compare_args(parser) -> None:
    """Options of ``labcore compare``."""
    parser.add_argument("--out", default="docs/results/comparison.md", help="markdown report (a .json beside it)")
    parser.add_argument("--runs", default="runs/compare", help="folder of the trained arms")
    parser.add_argument("--tasks", nargs="*", default=list(COMPARE_TASKS), choices=list(COMPARE_TASKS))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--update", default=None, help="also rewrite the table between the compare-table markers "
                        "of this markdown file (e.g. docs/rrhf.md)")


def run_compare(args) -> list[dict]:
    """``labcore compare``: run :func:`compare`, write the markdown report and its JSON."""
    t0 = time.time()
    rows = compare(args.runs, args.tasks, num_threads=args.threads)
    minutes = (time.time() - t0) / 60
    table = compare_table(rows)
    print(table)
    report = Path(args.out)
    report.parent.mkdir(parents=True, exist_ok=True)
    threads = args.threads or torch.get_num_threads()
    cmd = "labcore compare" + (f" --threads {args.threads}" if args.threads else "") + \
        ("  # LABCORE_FAST=1: tiny sizes" if fast_mode() else "")
    how = "\n".join(f"* **{r['task']} / {r['arm']}**: {r['how']}" for r in rows)
    report.write_text(
        f"# RRHF vs baselines in the tiny world\n\nMade by `{cmd}` in {minutes:.1f} minutes on {threads} torch "
        f"thread(s). Evaluation of every arm: the RAFT preset's held-out prompts, sampling settings and seed "
        f"(`labcore.raft.evaluate`), perplexity of held-out reference responses, and `rank acc` = the share of "
        f"held-out response pairs that p_i (Eq. 1) orders as the reward does.\n\n{TABLE_BEGIN}\n{table}\n"
        f"{TABLE_END}\n\n## What each arm is\n\n{how}\n", encoding="utf-8")
    report.with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    if args.update:
        doc = Path(args.update)
        text = doc.read_text(encoding="utf-8")
        if TABLE_BEGIN not in text or TABLE_END not in text:
            raise ValueError(f"{doc} has no {TABLE_BEGIN} ... {TABLE_END} block")
        head, rest = text.split(TABLE_BEGIN, 1)
        _, tail = rest.split(TABLE_END, 1)
        doc.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}", encoding="utf-8")
    print(f"wrote {report} and {report.with_suffix('.json')} ({minutes:.1f} min)", file=sys.stderr)
    return rows


__all__ = ["HammingDiversity", "diverse_beam_search", "PolicySamples", "FixedResponses", "collect", "write_rrhf",
           "policy_sources", "ranking_accuracy", "build_policy", "train_rrhf", "read_metrics", "RRHFRunConfig",
           "RRHFPreset", "PRESETS", "preset_configs", "Experiment", "make_experiment", "rrhf_pipeline",
           "tiny_review_responses", "tiny_dialogue_responses", "imdb_responses", "hh_responses", "add_rrhf_args",
           "run_rrhf", "metrics_table", "compare", "compare_table", "add_compare_args", "run_compare", "POLICIES"]
