"""The ``labcore`` command: one subcommand per task (``labcore SUBCOMMAND --help``).

Every subcommand's options are a dataclass below, parsed by transformers' ``HfArgumentParser`` (what TRL uses);
the methods' settings come from their config dataclasses (:mod:`labcore.config`) through a preset and
``--set FIELD=VALUE`` overrides (:mod:`labcore.presets`), so a new config field is a new option with no CLI code.
A user error (a malformed file, an unknown preset, task, reward or model, an out-of-range value) prints one line
``labcore COMMAND: error: ...`` and exits with status 2; ``--debug`` (or ``LABCORE_DEBUG=1``) shows the traceback.
Heavy modules are imported only when their subcommand runs, so ``labcore --help`` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from labcore import DATA_DIR, fast_mode


def _opt(default: Any = dataclasses.MISSING, help: str = "", **metadata) -> Any:
    """A dataclass field that HfArgumentParser turns into an option with this help text."""
    kwargs: dict[str, Any] = {"metadata": {"help": help, **metadata}}
    if isinstance(default, list):
        kwargs["default_factory"] = lambda: list(default)
    elif default is not dataclasses.MISSING:
        kwargs["default"] = default
    return field(**kwargs)


SET_HELP = "override any field of the config, by dotted path or unique name: --set optim.lr=1e-4 num_samples=8"


# ----------------------------------------------------------------------------------------------------------------
# generate, score, select, data
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class GenerateArgs:
    out: str | None = _opt(None, "output JSONL file (one line per sample); default: print the responses")
    model: str = _opt("tiny", "preset (tiny, smollm2-135m, gpt2, pythia-70m, ...) or local Hugging Face directory")
    adapter: str | None = _opt(None, "directory of a saved LoRA adapter (e.g. runs/raft/final)")
    prompts: str | None = _opt(None, "JSONL file of prompts (field 'prompt'; HH/TRL/RRHF files work too)")
    prompt: str | None = _opt(None, "one prompt, given on the command line")
    field: str | None = _opt(None, "read this field of --prompts as the prompt (e.g. 'request')")
    format: Literal["chat", "plain"] = _opt("chat", "chat: prompt through the model's chat template (SmolLM2) or "
                                                    "as '\\n\\nHuman: ...\\n\\nAssistant:'; plain: continue the text")
    num_samples: int = _opt(1, "samples per prompt")
    max_new_tokens: int = _opt(64, "new-token limit")
    temperature: float = _opt(1.0, "sampling temperature (0 = greedy)")
    top_p: float = _opt(1.0, "nucleus sampling mass, in (0, 1]")
    top_k: int = _opt(0, "top-k filter (0 = off)")
    batch_size: int = _opt(32, "prompts per batch")
    seed: int = _opt(0, "sampling seed")
    device: str = _opt("auto", "auto (cuda > mps > cpu), cpu, cuda, ...")


def run_generate(a: GenerateArgs) -> list[dict]:
    from labcore.config import Sampling

    if (a.prompt is None) == (a.prompts is None):
        raise ValueError("give exactly one of --prompt TEXT or --prompts FILE")
    if a.temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {a.temperature}")
    if a.num_samples < 1:
        raise ValueError(f"--num_samples must be >= 1, got {a.num_samples}")
    greedy = a.temperature == 0
    s = Sampling(temperature=a.temperature if not greedy else 1.0, top_k=a.top_k, top_p=a.top_p,
                 max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)  # validates the ranges
    from labcore.datasets import load_prompts, write_jsonl
    from labcore.formats import hh_to_messages, prompt_format
    from labcore.generation import generate
    from labcore.models import load_model

    prompts = [a.prompt] if a.prompt is not None else [r["prompt"] for r in load_prompts(a.prompts, a.field)]
    model, tok = load_model(a.model, adapter=a.adapter, device=a.device)
    if a.format == "chat":  # bare messages and HH transcripts (HH/RRHF files) alike, in the model's own format
        fmt = prompt_format(tok)
        prompts = [fmt.prompt(hh_to_messages(p)) for p in prompts]
    rows = generate(model, tok, prompts, num_samples=a.num_samples, max_new_tokens=s.max_new_tokens,
                    temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, do_sample=not greedy,
                    stop_at_turn=a.format == "chat", batch_size=s.batch_size, seed=a.seed, progress=True)
    if a.out:
        write_jsonl(a.out, rows)
        print(f"wrote {len(rows)} samples to {a.out} ({sum(r['finished'] for r in rows)} finished their turn)",
              file=sys.stderr)
    else:
        for r in rows:
            print(r["response"].strip() + "\n")
    return rows


@dataclass
class PrepareModelArgs:
    model: str = _opt("smollm2-135m", "the offline preset to prepare (smollm2-135m: convert the packaged GGUF once)")


def run_prepare_model(a: PrepareModelArgs) -> str:
    from labcore.models import PRESETS, resolve_model_path

    if a.model not in PRESETS:
        raise ValueError(f"unknown model preset {a.model!r}; known: {', '.join(PRESETS)}")
    path, local = resolve_model_path(a.model)
    print(f"{a.model}: {path}" if local else f"{a.model}: {path} (Hub id, downloaded on first use)")
    return path


@dataclass
class ScoreArgs:
    reward: str = _opt(help="sentiment | gold | length | a saved reward-model directory | a HF classifier")
    input: str = _opt(help="input JSONL with 'prompt' and 'response' fields", aliases=["--in"])
    out: str = _opt(help="output JSONL (each record with 'reward' added)")
    batch_size: int = _opt(256, "records per reward call")
    device: str = _opt("auto", "device of a model reward")


def run_score(a: ScoreArgs) -> list[float]:
    from labcore.datasets import DataFormatError, iter_records, write_jsonl
    from labcore.metrics import reward_summary
    from labcore.tasks import load_reward

    reward = load_reward(a.reward, a.device)  # an unknown reward fails before the file is read
    records = []
    for line, rec in iter_records(a.input):
        for name in ("prompt", "response"):
            if not isinstance(rec.get(name), str):
                raise DataFormatError(a.input, line, name, "missing field or not a string")
        records.append(rec)
    values: list[float] = []
    for i in range(0, len(records), a.batch_size):
        chunk = records[i:i + a.batch_size]
        values += reward([r["prompt"] for r in chunk], [r["response"] for r in chunk]).tolist()
    write_jsonl(a.out, ({**r, "reward": v} for r, v in zip(records, values)))
    s = reward_summary(values)
    print(f"scored {s['n']} records with {a.reward}: mean {s['mean']:.4f}, std {s['std']:.4f}", file=sys.stderr)
    return values


@dataclass
class SelectArgs:
    task: str = _opt(help="target task (the records' 'task' field), e.g. sentiment")
    out: str = _opt(help="output JSONL of the selected examples, in pick order")
    data: str = _opt(str(DATA_DIR / "instructions.jsonl.gz"), "instruction set (.jsonl / .jsonl.gz)")
    budget: str = _opt("0.005", "a count (e.g. 50) or a fraction of the task's examples (e.g. 0.005)")
    clusters: int = _opt(32, "K of K-means")
    split: str = _opt("train", "candidate split ('all' for every record)")
    model: str = _opt("minilm", "sentence encoder (default: the offline MiniLM)")
    seed: int = _opt(0, "seed of K-means and the baselines")
    kmeans: Literal["k-means++", "sample"] = _opt("k-means++", "K-means start: k-means++ on all points (3 restarts) "
                                                  "or k-means++ on a seeded 5,000-point sample (the app's clusters)")


def run_select(a: SelectArgs):
    from labcore.coreset import parse_budget, run_select as select

    if a.clusters < 1:
        raise ValueError(f"--clusters must be >= 1, got {a.clusters}")
    return select(a.data, a.task, parse_budget(a.budget), a.out, n_clusters=a.clusters, seed=a.seed, model=a.model,
                  split=None if a.split == "all" else a.split, kmeans_init=a.kmeans)


@dataclass
class EmbedArgs:
    data: str = _opt(str(DATA_DIR / "instructions.jsonl.gz"), "instruction set (.jsonl / .jsonl.gz)")
    split: str = _opt("train", "split to embed ('all' for every record)")
    model: str = _opt("minilm", "sentence encoder (default: the offline MiniLM)")
    quantize: Literal["none", "int8"] = _opt("none", "int8: dynamic int8 quantisation (faster on a CPU, not the "
                                                     "paper's embeddings; cached separately)")
    ship: bool = _opt(False, "also write the shipped float16 embeddings and UMAP layout under data/embeddings/")
    seed: int = _opt(0, "UMAP seed of the shipped layout (the app's default)")


def run_embed(a: EmbedArgs):
    from labcore.coreset import run_embed as embed

    return embed(a.data, split=None if a.split == "all" else a.split, model=a.model,
                 quantize=None if a.quantize == "none" else a.quantize, ship=a.ship, seed=a.seed)


@dataclass
class DataArgs:
    seed: int = _opt(0, "generator seed (0: the committed files)")
    out: str = _opt(str(DATA_DIR), "output folder")
    stats: bool = _opt(False, "print the datasheet's numbers instead of writing files")


def run_data(a: DataArgs) -> None:
    from labcore.tinyworld.build import main as build_main

    build_main(["--seed", str(a.seed), "--out", a.out] + (["--stats"] if a.stats else []))


# ----------------------------------------------------------------------------------------------------------------
# pretrain, eval-base, train-rm
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class PretrainArgs:
    out: str = _opt(str(DATA_DIR / "models" / "tiny-base"), "output directory")
    resume: bool = _opt(False, "continue from OUT/checkpoint")
    max_minutes: float | None = _opt(None, "wall-clock budget; stops cleanly and saves")
    steps: int | None = _opt(None, "optimiser steps (default: PretrainConfig.max_steps)")
    seed: int | None = _opt(None, "seed (default 0)")
    threads: int | None = _opt(None, "torch threads (default: one per core)")
    no_progress: bool = _opt(False, "no progress bar")


def run_pretrain(a: PretrainArgs) -> dict:
    from labcore.pretrain import PretrainConfig, pretrain

    overrides: dict[str, Any] = {}
    if a.max_minutes is not None:
        overrides["max_minutes"] = a.max_minutes
    if a.steps is not None:
        overrides["max_steps"] = a.steps
        overrides["warmup_steps"] = min(PretrainConfig.default().warmup_steps, max(0, a.steps - 1))
    if a.seed is not None:
        overrides["seed"] = a.seed
    if a.threads is not None:
        overrides["num_threads"] = a.threads
    return pretrain(PretrainConfig.default(**overrides), a.out, resume=a.resume, progress=not a.no_progress)


@dataclass
class EvalBaseArgs:
    model: str = _opt(str(DATA_DIR / "models" / "tiny-base"), "model directory")
    n: int | None = _opt(None, "requests per set (default 200; 20 in fast mode)")
    seed: int = _opt(0, "sampling seed")
    json: str | None = _opt(None, "report path (default: MODEL/eval_base.json)")


def run_eval_base(a: EvalBaseArgs) -> dict:
    from labcore.base_eval import evaluate_base

    n = a.n if a.n is not None else (20 if fast_mode() else 200)
    return evaluate_base(a.model, n=n, n_reviews=max(10, n // 2), seed=a.seed, out_json=a.json)


@dataclass
class TrainRMArgs:
    train: str = _opt(str(DATA_DIR / "dialogues" / "hh_train.jsonl.gz"), "preference pairs (HH or TRL "
                                                                          "prompt/chosen/rejected)")
    test: str = _opt(str(DATA_DIR / "dialogues" / "hh_test.jsonl.gz"), "held-out preference pairs ('' for none)")
    out: str = _opt(str(DATA_DIR / "models" / "tiny-rm"), "output folder")
    epochs: int | None = _opt(None, "epochs (default: RewardModelConfig's 30; 10 in fast mode)")
    lr: float | None = _opt(None, "AdamW learning rate (default: RewardModelConfig's)")
    batch_size: int | None = _opt(None, "pairs per step (default: RewardModelConfig's)")
    hidden: int | None = _opt(None, "head hidden width (default: RewardModelConfig's)")
    encoder: str | None = _opt(None, "sentence encoder (default: the offline MiniLM)")
    seed: int = _opt(0, "seed")
    device: str = _opt("auto", "auto (cuda > mps > cpu), cpu, cuda, ...")
    no_analysis: bool = _opt(False, "skip the tiny-world analysis (paraphrase accuracy, gold agreement, probes)")
    no_progress: bool = _opt(False, "no progress bars")


def run_train_rm(a: TrainRMArgs) -> dict:
    from labcore.reward_model import train_and_report

    given = {k: v for k, v in dict(lr=a.lr, batch_size=a.batch_size, hidden=a.hidden, encoder=a.encoder).items()
             if v is not None}
    return train_and_report(a.train, a.test or None, a.out, epochs=a.epochs, seed=a.seed, device=a.device,
                            analysis=not a.no_analysis, progress=not a.no_progress, **given)


# ----------------------------------------------------------------------------------------------------------------
# raft, rrhf, raft-table, compare, coreset-experiment
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class MethodArgs:
    preset: str = _opt(help="a named setting (labcore.presets); see --help of the command for the list")
    out: str | None = _opt(None, "run folder (default: runs/METHOD-PRESET)")
    resume: bool = _opt(False, "continue from OUT (its checkpoint / finished rounds)")
    data: str | None = _opt(None, "a local file standing in for an online task's Hub dataset (its last rows are "
                                  "held out); for rrhf also an RRHF JSONL (query/responses/scores) or preference "
                                  "pairs (prompt/chosen/rejected, e.g. the app's votes.jsonl) to train on")
    set: list[str] = _opt([], SET_HELP, metavar="FIELD=VALUE", action="extend")


def _method_config(cls, a: MethodArgs):
    from labcore.presets import build

    return build(cls, a.preset, overrides=a.set)


def run_raft(a: MethodArgs) -> list[dict]:
    from labcore.config import RAFTConfig
    from labcore.experiments.compare import raft_table
    from labcore.raft import raft

    config = _method_config(RAFTConfig, a)
    out = Path(a.out or f"runs/raft-{a.preset}")
    rows = raft(config, out, resume=a.resume, data=a.data)
    print(raft_table({a.preset: out / "metrics.jsonl"}))
    flag = "--adapter" if config.lora.use else "--model"
    print(f"final policy: {out / 'final'}  (labcore generate --model {config.model} {flag} {out / 'final'} ...)",
          file=sys.stderr)
    return rows


def _data_format(path: str | None) -> str | None:
    """The format of the first record of ``--data`` ("rrhf", "preference", ...; None: none of labcore's)."""
    from labcore.datasets import detect_format, iter_records

    for _, rec in iter_records(path) if path else ():
        try:
            return detect_format(rec)
        except ValueError:  # e.g. IMDB rows {"text", "label"}
            return None
    return None


def run_rrhf(a: MethodArgs) -> list[dict]:
    from labcore.config import RRHFConfig
    from labcore.datasets import load_rrhf
    from labcore.rrhf_trainer import prepare, rrhf_pipeline
    from labcore.runs import fmt, markdown_table

    config = _method_config(RRHFConfig, a)
    kind = _data_format(a.data)
    records = None
    if kind == "rrhf":
        records = load_rrhf(a.data)
    elif kind == "preference":  # e.g. the app's votes.jsonl: each pair a query with two ranked responses
        from labcore.datasets import load_preferences, preferences_to_rrhf

        records = preferences_to_rrhf(load_preferences(a.data))
        if not records:
            raise ValueError(f"{a.data}: no preference pair to train on (ties and 'both bad' votes are skipped)")
    data = prepare(config, data=None if records is not None else a.data)
    out = Path(a.out or f"runs/rrhf-{a.preset}")
    rows = rrhf_pipeline(config, out, data, records=records, resume=a.resume)
    print(markdown_table(["run", "row", "eval reward", "gold", "perplexity", "distinct-2", "rank acc"],
                         [[a.preset, f"round {r['iteration']}, step {r['step']}", fmt(r.get("eval_reward")),
                           fmt(r.get("gold")), fmt(r.get("ppl"), 2), fmt(r.get("distinct_2")), fmt(r.get("rank_acc"))]
                          for r in (rows[0], rows[-1])]))
    flag = "--adapter" if config.lora.use else "--model"
    print(f"final policy: {out / 'final'}  (labcore generate --model {config.model} {flag} {out / 'final'} ...)",
          file=sys.stderr)
    return rows


@dataclass
class RaftTableArgs:
    run: list[str] = _opt([], "runs to tabulate as PRESET=METRICS (default: the shipped data/models/raft-*)",
                          metavar="PRESET=METRICS")
    update: str | None = _opt(None, "rewrite the table between the raft-table markers of this markdown file")


def run_raft_table(a: RaftTableArgs) -> str:
    from labcore.experiments.compare import raft_table
    from labcore.runs import rewrite_between_markers

    bad = [r for r in a.run if "=" not in r]
    if bad:
        raise ValueError(f"--run takes PRESET=METRICS, got {bad[0]!r}")
    table = raft_table(dict(r.split("=", 1) for r in a.run) if a.run else None)
    print(table)
    if a.update:
        rewrite_between_markers(a.update, "raft-table", table)
    return table


@dataclass
class CompareArgs:
    out: str = _opt("docs/results/comparison.md", "markdown report (a .json beside it)")
    runs: str = _opt("runs/compare", "folder of the trained arms")
    tasks: list[str] = _opt(["tiny-sentiment", "tiny-helpful"], "tasks to compare (SmolLM2: smol-sentiment "
                            "smol-arithmetic, with --out docs/results/comparison-smol.md)")
    threads: int = _opt(0, "torch CPU threads (0 = torch's default)")
    update: str | None = _opt(None, "also rewrite the table between the compare-table markers of this file")
    retrain: bool = _opt(False, "train the RAFT and RRHF arms here too (default: evaluate the shipped runs of their "
                                "presets where they match the settings)")


def run_compare(a: CompareArgs) -> list[dict]:
    import time

    from labcore.experiments.compare import COMPARE_TASKS, compare, compare_table, write_report
    from labcore.runs import rewrite_between_markers

    unknown = [t for t in a.tasks if t not in COMPARE_TASKS]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; known: {', '.join(COMPARE_TASKS)}")
    t0 = time.time()
    rows = compare(a.runs, a.tasks, threads=a.threads, retrain=a.retrain)
    minutes = (time.time() - t0) / 60
    print(compare_table(rows))
    report = write_report(rows, a.out, minutes, a.threads, a.tasks, a.retrain)
    if a.update:
        rewrite_between_markers(a.update, "compare-table", compare_table(rows))
    print(f"wrote {report} and {report.with_suffix('.json')} ({minutes:.1f} min)", file=sys.stderr)
    return rows


@dataclass
class CoresetExperimentArgs:
    out: str = _opt("runs/coreset", "folder for results.json / results.md (the shipped results are in "
                                    "docs/results/coreset and docs/results/coreset-smol)")
    preset: str | None = _opt(None, "tiny (the defaults) or smollm2 (SmolLM2-135M + LoRA, a smaller step budget)")
    set: list[str] = _opt([], SET_HELP + " (e.g. --set task=safety seeds=0,1 lora.use=true)", metavar="FIELD=VALUE",
                          action="extend")
    restart: bool = _opt(False, "overwrite the runs already in --out (default: keep them and run only the missing "
                                "ones; other settings there are an error)")
    no_progress: bool = _opt(False, "no progress bars")


def run_coreset_experiment(a: CoresetExperimentArgs) -> dict:
    from labcore.config import CoresetExperimentConfig
    from labcore.experiments.coreset_05 import results_markdown, run_experiment
    from labcore.presets import build

    config = build(CoresetExperimentConfig, a.preset, overrides=a.set)
    results = run_experiment(config, a.out, progress=not a.no_progress, resume=not a.restart)
    print(results_markdown(results))
    print(f"wrote {Path(a.out) / 'results.json'} and {Path(a.out) / 'results.md'}", file=sys.stderr)
    return results


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------
def _presets_of(name: str) -> str:
    from labcore.config import RAFTConfig, RRHFConfig
    from labcore.presets import PRESETS

    cls = {"raft": RAFTConfig, "rrhf": RRHFConfig}[name]
    return "\n".join(f"  {preset}: {p.get('help', '')}" for preset, p in PRESETS[cls].items()) + \
        "\n\nExample: labcore " + name + " --preset tiny-sentiment --set optim.lr=1e-4 runtime.threads=1"


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the preset list's lines; shows defaults."""


#: subcommand -> (options dataclass, runner, one-line help)
COMMANDS: dict[str, tuple[type, Callable, str]] = {
    "generate": (GenerateArgs, run_generate, "sample responses from a model (optionally with a LoRA adapter)"),
    "prepare-model": (PrepareModelArgs, run_prepare_model, "convert the packaged SmolLM2 once into labcore's cache"),
    "score": (ScoreArgs, run_score, "add a 'reward' to every record of a JSONL file"),
    "select": (SelectArgs, run_select, "core-set selection (K-means task centre + KCenterGreedy) for one task"),
    "embed": (EmbedArgs, run_embed, "embed an instruction set into the cache (--ship: the files data/ ships)"),
    "data": (DataArgs, run_data, "rebuild the tiny world's data files byte-identically (or print their --stats)"),
    "pretrain": (PretrainArgs, run_pretrain, "train the tokenizer and the tiny base model of the tiny world"),
    "eval-base": (EvalBaseArgs, run_eval_base, "measure the base model's quality (the datasheet's numbers)"),
    "train-rm": (TrainRMArgs, run_train_rm, "train the learned reward model (Bradley-Terry on MiniLM)"),
    "raft": (MethodArgs, run_raft, "RAFT: sample, reward, keep the best, fine-tune, repeat"),
    "raft-table": (RaftTableArgs, run_raft_table, "the reward / perplexity table of RAFT runs (base vs RAFT)"),
    "rrhf": (MethodArgs, run_rrhf, "RRHF: collect ranked responses (BP/DP/D, IP-n) and train with L_rank + L_ft"),
    "compare": (CompareArgs, run_compare, "base, SFT-best, RAFT (+ RAFT-random), RRHF, RRHF-IP-2 on the same tasks"),
    "coreset-experiment": (CoresetExperimentArgs, run_coreset_experiment,
                           "the 0.5%% experiment: instruction-tune on the core-set vs random 0.5%% vs all task data"),
    "app": (None, None, "open the Gradio app (same as python app.py)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; a subcommand's options are built only when it is ``command`` (so --help stays fast)."""
    from transformers import HfArgumentParser

    parser = argparse.ArgumentParser(prog="labcore", description="labcore: a hands-on lab for efficient LLM "
                                     "alignment (RRHF, RAFT, core-set selection). Run 'labcore COMMAND --help'.")
    parser.add_argument("--debug", dest="debug_all", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=HfArgumentParser)
    for name, (args_cls, _, help_text) in COMMANDS.items():
        description = help_text + (f".\n\npresets:\n{_presets_of(name)}" if name in ("raft", "rrhf") and
                                   name == command else "")
        if name != command:
            sub.add_parser(name, help=help_text, description=description)
            continue
        p = sub.add_parser(name, help=help_text, description=description, formatter_class=_Formatter,
                           dataclass_types=[args_cls] if args_cls else None)
        if args_cls is None:  # the app keeps its own options (python app.py --help), validated by AppConfig
            from labcore.app.ui import add_app_args

            add_app_args(p)
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> Any:
    """Run ``labcore ARGV``; returns what the subcommand returns. User errors exit 2 with one line."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    ns = parser.parse_args(argv)
    debug = ns.debug_all or getattr(ns, "debug", False) or os.environ.get("LABCORE_DEBUG", "0") not in ("", "0")
    args_cls, run, _ = COMMANDS[ns.command]
    try:
        if ns.command == "app":
            from labcore.app.ui import run_app

            return run_app(ns)
        names = {f.name for f in dataclasses.fields(args_cls)}
        return run(args_cls(**{k: v for k, v in vars(ns).items() if k in names}))
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if debug:
            raise
        print(f"labcore {ns.command}: error: {_one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (ValueError, OSError, LookupError)) or type(err).__name__ == "HubUnavailableError":
        return text
    return f"{type(err).__name__}: {text} (run with --debug for the traceback)"


def entry() -> None:
    """The console script: run :func:`main`, exit 0 (its return value is for callers in Python)."""
    main()


if __name__ == "__main__":
    entry()


__all__ = ["COMMANDS", "build_parser", "main", "entry"]
