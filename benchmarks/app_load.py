"""A class on the app: N simulated users chat at once through gradio_client, batched worker vs one-at-a-time serving.

For each serving mode (``app.py --serve sequential``, then ``--serve batched``) the app is started in a subprocess
(SmolLM2-135M-Instruct by default, both panes: base model and ``--adapter``), warmed up with one short message,
then for N = 1, 8, 24 users: N ``gradio_client.Client``s, connected beforehand, each send one message to ``/chat``
(``Client.submit``) at the same moment and read the stream until it ends. Per user:

* time to first token (TTFT): from submit to the first streamed output with text in either pane;
* tokens/s: new tokens of both panes (the final answers re-tokenised with the model's tokenizer) / (end - submit).

Per run: p50 / p95 TTFT, median tokens/s per user, total tokens/s (all users' tokens / wall time from the first
submit to the last answer), errors (an exception, an empty answer, a "busy" or "unavailable" notice). Greedy
decoding, so both modes produce the same answers. The clients run on the same machine as the server, so on a
small CPU their own work (24 SSE streams) is counted against the server too.

    python benchmarks/app_load.py                                   # SmolLM2, N = 1 8 24, 64 tokens per pane
    python benchmarks/app_load.py --model tiny --adapter raft-helpful --users 1 4
    LABCORE_FAST=1 python benchmarks/app_load.py                    # tiny model, N = 1 4, 8 tokens

Last lines: the table, then ``targets: ...`` (24 users served with no error, total tokens/s >= 3x one-at-a-time,
p95 TTFT <= 10 s, each ``met`` or ``MISSED``).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

MESSAGES = [
    "How do I keep basil alive?", "hi! can you help me bake muffins?", "What is 17 plus 25?",
    "Give me one tip for a job interview.", "How do I water a tomato plant?", "What is a good warm-up before a run?",
    "Can you recommend a film for tonight?", "How do I make my bike chain stop squeaking?", "What is 8 times 7?",
    "Write a short haiku about rain.", "How can I sleep better?", "What should I pack for a day hike?",
    "Explain what a noun is.", "How do I boil an egg?", "Name three planets.", "How do I start learning guitar?",
    "Why is the sky blue?", "What is 100 minus 37?", "Give me a name for a pet turtle.", "How do I clean a pan?",
    "What is a good breakfast?", "How do I say thank you in French?", "Tell me a fun fact about owls.",
    "How do I calm down before an exam?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(mode: str, a: argparse.Namespace, out: str) -> tuple[subprocess.Popen, str]:
    """``python app.py --serve MODE`` on a free port; returns (process, url) once the page answers."""
    port = _free_port()
    cmd = [sys.executable, "app.py", "--serve", mode, "--port", str(port), "--rate-limit", "0", "--out", out,
           "--model", a.model, "--max-batch-rows", str(a.max_batch_rows)]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    log = open(Path(out) / f"app-{mode}.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while True:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() - t0 > 300:
            raise SystemExit(f"the app did not start; see {log.name}")
        time.sleep(0.3)


def _text(message) -> str:
    content = message.get("content", "") if isinstance(message, dict) else ""
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return content if isinstance(content, str) else str(content)


def one_user(client, message: str, a: argparse.Namespace, start: threading.Barrier, result: dict) -> None:
    """Send ``message`` when every user is ready; record TTFT, the end time, the answers and any error."""
    start.wait()
    t0 = time.perf_counter()
    result.update(t0=t0, ttft=None, error=None, answers=("", ""))
    try:
        job = client.submit(message, [], [], a.adapter, 0.0, 1.0, a.max_new_tokens, api_name="/chat")
        seen = 0
        while True:  # poll the streamed outputs (Job iteration spins on a 1 ms sleep: 24 of them would eat a core)
            outs = job.outputs()
            for out in outs[seen:]:
                _, hb, ha, notice = out
                if result["ttft"] is None and hb and (_text(hb[-1]).strip() or (ha and _text(ha[-1]).strip())):
                    result["ttft"] = time.perf_counter() - t0
                result["notice"] = notice
            seen = len(outs)
            if job.done():
                break
            time.sleep(0.02)
        _, hb, ha, notice = job.result()
        result["end"] = time.perf_counter()
        result["answers"] = (_text(hb[-1]) if hb else "", _text(ha[-1]) if ha else "")
        bad = [w for w in ("Busy", "busy", "unavailable", "failed") if w in (notice or "")]
        if bad or not all(x.strip() for x in result["answers"]):
            result["error"] = f"notice {notice!r}, answers {result['answers']!r}"
    except Exception as err:  # noqa: BLE001 - counted as an error, reported below
        result["end"] = time.perf_counter()
        result["error"] = f"{type(err).__name__}: {err}"


def run_users(url: str, n: int, a: argparse.Namespace, tok) -> dict:
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(n)]  # connected before the clock starts
    results = [dict() for _ in range(n)]
    start = threading.Barrier(n)
    threads = [threading.Thread(target=one_user, args=(c, MESSAGES[i % len(MESSAGES)], a, start, r))
               for i, (c, r) in enumerate(zip(clients, results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    errors = [r["error"] for r in results if r["error"]]
    served = [r for r in results if not r["error"]]
    for r in served:
        r["tokens"] = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in r["answers"])
    ttft = sorted(r["ttft"] for r in served if r["ttft"] is not None)
    wall = max(r["end"] for r in results) - min(r["t0"] for r in results)

    def pct(q):
        return ttft[min(len(ttft) - 1, int(round(q * (len(ttft) - 1))))] if ttft else float("nan")

    return {"users": n, "served": len(served), "errors": errors, "p50": pct(0.5), "p95": pct(0.95),
            "per_user": statistics.median(r["tokens"] / (r["end"] - r["t0"]) for r in served) if served else 0.0,
            "total": sum(r["tokens"] for r in served) / wall, "tokens": sum(r["tokens"] for r in served),
            "wall": wall}


def main() -> None:
    from labcore import fast_mode

    fast = fast_mode()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny" if fast else "smollm2-135m")
    ap.add_argument("--adapter", default="raft-helpful" if fast else "smol-raft-arithmetic",
                    help="the aligned pane's adapter (data/models/)")
    ap.add_argument("--users", type=int, nargs="+", default=[1, 4] if fast else [1, 8, 24])
    ap.add_argument("--max-new-tokens", type=int, default=8 if fast else 64, help="per pane")
    ap.add_argument("--max-batch-rows", type=int, default=48)
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the server (0: torch's default)")
    ap.add_argument("--modes", nargs="+", default=["sequential", "batched"])
    a = ap.parse_args()
    from labcore.models import load_tokenizer

    tok = load_tokenizer(a.model)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="app_load-") as out:
        for mode in a.modes:
            proc, url = start_app(mode, a, out)
            try:
                from gradio_client import Client

                warm = Client(url, verbose=False)
                warm.predict("hello", [], [], a.adapter, 0.0, 1.0, 4, api_name="/chat")  # loads the model
                warm.close()
                for n in a.users:
                    r = run_users(url, n, a, tok)
                    rows[(mode, n)] = r
                    print(f"{mode:10s} users={n:3d} served={r['served']:3d} errors={len(r['errors'])} "
                          f"p50_ttft={r['p50']:.2f}s p95_ttft={r['p95']:.2f}s per_user={r['per_user']:.1f}tok/s "
                          f"total={r['total']:.1f}tok/s ({r['tokens']} tokens in {r['wall']:.1f}s)", flush=True)
                    for e in r["errors"][:3]:
                        print(f"    error: {e}", flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"\nmodel {a.model}, adapter {a.adapter}, {a.max_new_tokens} new tokens per pane (greedy), "
          f"{os.cpu_count()} CPUs, server threads {a.threads or 'default'}\n")
    print("| users | serving | served | errors | p50 TTFT (s) | p95 TTFT (s) | tok/s per user | tok/s total |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in a.users:
        for mode in a.modes:
            r = rows.get((mode, n))
            if r:
                name = "one at a time" if mode == "sequential" else "batched worker"
                print(f"| {n} | {name} | {r['served']}/{n} | {len(r['errors'])} | {r['p50']:.2f} | {r['p95']:.2f} "
                      f"| {r['per_user']:.1f} | {r['total']:.1f} |")
    n = max(a.users)
    b, s = rows.get(("batched", n)), rows.get(("sequential", n))
    if b and s:
        ratio = b["total"] / s["total"] if s["total"] else float("inf")
        checks = [(f"{n} users served with no error", b["served"] == n and not b["errors"]),
                  (f"total tok/s {ratio:.2f}x one-at-a-time (>= 3x)", ratio >= 3.0),
                  (f"p95 TTFT {b['p95']:.2f} s (<= 10 s)", b["p95"] <= 10.0)]
        print("\ntargets: " + "; ".join(f"{what}: {'met' if ok else 'MISSED'}" for what, ok in checks))


if __name__ == "__main__":
    main()
