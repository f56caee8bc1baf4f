"""RRHF in practice: response collection with the sampling policies of Table 1, and the training loop.

Yuan et al. 2023, "RRHF: Rank Responses to Align Language Models with Human Feedback without tears",
arXiv 2304.05302. The math (Eq. 1-5, the collator, the forward) is in :mod:`labcore.rrhf`, which a student reads
beside the paper; this module is the loop around it.

    collect      for each query x, responses y_1..y_k from any mix of sources (policy samples, beam / diverse beam
                 search, dataset responses, another model, hand-written), identical ones dropped, r_i = R(x, y_i);
                 written as RRHF JSONL {"query", "responses", "scores"} (``labcore.datasets.load_rrhf`` reads it)
    train_rrhf   AdamW on L = rrhf_weight * L_rank + L_ft (Eq. 5) through ``labcore.training.Learner`` (LoRA or full,
                 gradient accumulation, bf16 autocast on a GPU, clipping), evaluation rows in OUT/metrics.jsonl,
                 checkpoints and exact resume, the policy in OUT/final
    rrhf_pipeline  the policies: BP = beam search by the initial model + dataset responses; DP = diverse beam search
                 (4 groups of one beam, diversity penalty 1.0) + dataset responses; D = samples of the initial model
                 only; IP-n = iterate: collect again with the (n-1)-th trained model, train on, n rounds in all

Settings: :class:`labcore.config.RRHFConfig`; presets: ``labcore.presets.RRHF``; tasks, rewards and dataset
responses: :mod:`labcore.tasks`; the evaluation: :mod:`labcore.evaluation` (the task's protocol, shared with RAFT).

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
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from labcore.config import RRHFConfig, Sampling
from labcore.evaluation import evaluate, pairwise_agreement
from labcore.presets import to_dict
from labcore.rrhf import build_rrhf_batch, rrhf_forward, rrhf_loss
from labcore.runs import MetricsLog, plot_metrics, save_final, swap_in_checkpoint, write_plot
from labcore.tasks import RewardFn, Task, load_judge, load_reward, load_task
from labcore.utils import derive_seed, torch_threads

DECODINGS = ("sample", "beam", "diverse_beam")


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

    from labcore.generation import end_token_id

    stop = HammingDiversity(num_groups, diversity_penalty,
                            [tokenizer.eos_token_id, tokenizer.pad_token_id, end_token_id(tokenizer)])
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
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.8))
    """Temperature / top-k / top-p of 'sample' (DP in the paper: 0.8), new-token limit and batch of every decoding."""
    num_beams: int = 4
    """Beam width of 'beam' (at least num_samples)."""
    diversity_penalty: float = 1.0
    """Hamming penalty of 'diverse_beam'."""
    stop_at_turn: bool = True
    """Cut at a new dialogue turn (False for plain continuation)."""
    seed: int = 0
    """Sampling seed."""
    name: str = "policy"
    """Name recorded with every response."""

    def __post_init__(self):
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {DECODINGS}, got {self.decoding!r}")
        if self.num_samples < 1:
            raise ValueError("num_samples must be >= 1")

    def __call__(self, prompts: Sequence[str]) -> list[list[str]]:
        from labcore.generation import generate

        K, s = self.num_samples, self.sampling
        if self.decoding == "diverse_beam":
            return diverse_beam_search(self.model, self.tokenizer, prompts, num_groups=K,
                                       diversity_penalty=self.diversity_penalty, max_new_tokens=s.max_new_tokens,
                                       stop_at_turn=self.stop_at_turn, batch_size=s.batch_size)
        if self.decoding == "beam":
            rows = generate(self.model, self.tokenizer, prompts, num_samples=K, max_new_tokens=s.max_new_tokens,
                            do_sample=False, num_beams=max(self.num_beams, K), stop_at_turn=self.stop_at_turn,
                            batch_size=s.batch_size)
        else:
            rows = generate(self.model, self.tokenizer, prompts, num_samples=K, max_new_tokens=s.max_new_tokens,
                            temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, stop_at_turn=self.stop_at_turn,
                            batch_size=s.batch_size, seed=self.seed)
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


def policy_sources(config: RRHFConfig, model, tokenizer, dataset: FixedResponses | None, chat: bool,
                   round_: int = 1) -> list[Callable]:
    """The sources of a Table 1 policy. BP: beam search by ``model`` + dataset responses; DP: diverse beam search
    + dataset responses; D: samples of ``model`` only. For IP-n, ``model`` is the previous round's policy."""
    decoding = {"BP": "beam", "DP": "diverse_beam", "D": "sample"}[config.policy]
    sampler = PolicySamples(model, tokenizer, num_samples=config.num_samples, decoding=decoding,
                            sampling=config.sampling, num_beams=config.num_beams,
                            diversity_penalty=config.diversity_penalty, stop_at_turn=chat,
                            seed=derive_seed(config.runtime.seed, round_, 7), name=f"{decoding}@{round_ - 1}")
    return [sampler] if config.policy == "D" or dataset is None else [sampler, dataset]


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
            a, b = pairwise_agreement(rrhf_forward(model, batch, length_penalty).scores, batch["rewards"])  # (B, K)
            right, total = right + a, total + b
    finally:
        model.train(was_training)
    return right / total if total else None


# ----------------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------------
def evaluate_rrhf(policy, tok, config: RRHFConfig, task: Task | None, reward_fn: RewardFn | None,
                  judge_fn: RewardFn | None, heldout: Sequence[dict] | None) -> dict:
    """The task's held-out evaluation (shared with RAFT) plus the ranking accuracy of p_i on held-out records."""
    out = evaluate(policy, tok, task, reward_fn, config.eval, judge_fn) if task is not None and reward_fn else {}
    if heldout:
        out["rank_acc"] = ranking_accuracy(policy, tok, heldout, length_penalty=config.length_penalty,
                                           max_length=config.max_length, batch_size=config.optim.batch_size)
    return out


def train_rrhf(config: RRHFConfig, records: Sequence[dict], out_dir: str | Path, resume: bool = False, *,
               task: Task | None = None, reward_fn: RewardFn | None = None, judge_fn: RewardFn | None = None,
               heldout: Sequence[dict] | None = None, start_from: str | Path | None = None, round_: int = 1,
               final_dir: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Train a policy with RRHF (Eq. 5) on collected records; evaluate, checkpoint, save the final policy.

    Args:
        config: the settings (model, loss, LoRA, optimiser, evaluation and checkpoint intervals).
        records: RRHF records ``{"query", "responses", "scores"}`` (``collect`` output or ``load_rrhf``).
        out_dir: run folder: ``metrics.jsonl``, ``checkpoint/``, ``final/``, ``rrhf_config.json``.
        resume: continue from ``out_dir/checkpoint`` when it belongs to this round; ends with the same weights and
            metrics as an uninterrupted run.
        task, reward_fn, judge_fn: the held-out evaluation (at step 0 of round 1 and every ``config.eval_every``
            optimiser steps; 0 = after every epoch); none without ``task`` and ``reward_fn``.
        heldout: RRHF records of held-out queries for ``rank_acc`` (ranking accuracy of p_i against rewards).
        start_from: previous round's policy (IP-n), see :func:`labcore.training.build_policy`.
        round_: IP-n round (1-based), written as ``iteration`` in every row.
        final_dir: where the trained policy goes (default ``out_dir/final``).
        progress: progress bar.
    Returns:
        all metrics rows of ``out_dir/metrics.jsonl``.
    """
    from tqdm.auto import tqdm

    from labcore.training import Learner, build_policy, mixed_precision

    if not records:
        raise ValueError("no RRHF records to train on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log, ckpt = MetricsLog(out / "metrics.jsonl"), out / "checkpoint"
    final = Path(final_dir) if final_dir else out / "final"
    Q, A, rt = config.optim.batch_size, config.optim.grad_accum, config.runtime
    n_micro = -(-len(records) // Q)  # micro-batches per epoch
    total_steps = (n_micro * config.optim.epochs) // A

    torch.manual_seed(rt.seed)
    policy, tok = build_policy(config.model, config.lora, rt, start_from)
    learner = Learner(policy, config.optim, total_steps=max(1, total_steps), mixed_precision=mixed_precision(rt),
                      cpu=str(rt.device) == "cpu", seed=rt.seed)
    policy = learner.unwrapped()
    acc = {"loss": 0.0, "rank_loss": 0.0, "sft_loss": 0.0, "train_rank_acc": 0.0, "n": 0}
    epoch0, micro0 = 0, 0
    state = None
    if resume and (ckpt / "labcore_state.json").exists():
        saved = json.loads((ckpt / "labcore_state.json").read_text())
        if saved.get("round") == round_:
            state = learner.load_checkpoint(ckpt)
            if state["rrhf_config"] != json.loads(json.dumps(to_dict(config))):
                raise ValueError(f"cannot resume {out}: the RRHF config changed")
            if state["n_records"] != len(records):
                raise ValueError(f"cannot resume {out}: {state['n_records']} records then, {len(records)} now")
            epoch0, micro0, acc = state["epoch"], state["micro"], state["acc"]
            log.keep(lambda i, _: i < state["n_rows"])  # drop rows after the checkpoint
            print(f"resuming {out}: round {round_}, epoch {epoch0}, micro-batch {micro0}", file=sys.stderr)
    if state is None:
        log.keep(lambda _, r: r.get("iteration", 0) < round_)  # earlier rounds stay
        shutil.rmtree(ckpt, ignore_errors=True)
    (out / "rrhf_config.json").write_text(json.dumps(to_dict(config), indent=1))

    def evaluate_row(step: int, epoch: float, t0: float, last: bool = False) -> None:
        n = max(acc["n"], 1)
        due = config.eval.due(last)
        held_out = evaluate_rrhf(policy, tok, config, task, reward_fn, judge_fn, heldout) if due else {}
        row = {"iteration": round_, "step": step, "epoch": epoch,
               **{k: (acc[k] / n if acc["n"] else None) for k in ("loss", "rank_loss", "sft_loss", "train_rank_acc")},
               **held_out,
               "seconds": time.time() - t0}
        log.append(row)
        acc.update(loss=0.0, rank_loss=0.0, sft_loss=0.0, train_rank_acc=0.0, n=0)
        if progress:
            shown = {k: round(v, 3) for k, v in row.items() if isinstance(v, float) and k != "seconds"}
            print(f"round {round_} step {step}: {shown}", file=sys.stderr)

    def checkpoint(epoch: int, micro: int) -> None:
        swap_in_checkpoint(out, lambda tmp: learner.save_checkpoint(tmp, extra={
            "round": round_, "epoch": epoch, "micro": micro, "acc": dict(acc), "n_rows": len(log.rows()),
            "n_records": len(records), "rrhf_config": to_dict(config)}))

    def loss_fn(m, batch):
        fwd = rrhf_forward(m, batch, config.length_penalty, config.response_logits_only, config.share_query_prefix)
        parts = rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"], config.rrhf_weight,
                          config.sft_reduction, config.batch_reduction)  # Eq. 5
        right, pairs = pairwise_agreement(fwd.scores.detach(), batch["rewards"])  # (B, K) scores vs rewards
        return parts.loss, {"rank_loss": float(parts.rank.detach()), "sft_loss": float(parts.sft.detach()),
                            "train_rank_acc": right / pairs if pairs else 1.0}

    t0 = time.time()
    if state is None and round_ == 1 and task is not None and config.eval.due(last=False):
        evaluate_row(0, 0.0, t0)  # the starting policy
        t0 = time.time()
    bar = tqdm(total=n_micro * config.optim.epochs, initial=epoch0 * n_micro + micro0, desc=f"rrhf round {round_}",
               disable=not progress, leave=False)
    for epoch in range(epoch0, config.optim.epochs):
        order = list(range(len(records)))
        random.Random(derive_seed(rt.seed, round_, epoch)).shuffle(order)
        for b in range(micro0 if epoch == epoch0 else 0, n_micro):
            chunk = [records[i] for i in order[b * Q:(b + 1) * Q]]
            batch = build_rrhf_batch(tok, [r["query"] for r in chunk], [r["responses"] for r in chunk],
                                     config.max_length, [r["scores"] for r in chunk], config.min_query_tokens)
            batch = {k: v.to(learner.device) for k, v in batch.items()}
            torch.manual_seed(derive_seed(rt.seed, round_, epoch, b))  # dropout depends on the position only
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
            if (config.eval_every and step % config.eval_every == 0) or (not config.eval_every and end_of_epoch):
                evaluate_row(step, epoch + (b + 1) / n_micro, t0,
                             last=epoch == config.optim.epochs - 1 and end_of_epoch)
                t0 = time.time()
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or \
                    (not config.checkpoint_every and end_of_epoch):
                checkpoint(*((epoch, b + 1) if b + 1 < n_micro else (epoch + 1, 0)))
    bar.close()
    if acc["n"]:  # micro-batches since the last row (eval_every not dividing the run, or a partial window)
        evaluate_row(learner.optimizer_steps, float(config.optim.epochs), t0, last=True)
    save_final(policy, tok, final, config.model, log.path)
    return log.rows()


# ----------------------------------------------------------------------------------------------------------------
# The pipeline: collect -> train (-> collect with the trained model -> train: IP-n)
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RRHFData:
    """What a pipeline collects from besides the configs: the task, rewards, queries and dataset responses."""
    task: Task
    """Training prompts, held-out evaluation, dataset responses."""
    reward_fn: RewardFn
    """Reward of collection and evaluation."""
    judge_fn: RewardFn | None
    """Independent judge of the evaluation samples (the gold rubric), or None."""
    queries: list[str]
    """The training queries (``config.queries`` distinct prompts, drawn once with the seed)."""
    dataset: FixedResponses | None
    """Dataset responses of the training queries (at most ``config.dataset_responses`` each)."""
    heldout: list[dict]
    """Scored records of held-out queries for the ranking accuracy."""


def prepare(config: RRHFConfig, task: Task | None = None, reward_fn: RewardFn | None = None,
            data: str | None = None) -> RRHFData:
    """Load the task and rewards, draw the training queries, cap the dataset responses, score the held-out set."""
    from labcore.models import format_of

    task = task or load_task(config.task, config.eval, data, fmt=format_of(config.model))
    reward_fn = reward_fn or load_reward(config.reward, config.runtime.device)

    def cap(mapping: dict[str, list[str]], n: int) -> dict[str, list[str]]:
        return {q: ys[:n] for q, ys in mapping.items()}

    dataset = FixedResponses(cap(task.responses, config.dataset_responses)) if config.dataset_responses else None
    distinct = list(dict.fromkeys(task.prompts))
    random.Random(derive_seed(config.runtime.seed, 11)).shuffle(distinct)
    held = [p for p, ys in task.heldout_responses.items() if len(ys) >= 2][:config.heldout_queries]  # file order
    heldout = [r for r in collect(held, [FixedResponses(cap(task.heldout_responses, 8))], reward_fn)
               if len(r["responses"]) >= 2]
    return RRHFData(task, reward_fn, load_judge(task), distinct[:config.queries], dataset, heldout)


def rrhf_pipeline(config: RRHFConfig, out_dir: str | Path, data: RRHFData | None = None, *,
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
    with torch_threads(config.runtime.threads, config.runtime.device):
        data = data or prepare(config)
        prev = Path(start_from) if start_from else None
        for k in range(start_round, config.iterations + 1):
            done = out / ("final" if k == config.iterations else f"policy_{k}")
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
                recs = _collect_round(config, data, prev, k, progress)
                write_rrhf(data_path, recs)
            train_rrhf(config, recs, out, resume=resume, task=data.task, reward_fn=data.reward_fn,
                       judge_fn=data.judge_fn, heldout=data.heldout, start_from=prev, round_=k, final_dir=done,
                       progress=progress)
            prev = done
        log = MetricsLog(out / "metrics.jsonl")
        if log.path.exists():
            write_plot(plot_rrhf(log.rows(), out.name), out / "metrics.html")
        return log.rows()


def _collect_round(config: RRHFConfig, data: RRHFData, prev: Path | None, k: int, progress: bool) -> list[dict]:
    """Collect round k's records with the previous round's policy (the initial model in round 1)."""
    from labcore.models import load_model

    device = config.runtime.device
    if prev is None:
        model, tok = load_model(config.model, device=device)
    elif config.lora.use:
        model, tok = load_model(config.model, adapter=str(prev), device=device)
    else:
        model, tok = load_model(str(prev), device=device)
    sources = policy_sources(config, model, tok, data.dataset, data.task.chat, round_=k)
    recs = collect(data.queries, sources, data.reward_fn, progress=progress)
    del model
    return recs


def plot_rrhf(rows: list[dict], name: str = ""):
    """A run's curves per evaluation row (x = round:step): losses, reward, ranking accuracy, distinct-2, ppl, gold."""
    return plot_metrics(rows, [("loss", ["loss", "rank_loss", "sft_loss"]), ("reward", ["eval_reward"]),
                               ("ranking accuracy", ["rank_acc", "train_rank_acc"]), ("distinct-2", ["distinct_2"]),
                               ("ppl", ["ppl"]), ("gold", ["gold"])],
                        title=f"RRHF: {name} (x = round:step)", x=[f"{r['iteration']}:{r['step']}" for r in rows],
                        x_title="round:step")


__all__ = ["HammingDiversity", "diverse_beam_search", "PolicySamples", "FixedResponses", "collect", "write_rrhf",
           "policy_sources", "ranking_accuracy", "evaluate_rrhf", "train_rrhf", "RRHFData", "prepare",
           "rrhf_pipeline", "plot_rrhf"]
