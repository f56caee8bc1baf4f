"""End-to-end test of the app in headless Chromium (Playwright driving the Debian ``chromium`` package).

Starts ``python app.py`` in a subprocess on a free port with a tiny random GPT-2 and two LoRA adapters, opens the
page, visits every tab (the before/after gallery fills in), sends one chat message and waits until BOTH panes
have answered, votes "right is better" and finds the preference record in the app's ``votes.jsonl`` (read by
``labcore.datasets.load_preferences``), and saves a screenshot. Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``, or
``.ci/install_browser.sh``) and the ``playwright`` Python package (dev extra; ``playwright install`` is NOT needed).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from conftest import make_model

CHROMIUM = os.environ.get("LABCORE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
REPO = Path(__file__).resolve().parent.parent

# Skipped on a laptop without Chromium; in CI (CI=true, where `make test` installs it) a missing browser is an error.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file() and not os.environ.get("CI"),
                       reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or .ci/install_browser.sh)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def app_url(tmp_path, tiny_model_dir, tiny_tokenizer):
    """The app running in a subprocess (`python app.py ...`); yields (URL, its --out folder), stops it afterwards."""
    from labcore.models import add_lora

    models = tmp_path / "models"
    for seed, name in enumerate(["raft-helpful", "rrhf-helpful"], start=1):
        peft_model = add_lora(make_model("gpt2", len(tiny_tokenizer)), r=4, dropout=0.0)
        torch.manual_seed(seed)
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.data.normal_(0.0, 0.5)
        peft_model.save_pretrained(models / name)
    port = _free_port()
    env = dict(os.environ, LABCORE_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "app.log", "w")
    t0 = time.perf_counter()
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "app.py", "--model", str(tiny_model_dir), "--models-dir", str(models),
                             "--port", str(port), "--threads", "1", "--out", str(out)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 120:
                raise RuntimeError(f"the app did not start:\n{(tmp_path / 'app.log').read_text()[-3000:]}")
            time.sleep(0.2)
        print(f"time to ready (launch to first HTTP 200): {time.perf_counter() - t0:.1f} s")
        yield url, out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_tabs_chat_vote_and_screenshot(app_url, tmp_path):
    from labcore.datasets import load_preferences

    app_url, out = app_url
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    shot = tmp_path / "chat.png"
    with sync_api.sync_playwright() as pw:
        # A fresh profile (Playwright passes it as --user-data-dir).
        browser = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                        headless=True, args=CHROMIUM_FLAGS,
                                                        viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.goto(app_url, wait_until="domcontentloaded")
            page.get_by_text("labcore — efficient alignment, hands on").wait_for(timeout=60_000)
            assert "raft-helpful" in page.locator("#labcore-status").inner_text()

            # with an empty cache (a fresh clone), the tab shows the shipped set's map and core-set on open
            page.get_by_role("tab", name="Data selection").click()
            page.locator("#selection-status").get_by_text("35307 examples in 32 clusters").wait_for(timeout=60_000)
            page.locator("#selection-map .js-plotly-plot").first.wait_for(timeout=30_000)  # the map is drawn

            page.get_by_role("tab", name="Before / after").click()  # opening the tab builds the gallery
            page.get_by_text("held-out prompts, 3 policies").wait_for(timeout=60_000)
            body = page.locator("body").inner_text()
            assert "RAFT · raft-helpful" in body and "RRHF · rrhf-helpful" in body

            page.get_by_role("tab", name="Chat").click()
            temperature = page.locator("#chat-temperature input[type=number]")
            temperature.fill("0")  # greedy: a deterministic answer from the random model
            temperature.press("Tab")
            page.locator("#chat-input textarea").fill("How do I water a tomato plant?")
            page.locator("#chat-send").click()
            for pane in ("#chat-base", "#chat-aligned"):
                page.locator(f"{pane} .user-row").first.wait_for(timeout=60_000)
                page.locator(f"{pane} .bot-row").first.wait_for(timeout=60_000)
            # Both answers stream to the end; the send event finishes (the box is cleared, panes hold 2 messages).
            page.wait_for_function(
                "() => !document.querySelector('#chat-base .generating, #chat-aligned .generating')",
                timeout=60_000)
            for pane in ("#chat-base", "#chat-aligned"):
                assert "How do I water a tomato plant?" in page.locator(pane).inner_text()
                assert page.locator(f"{pane} .bot-row").count() == 1
                label = page.locator(f"{pane} [data-testid=bot]").first.get_attribute("aria-label")
                assert label.startswith("bot's message: ") and len(label) > len("bot's message: ")  # an answer
            assert page.locator("#chat-input textarea").input_value() == ""
            answers = {pane: page.locator(f"{pane} [data-testid=bot]").first.inner_text()
                       for pane in ("#chat-base", "#chat-aligned")}
            # Vote: the record lands in OUT/votes.jsonl, the right pane's answer as "chosen"
            page.locator("#chat-vote").get_by_text("right is better").click()
            page.locator("#chat-notice").get_by_text("Vote recorded (right is better)").wait_for(timeout=30_000)
            assert "Download votes (1)" in page.locator("#chat-votes-download").inner_text()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    (pair,) = load_preferences(out / "votes.jsonl")
    assert pair["prompt"] == "\n\nHuman: How do I water a tomato plant?\n\nAssistant:"
    assert pair["chosen"].strip() == answers["#chat-aligned"].strip()
    assert pair["rejected"].strip() == answers["#chat-base"].strip()
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("LABCORE_SCREENSHOT_DIR")
    if keep:  # for a human to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
