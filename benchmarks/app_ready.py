"""How soon the app answers: launch ``app.py``, poll until HTTP 200, then one chat message through ``/chat``.

Prints the seconds from launch to HTTP 200 and to the end of the first chat answer (both panes, greedy, 32 tokens),
and the two answers. Uses the app's defaults (SmolLM2 when installed) on port 7861.

    python benchmarks/app_ready.py [--adapter smol-raft-arithmetic]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter", default="smol-raft-arithmetic", help="the aligned pane's adapter")
    ap.add_argument("--port", type=int, default=7861)
    a = ap.parse_args()
    t0 = time.time()
    log = open(REPO / "runs" / "app_ready.log", "w") if (REPO / "runs").is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(a.port)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{a.port}/"
    try:
        while True:
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise SystemExit("the app exited before answering")
            time.sleep(0.2)
        t_http = time.time() - t0
        from gradio_client import Client

        client = Client(url, verbose=False)
        _, base, aligned, notice = client.predict("How do I keep basil alive?", [], [], a.adapter, 0.0, 1.0, 32,
                                                  api_name="/chat")
        total = time.time() - t0
        print(f"http_200_s={t_http:.1f} first_chat_answer_s={total:.1f} (32 tokens, both panes, after launch)")
        print("base:   ", base[-1]["content"])
        print("aligned:", aligned[-1]["content"])
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
