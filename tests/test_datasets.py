"""Data formats: HH-RLHF transcripts, TRL preference, RRHF, prompts; errors name file, line and field; skips counted."""
import gzip
import json
import warnings

import pytest

from labcore.datasets import (DataFormatError, detect_format, load_preferences, load_prompts, load_rrhf,
                              read_preferences, split_transcript, write_jsonl)

H, A = "\n\nHuman:", "\n\nAssistant:"


def _write(path, rows, raw_lines=()):
    with (gzip.open(path, "wt") if str(path).endswith(".gz") else open(path, "w")) as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for line in raw_lines:
            f.write(line + "\n")
    return path


def _hh(prompt_turns, chosen, rejected):
    return {"chosen": prompt_turns + A + chosen, "rejected": prompt_turns + A + rejected}


def test_split_transcript_multi_turn():
    t = f"{H} Hi{A} Hello!{H} How do I bake bread?{A} Knead it well."
    prompt, response = split_transcript(t)
    assert prompt == f"{H} Hi{A} Hello!{H} How do I bake bread?{A}"
    assert response == " Knead it well."
    with pytest.raises(ValueError):
        split_transcript(f"{H} no answer")


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_hh_counts_kept_and_skipped(tmp_path, suffix):
    rows = [_hh(f"{H} q{i}", f" good {i}", f" bad {i}") for i in range(7)]
    rows.append(_hh(f"{H} q", " ", " bad"))  # empty chosen
    rows.append(_hh(f"{H} q", " fine", ""))  # empty rejected
    rows.append({"chosen": f"{H} a{A} x", "rejected": f"{H} b{A} y"})  # prompts differ
    path = _write(tmp_path / f"hh{suffix}", rows)
    records, report = read_preferences(path)
    assert report.kept == len(records) == 7
    assert report.skipped == {"empty response": 2, "chosen and rejected prompts differ": 1}
    assert records[3] == {"prompt": f"{H} q3{A}", "chosen": " good 3", "rejected": " bad 3"}
    with pytest.warns(UserWarning, match=r"kept 7 records, skipped 3 \(1 chosen and rejected prompts differ, 2 empty"):
        load_preferences(path)


def test_trl_preference_and_json_list(tmp_path):
    rows = [{"prompt": "Q1", "chosen": "A", "rejected": "B"}, {"prompt": "Q2", "chosen": "C", "rejected": "D"}]
    (tmp_path / "p.json").write_text(json.dumps(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped: no warning
        assert load_preferences(tmp_path / "p.json") == rows


@pytest.mark.parametrize("line, field, problem", [
    ('{"chosen": "x"', None, "invalid JSON"),
    ('{"chosen": "\\n\\nHuman: q\\n\\nAssistant: a"}', "rejected", "missing field"),
    ('{"chosen": 3, "rejected": "r"}', "chosen", "expected a string"),
    ('{"chosen": "\\n\\nHuman: q", "rejected": "\\n\\nHuman: q\\n\\nAssistant: a"}', "chosen", "no '"),
    ('[1, 2]', None, "not a JSON object"),
])
def test_malformed_line_names_file_line_field(tmp_path, line, field, problem):
    path = _write(tmp_path / "bad.jsonl", [_hh(f"{H} q", " a", " b")] * 2, raw_lines=[line])
    with pytest.raises(DataFormatError) as e:
        load_preferences(path)
    assert e.value.line == 3 and e.value.field == field
    assert "bad.jsonl, line 3" in str(e.value) and problem in str(e.value)


def test_rrhf_validation(tmp_path):
    good = {"query": f"{H} q{A}", "responses": [" a", " b", ""], "scores": [1, 0.5, 0]}
    path = _write(tmp_path / "r.jsonl", [good])
    with pytest.warns(UserWarning, match="1 empty response"):
        assert load_rrhf(path) == [{"query": f"{H} q{A}", "responses": [" a", " b"], "scores": [1.0, 0.5]}]
    for bad, field in [({**good, "scores": [1, 2]}, "scores"), ({**good, "scores": [1, float("nan"), 0]}, "scores[1]"),
                       ({**good, "responses": [" a", 2, " c"]}, "responses[1]"), ({"query": "q", "scores": []}, "responses")]:
        p = tmp_path / "bad.jsonl"
        p.write_text(json.dumps(good) + "\n" + json.dumps(bad).replace("NaN", "NaN") + "\n")
        with pytest.raises(DataFormatError) as e:
            load_rrhf(p)
        assert e.value.line == 2 and e.value.field == field


def test_prompts_and_detect_format(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"prompt": "a"}, {"prompt": "b", "completion": "c"}])
    assert [r["prompt"] for r in load_prompts(path)] == ["a", "b"]
    path = _write(tmp_path / "req.jsonl", [{"request": "hi", "topic": "x"}])
    assert load_prompts(path, field_name="request")[0]["prompt"] == "hi"
    assert detect_format({"query": "", "responses": [], "scores": []}) == "rrhf"
    assert detect_format({"prompt": "", "chosen": "", "rejected": ""}) == "preference"
    assert detect_format({"chosen": "", "rejected": ""}) == "hh"
    assert detect_format({"prompt": "", "completion": ""}) == "completion"


def test_write_jsonl_roundtrip_gz(tmp_path):
    rows = [{"a": 1, "t": "é"}, {"a": 2, "t": "x"}]
    p = write_jsonl(tmp_path / "sub" / "o.jsonl.gz", rows)
    assert [json.loads(l) for l in gzip.open(p, "rt")] == rows


def test_hub_dataset_offline_is_clear(monkeypatch):
    from labcore.hub import HubUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="data/dialogues"):
        load_preferences("hf://datasets/Anthropic/hh-rlhf/harmless-base/train.jsonl.gz")


def test_shipped_tiny_world_hh_files_load():
    """The tiny world's HH files are real HH format: every pair loads."""
    from labcore import DATA_DIR

    path = DATA_DIR / "dialogues" / "hh_test.jsonl.gz"
    if not path.exists():
        pytest.skip("tiny-world data not built")
    records, report = read_preferences(path)
    n_lines = sum(1 for _ in gzip.open(path, "rt"))
    assert report.kept + sum(report.skipped.values()) == n_lines and report.kept > 0
