"""The `labcore` command: help of every subcommand, generate on a local tiny model, score, and user errors that print
one line `labcore COMMAND: error: ...` and exit 2 (the traceback only with --debug)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from labcore.cli import COMMANDS, main

BIN = Path(sys.executable).parent / "labcore"


def test_help_lists_subcommands():
    out = subprocess.run([str(BIN), "--help"], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"labcore {name}" in out
    if name in ("raft", "rrhf"):
        assert "tiny-sentiment" in out and "--set" in out  # the presets are listed; overrides documented


def test_generate_then_score(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in ["How do I water a plant?", "Hi"]) + "\n")
    out = tmp_path / "samples.jsonl"
    main(["generate", "--model", str(tiny_model_dir), "--prompts", str(prompts), "--num-samples", "3",
          "--max-new-tokens", "5", "--seed", "1", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    assert rows[0]["prompt"] == "\n\nHuman: How do I water a plant?\n\nAssistant:"
    assert all({"prompt", "response", "finished"} <= set(r) for r in rows)
    scored = tmp_path / "scored.jsonl"
    main(["score", "--reward", "length", "--in", str(out), "--out", str(scored)])
    srows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [r["reward"] for r in srows] == [float(len(r["response"].split())) for r in rows]
    assert all({k: v for k, v in s.items() if k != "reward"} == r for s, r in zip(srows, rows))


def test_generate_plain_single_prompt_subprocess(tiny_model_dir, tmp_path):
    out = tmp_path / "o.jsonl"
    subprocess.run([str(BIN), "generate", "--model", str(tiny_model_dir), "--prompt", "This film", "--format", "plain",
                    "--max-new-tokens", "4", "--out", str(out)], check=True, capture_output=True)
    row = json.loads(out.read_text())
    assert row["prompt"] == "This film"


def _fails(args: list[str], tmp_path) -> str:
    """Run the real command; it must exit 2 with exactly one line on stderr and no traceback."""
    proc = subprocess.run([str(BIN), *args], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": str(BIN.parent), "HF_HUB_OFFLINE": "1", "LABCORE_FAST": "1"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"labcore {args[0]}: error: "), proc.stderr
    return lines[0]


def test_user_errors_print_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps({"prompt": 5}) + "\n")
    line = _fails(["generate", "--prompts", str(bad), "--out", "o.jsonl"], tmp_path)
    assert "bad.jsonl, line 2, field 'prompt'" in line
    assert "temperature" in _fails(["generate", "--prompt", "hi", "--temperature", "-1", "--out", "o.jsonl"], tmp_path)
    assert "top_p" in _fails(["generate", "--prompt", "hi", "--top-p", "1.5", "--out", "o.jsonl"], tmp_path)
    assert "'nope'" in _fails(["select", "--task", "nope", "--out", "o.jsonl"], tmp_path)
    assert "budget" in _fails(["select", "--task", "sentiment", "--budget", "0", "--out", "o.jsonl"], tmp_path)
    assert "budget" in _fails(["select", "--task", "sentiment", "--budget", "1.5", "--out", "o.jsonl"], tmp_path)
    assert "8,052" in _fails(["select", "--task", "sentiment", "--budget", "9000", "--out", "o.jsonl"], tmp_path)
    assert "unknown preset 'nope'" in _fails(["raft", "--preset", "nope"], tmp_path)
    assert "sampling.temperature" in _fails(["raft", "--preset", "tiny-sentiment", "--set", "sampling.temperature=-1"],
                                            tmp_path)
    assert "field 'lrr'" in _fails(["rrhf", "--preset", "tiny-sentiment", "--set", "lrr=1"], tmp_path)
    assert "no-such-model" in _fails(["generate", "--model", "./no-such-model", "--prompt", "hi", "--out", "o.jsonl"],
                                       tmp_path)
    assert "no-reward" in _fails(["score", "--reward", "./no-reward", "--in", str(bad), "--out", "o.jsonl"], tmp_path)


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run([str(BIN), "raft", "--preset", "nope", "--debug"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_score_names_line_of_bad_record(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(SystemExit) as e:
        main(["score", "--reward", "length", "--in", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert e.value.code == 2
    assert "bad.jsonl, line 2, field 'response'" in capsys.readouterr().err

