"""What a learned reward model gets right and wrong in the tiny world (``labcore train-rm``'s report, notebook 02).

Style pairs of the tiny world's requests (every better style over every worse one), agreement with the gold rubric,
and probes of known failure modes (polite padding, length, off-topic answers).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch




def _styles(rec: dict) -> tuple[str, ...]:
    from labcore.tinyworld import STYLES_SAFE, STYLES_UNSAFE

    return STYLES_UNSAFE if rec["unsafe"] else STYLES_SAFE


def style_pairs(requests: Sequence[dict]) -> list[dict]:
    """Preference pairs from the tiny world's style order: every (better, worse) pair of a request's styles.

    Args:
        requests: records of ``labcore.tinyworld.load_requests`` / ``load_paraphrases``.
    Returns:
        ``{"prompt", "chosen", "rejected", "chosen_style", "rejected_style"}`` dicts, C(k, 2) per request (10 for a
        safe request, 6 for an unsafe one); prompts are HH-formatted, responses start with a space as in the HH files.
    """
    from labcore.formats import format_chat

    out = []
    for rec in requests:
        styles = _styles(rec)
        prompt = format_chat(rec["request"])
        for i, a in enumerate(styles):
            for b in styles[i + 1:]:
                out.append({"prompt": prompt, "chosen": " " + rec["responses"][a],
                            "rejected": " " + rec["responses"][b], "chosen_style": a, "rejected_style": b})
    return out


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation; NaN when either input is constant (the coefficient is undefined)."""
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _probes(requests: Sequence[dict]) -> dict[str, list[dict]]:
    """Edited responses that separate "sounds good" from "is good" (gold knows the difference by construction).

    Each probe is a (base, edit) pair of responses to one request; the edit is worse for the gold rubric.
    """
    from labcore.tinyworld.lexicon import POLITE_CLOSERS, POLITE_OPENERS

    opener = {i: POLITE_OPENERS[i % len(POLITE_OPENERS)].capitalize() for i in range(len(POLITE_OPENERS))}
    closer = {i: POLITE_CLOSERS[i % len(POLITE_CLOSERS)].capitalize() for i in range(len(POLITE_CLOSERS))}
    probes: dict[str, list[dict]] = {"polite_compliance": [], "padded_long": [], "polite_off_topic": [],
                                     "polite_rude": []}
    for i, rec in enumerate(requests):
        r = rec["responses"]
        o, c = opener[i % len(opener)], closer[i % len(closer)]
        if rec["unsafe"]:
            # a complying answer dressed in politeness vs a curt refusal
            probes["polite_compliance"].append({"request": rec["request"], "base": r["curt_refusal"],
                                                "edit": f"{o} {r['complying']} {c}"})
        else:
            # the helpful answer repeated to > 60 words (gold: length and repetition penalties)
            long = r["helpful_polite"]
            while len(long.split()) <= 70:
                long = f"{long} {r['helpful_polite']}"
            probes["padded_long"].append({"request": rec["request"], "base": r["helpful_polite"], "edit": long})
            # an off-topic answer with polite markers vs the curt helpful answer
            probes["polite_off_topic"].append({"request": rec["request"], "base": r["helpful_curt"],
                                               "edit": f"{o} {r['off_topic']} {c}"})
            # a rude answer wrapped in polite markers vs the curt helpful answer
            probes["polite_rude"].append({"request": rec["request"], "base": r["helpful_curt"],
                                          "edit": f"{o} {r['rude']} {c}"})
    return probes


@torch.no_grad()
def analyse_reward(reward_fn, requests: Sequence[dict] | None = None, n_examples: int = 5) -> dict:
    """Where a learned reward agrees with the tiny world's ``gold`` rubric and where it does not.

    Args:
        reward_fn: any labcore reward ``fn(prompts, responses) -> (N,)``.
        requests: tiny-world requests with all styles (default: ``load_requests("test")``).
        n_examples: how many of the worst disagreements to list.
    Returns:
        dict with ``n_responses``; ``spearman_gold`` (reward vs gold over all responses) and its ``_safe`` /
        ``_unsafe`` parts; ``by_style`` (mean reward and mean gold per request kind and style);
        ``spearman_length`` (reward vs number of words, and the same for gold) and
        ``spearman_length_within_style`` (the same, averaged over styles: length without style); ``probes`` (for each edit, the
        share of requests where the reward prefers the gold-worse edited response, and gold's mean margin);
        ``disagreements`` (largest rank differences between reward and gold, with texts).
    """
    from labcore.formats import format_chat
    from labcore.tinyworld import load_requests
    from labcore.tinyworld.gold import gold_score

    requests = list(load_requests("test") if requests is None else requests)
    rows = [(rec, s) for rec in requests for s in _styles(rec)]
    prompts = [format_chat(rec["request"]) for rec, _ in rows]
    responses = [" " + rec["responses"][s] for rec, s in rows]
    r = torch.as_tensor(reward_fn(prompts, responses), dtype=torch.float32).tolist()
    g = gold_score(prompts, responses)
    n_words = [len(x.split()) for x in responses]
    unsafe = [rec["unsafe"] for rec, _ in rows]

    out: dict = {"n_responses": len(rows), "spearman_gold": _spearman(r, g)}
    for kind, flag in (("safe", False), ("unsafe", True)):
        idx = [i for i, u in enumerate(unsafe) if u == flag]
        if len(idx) > 2:
            out[f"spearman_gold_{kind}"] = _spearman([r[i] for i in idx], [g[i] for i in idx])
    by_style: dict[str, dict] = {}
    for i, (rec, s) in enumerate(rows):
        key = f"{'unsafe' if rec['unsafe'] else 'safe'}/{s}"
        slot = by_style.setdefault(key, {"n": 0, "reward": 0.0, "gold": 0.0, "words": 0.0})
        slot["n"] += 1
        slot["reward"] += r[i]
        slot["gold"] += g[i]
        slot["words"] += n_words[i]
    for slot in by_style.values():
        for k in ("reward", "gold", "words"):
            slot[k] = round(slot[k] / slot["n"], 4)
    out["by_style"] = by_style
    out["spearman_length"] = {"reward": _spearman(r, n_words), "gold": _spearman(g, n_words)}
    # Across styles, length and quality are confounded (polite answers are longest); within a style they are not.
    within_r, within_g = [], []
    for key in by_style:
        idx = [i for i, (rec, s) in enumerate(rows) if f"{'unsafe' if rec['unsafe'] else 'safe'}/{s}" == key]
        if len(idx) > 2 and len({n_words[i] for i in idx}) > 1:
            within_r.append(_spearman([r[i] for i in idx], [n_words[i] for i in idx]))
            within_g.append(_spearman([g[i] for i in idx], [n_words[i] for i in idx]))
    out["spearman_length_within_style"] = {"reward": float(np.nanmean(within_r)) if within_r else float("nan"),
                                           "gold": float(np.nanmean(within_g)) if within_g else float("nan")}

    probes = {}
    for name, items in _probes(requests).items():
        if not items:
            continue
        pp = [format_chat(it["request"]) for it in items]
        base = [" " + it["base"] for it in items]
        edit = [" " + it["edit"] for it in items]
        rb = torch.as_tensor(reward_fn(pp, base)).tolist()
        re_ = torch.as_tensor(reward_fn(pp, edit)).tolist()
        gb, ge = gold_score(pp, base), gold_score(pp, edit)
        probes[name] = {"n": len(items),
                        "reward_prefers_edit": sum(b < e for b, e in zip(rb, re_)) / len(items),
                        "gold_prefers_edit": sum(b < e for b, e in zip(gb, ge)) / len(items),
                        "reward_margin": float(np.mean(np.subtract(re_, rb))),
                        "gold_margin": float(np.mean(np.subtract(ge, gb))),
                        "example": {"request": items[0]["request"], "base": items[0]["base"],
                                    "edit": items[0]["edit"]}}
    out["probes"] = probes

    # Rank disagreement: percentile of the reward minus percentile of gold.
    rank_r = np.argsort(np.argsort(r)) / max(1, len(r) - 1)  # (N,) in [0, 1]
    rank_g = np.argsort(np.argsort(g, kind="stable"), kind="stable") / max(1, len(g) - 1)  # (N,)
    gap = rank_r - rank_g
    worst = np.argsort(-np.abs(gap))[:n_examples]
    out["disagreements"] = [{"request": rows[i][0]["request"], "style": rows[i][1], "response": responses[i].strip(),
                             "reward": round(r[i], 3), "gold": round(g[i], 3),
                             "rank_gap": round(float(gap[i]), 3)} for i in worst]
    return out


def format_findings(report: dict) -> str:
    """Human-readable summary of a ``labcore train-rm`` report (held-out accuracy, gold agreement, probes)."""
    lines = [f"held-out pair accuracy (hh test, n={report['test']['n_pairs']}): {report['test']['pair_accuracy']:.1%}"]
    if "paraphrase" in report:
        p = report["paraphrase"]
        lines.append(f"paraphrase pair accuracy (style order, n={p['n_pairs']}): {p['pair_accuracy']:.1%}")
    a = report.get("analysis")
    if a:
        lines.append(f"Spearman(reward, gold) on {a['n_responses']} test responses: {a['spearman_gold']:+.3f} "
                     f"(safe {a.get('spearman_gold_safe', float('nan')):+.3f}, "
                     f"unsafe {a.get('spearman_gold_unsafe', float('nan')):+.3f})")
        lines.append(f"Spearman with #words: reward {a['spearman_length']['reward']:+.3f}, "
                     f"gold {a['spearman_length']['gold']:+.3f}; within a style: reward "
                     f"{a['spearman_length_within_style']['reward']:+.3f}, "
                     f"gold {a['spearman_length_within_style']['gold']:+.3f}")
        lines.append("mean reward / gold by style:")
        for k, v in a["by_style"].items():
            lines.append(f"  {k:24s} reward {v['reward']:+.2f}  gold {v['gold']:+.2f}  words {v['words']:.1f}")
        lines.append("probes (share where the edit, worse for gold, is preferred):")
        for k, v in a["probes"].items():
            lines.append(f"  {k:18s} reward {v['reward_prefers_edit']:.0%}  gold {v['gold_prefers_edit']:.0%}  "
                         f"(margin reward {v['reward_margin']:+.2f}, gold {v['gold_margin']:+.2f})")
    return "\n".join(lines)
