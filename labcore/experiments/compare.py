"""``labcore compare``: base, SFT on the best response, RAFT, RAFT-random, RRHF and RRHF-IP-2, evaluated alike.

Per task: one collection by the base model with the task's RRHF policy (``data_1.jsonl``: BP on the tiny tasks, D on
the SmolLM2 ones) feeds SFT-best and RRHF (arm ``RRHF-BP`` / ``RRHF-D``); RRHF-IP-2 is that policy trained one more
round on responses collected by itself (so IP-1 = the first round); RAFT is the shipped adapter in
``data/models/`` when present, else trained here with ``labcore raft``'s preset. Likewise the RRHF arms come from the
shipped run of ``labcore rrhf --preset TASK`` when it holds its round-1 collection and policies and was made with the
settings compare would use (``shipped_rrhf_run``; checked field by field, else they are trained here): training is
deterministic, so its round-1 policy is the RRHF arm bit for bit and its round-2 policy the IP-2 arm. On the SmolLM2
tasks two controls say whether the method did it: SFT-best (SFT on the best of RRHF's responses) and RAFT-random
(RAFT's preset with ``selection=random``: the same samples and discard rule, one kept per prompt at random instead of
by reward).
Every arm is evaluated with the task's protocol (``labcore.presets.EVAL``: same prompts, seed, sampling) plus the
ranking accuracy of p_i. Also the base-vs-RAFT table of RAFT runs (``labcore raft-table``).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from labcore import DATA_DIR, fast_mode
from labcore.config import RAFTConfig, RRHFConfig
from labcore.presets import build
from labcore.runs import fmt, markdown_table
from labcore.utils import torch_threads

TINY_TASKS = ("tiny-sentiment", "tiny-helpful")
SMOL_TASKS = ("smol-sentiment", "smol-arithmetic")
COMPARE_TASKS = TINY_TASKS + SMOL_TASKS
SHIPPED_RAFT = {"tiny-sentiment": DATA_DIR / "models" / "raft-sentiment",
                "tiny-helpful": DATA_DIR / "models" / "raft-helpful",
                "smol-sentiment": DATA_DIR / "models" / "smol-raft-sentiment",
                "smol-arithmetic": DATA_DIR / "models" / "smol-raft-arithmetic"}
ARMS = ("base", "SFT-best", "RAFT", "RAFT-random", "RRHF-BP", "RRHF-DP", "RRHF-D", "RRHF-IP-2")
CONTROLS = {"RAFT-random": SMOL_TASKS}
"""Control arms and the tasks they run on (the tiny tables stay as shipped)."""
FINAL = {"eval.when": "final"}
"""Arms trained here are evaluated once, at the end (the base arm is the starting point; curves are not needed)."""


SHIPPED_RRHF = {"smol-sentiment": DATA_DIR / "models" / "smol-rrhf-sentiment",
                "smol-arithmetic": DATA_DIR / "models" / "smol-rrhf-arithmetic"}
"""Shipped ``labcore rrhf --preset TASK`` runs: ``data_1.jsonl`` (round 1's collection), the preset's last round's
policy in the folder itself and other rounds' policies in ``policy_K/`` (round 1 of a 2-round preset; round 2 of a
1-round preset, made by the same command with ``--set iterations=2``)."""


def shipped_rrhf_run(task: str, cfg: RRHFConfig) -> tuple[Path, dict[int, Path]] | None:
    """The shipped RRHF run of ``task`` if it can stand in for training ``cfg`` here: (its round-1 collection,
    {round: policy folder}); None when there is none or its settings differ from ``cfg`` in any field but
    ``iterations`` (a 2-round run's round 1 is the 1-round run) and ``eval.when``."""
    from labcore.presets import to_dict

    run = SHIPPED_RRHF.get(task)
    if run is None or not (run / "data_1.jsonl").is_file() or not (run / "rrhf_config.json").is_file():
        return None

    def settings(d: dict) -> dict:
        d = {k: v for k, v in d.items() if k != "iterations"}
        return {**d, "eval": {k: v for k, v in d.get("eval", {}).items() if k != "when"}}

    saved = json.loads((run / "rrhf_config.json").read_text(encoding="utf-8"))
    if settings(saved) != settings(json.loads(json.dumps(to_dict(cfg)))):
        return None
    rounds = {int(p.name.split("_")[1]): p for p in run.glob("policy_[0-9]*") if (p / "adapter_config.json").is_file()}
    rounds[int(saved["iterations"])] = run
    return run / "data_1.jsonl", dict(sorted(rounds.items()))


def _eval_policy(model_name: str, adapter: str | Path | None, cfg: RRHFConfig, data) -> dict:
    from labcore.models import load_model
    from labcore.rrhf_trainer import evaluate_rrhf

    policy, tok = load_model(model_name, adapter=str(adapter) if adapter else None, device=cfg.runtime.device)
    return evaluate_rrhf(policy, tok, cfg, data.task, data.reward_fn, data.judge_fn, data.heldout)


def sft_best(cfg: RRHFConfig, records: list[dict], out: Path, data) -> dict:
    """The "SFT on the best response" baseline: sft_epochs on (x, y_{i'}) with RRHF's optimiser settings."""
    from labcore.rrhf_trainer import evaluate_rrhf
    from labcore.runs import save_final
    from labcore.sft import sft_epochs
    from labcore.training import Learner, build_policy, mixed_precision

    pairs = [(r["query"], r["responses"][max(range(len(r["scores"])), key=r["scores"].__getitem__)])
             for r in records]  # Eq. 3: i' = argmax_i r_i (first on ties)
    torch.manual_seed(cfg.runtime.seed)
    policy, tok = build_policy(cfg.model, cfg.lora, cfg.runtime)
    n_micro = -(-len(pairs) // cfg.optim.batch_size)
    learner = Learner(policy, cfg.optim, total_steps=max(1, n_micro * cfg.optim.epochs // cfg.optim.grad_accum),
                      mixed_precision=mixed_precision(cfg.runtime), cpu=str(cfg.runtime.device) == "cpu",
                      seed=cfg.runtime.seed)
    policy = learner.unwrapped()
    sft_epochs(learner, tok, pairs, epochs=cfg.optim.epochs, batch_size=cfg.optim.batch_size, seed=cfg.runtime.seed,
               max_length=cfg.max_length, add_eos=True, response_only=True, progress=False)
    save_final(policy, tok, out, cfg.model)
    return evaluate_rrhf(policy, tok, cfg, data.task, data.reward_fn, data.judge_fn, data.heldout)


def _train_raft(task: str, out: Path, fast: bool | None, overrides: Sequence[str] = ()) -> Path:
    from labcore.raft import raft

    # eval.when=none: compare evaluates the final policy itself (with the ranking accuracy), once
    raft(build(RAFTConfig, task, fast=fast, overrides=[*overrides, "eval.when=none"]), out, progress=False)
    return out / "final"


def compare(out_dir: str | Path = "runs/compare", tasks: Sequence[str] = COMPARE_TASKS, *, fast: bool | None = None,
            threads: int = 0, progress: bool = True, retrain: bool = False) -> list[dict]:
    """Run every arm on every task; one row per (task, arm) with ``task``, ``arm``, ``how``, the evaluation fields
    and ``seconds``. ``retrain``: train the RAFT and RRHF arms here even where a shipped run could stand in."""
    from labcore.datasets import load_rrhf
    from labcore.rrhf_trainer import prepare, rrhf_pipeline

    out = Path(out_dir)
    rows: list[dict] = []
    with torch_threads(threads):
        for task in tasks:
            t_task = time.time()
            cfg = build(RRHFConfig, task, fast=fast)
            data = prepare(cfg)
            base = cfg.model
            arms: list[tuple[str, str, Callable[[], dict]]] = [
                ("base", f"{base} without training", lambda: _eval_policy(base, None, cfg, data))]
            raft_dir = SHIPPED_RAFT[task]
            if (raft_dir / "adapter_config.json").exists() and not retrain:
                arms.append(("RAFT", f"shipped adapter {raft_dir.relative_to(DATA_DIR.parent)}",
                             lambda: _eval_policy(base, raft_dir, cfg, data)))
            else:
                arms.append(("RAFT", f"trained here: labcore raft --preset {task}",
                             lambda: _eval_policy(base, _train_raft(task, out / f"raft-{task}", fast), cfg, data)))
            if task in CONTROLS["RAFT-random"]:
                # reward-blind: random selection, and no min_reward filter (which would let the reward back in)
                control = ("selection=random", "min_reward=none")
                arms.append(("RAFT-random", f"trained here: labcore raft --preset {task} --set {' '.join(control)}",
                             lambda: _eval_policy(base, _train_raft(task, out / f"raft-random-{task}", fast, control),
                                                  cfg, data)))
            rrhf_out = out / f"rrhf-{task}"
            collected: dict[str, list[dict]] = {}
            run = None if retrain else shipped_rrhf_run(task, cfg)
            ship_data, ship_rounds = run if run else (None, {})

            def last_row(metrics: list[dict]) -> dict:
                return {k: v for k, v in metrics[-1].items() if k not in ("iteration", "step", "epoch", "seconds")}

            def rrhf_bp():
                if 1 in ship_rounds:  # the shipped run's round 1 (same settings, deterministic: the same weights)
                    collected["bp"] = load_rrhf(ship_data)
                    return _eval_policy(base, ship_rounds[1], cfg, data)
                metrics = rrhf_pipeline(build(RRHFConfig, task, fast=fast, overrides={"iterations": 1, **FINAL}),
                                        rrhf_out, data, progress=progress)
                collected["bp"] = load_rrhf(rrhf_out / "data_1.jsonl")
                return last_row(metrics)

            def rrhf_ip2():
                if 2 in ship_rounds:
                    return _eval_policy(base, ship_rounds[2], cfg, data)
                ip = out / f"rrhf-ip2-{task}"
                shutil.rmtree(ip, ignore_errors=True)
                start = ship_rounds.get(1, rrhf_out / "final")
                return last_row(rrhf_pipeline(build(RRHFConfig, task, fast=fast, overrides={"iterations": 2, **FINAL}),
                                              ip, data, start_round=2, start_from=start, progress=progress))

            def from_ship(k: int) -> str:
                return f"shipped run {ship_rounds[k].relative_to(DATA_DIR.parent)} (round {k}): " if k in ship_rounds \
                    else ""

            source = {"BP": f"beam {cfg.num_samples} + dataset <= {cfg.dataset_responses}",
                      "DP": f"diverse beam {cfg.num_samples} + dataset <= {cfg.dataset_responses}",
                      "D": f"{cfg.num_samples} samples of the base model"}[cfg.policy]
            first = f"RRHF-{cfg.policy}"
            arms.append((first, f"{from_ship(1)}{cfg.optim.epochs} epochs on {len(data.queries)} queries ({source}), "
                                f"LoRA r {cfg.lora.r}, lr {cfg.optim.lr:g}", rrhf_bp))
            arms.append(("SFT-best", f"sft_epochs on the best response of {first}'s data, same optimiser settings",
                         lambda: sft_best(cfg, collected["bp"], out / f"sft-best-{task}", data)))
            arms.append(("RRHF-IP-2", f"{from_ship(2)}{first}'s policy + one round on responses it collected itself",
                         rrhf_ip2))
            for arm, how, fn in arms:
                t0 = time.time()
                if progress:
                    print(f"compare: {task} / {arm}", file=sys.stderr)
                rows.append({"task": task, "arm": arm, "how": how, **fn(), "seconds": time.time() - t0})
            if progress:
                print(f"compare: {task} done in {time.time() - t_task:.0f}s", file=sys.stderr)
    return sorted(rows, key=lambda r: (list(tasks).index(r["task"]), ARMS.index(r["arm"])))


def compare_table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`compare` rows."""
    return markdown_table(
        ["task", "arm", "eval reward", "judge", "perplexity", "distinct-2", "mean length", "rank acc", "seconds"],
        [[r["task"], r["arm"], fmt(r.get("eval_reward")), fmt(r.get("gold")), fmt(r.get("ppl"), 2),
          fmt(r.get("distinct_2")), fmt(r.get("mean_length"), 1), fmt(r.get("rank_acc")), f"{r['seconds']:.0f}"]
         for r in rows])


JUDGES = {"tiny-sentiment": "AFINN sign (share positive - share negative)", "tiny-helpful": "gold rubric",
          "smol-sentiment": "AFINN sign (share positive - share negative)",
          "smol-arithmetic": "exact sum (share of held-out problems answered right)"}


def write_report(rows: Sequence[dict], report: str | Path, minutes: float, threads: int,
                 tasks: Sequence[str] = TINY_TASKS, retrain: bool = False) -> Path:
    """docs/results/comparison.md (with the table between compare-table markers) and its .json beside it."""
    report = Path(report)
    report.parent.mkdir(parents=True, exist_ok=True)
    cmd = "labcore compare" + (f" --tasks {' '.join(tasks)}" if tuple(tasks) != TINY_TASKS else "") + \
        (f" --out {report}" if report.name != "comparison.md" else "") + \
        (f" --threads {threads}" if threads else "") + (" --retrain" if retrain else "") + \
        ("  # LABCORE_FAST=1: tiny sizes" if fast_mode() else "")
    judges = "; ".join(f"{t}: {JUDGES[t]}" for t in tasks if t in JUDGES)
    world = "SmolLM2-135M-Instruct" if all(t.startswith("smol") for t in tasks) else "the tiny world"
    how = "\n".join(f"* **{r['task']} / {r['arm']}**: {r['how']}" for r in rows)
    report.write_text(
        f"# RAFT, RRHF and baselines on {world}\n\nMade by `{cmd}` in {minutes:.1f} minutes on "
        f"{threads or torch.get_num_threads()} torch thread(s). Evaluation of every arm: the task's held-out prompts, "
        f"sampling settings and seed (`labcore.evaluation.evaluate`, protocol `labcore.presets.EVAL`), perplexity of "
        f"held-out reference responses, `judge` = the independent judge of the evaluation samples ({judges}), and "
        f"`rank acc` = the share of held-out response pairs that p_i (Eq. 1) orders as the reward does.\n\n<!-- compare-table:begin -->\n{compare_table(rows)}\n<!-- compare-table:end -->\n\n"
        f"## What each arm is\n\n{how}\n", encoding="utf-8")
    report.with_suffix(".json").write_text(json.dumps(list(rows), indent=1), encoding="utf-8")
    return report


# ----------------------------------------------------------------------------------------------------------------
# labcore raft-table: base vs RAFT from runs' metrics
# ----------------------------------------------------------------------------------------------------------------
SHIPPED_RAFT_RUNS = {name: path / "metrics.jsonl" for name, path in SHIPPED_RAFT.items()}


def raft_table(runs: dict[str, str | Path] | None = None) -> str:
    """The Table-10-like markdown table: reward, perplexity, distinct-2 (and gold) of the base model vs RAFT.

    Args:
        runs: preset name -> metrics.jsonl (default: the shipped runs in data/models/raft-*/).
    """
    from labcore.datasets import read_jsonl

    table = []
    for name, path in (runs or SHIPPED_RAFT_RUNS).items():
        rows = read_jsonl(path)
        for label, r in (("base", rows[0]), (f"RAFT ({rows[-1]['iteration']} it.)", rows[-1])):
            table.append([name, label, fmt(r["eval_reward"]), fmt(r["ppl"], 2), fmt(r["distinct_2"]),
                          fmt(r["mean_length"], 1), fmt(r.get("gold"))])
    return markdown_table(["preset", "model", "eval reward", "perplexity", "distinct-2", "mean length", "gold"], table)


__all__ = ["COMPARE_TASKS", "TINY_TASKS", "SMOL_TASKS", "CONTROLS", "JUDGES", "ARMS", "SHIPPED_RRHF", "shipped_rrhf_run", "compare", "compare_table", "write_report", "sft_best", "raft_table"]
