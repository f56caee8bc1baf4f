"""The held-out evaluation every method and the comparison share: eval reward, independent judge, perplexity of
reference responses, distinct-2, length; and the pair count behind the ranking accuracy of a scorer against rewards
(``labcore.rrhf_trainer.ranking_accuracy`` scores with RRHF's p_i, Eq. 1).

One protocol per task (``labcore.config.Eval``, values in ``labcore.presets.EVAL``): the same held-out prompts,
sampling settings and seed at every evaluation of every method, so iteration 0 (the base model), every later
iteration and every arm of ``labcore compare`` are measured alike.
"""
from __future__ import annotations

import torch

from labcore.config import Eval
from labcore.runs import mean_finite
from labcore.tasks import RewardFn, Task


@torch.no_grad()
def evaluate(policy, tokenizer, task: Task, reward_fn: RewardFn, eval: Eval, judge_fn: RewardFn | None = None) -> dict:
    """Sample one response per held-out prompt (fixed seed), score it, and measure perplexity of the references.

    Args:
        policy: the model (plain or peft).
        task: held-out prompts and (prompt, reference) pairs.
        reward_fn: the optimised reward (or the evaluation reward of the task).
        eval: the protocol: sampling settings, seed, how many prompts.
        judge_fn: an independent judge (the gold rubric), or None.
    Returns:
        ``eval_reward``, ``distinct_2``, ``mean_length`` (tokens), ``ppl`` (None without references) and, with a
        judge, ``gold``.
    """
    from labcore.generation import generate_chunked
    from labcore.metrics import distinct_n, mean_length, perplexity

    prompts = task.eval_prompts[:eval.prompts]
    rows = generate_chunked(policy, tokenizer, prompts, num_samples=1, max_new_tokens=eval.max_new_tokens,
                            temperature=eval.temperature, top_k=eval.top_k, top_p=eval.top_p,
                            batch_size=eval.batch_size, stop_at_turn=task.chat, seed=eval.seed)
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    out = {"eval_reward": mean_finite(reward_fn(prompts, responses).tolist()),
           "distinct_2": distinct_n(responses, 2), "mean_length": mean_length(responses, tokenizer)}
    pairs = task.ppl_pairs[:eval.ppl_examples]
    out["ppl"] = perplexity(policy, tokenizer, [p for p, _ in pairs], [r for _, r in pairs], add_eos=True) \
        if pairs else None
    if judge_fn is not None:
        out["gold"] = mean_finite(judge_fn(prompts, responses).tolist())
    return out


def pairwise_agreement(scores: torch.Tensor, rewards: torch.Tensor) -> tuple[int, int]:
    """Pairs a scorer orders as the rewards do: (right, total) over pairs with r_i < r_j (ties not counted).

    Args:
        scores: (B, K) a scorer's values (e.g. RRHF's p_i, Eq. 1).
        rewards: (B, K) rewards, NaN on padded slots (NaN compares False, so no pair involves one).
    Returns:
        (pairs with s_i < s_j among them, pairs with r_i < r_j).
    """
    pairs = rewards.unsqueeze(-1) < rewards.unsqueeze(-2)  # (B, K, K): r_i < r_j
    right = pairs & (scores.unsqueeze(-1) < scores.unsqueeze(-2))  # (B, K, K)
    return int(right.sum()), int(pairs.sum())


__all__ = ["evaluate", "pairwise_agreement"]
