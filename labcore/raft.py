"""RAFT: Reward rAnked FineTuning — sample, rank by reward, fine-tune on the best, repeat.

Dong et al. 2023, "RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment", arXiv 2304.06767
(Algorithm 1). Reference code: LMFlow ``RaftAligner``. With policy pi_{w_t}, reward r(x, y) and a prompt pool D,
iteration t = 1..T does

    1. Data collection   draw b prompts x_1..x_b from D (shuffled, without replacement);
                         sample y_{i,1..K} ~ pi_{w_{t-1}}(. | x_i)                       (Alg. 1, data collection)
    2. Data ranking      r_{i,k} = r(x_i, y_{i,k})  (-inf for discarded degenerate samples, see below)
                         local:  keep y_i* = argmax_k r_{i,k}, one per prompt            (Alg. 1, data ranking)
                         global: K = 1 sample each for b/alpha prompts; keep the top alpha fraction by reward
                                 across the whole batch (LMFlow collection_strategy "top")
    3. Fine-tuning       w_t = SFT of w_{t-1} on the kept (x, y) pairs:
                         min_w - sum_t log pi_w(y_t | x, y_<t)                               (Alg. 1, fine-tuning)

Collection and ranking need no gradients and fine-tuning needs no reward gradients, so one policy sits in memory, any
(non-differentiable) reward works, and there is no KL term, reference model or value model.

Both strategies select b samples per iteration (LMFlow ``raft_batch_size``) from the same number of generated
samples when K = 1/alpha: local draws K for each of b prompts, global one for each of b/alpha prompts.

Deliberate deviations from / fixes to the reference, following the lessons of its issues:
  * ``reward_onpolicy`` is the reward of sample 0 of every prompt (an unbiased estimate of the policy's reward);
    ``reward_selected`` (the mean of the kept set, what the reference plots) is logged beside it.
  * A discard rule sets r = -inf for empty, too-short (< ``min_tokens`` new tokens) and repetitive samples (share of
    repeated word 3-grams > ``max_repetition``); discarded samples are never selected. The reference discarded
    samples containing "#" after seeing rewards hacked by them; distinct-2 is logged every iteration.
  * Evaluation on a fixed held-out prompt set with a fixed sampling seed (the reference had none, LMFlow #281),
    plus perplexity of held-out reference responses and distinct-2; iteration 0 is the base model.
  * Responses are cut from the prompt by token position (``labcore.generation.generate``), never by
    ``str.replace`` on decoded text; generation is batched with ``num_return_sequences``, left padding, KV cache.
  * SFT on the response tokens only by default (``response_only``; the reference trains on prompt + response).
  * One optimiser for the whole run (its state carries across iterations; constant learning rate as in the
    reference recipes); checkpoints every iteration and exact resume.
  * The evaluation protocol belongs to the task (``labcore.presets.EVAL``), not to RAFT's sampling settings, so
    RRHF and the baselines are measured with the same prompts, sampling and seed.
  * max_new_tokens is drawn in [min_new_tokens, max_new_tokens) once per generation batch (as LMFlow does with
    ``np.random.randint`` per inference batch) from a seeded generator, or once per iteration (``length_draw``).

Settings: :class:`labcore.config.RAFTConfig`; presets: ``labcore.presets.RAFT``; tasks and rewards:
:mod:`labcore.tasks`; the SFT step: :mod:`labcore.sft`; the shared evaluation: :mod:`labcore.evaluation`.
"""
from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from labcore.config import RAFTConfig
from labcore.datasets import write_jsonl
from labcore.evaluation import evaluate
from labcore.presets import to_dict
from labcore.runs import MetricsLog, mean_finite, plot_metrics, save_final, swap_in_checkpoint, write_plot
from labcore.tasks import RewardFn, Task, load_judge, load_reward, load_task
from labcore.utils import derive_seed, set_seed, torch_threads


# ----------------------------------------------------------------------------------------------------------------
# The math: pure selection functions
# ----------------------------------------------------------------------------------------------------------------
def _valid(rewards: torch.Tensor) -> torch.Tensor:
    """True where a reward can be selected (finite or +inf; -inf marks a discarded sample, NaN an invalid one)."""
    return ~(torch.isnan(rewards) | torch.isneginf(rewards))


def select_local(rewards: torch.Tensor) -> torch.Tensor:
    """Best of K per prompt: k*_i = argmax_k r_{i,k} (Alg. 1, local ranking).

    Ties go to the lowest sample index; discarded samples (-inf, or NaN) are never selected.

    Args:
        rewards: (P, K) rewards of K samples for each of P prompts.
    Returns:
        (P,) long: the selected sample index of each prompt, -1 where every sample was discarded.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (P, K), got shape {tuple(rewards.shape)}")
    valid = _valid(rewards)  # (P, K)
    masked = rewards.masked_fill(~valid, float("-inf"))  # (P, K)
    best = masked.max(dim=1, keepdim=True).values  # (P, 1)
    is_best = valid & (masked == best)  # (P, K)
    K = rewards.shape[1]
    index = torch.arange(K, device=rewards.device).expand_as(rewards)  # (P, K)
    first = torch.where(is_best, index, torch.full_like(index, K)).min(dim=1).values  # (P,) lowest tied index
    return torch.where(valid.any(dim=1), first, torch.full_like(first, -1))


def select_random(rewards: torch.Tensor, seed: int) -> torch.Tensor:
    """The control of local selection: one of the valid samples of each prompt, uniformly at random (seeded), the
    reward ignored. Same (P, K) input and (P,) output as :func:`select_local` (-1 where every sample was discarded)."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (P, K), got shape {tuple(rewards.shape)}")
    valid = _valid(rewards)  # (P, K)
    noise = torch.rand(rewards.shape, generator=torch.Generator().manual_seed(seed))  # (P, K)
    pick = noise.masked_fill(~valid.cpu(), -1.0).argmax(dim=1).to(rewards.device)  # (P,)
    return torch.where(valid.any(dim=1), pick, torch.full_like(pick, -1))


def select_global(rewards: torch.Tensor, n_select: int) -> torch.Tensor:
    """Top ``n_select`` samples by reward across the batch (global ranking, LMFlow "top").

    Ties go to the lowest index (a stable sort); discarded samples (-inf, or NaN) are never selected, so fewer than
    ``n_select`` come back when fewer are valid.

    Args:
        rewards: (N,) rewards, one sample per prompt.
        n_select: how many to keep (b = alpha * N in RAFT).
    Returns:
        (<= n_select,) long indices into ``rewards``, best first.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be (N,), got shape {tuple(rewards.shape)}")
    if n_select < 0:
        raise ValueError(f"n_select must be >= 0, got {n_select}")
    valid = _valid(rewards)  # (N,)
    keys = torch.where(valid, rewards, torch.zeros_like(rewards))  # (N,) NaN-free for the sort
    order = torch.sort(keys, descending=True, stable=True).indices  # (N,) equal rewards keep index order
    order = order[valid[order]]
    return order[:n_select]


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of repeated word n-grams in one text: 1 - unique / total (0 for fewer than n words)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def discard_mask(responses: Sequence[str], num_tokens: Sequence[int], min_tokens: int,
                 max_repetition: float) -> torch.Tensor:
    """The discard rule: True for empty, too-short (< ``min_tokens`` new tokens) or repetitive samples.

    Returns:
        (N,) bool.
    """
    return torch.tensor([
        (not r.strip()) or n < min_tokens or repetition_rate(r) > max_repetition
        for r, n in zip(responses, num_tokens, strict=True)
    ], dtype=torch.bool)


def apply_discard(rewards: torch.Tensor, discard: torch.Tensor) -> torch.Tensor:
    """r = -inf where ``discard`` (so the sample is never selected). Shapes (N,) -> (N,)."""
    return rewards.masked_fill(discard, float("-inf"))


# ----------------------------------------------------------------------------------------------------------------
# The loop (Alg. 1)
# ----------------------------------------------------------------------------------------------------------------
def prompt_indices(n_prompts: int, seed: int, iteration: int, size: int) -> list[int]:
    """Indices of the prompts of ``iteration`` (1-based): the ``size`` next positions of an endless stream of
    seeded permutations of the pool (without replacement within a pass over the pool)."""
    perms: dict[int, list[int]] = {}
    out = []
    for pos in range((iteration - 1) * size, iteration * size):
        epoch, offset = divmod(pos, n_prompts)
        if epoch not in perms:
            perms[epoch] = list(range(n_prompts))
            random.Random(derive_seed(seed, epoch)).shuffle(perms[epoch])
        out.append(perms[epoch][offset])
    return out


def new_token_limits(config: RAFTConfig, n_chunks: int, seed: int) -> list[int]:
    """The new-token limit of each generation batch, drawn in [min_new_tokens, max_new_tokens) from a seeded
    generator: one per batch (``length_draw="batch"``, as LMFlow's ``np.random.randint`` per inference batch) or the
    same for the whole iteration (``"iteration"``)."""
    lengths = np.random.default_rng(seed)
    low, high = config.min_new_tokens, config.sampling.max_new_tokens
    per_iteration = int(lengths.integers(low, high))  # drawn first in both modes, so the two share a stream
    if config.length_draw == "iteration":
        return [per_iteration] * n_chunks
    return [int(lengths.integers(low, high)) for _ in range(n_chunks)]


def collect(policy, tokenizer, prompts: list[str], config: RAFTConfig, task: Task, seed: int) -> list[dict]:
    """Step 1, data collection: K samples of pi_{w_{t-1}} for each prompt, batched, each batch its own limit."""
    from labcore.generation import generate_chunked

    s = config.sampling
    n_chunks = -(-len(prompts) // s.batch_size)
    return generate_chunked(policy, tokenizer, prompts, num_samples=config.samples_per_prompt,
                            max_new_tokens=new_token_limits(config, n_chunks, seed), temperature=s.temperature,
                            top_k=s.top_k, top_p=s.top_p, batch_size=s.batch_size, stop_at_turn=task.chat, seed=seed)


def rank_and_select(rows: list[dict], raw: torch.Tensor, config: RAFTConfig,
                    seed: int = 0) -> tuple[list[dict], torch.Tensor]:
    """Step 2, data ranking: r = -inf for discarded samples, then local (best of K) or global (top alpha) selection,
    or the random-selection control (``seed`` draws its picks); with ``config.min_reward``, selected samples below
    it are dropped (rejection sampling).

    Args:
        rows: the P * K samples, prompt-major; raw: their (P * K,) rewards.
    Returns:
        (the selected samples with their reward, the (P * K,) discard mask).
    """
    P, K = len(rows) // config.samples_per_prompt, config.samples_per_prompt
    discard = discard_mask([r["response"] for r in rows], [r["num_tokens"] for r in rows], config.min_tokens,
                           config.max_repetition)
    rewards = apply_discard(raw, discard).view(P, K)  # (P, K), prompt-major
    if config.selection in ("local", "random"):
        best = select_local(rewards) if config.selection == "local" else select_random(rewards, seed)  # (P,)
        chosen = [i * K + int(k) for i, k in enumerate(best.tolist()) if k >= 0]
    else:
        chosen = select_global(rewards[:, 0], config.raft_batch_size).tolist()  # K = 1: flat index = prompt
    if config.min_reward is not None:
        chosen = [j for j in chosen if float(raw[j]) >= config.min_reward]
    return [{**rows[j], "reward": float(raw[j])} for j in chosen], discard


_RESUME_FREE = ("iterations", "runtime")  # fields a resumed run may change


def raft(config: RAFTConfig, out_dir: str | Path, resume: bool = False, *, task: Task | None = None,
         reward_fn: RewardFn | None = None, data: str | None = None, progress: bool = True) -> list[dict]:
    """Run RAFT (Alg. 1) for ``config.iterations`` iterations; write metrics, selected sets, checkpoints, final policy.

    Args:
        config: the settings.
        out_dir: run folder: ``metrics.jsonl``, ``metrics.html``, ``selected_{t}.jsonl``, ``checkpoint/``,
            ``final/`` and ``raft_config.json``.
        resume: continue from ``out_dir/checkpoint`` (the last complete iteration); ends with the same result as an
            uninterrupted run with the same seed. ``iterations`` and ``runtime`` may change on resume, nothing else.
        task: prompts, evaluation prompts, perplexity references (default: ``load_task(config.task, ...)``).
        reward_fn: ``fn(prompts, responses) -> (N,)`` (default: ``load_reward(config.reward)``).
        data: a local file standing in for an online task's Hub dataset.
        progress: progress bars and one line per iteration.
    Returns:
        the metrics rows, iteration 0 (the base model) to ``config.iterations``.
    """
    from labcore.models import format_of

    with torch_threads(config.runtime.threads, config.runtime.device):
        task = task or load_task(config.task, config.eval, data, fmt=format_of(config.model))
        return _raft(config, Path(out_dir), resume, task,
                     reward_fn or load_reward(config.reward, config.runtime.device), progress)


def _raft(config: RAFTConfig, out: Path, resume: bool, task: Task, reward_fn: RewardFn, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    from labcore.sft import sft_epochs
    from labcore.training import Learner, build_policy, mixed_precision

    out.mkdir(parents=True, exist_ok=True)
    log, ckpt = MetricsLog(out / "metrics.jsonl"), out / "checkpoint"
    judge_fn = load_judge(task)
    rt = config.runtime
    set_seed(rt.seed)
    policy, tok = build_policy(config.model, config.lora, rt)
    learner = Learner(policy, config.optim, mixed_precision=mixed_precision(rt), cpu=str(rt.device) == "cpu",
                      seed=rt.seed)
    policy = learner.unwrapped()

    start = 1
    if resume and (ckpt / "labcore_state.json").exists():
        state = learner.load_checkpoint(ckpt)
        saved, now = state["raft_config"], json.loads(json.dumps(to_dict(config)))  # tuples as JSON lists
        diff = {k: (saved.get(k), v) for k, v in now.items() if k not in _RESUME_FREE and saved.get(k) != v}
        if diff:
            raise ValueError(f"cannot resume {out}: the config changed ({diff}); only {_RESUME_FREE} may change")
        start = state["iteration"] + 1
        log.keep(lambda _, r: r["iteration"] <= state["iteration"])  # drop a half-finished iteration
        print(f"resuming {out} after iteration {state['iteration']}", file=sys.stderr)
    else:
        if resume:
            print(f"no checkpoint in {out}; starting afresh", file=sys.stderr)
        log.clear()
        for stale in out.glob("selected_*.jsonl"):
            stale.unlink()
        shutil.rmtree(ckpt, ignore_errors=True)  # an old run's checkpoint must not be resumed into this one
        if config.eval.due(last=False):  # the starting policy
            t0 = time.time()
            row = {"iteration": 0, "reward_onpolicy": None, "reward_selected": None, "n_selected": 0, "discarded": 0,
                   "sft_loss": None, **evaluate(policy, tok, task, reward_fn, config.eval, judge_fn)}
            log.append({**row, "seconds": time.time() - t0})
    (out / "raft_config.json").write_text(json.dumps(to_dict(config), indent=1))

    P, K = config.prompts_per_iteration, config.samples_per_prompt
    for t in tqdm(range(start, config.iterations + 1), desc="raft", disable=not progress,
                  initial=start - 1, total=config.iterations):
        t0 = time.time()
        # 1. data collection: the next P prompts, K samples each from pi_{w_{t-1}}
        prompts = [task.prompts[i] for i in prompt_indices(len(task.prompts), rt.seed, t, P)]
        rows = collect(policy, tok, prompts, config, task, derive_seed(rt.seed, t, 1))
        # 2. ranking: r(x, y), -inf for discarded samples, then select
        raw = reward_fn([r["prompt"] for r in rows], [r["response"] for r in rows]).float().cpu()  # (P * K,)
        selected, discard = rank_and_select(rows, raw, config, derive_seed(rt.seed, t, 3))
        write_jsonl(out / f"selected_{t}.jsonl", selected)
        # 3. fine-tuning on the kept (x, y) pairs: min_w - sum_t log pi_w(y_t | x, y_<t)
        logs = sft_epochs(learner, tok, [(r["prompt"], r["response"]) for r in selected], epochs=config.optim.epochs,
                          batch_size=config.optim.batch_size, seed=derive_seed(rt.seed, t, 2),
                          max_length=config.max_length, response_only=config.response_only,
                          add_eos=[config.eos_on_truncated or r["finished"] for r in selected],
                          progress=progress) if selected else []
        row = {"iteration": t,
               "reward_onpolicy": mean_finite(raw.view(P, K)[:, 0].tolist()),  # sample 0 of each prompt: unbiased
               "reward_selected": mean_finite([r["reward"] for r in selected]),
               "n_selected": len(selected), "discarded": int(discard.sum()),
               "sft_loss": mean_finite([g["loss"] for g in logs if g["epoch"] == config.optim.epochs - 1])}
        if config.eval.due(last=t == config.iterations):
            row.update(evaluate(policy, tok, task, reward_fn, config.eval, judge_fn))
        row["seconds"] = time.time() - t0
        log.append(row)
        swap_in_checkpoint(out, lambda tmp: learner.save_checkpoint(
            tmp, extra={"iteration": t, "raft_config": to_dict(config), "prompt_cursor": t * P}))
        if progress:
            shown = (f"  eval {row['eval_reward']:.3f}  distinct-2 {row['distinct_2']:.3f}" if "eval_reward" in row
                     else "")
            print(f"iteration {t}: on-policy {row['reward_onpolicy']:.3f}{shown}  ({row['seconds']:.0f}s)",
                  file=sys.stderr)

    save_final(policy, tok, out / "final", config.model, log.path)
    write_plot(plot_raft(log.rows(), out.name), out / "metrics.html")
    return log.rows()


def plot_raft(rows: list[dict], name: str = ""):
    """A run's curves: rewards, distinct-2, perplexity, mean length (and gold) per iteration."""
    return plot_metrics(rows, [("reward", ["reward_onpolicy", "reward_selected", "eval_reward"]),
                               ("distinct-2", ["distinct_2"]), ("perplexity (held-out references)", ["ppl"]),
                               ("mean length (tokens)", ["mean_length"]), ("gold (eval samples)", ["gold"])],
                        title=f"RAFT: {name}")


__all__ = ["RAFTConfig", "select_local", "select_random", "select_global", "repetition_rate", "discard_mask", "apply_discard",
           "prompt_indices", "new_token_limits", "collect", "rank_and_select", "raft", "plot_raft"]
