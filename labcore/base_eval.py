"""Evaluation of the tiny base model: the numbers of the datasheet (``labcore eval-base``).

Held-out perplexity of pretraining blocks, how often a reply ends its turn, which response style the sampled replies
resemble (the base model is unaligned on purpose: its style mix leans to the bad styles), their gold score against
the best reference style, and the VADER sentiment of review continuations.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from labcore import DATA_DIR
from labcore.formats import format_chat
from labcore.generation import generate
from labcore.pretrain import DEFAULT_OUT, block_perplexity, pack_blocks, _load_texts, _num_cores
from labcore.utils import resolve_device, set_seed


# --------------------------------------------------------------------------------------------------------------------
# Evaluation of the base model (the numbers of the datasheet)
# --------------------------------------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z][a-z']*", text.lower())


def nearest_style(reply: str, references: dict[str, str]) -> str:
    """The style whose reference reply shares most words with ``reply`` (unigram F1, as ROUGE-1).

    Args:
        reply: a sampled reply.
        references: {style: reference reply to the same request}.
    Returns:
        the style name with the highest F1 (ties: the first in ``references`` order); "empty" for a reply without
        words, "unmatched" when it shares no word with any reference (a tie at 0 must not count as the first style).
    """
    from collections import Counter

    r = Counter(_words(reply))
    if not r:
        return "empty"
    best, best_f1 = next(iter(references)), -1.0
    for style, ref in references.items():
        g = Counter(_words(ref))
        overlap = sum((r & g).values())
        f1 = 0.0 if overlap == 0 else 2 * overlap / (sum(r.values()) + sum(g.values()))
        if f1 > best_f1:
            best, best_f1 = style, f1
    return best if best_f1 > 0 else "unmatched"


def _gold_scorer() -> Callable | None:
    try:
        from labcore.tinyworld.gold import gold_score
    except Exception:  # the rubric is optional for this report
        return None
    return gold_score


def _dialogue_report(model, tokenizer, rows: list[dict], n: int, rng: random.Random, gen_kwargs: dict) -> dict:
    rows = rng.sample(rows, min(n, len(rows)))
    prompts = [format_chat(r["request"]) for r in rows]
    samples = generate(model, tokenizer, prompts, **gen_kwargs)  # cut at EOS or a new turn, by token position
    replies = [s["response"].strip() for s in samples]
    ended = [s["finished"] for s in samples]
    styles = [nearest_style(rep, r["responses"]) for rep, r in zip(replies, rows)]
    counts = {s: styles.count(s) / len(styles) for s in sorted(set(styles))}
    report = {"n": len(rows), "turn_end_rate": float(np.mean(ended)), "style_mix": counts,
              "mean_reply_words": float(np.mean([len(rep.split()) for rep in replies])),
              "examples": [{"request": r["request"], "reply": rep, "ended": e, "style": s}
                           for r, rep, e, s in list(zip(rows, replies, ended, styles))[:4]]}
    gold = _gold_scorer()
    if gold is not None:
        scores = np.array(gold(prompts, list(replies)), dtype=float)
        # Headroom: the rubric's score of the best reference style (responses are stored best first).
        best = np.array(gold(prompts, [next(iter(r["responses"].values())) for r in rows]), dtype=float)
        report.update(gold_mean=float(scores.mean()), gold_std=float(scores.std()),
                      gold_best_reference_mean=float(best.mean()))
    return report


def evaluate_base(
    model_dir: str | Path = DEFAULT_OUT,
    n: int = 200,
    n_reviews: int = 100,
    max_new_tokens: int = 64,
    review_new_tokens: int = 48,
    temperature: float = 1.0,
    top_p: float = 0.9,
    batch_size: int = 50,
    ppl_blocks: int = 200,
    seed: int = 0,
    data_dir: str | Path = DATA_DIR,
    out_json: str | Path | None = None,
    device: str = "auto",
) -> dict:
    """Measure the base model the way the datasheet states it.

    * held-out perplexity on ``pretraining_texts("test")`` (blocks of the model's context length);
    * turn ending: fraction of sampled replies (temperature ``temperature``, top-p ``top_p``, no top-k) to test
      requests and to the paraphrase set that end their turn (``<|endoftext|>`` or a new ``"\\n\\nHuman:"``) within
      ``max_new_tokens`` new tokens; target ≥ 0.95 on both;
    * style mix: each reply is assigned the style of the request's reference reply it overlaps most (unigram F1);
      a base model should show a mix, not one aligned style; plus the gold rubric's mean/std when available;
    * reviews: continuations of the ~30-character openings of test reviews (RAFT's IMDB prompts), VADER compound of the continuation (mean, std,
      share positive > 0.05 / negative < −0.05) and a few examples.

    Args:
        model_dir: HF directory of the model and tokenizer.
        n: requests sampled from each of the test split and the paraphrase set.
        n_reviews: review openings.
        max_new_tokens: new-token cap for replies (the turn must end within it).
        review_new_tokens: new tokens for review continuations.
        temperature, top_p: sampling settings.
        batch_size: prompts per ``generate`` call.
        ppl_blocks: held-out blocks for perplexity (0: all).
        seed: sampling seed.
        data_dir: where ``dialogues/`` and ``reviews.jsonl.gz`` live.
        out_json: where to write the report (default ``model_dir/eval_base.json``).
        device: 'auto', 'cpu', 'cuda', ...
    Returns:
        the report dict (also printed as a table and written as JSON).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from labcore.tinyworld.reviews import opening_prompt

    t0 = time.time()
    torch.set_num_threads(_num_cores())
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    dev = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).to(dev).eval()
    set_seed(seed)
    rng = random.Random(seed)
    half = model.config.n_positions // 2  # tiny fast-mode contexts: leave room for the prompt
    max_new_tokens, review_new_tokens = min(max_new_tokens, half), min(review_new_tokens, half)
    gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, batch_size=batch_size)

    test_blocks = pack_blocks(tokenizer, _load_texts("test", 0), model.config.n_positions)
    report: dict = {"model_dir": str(model_dir), "n_params": model.num_parameters(),
                    "sampling": {"temperature": temperature, "top_p": top_p, "top_k": None,
                                 "max_new_tokens": max_new_tokens, "seed": seed},
                    "heldout_ppl": block_perplexity(model, test_blocks, 16, ppl_blocks),
                    "heldout_blocks": min(len(test_blocks), ppl_blocks or len(test_blocks))}
    from labcore.tinyworld import load_paraphrases, load_requests, load_reviews

    requests = load_requests("test", data_dir)
    paraphrases = load_paraphrases(data_dir)
    report["test_requests"] = _dialogue_report(model, tokenizer, requests, n, rng, gen)
    report["paraphrases"] = _dialogue_report(model, tokenizer, paraphrases, n, rng, gen)

    reviews = load_reviews("test", data_dir)
    reviews = rng.sample(reviews, min(n_reviews, len(reviews)))
    openings = [opening_prompt(r["text"]) for r in reviews]
    conts = [s["response"] for s in generate(model, tokenizer, openings, max_new_tokens=review_new_tokens,
                                             temperature=temperature, top_p=top_p, batch_size=batch_size,
                                             stop_at_turn=False)]
    vader = SentimentIntensityAnalyzer()
    compound = np.array([vader.polarity_scores(c)["compound"] for c in conts])
    report["reviews"] = {"n": len(reviews), "vader_mean": float(compound.mean()), "vader_std": float(compound.std()),
                         "share_positive": float((compound > 0.05).mean()),
                         "share_negative": float((compound < -0.05).mean()),
                         "examples": [{"opening": o, "continuation": c.strip(), "vader": float(v)}
                                      for o, c, v in list(zip(openings, conts, compound))[:4]]}
    report["seconds"] = time.time() - t0
    out_json = Path(out_json) if out_json is not None else model_dir / "eval_base.json"
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    return report


def format_report(report: dict) -> str:
    """A plain-text table of an :func:`evaluate_base` report."""
    lines = [f"base model {report['model_dir']} ({report['n_params']:,} parameters)",
             f"sampling: temperature {report['sampling']['temperature']}, top-p {report['sampling']['top_p']}, "
             f"no top-k, max {report['sampling']['max_new_tokens']} new tokens",
             f"{'metric':<34}{'test requests':>16}{'paraphrases':>16}",
             f"{'held-out perplexity':<34}{report['heldout_ppl']:>16.2f}{'':>16}"]
    t, p = report["test_requests"], report["paraphrases"]
    lines.append(f"{'turn ends within the cap':<34}{t['turn_end_rate']:>16.1%}{p['turn_end_rate']:>16.1%}")
    lines.append(f"{'mean reply words':<34}{t['mean_reply_words']:>16.1f}{p['mean_reply_words']:>16.1f}")
    if "gold_mean" in t:
        lines.append(f"{'gold rubric mean ± std':<34}{t['gold_mean']:>9.2f} ± {t['gold_std']:<4.2f}"
                     f"{p['gold_mean']:>9.2f} ± {p['gold_std']:<4.2f}")
        lines.append(f"{'gold of the best reference style':<34}{t['gold_best_reference_mean']:>16.2f}"
                     f"{p['gold_best_reference_mean']:>16.2f}")
    for s in sorted(set(t["style_mix"]) | set(p["style_mix"])):
        lines.append(f"{'style: ' + s:<34}{t['style_mix'].get(s, 0.0):>16.1%}{p['style_mix'].get(s, 0.0):>16.1%}")
    r = report["reviews"]
    lines.append(f"reviews (n={r['n']}): VADER compound of continuations mean {r['vader_mean']:+.3f} "
                 f"std {r['vader_std']:.3f}, positive {r['share_positive']:.0%}, negative {r['share_negative']:.0%}")
    for ex in r["examples"]:
        lines.append(f"  [{ex['vader']:+.2f}] {ex['opening']} | {ex['continuation'][:100]!r}")
    for ex in t["examples"][:3]:
        lines.append(f"  [{ex['style']}{'' if ex['ended'] else ', no end'}] {ex['request'][:50]!r} -> "
                     f"{ex['reply'][:100]!r}")
    return "\n".join(lines)
