"""The `labcore` command: help, generate on a local tiny model, score with a reward."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from labcore.cli import MODULE_COMMANDS, build_parser, main

BIN = Path(sys.executable).parent / "labcore"


def test_help_lists_subcommands():
    out = subprocess.run([str(BIN), "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("generate", "score", "pretrain", "select"):
        assert name in out
    for name in ("generate", "score", "select", "data"):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([name, "--help"])
        assert e.value.code == 0


@pytest.mark.parametrize("name", sorted(MODULE_COMMANDS))
def test_module_subcommand_help(name, capsys):
    """Subcommands whose options live in their own module: listed without importing it, --help works."""
    assert name in subprocess.run([str(BIN), "--help"], capture_output=True, text=True).stdout
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"labcore {name}" in capsys.readouterr().out


def test_generate_then_score(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in ["How do I water a plant?", "Hi"]) + "\n")
    out = tmp_path / "samples.jsonl"
    main(["generate", "--model", str(tiny_model_dir), "--prompts", str(prompts), "--num-samples", "3",
          "--max-new-tokens", "5", "--seed", "1", "--out", str(out)])
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(rows) == 6
    assert rows[0]["prompt"] == "\n\nHuman: How do I water a plant?\n\nAssistant:"
    assert all({"prompt", "response", "finished"} <= set(r) for r in rows)
    scored = tmp_path / "scored.jsonl"
    main(["score", "--reward", "length", "--in", str(out), "--out", str(scored)])
    srows = [json.loads(l) for l in scored.read_text().splitlines()]
    assert [r["reward"] for r in srows] == [float(len(r["response"].split())) for r in rows]
    assert all({k: v for k, v in s.items() if k != "reward"} == r for s, r in zip(srows, rows))


def test_generate_plain_single_prompt_subprocess(tiny_model_dir, tmp_path):
    out = tmp_path / "o.jsonl"
    subprocess.run([str(BIN), "generate", "--model", str(tiny_model_dir), "--prompt", "This film", "--format", "plain",
                    "--max-new-tokens", "4", "--out", str(out)], check=True, capture_output=True)
    row = json.loads(out.read_text())
    assert row["prompt"] == "This film"


def test_score_names_line_of_bad_record(tmp_path):
    from labcore.datasets import DataFormatError

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(DataFormatError, match="line 2, field 'response'"):
        main(["score", "--reward", "length", "--in", str(bad), "--out", str(tmp_path / "o.jsonl")])
