"""Tests for the app (labcore/app): handlers as plain functions on a tiny random GPT-2 with LoRA adapters and a
synthetic instruction set, then the launched app through gradio_client, every endpoint by its api_name.

Parity checks: at temperature 0 each chat pane must equal a greedy stream of a separately loaded reference model
(base alone, or base + that adapter), also when two users' streams with different adapters interleave on the one
shared model. UMAP is replaced by a 2-D projection here: its numba JIT alone takes ~30 s the first time, and the
app only displays the layout (labcore.viz's own tests cover UMAP and its cache).
"""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import make_model
from labcore.app.chat import ChatHandlers, history_pairs, message_text
from labcore.app.compare import CompareHandlers, domain_of
from labcore.app.config import AppConfig
from labcore.app.models import ModelHub, discover_adapters
from labcore.app.selection import SelectionHandlers, budget_count, map_view

TASKS = {
    "sentiment": "Is this review positive or negative? The {a} film had {b} acting and a {c} ending.",
    "arithmetic": "What is {n} plus {m}? Answer with a number.",
    "tips": "Give one tip about {a} {b} for a {c} beginner.",
}
WORDS = "garden tomato river engine violin winter coffee bicycle planet lantern meadow harbor pepper candle".split()


def _fake_umap(X, params):
    """A deterministic 2-D stand-in for UMAP (first two principal axes)."""
    Xc = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    return (Xc @ vt[:2].T).astype(np.float32)  # (N, 2)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models: one intra-op thread is faster, and far faster on a shared, oversubscribed CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """Adapters raft-helpful, rrhf-helpful, raft-sentiment (rrhf-sentiment missing), a broken adapter (another
    architecture), a synthetic instruction set of 3 tasks x 40 examples, and a private cache folder."""
    from labcore.models import add_lora

    root = tmp_path_factory.mktemp("app")
    models = root / "models"
    for seed, name in enumerate(["raft-helpful", "rrhf-helpful", "raft-sentiment"], start=1):
        peft_model = add_lora(make_model("gpt2", len(tiny_tokenizer)), r=4, dropout=0.0)
        torch.manual_seed(seed)
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:  # LoRA starts as the identity; make each adapter change the model, differently
                p.data.normal_(0.0, 0.5)
        peft_model.save_pretrained(models / name)
    broken = root / "llama-adapter"
    add_lora(make_model("llama", len(tiny_tokenizer)), r=4).save_pretrained(broken)

    rng = random.Random(0)
    rows = []
    for task, template in TASKS.items():
        for i in range(40):
            text = template.format(a=rng.choice(WORDS), b=rng.choice(WORDS), c=rng.choice(WORDS),
                                   n=rng.randint(1, 99), m=rng.randint(1, 99))
            rows.append({"id": f"{task}:{i}:0", "task": task, "source": f"{task}_src{i % 2}",
                         "split": "test" if i % 5 == 0 else "train", "instruction": text, "output": "x"})
    data = root / "instructions.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    mp = pytest.MonkeyPatch()
    mp.setenv("LABCORE_CACHE", str(root / "cache"))
    mp.setattr("labcore.viz._fit_umap", _fake_umap)
    yield SimpleNamespace(root=root, models=models, broken=broken, data=data, model_dir=tiny_model_dir)
    mp.undo()


@pytest.fixture(scope="module")
def hub(world):
    adapters, missing = discover_adapters(world.models, [world.broken])
    h = ModelHub(str(world.model_dir), adapters, device="cpu")
    h.get()
    h.missing = missing
    return h


def _greedy_reference(model_dir, prompt, adapter_dir=None, max_new_tokens=12):
    from labcore.generation import stream_generate
    from labcore.models import load_model

    model, tok = load_model(str(model_dir), adapter=None if adapter_dir is None else str(adapter_dir), device="cpu")
    state = None
    for state in stream_generate(model, tok, prompt, max_new_tokens=max_new_tokens, temperature=0.0):
        pass
    return state.text


def _last(gen):
    out = None
    for out in gen:
        pass
    return out


# ----------------------------------------------------------------------------------------------------------------
# Models: discovery, one base with named adapters, a broken adapter reported
# ----------------------------------------------------------------------------------------------------------------
def test_discovery_and_loading(world, hub):
    adapters, missing = discover_adapters(world.models)
    assert list(adapters) == ["raft-sentiment", "raft-helpful", "rrhf-helpful"]
    assert missing == ["rrhf-sentiment"]
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        discover_adapters(world.models, [world.root])
    assert hub.adapter_names == ["raft-sentiment", "raft-helpful", "rrhf-helpful"]
    assert list(hub.failed) == ["llama-adapter"]  # another architecture: reported, not fatal
    status = hub.status_markdown(hub.missing)
    assert "rrhf-sentiment" in status and "llama-adapter` failed" in status
    assert domain_of("raft-helpful") == ("dialogues",) and domain_of("rrhf-sentiment") == ("reviews",)
    assert domain_of("my-adapter") == ("dialogues", "reviews", "arithmetic")
    # One copy of the base weights: three adapters on one peft model.
    model, _ = hub.get()
    assert sorted(model.peft_config) == ["raft_helpful", "raft_sentiment", "rrhf_helpful"]


# ----------------------------------------------------------------------------------------------------------------
# Chat
# ----------------------------------------------------------------------------------------------------------------
def test_chat_panes_match_reference_models(world, hub):
    chat = ChatHandlers(hub)
    outs = list(chat.send("How do I water a tomato plant?", [], [], "rrhf-helpful", temperature=0.0,
                          max_new_tokens=12))
    assert len(outs) >= 2  # streamed: an empty answer first, then token by token
    box, hb, ha, notice = outs[-1]
    assert box == "" and [m["role"] for m in hb] == ["user", "assistant"] == [m["role"] for m in ha]
    prompt = "\n\nHuman: How do I water a tomato plant?\n\nAssistant:"
    assert hb[-1]["content"] == _greedy_reference(world.model_dir, prompt)
    assert ha[-1]["content"] == _greedy_reference(world.model_dir, prompt, world.models / "rrhf-helpful")
    assert hb[-1]["content"] != ha[-1]["content"]
    assert chat.running() == 0


def test_two_users_interleave_on_one_model(world, hub):
    """Two sessions with different adapters stream at once; each pane equals its own reference model."""
    chat = ChatHandlers(hub)
    results = {}

    def user(name, adapter):
        req = SimpleNamespace(session_hash=name)
        results[name] = _last(chat.send("What is a good warm-up?", [], [], adapter, temperature=0.0,
                                        max_new_tokens=12, request=req))

    threads = [threading.Thread(target=user, args=(n, a)) for n, a in (("u1", "raft-helpful"), ("u2", "rrhf-helpful"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    prompt = "\n\nHuman: What is a good warm-up?\n\nAssistant:"
    base = _greedy_reference(world.model_dir, prompt)
    for name, adapter in (("u1", "raft-helpful"), ("u2", "rrhf-helpful")):
        _, hb, ha, _ = results[name]
        assert hb[-1]["content"] == base
        assert ha[-1]["content"] == _greedy_reference(world.model_dir, prompt, world.models / adapter)


def test_chat_multi_turn_regenerate_clear(hub):
    chat = ChatHandlers(hub)
    _, hb, ha, _ = _last(chat.send("hello", [], [], "raft-helpful", max_new_tokens=4))
    _, hb, ha, _ = _last(chat.send("and then?", hb, ha, "raft-helpful", max_new_tokens=4))
    assert [m["content"] for m in hb if m["role"] == "user"] == ["hello", "and then?"]
    assert history_pairs(hb)[0] == ("hello", hb[1]["content"])
    # Gradio 6 hands Chatbot values back as content parts: accepted as well.
    parts = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in hb]
    assert message_text(parts[0]) == "hello"
    _, hb2, ha2, _ = _last(chat.regenerate(parts, ha, "raft-helpful", max_new_tokens=4))
    assert len(hb2) == len(hb) == 4 and hb2[2]["content"] == "and then?" and hb2[:2] == hb[:2]
    assert chat.clear() == ("", [], [], "Cleared.")
    assert _last(chat.regenerate([], [], "raft-helpful"))[3] == "Nothing to regenerate yet."


def test_chat_empty_long_and_no_adapter(hub):
    chat = ChatHandlers(hub, max_input_chars=50)
    out = list(chat.send("   ", [{"role": "user", "content": "x"}], [], "raft-helpful"))
    assert len(out) == 1 and "Empty message ignored" in out[0][3] and out[0][1] == [{"role": "user", "content": "x"}]
    _, hb, ha, notice = _last(chat.send("word " * 100, [], [], "raft-helpful", max_new_tokens=300))
    assert len(hb[0]["content"]) == 50 and "cut to its first 50 characters" in notice
    assert "limited to 64 tokens" in notice  # half of the 128-token context
    _, hb, ha, _ = _last(chat.send("hi", [], [], "(no aligned adapter found)", max_new_tokens=3))
    assert "no aligned adapter available" in ha[-1]["content"]


def test_chat_stop_and_close_end_the_stream(hub):
    chat = ChatHandlers(hub)
    req = SimpleNamespace(session_hash="s1")
    gen = chat.send("tell me a long story", [], [], "raft-helpful", temperature=1.0, max_new_tokens=120,
                    request=req)
    next(gen)
    next(gen)
    assert chat.running(req) == 1
    assert chat.stop(req) == "Stopped 1 running answer."
    rest = list(gen)
    assert rest[-1][3].endswith("Stopped.")
    assert len(rest) <= 3 and chat.running(req) == 0  # at most the step in flight, then done
    # A client leaving (Gradio closes the generator) stops it too.
    gen = chat.send("again", [], [], "raft-helpful", max_new_tokens=120, request=req)
    next(gen)
    assert chat.running(req) == 1
    gen.close()
    assert chat.running(req) == 0
    assert chat.stop(req) == "Nothing to stop."


# ----------------------------------------------------------------------------------------------------------------
# The generation worker: every user's panes in one batch
# ----------------------------------------------------------------------------------------------------------------
class GateLock:
    """The model lock with a gate: forward passes beyond ``allow(n)`` wait (``blocked`` names the one waiting)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cv = threading.Condition()
        self.passes = 0
        self.allowed = float("inf")
        self.blocked = 0

    def allow(self, n: float) -> None:
        with self._cv:
            self.allowed = n
            self._cv.notify_all()

    def open(self) -> None:
        self.allow(float("inf"))

    def wait_blocked(self, n: int) -> None:
        """Wait until forward pass n is held at the gate."""
        with self._cv:
            assert self._cv.wait_for(lambda: self.blocked == n, 60), f"pass {n} never reached the gate"

    def __enter__(self):
        with self._cv:
            self.passes += 1
            n = self.passes
            while n > self.allowed:
                self.blocked = n
                self._cv.notify_all()
                self._cv.wait()
            self.blocked = 0
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()
        return False


def _gated(hub, mode="batched", **kw):
    """ChatHandlers on a worker of their own whose forward passes go through a GateLock."""
    from labcore.app.worker import GenerationWorker

    gate = GateLock()
    view = SimpleNamespace(get=hub.get, lock=gate)  # all the worker uses of the hub
    worker = GenerationWorker(view, mode=mode, **{k: v for k, v in kw.items() if k in ("max_rows", "max_waiting")})
    chat = ChatHandlers(hub, worker, **{k: v for k, v in kw.items() if k not in ("max_rows", "max_waiting")})
    return chat, worker, gate


def _wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_user_joining_a_running_batch_gets_the_tokens_of_generating_alone(world, hub, mode):
    """User 2 arrives while user 1's answer is being decoded (batched: its rows join the running batch, other
    prompt lengths, other adapter). Greedy, all four panes equal their reference models."""
    chat, worker, gate = _gated(hub, mode)
    msgs = {"u1": ("How do I water a tomato plant?", "raft-helpful"), "u2": ("hi", "rrhf-helpful")}
    gate.allow(2)  # u1's prefill, one step, then the gate holds the worker
    g1 = chat.send(msgs["u1"][0], [], [], msgs["u1"][1], temperature=0.0, max_new_tokens=12,
                   request=SimpleNamespace(session_hash="u1"))
    next(g1)
    gate.wait_blocked(3)
    g2 = chat.send(msgs["u2"][0], [], [], msgs["u2"][1], temperature=0.0, max_new_tokens=12,
                   request=SimpleNamespace(session_hash="u2"))
    next(g2)  # submitted while u1 is mid-answer
    gate.open()
    results = {"u1": _last(g1), "u2": _last(g2)}
    if mode == "batched":
        assert worker.stats["most_jobs"] == 2 and worker.stats["prefills"] == 2  # u2 joined u1's batch
    else:
        assert worker.stats["most_jobs"] == 1  # one message at a time
    for user, (msg, adapter) in msgs.items():
        _, hb, ha, _ = results[user]
        prompt = f"\n\nHuman: {msg}\n\nAssistant:"
        assert hb[-1]["content"] == _greedy_reference(world.model_dir, prompt)
        assert ha[-1]["content"] == _greedy_reference(world.model_dir, prompt, world.models / adapter)
    assert worker.active_rows == 0 and worker.decoder_rows == 0
    worker.close()


def test_disconnect_frees_its_rows_and_the_other_user_is_unchanged(world, hub):
    chat, worker, gate = _gated(hub)
    gate.allow(0)
    g1 = chat.send("tell me a long story", [], [], "raft-helpful", temperature=0.0, max_new_tokens=60,
                   request=SimpleNamespace(session_hash="leaver"))
    next(g1)
    gate.wait_blocked(1)  # the leaver's prefill waits at the gate
    g2 = chat.send("What is a good warm-up?", [], [], "rrhf-helpful", temperature=0.0, max_new_tokens=12,
                   request=SimpleNamespace(session_hash="stayer"))
    next(g2)
    gate.allow(2)  # the leaver's prefill, the stayer's prefill; the first step of both waits
    gate.wait_blocked(3)
    assert worker.decoder_rows == 4
    g1.close()  # the client went away: Gradio closes the generator
    gate.allow(3)  # the step in flight finishes; the next one waits
    gate.wait_blocked(4)
    assert worker.decoder_rows == 2  # the leaver's two rows left the batch before the next step
    gate.open()
    _, hb, ha, _ = _last(g2)
    prompt = "\n\nHuman: What is a good warm-up?\n\nAssistant:"
    assert hb[-1]["content"] == _greedy_reference(world.model_dir, prompt)
    assert ha[-1]["content"] == _greedy_reference(world.model_dir, prompt, world.models / "rrhf-helpful")
    _wait_until(lambda: worker.decoder_rows == 0 and worker.active_rows == 0, "an empty batch")
    assert chat.running(SimpleNamespace(session_hash="leaver")) == 0
    worker.close()


def test_full_line_answers_busy_and_a_waiting_user_sees_how_many_are_ahead(hub):
    chat, worker, gate = _gated(hub, "sequential", max_waiting=2)
    gate.allow(0)
    running = chat.send("first", [], [], "raft-helpful", max_new_tokens=4, request=SimpleNamespace(session_hash="a"))
    next(running)
    gate.wait_blocked(1)
    second = chat.send("second", [], [], "raft-helpful", max_new_tokens=4, request=SimpleNamespace(session_hash="b"))
    third = chat.send("third", [], [], "raft-helpful", max_new_tokens=4, request=SimpleNamespace(session_hash="c"))
    next(second)
    next(third)
    assert "Busy — 1 ahead of you" in next(third)[3]
    box, hb, ha, notice = _last(chat.send("fourth", [], [], "raft-helpful", request=SimpleNamespace(session_hash="d")))
    assert notice.startswith("Busy: 2 answers are waiting") and box == "fourth" and hb == [] == ha
    gate.open()
    for gen in (running, second, third):
        assert _last(gen)[1][-1]["role"] == "assistant"
    worker.close()


def test_server_caps_and_rate_limit(world, hub):
    now = [0.0]
    chat = ChatHandlers(hub, max_new_tokens_cap=5, max_history_turns=1, rate_limit=2, clock=lambda: now[0])
    req = SimpleNamespace(session_hash="capped")
    _, hb, ha, notice = _last(chat.send("hello", [], [], "raft-helpful", temperature=0.0, max_new_tokens=200,
                                        request=req))
    assert "limited to 5 tokens on this server" in notice
    assert chat._answered["capped"]["sampling"]["max_new_tokens"] == 5
    # two earlier exchanges, a cap of one: the prompt holds only the last one
    history = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "uno"},
               {"role": "user", "content": "two"}, {"role": "assistant", "content": "dos"}]
    _, hb, _, notice = _last(chat.send("three", history, history, "raft-helpful", temperature=0.0,
                                       max_new_tokens=5, request=req))
    assert "Only the last 1 exchanges go into the prompt" in notice and len(hb) == 6  # all stay on screen
    prompt = "\n\nHuman: two\n\nAssistant: dos\n\nHuman: three\n\nAssistant:"
    assert hb[-1]["content"] == _greedy_reference(world.model_dir, prompt, max_new_tokens=5)
    # a third message within the minute is refused (the message stays in the box); a minute later it is sent
    box, hb3, _, notice = _last(chat.send("again", [], [], "raft-helpful", request=req))
    assert box == "again" and hb3 == [] and "at most 2 messages a minute" in notice
    assert "Slow down" not in _last(chat.regenerate(hb, hb, "raft-helpful", max_new_tokens=2,
                                                    request=SimpleNamespace(session_hash="other")))[3]
    now[0] = 61.0
    assert len(_last(chat.send("again", [], [], "raft-helpful", max_new_tokens=2, request=req))[1]) == 2


# ----------------------------------------------------------------------------------------------------------------
# Votes: preference records in votes.jsonl
# ----------------------------------------------------------------------------------------------------------------
def test_votes_round_trip_through_load_preferences(world, hub, tmp_path):
    from labcore.app.votes import VoteLog
    from labcore.datasets import load_preferences, preferences_to_rrhf

    log = VoteLog(tmp_path / "out" / "votes.jsonl")
    chat = ChatHandlers(hub, votes=log)
    with pytest.raises(ValueError, match="nothing to vote on"):
        chat.vote([], [], "raft-helpful", "left")
    votes = {}
    for user, choice in (("v1", "right"), ("v2", "left"), ("v3", "tie"), ("v4", "both bad")):
        req = SimpleNamespace(session_hash=user)
        _, hb, ha, _ = _last(chat.send(f"Question from {user}?", [], [], "rrhf-helpful", temperature=0.0,
                                       max_new_tokens=6, request=req))
        notice, n = chat.vote(hb, ha, "rrhf-helpful", choice, request=req)
        assert notice.startswith("Vote recorded") and n == len(votes) + 1
        votes[user] = (hb, ha, choice)
    notice, n = chat.vote(*votes["v1"][:2], "rrhf-helpful", "left", request=SimpleNamespace(session_hash="v1"))
    assert notice.startswith("Already voted") and n == 4  # nothing appended twice
    with pytest.raises(ValueError, match="choice must be one of"):
        chat.vote(*votes["v2"][:2], "rrhf-helpful", "middle")

    records = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [r["choice"] for r in records] == ["right", "left", "tie", "both bad"]
    first = records[0]
    hb, ha, _ = votes["v1"]
    assert first["prompt"] == "\n\nHuman: Question from v1?\n\nAssistant:"
    assert first["chosen"] == " " + ha[-1]["content"].strip() and first["rejected"] == " " + hb[-1]["content"].strip()
    assert (first["chosen_policy"], first["rejected_policy"], first["adapter"]) == ("rrhf-helpful", "base",
                                                                                      "rrhf-helpful")
    assert first["model"] == str(world.model_dir) and first["timestamp"].endswith("Z")
    assert first["sampling"] == {"temperature": 0.0, "top_p": 0.95, "max_new_tokens": 6}
    with pytest.warns(UserWarning, match="skipped 2 .*1 'both bad' votes, 1 'tie' votes"):
        pairs = load_preferences(log.path)
    assert pairs == [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in records[:2]]
    assert preferences_to_rrhf(pairs)[0] == {"query": first["prompt"], "responses": [first["chosen"],
                                             first["rejected"]], "scores": [1.0, 0.0]}


def test_votes_train_the_reward_model_and_rrhf_from_the_command_line(world, hub, tmp_path, monkeypatch):
    """Done-when: a vote file is preference data that `labcore train-rm` and `labcore rrhf` accept."""
    from labcore.app.votes import VoteLog
    from labcore.cli import main

    monkeypatch.setenv("LABCORE_FAST", "1")
    log = VoteLog(tmp_path / "votes.jsonl")
    chat = ChatHandlers(hub, votes=log, rate_limit=0)
    for i, choice in enumerate(["right", "left", "right", "tie", "right", "left"]):
        req = SimpleNamespace(session_hash=f"cli{i}")
        _, hb, ha, _ = _last(chat.send(f"How do I fix thing number {i}?", [], [], "raft-helpful", temperature=0.0,
                                       max_new_tokens=6, request=req))
        chat.vote(hb, ha, "raft-helpful", choice, request=req)
    with pytest.warns(UserWarning, match="1 'tie' votes"):
        report = main(["train-rm", "--train", str(log.path), "--test", "", "--out", str(tmp_path / "rm"),
                       "--epochs", "2", "--no-analysis", "--no-progress", "--device", "cpu"])
    assert report["train_file"].endswith("votes.jsonl") and len(report["fit"]["history"]) == 2
    from labcore.reward_model import load_reward_model

    rm = load_reward_model(tmp_path / "rm", device="cpu")
    assert rm(["\n\nHuman: hi\n\nAssistant:"], [" hello"]).shape == (1,)
    with pytest.warns(UserWarning, match="1 'tie' votes"):
        rows = main(["rrhf", "--preset", "tiny-helpful", "--data", str(log.path), "--out", str(tmp_path / "rrhf"),
                     "--set", f"model={world.model_dir}", "reward=gold", "runtime.device=cpu", "runtime.threads=1"])
    assert rows and (tmp_path / "rrhf" / "final" / "adapter_config.json").is_file()
    from labcore.datasets import load_rrhf

    trained_on = load_rrhf(tmp_path / "rrhf" / "data_1.jsonl")
    assert len(trained_on) == 5 and all(r["scores"] == [1.0, 0.0] for r in trained_on)


def test_vote_file_survives_a_cut_write(tmp_path):
    from labcore.app.votes import VoteLog
    from labcore.datasets import DataFormatError, read_jsonl

    path = tmp_path / "votes.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "cho')  # a crash mid-write
    log = VoteLog(path)
    assert log.append({"prompt": "q", "chosen": "c", "rejected": "d"}) == 3
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["chosen"] == "a" and json.loads(lines[2])["chosen"] == "c"  # earlier and later kept
    with pytest.raises(DataFormatError, match="line 2"):  # the cut record is reported, never silently dropped
        read_jsonl(path)


def test_open_server_warning_and_auth_parsing():
    from labcore.app.ui import open_server_warning, parse_auth

    assert open_server_warning("127.0.0.1", False, None) is None
    assert "anyone with the link" in open_server_warning("0.0.0.0", False, None)
    assert "share link" in open_server_warning("127.0.0.1", True, None)
    assert open_server_warning("0.0.0.0", True, [("a", "b")]) is None
    assert parse_auth(["alice:s3:cr3t", "bob:pw"]) == [("alice", "s3:cr3t"), ("bob", "pw")]
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        parse_auth(["alice"])


# ----------------------------------------------------------------------------------------------------------------
# Before / after
# ----------------------------------------------------------------------------------------------------------------
def test_gallery_columns_rewards_and_disk_cache(world, hub, monkeypatch):
    cmp = CompareHandlers(hub, world.models, hub.missing, n_prompts=3, max_new_tokens=6)
    table, agg, status = cmp.gallery("dialogues")
    assert list(table.columns) == ["prompt", "base", "RAFT · raft-helpful", "RRHF · rrhf-helpful"]
    assert len(table) == 3 and all("[gold " in c for c in table["base"])
    assert list(agg["model"]) == ["base", "RAFT · raft-helpful", "RRHF · rrhf-helpful"]
    assert {"mean gold", "mean words", "distinct-2"} <= set(agg.columns)
    assert "0 from the disk cache" in status and "gold rubric only" in status
    # gold of the displayed response, recomputed by hand
    from labcore.app.compare import heldout_prompts
    from labcore.tinyworld.gold import gold_score

    prompts, _ = heldout_prompts("dialogues", 3)
    responses, cached = cmp.responses("raft-helpful", prompts)
    assert cached
    assert agg.loc[1, "mean gold"] == pytest.approx(np.mean(gold_score(prompts, responses)), abs=1e-3)

    table, agg, status = cmp.gallery("reviews")
    assert list(table.columns) == ["prompt", "base", "RAFT · raft-sentiment"]
    assert "rrhf-sentiment" in status and "mean sentiment" in agg.columns
    # Second opening: served from disk, no generation at all.
    monkeypatch.setattr("labcore.generation.generate", lambda *a, **k: pytest.fail("regenerated"))
    again = CompareHandlers(hub, world.models, hub.missing, n_prompts=3, max_new_tokens=6)
    t0 = time.perf_counter()
    table2, _, status2 = again.gallery("reviews")
    assert table2.equals(table) and "2 from the disk cache" in status2
    assert time.perf_counter() - t0 < 5


def test_custom_prompt(world, hub):
    cmp = CompareHandlers(hub, world.models, n_prompts=2, max_new_tokens=5)
    df, status = cmp.custom("How do I fix a bike?", "dialogues")
    assert list(df["model"]) == ["base", "RAFT · raft-helpful", "RRHF · rrhf-helpful"] and "gold" in df.columns
    df, status = cmp.custom("", "reviews")
    assert df.empty and "Empty prompt" in status


# ----------------------------------------------------------------------------------------------------------------
# Data selection
# ----------------------------------------------------------------------------------------------------------------
def test_budget_count():
    assert budget_count("% of task", 0.5, 4000) == 20  # the paper's 0.5%
    assert budget_count("% of task", 0.01, 100) == 1  # at least one
    assert budget_count("count", 7, 100) == 7 and budget_count("count", 500, 30) == 30
    with pytest.raises(ValueError):
        budget_count("count", 0, 10)


def test_cancel_stops_only_the_load_of_the_session_that_started_it(world, monkeypatch):
    """The data-selection tab serves a class: a student's Cancel must not stop the load another one started."""
    import threading

    from labcore import embed

    started = threading.Event()

    def slow_embed(texts, cancel=None, **kw):  # an embedding that runs until it is cancelled (10 s at most)
        started.set()
        if cancel.wait(10):
            raise embed.EmbeddingCancelled("embedding cancelled after 0 texts")
        raise AssertionError("never cancelled")

    monkeypatch.setattr(embed, "embed_texts", slow_embed)
    sel = SelectionHandlers()
    assert sel.request_cancel("alice") == "Nothing is loading."
    errors = []
    loader = threading.Thread(target=lambda: errors.append(_raises(sel.load, str(world.data), owner="alice")))
    loader.start()
    assert started.wait(10)
    assert "another user" in sel.request_cancel("bob") and not sel.cancel.is_set()
    assert "Cancelling" in sel.request_cancel("alice")
    loader.join(10)
    assert errors == [embed.EmbeddingCancelled] and sel.loading_by is None


def _raises(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except Exception as err:  # noqa: BLE001 - the test looks at the type
        return type(err)
    return None


def test_selection_load_select_and_caches(world):
    from labcore.coreset import load_instruction_set, select_coreset
    from labcore.embed import embed_texts

    sel = SelectionHandlers()
    tasks, default, status = sel.load(str(world.data))
    assert tasks == ["arithmetic", "sentiment", "tips"] and default in tasks
    assert "32 of 40" not in status and "96 of 120" in status  # the train split only
    fig_map, fig_radius, table, summary = sel.select(str(world.data), "tips", 4, "count", 5)
    assert len(table) == 5 and list(table["rank"]) == list(range(5))
    assert "**tips**: 5 of 32 examples" in summary
    # Same picks as the library on the same embeddings (the app adds nothing to the method).
    recs = [r for r in load_instruction_set(world.data) if r["split"] == "train"]
    emb = embed_texts([r["instruction"] for r in recs])
    ref = select_coreset(emb, [r["task"] for r in recs], "tips", 5, n_clusters=4, random_state=0)
    assert list(table["id"]) == [recs[i]["id"] for i in ref.selected_indices]
    np.testing.assert_allclose(fig_radius.data[0].y, ref.radius_curve)
    assert fig_map.data[4].name == "core-set (5)"
    # The map's subsample keeps every task example and re-indexes the selection onto the drawn points.
    shown, view = map_view(ref, len(recs), 40, random_state=0)
    assert len(shown) == 40 and set(ref.task_indices) <= set(shown)
    np.testing.assert_array_equal(shown[view.selected_indices], ref.selected_indices)
    assert shown[view.task_centre_index] == ref.task_centre_index
    np.testing.assert_array_equal(view.labels, ref.labels[shown])
    # A new budget reuses the K-means fit: only the per-task steps run again.
    sel.select(str(world.data), "tips", 4, "% of task", 50)
    assert len(sel._kmeans) == 1 and sel.last_timings["kmeans"] < 0.01
    with pytest.raises(ValueError, match="not in"):
        sel.select(str(world.data), "poetry", 4, "count", 5)


# ----------------------------------------------------------------------------------------------------------------
# The launched app, through gradio_client: every endpoint by its api_name
# ----------------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_validation():
    with pytest.raises(ValueError, match="concurrency"):
        AppConfig(concurrency=0)


def test_app_module_opens_without_torch():
    """The app must be up within seconds: torch, transformers and scikit-learn load later, with the model."""
    import subprocess
    import sys

    code = "import sys, labcore.app.ui; print(sorted({'torch', 'transformers', 'sklearn', 'umap'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_launched_app_every_endpoint(world, tmp_path, monkeypatch):
    from gradio_client import Client

    monkeypatch.setenv("LABCORE_CACHE", str(tmp_path / "cache"))  # nothing embedded yet, whatever ran before

    from labcore.app.ui import launch
    from labcore.datasets import load_preferences

    config = AppConfig(model=str(world.model_dir), models_dir=str(world.models), data=str(world.data), device="cpu",
                       n_gallery=2, gallery_max_new_tokens=4, out=str(tmp_path / "out"))
    port = _free_port()
    demo = launch(config, port=port, block=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        expected = {"/status", "/load_dataset", "/select_coreset", "/select_on_budget", "/budget_unit", "/gallery",
                    "/gallery_on_open", "/gallery_on_switch", "/custom_prompt", "/chat", "/chat_submit",
                    "/regenerate", "/stop", "/clear", "/vote", "/open_selection", "/cancel_load", "/select_on_k"}
        assert set(api) == expected

        assert "Adapters" in client.predict(api_name="/status")
        # on open, a file whose embeddings are not cached is not embedded: the user is told to press Load
        opened = client.predict(str(world.data), 4, "count", 3, api_name="/open_selection")
        assert "Press **Load**" in opened[-1] and opened[1] == {"__type__": "update"}  # the map is left as it is
        assert client.predict(api_name="/cancel_load") == "Nothing is loading."  # Cancel stops only your own load
        task_update, status = client.predict(str(world.data), api_name="/load_dataset")
        assert "120 records" in status and task_update["value"] in TASKS
        # now it is embedded and laid out: opening draws the map of the largest task at once
        task_update, fig_map, fig_radius, table, summary = client.predict(str(world.data), 4, "count", 3,
                                                                          api_name="/open_selection")
        assert task_update["value"] in TASKS and fig_map["type"] == "plotly" and len(table["data"]) == 3
        for name in ("/select_coreset", "/select_on_budget", "/select_on_k"):
            fig_map, fig_radius, table, summary = client.predict(str(world.data), "tips", 4, "count", 3,
                                                                 api_name=name)
            assert len(table["data"]) == 3 and "3 of 32" in summary and fig_map["type"] == "plotly"
        assert client.predict("count", api_name="/budget_unit")["maximum"] == 500
        for name in ("/gallery", "/gallery_on_open", "/gallery_on_switch"):
            table, agg, status = client.predict("dialogues", api_name=name)
            assert table["headers"][:2] == ["prompt", "base"] and len(agg["data"]) == 3
        df, status = client.predict("hello there", "reviews", api_name="/custom_prompt")
        assert [r[0] for r in df["data"]] == ["base", "RAFT · raft-sentiment"]

        args = ([], [], "raft-helpful", 0.0, 1.0, 5)
        for name in ("/chat", "/chat_submit"):
            box, hb, ha, notice = client.predict("hi there", *args, api_name=name)
            assert box == "" and len(hb) == len(ha) == 2
            assert hb[0]["content"] in ("hi there", [{"type": "text", "text": "hi there"}])
        box, hb2, ha2, _ = client.predict(hb, ha, "raft-helpful", 0.0, 1.0, 5, api_name="/regenerate")
        assert len(hb2) == 2
        # /vote: the two histories, the adapter, the choice -> one preference record
        notice, download, choice = client.predict(hb2, ha2, "raft-helpful", "right", api_name="/vote")
        assert notice.startswith("Vote recorded (right is better): 1 vote") and choice is None
        assert download["label"] == "Download votes (1)"  # the button now offers the file, with the vote in it
        assert json.loads(open(download["value"]).read())["choice"] == "right"
        (pair,) = load_preferences(tmp_path / "out" / "votes.jsonl")
        (record,) = [json.loads(line) for line in (tmp_path / "out" / "votes.jsonl").read_text().splitlines()]
        # the session's last answer is recognised through Gradio's round trip: its settings are in the record
        assert record["sampling"] == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 5}
        assert pair["chosen"].strip() == message_text(ha2[-1]).strip()
        assert pair["rejected"].strip() == message_text(hb2[-1]).strip()
        assert client.predict(api_name="/stop") == "Nothing to stop."
        assert client.predict(api_name="/clear") == ("", [], [], "Cleared.")

        # Stop while a stream runs: hold the model lock so the worker waits at the prefill, press Stop, release.
        hub, worker = demo.labcore.hub, demo.labcore.worker
        passes = worker.stats["forward_passes"]
        with hub.lock:
            job = client.submit("a long answer please", [], [], "raft-helpful", 1.0, 1.0, 60, api_name="/chat")
            _wait_until(lambda: demo.labcore.chat._events, "the chat event to start")
            assert client.predict(api_name="/stop") == "Stopped 1 running answer."
        job.cancel()  # what the Stop button also does (Gradio closes the generator)
        _wait_until(lambda: not demo.labcore.chat._events and worker.decoder_rows == 0, "the stream to end")
        assert worker.stats["forward_passes"] - passes <= 2  # the prefill in flight, at most one step: not 60
    finally:
        demo.close()
        demo.labcore.worker.close()


def test_app_with_auth_refuses_a_wrong_password(world, tmp_path):
    from gradio_client import Client

    from labcore.app.ui import launch

    config = AppConfig(model=str(world.model_dir), models_dir=str(world.models), data=str(world.data), device="cpu",
                       out=str(tmp_path / "out"), preload=False)
    port = _free_port()
    demo = launch(config, port=port, block=False, quiet=True, auth=[("teacher", "right-password")])
    try:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(Exception, match="(?i)invalid credentials|could not login|401|incorrect"):
            Client(url, auth=("teacher", "wrong-password"), verbose=False)
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError):  # no login: the API refuses
            urllib.request.urlopen(url + "config", timeout=10)
        client = Client(url, auth=("teacher", "right-password"), verbose=False)
        assert "Adapters" in client.predict(api_name="/status")
    finally:
        demo.close()
        demo.labcore.worker.close()
