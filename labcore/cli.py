"""The ``labcore`` command: one entry point, one subcommand per task (``labcore SUBCOMMAND --help``).

Subcommands import their heavy modules only when run: the options of the subcommands in ``MODULE_COMMANDS`` live in
their own modules (next to the code they drive) and are added only when that subcommand is asked for, so
``labcore --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample responses from a model (optionally with a LoRA adapter)",
                       description="Sample responses and write one JSON line per sample "
                                   "(prompt, response, finished, ...).")
    p.add_argument("--model", default="tiny", help="preset (tiny, gpt2, pythia-70m, ...) or local HF directory")
    p.add_argument("--adapter", default=None, help="directory of a saved LoRA adapter (e.g. runs/raft/final)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", help="JSONL file of prompts (field 'prompt'; HH/TRL/RRHF files work too)")
    src.add_argument("--prompt", help="one prompt, given on the command line")
    p.add_argument("--field", default=None, help="read this field of --prompts as the prompt (e.g. 'request')")
    p.add_argument("--format", choices=["chat", "plain"], default="chat",
                   help="chat: wrap each prompt as '\\n\\nHuman: ...\\n\\nAssistant:' (default); plain: continue as is")
    p.add_argument("--num-samples", type=int, default=1, help="samples per prompt (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="new-token limit (default 64)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; 0 = greedy)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="top-k filter (default 0 = off)")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per batch (default 32)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    p.add_argument("--out", required=True, help="output JSONL file")
    p.set_defaults(run=_run_generate)


def _run_generate(args) -> None:
    from labcore.datasets import load_prompts, write_jsonl
    from labcore.generation import generate
    from labcore.formats import format_chat
    from labcore.models import load_model

    if args.prompt is not None:
        prompts = [args.prompt]
    else:
        prompts = [r["prompt"] for r in load_prompts(args.prompts, field_name=args.field)]
    if args.format == "chat":
        # prompts already in HH format (from HH/RRHF files) are kept; bare messages are wrapped
        prompts = [p if p.rstrip().endswith("Assistant:") else format_chat(p) for p in prompts]
    model, tok = load_model(args.model, adapter=args.adapter, device=args.device)
    greedy = args.temperature <= 0
    rows = generate(model, tok, prompts, num_samples=args.num_samples, max_new_tokens=args.max_new_tokens,
                    temperature=max(args.temperature, 1e-6), top_p=args.top_p, top_k=args.top_k,
                    do_sample=not greedy, stop_at_turn=args.format == "chat", batch_size=args.batch_size,
                    seed=args.seed, progress=True)
    write_jsonl(args.out, rows)
    done = sum(r["finished"] for r in rows)
    print(f"wrote {len(rows)} samples to {args.out} ({done} finished their turn)", file=sys.stderr)


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="add a 'reward' to every record of a JSONL file",
                       description="Copy each record and add 'reward' = R(prompt, response).")
    p.add_argument("--reward", required=True,
                   help="sentiment | gold | length | a saved reward-model directory | a HF classifier path or name")
    p.add_argument("--in", dest="inp", required=True, help="input JSONL with 'prompt' and 'response' fields")
    p.add_argument("--out", required=True, help="output JSONL")
    p.add_argument("--batch-size", type=int, default=256, help="records per reward call (default 256)")
    p.add_argument("--device", default="auto", help="device of a model reward")
    p.set_defaults(run=_run_score)


def _run_score(args) -> None:
    from labcore.datasets import DataFormatError, iter_records, write_jsonl
    from labcore.metrics import reward_summary
    from labcore.rewards import get_reward

    records = []
    for line, rec in iter_records(args.inp):
        for name in ("prompt", "response"):
            if not isinstance(rec.get(name), str):
                raise DataFormatError(args.inp, line, name, "missing field or not a string")
        records.append(rec)
    reward = get_reward(args.reward, device=args.device)
    values: list[float] = []
    for i in range(0, len(records), args.batch_size):
        chunk = records[i:i + args.batch_size]
        values += reward([r["prompt"] for r in chunk], [r["response"] for r in chunk]).tolist()
    write_jsonl(args.out, ({**r, "reward": v} for r, v in zip(records, values)))
    s = reward_summary(values)
    print(f"scored {s['n']} records with {args.reward}: mean {s['mean']:.4f}, std {s['std']:.4f}", file=sys.stderr)


def _add_select(sub) -> None:
    p = sub.add_parser("select", help="core-set selection (K-means task centre + KCenterGreedy) for one task",
                       description="Chen et al. 2023, 'Maybe Only 0.5%% Data is Needed': embed, cluster, pick the "
                                   "task centre, then KCenterGreedy up to the budget.")
    p.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "data" / "instructions.jsonl.gz"),
                   help="instruction set (.jsonl / .jsonl.gz; default: the tiny world's)")
    p.add_argument("--task", required=True, help="target task (the records' 'task' field)")
    p.add_argument("--budget", default="0.005", help="a count (e.g. 50) or a fraction (e.g. 0.005); default 0.005")
    p.add_argument("--clusters", type=int, default=32, help="K of K-means (default 32)")
    p.add_argument("--split", default="train", help="candidate split (default train; 'all' for every record)")
    p.add_argument("--model", default="minilm", help="sentence encoder (default: offline MiniLM)")
    p.add_argument("--seed", type=int, default=0, help="seed of K-means and the baselines")
    p.add_argument("--out", required=True, help="output JSONL of the selected examples, in pick order")
    p.set_defaults(run=_run_select)


def _run_select(args) -> None:
    from labcore.coreset import parse_budget, run_select

    run_select(args.data, args.task, parse_budget(args.budget), args.out, n_clusters=args.clusters, seed=args.seed,
               model=args.model, split=None if args.split == "all" else args.split)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="rebuild the tiny world's data files byte-identically (or print their --stats)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0: the committed files)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data"),
                   help="output folder (default: the repository's data/)")
    p.add_argument("--stats", action="store_true", help="print the datasheet's numbers instead of writing files")
    p.set_defaults(run=_run_data)


def _run_data(args) -> None:
    from labcore.tinyworld.build import main as build_main

    build_main(["--seed", str(args.seed), "--out", args.out] + (["--stats"] if args.stats else []))


#: subcommand -> (module, function adding its options, function running it, one-line help)
MODULE_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "pretrain": ("labcore.pretrain", "add_pretrain_args", "run_pretrain",
                 "train the tokenizer and the tiny base model of the tiny world"),
    "eval-base": ("labcore.pretrain", "add_eval_base_args", "run_eval_base",
                  "measure the base model's quality (the datasheet's numbers)"),
    "train-rm": ("labcore.reward_model", "add_train_rm_args", "run_train_rm",
                 "train the learned reward model (Bradley-Terry on MiniLM) on preference pairs"),
    "raft": ("labcore.raft", "add_raft_args", "run_raft", "RAFT: sample, reward, keep the best, fine-tune, repeat"),
    "raft-table": ("labcore.raft", "add_raft_table_args", "run_raft_table",
                   "the reward / perplexity table of RAFT runs (base vs RAFT)"),
    "rrhf": ("labcore.rrhf_train", "add_rrhf_args", "run_rrhf",
             "RRHF: collect ranked responses (BP/DP/D, IP-n) and train with L_rank + L_ft"),
    "compare": ("labcore.rrhf_train", "add_compare_args", "run_compare",
                "tiny-world comparison: base, SFT-best, RAFT, RRHF-BP, RRHF-IP-2 -> docs/results/comparison.md"),
    "coreset-experiment": ("labcore.coreset_experiment", "add_coreset_experiment_args", "run_coreset_experiment",
                           "the 0.5%% experiment: instruction-tune on the core-set vs random 0.5%% vs all task data"),
    "app": ("labcore.app.ui", "add_app_args", "run_app", "open the Gradio app"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the options of a ``MODULE_COMMANDS`` subcommand are loaded only when it is ``command``."""
    parser = argparse.ArgumentParser(prog="labcore", description="labcore: a hands-on lab for efficient LLM alignment "
                                     "(RRHF, RAFT, core-set selection). Run 'labcore COMMAND --help' for details.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_generate(sub)
    _add_score(sub)
    _add_select(sub)
    _add_data(sub)
    for name, (module, add, run, help_text) in MODULE_COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            import importlib

            mod = importlib.import_module(module)
            getattr(mod, add)(p)
            p.set_defaults(run=getattr(mod, run))
    return parser


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
