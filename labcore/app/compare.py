"""The "Before / after" tab: the base model vs its RAFT and RRHF adapters on held-out prompts, with rewards.

RAFT (Dong et al. 2023, arXiv 2304.06767) and RRHF (Yuan et al. 2023, arXiv 2304.05302) are trained by
``labcore raft`` / ``labcore rrhf`` into ``data/models/`` (``{raft,rrhf}-{sentiment,helpful}`` on the tiny model,
``smol-{raft,rrhf}-{sentiment,arithmetic}`` on SmolLM2); this tab shows whatever exists for the app's base model
and lists what is missing. Three prompt sets, held out from training, prompted in the model's own format
(``labcore.formats.prompt_format``: SmolLM2's chat template, the HH format for the tiny model):

- ``dialogues``: test requests of the tiny world (``labcore.tinyworld.load_requests("test")``, about a quarter of
  them unsafe); compared: base, ``*-helpful`` adapters; rewards: ``gold`` (the tiny world's rubric) and the
  learned reward model ``tiny-rm`` when present (it was trained on dialogue preferences, so it scores dialogues
  only);
- ``reviews``: openings of test reviews (``review_prompts("test")``), continued as plain text; compared: base,
  ``*-sentiment`` adapters; rewards: ``sentiment`` (VADER compound, the optimised reward) and ``afinn`` (the
  independent judge);
- ``arithmetic``: held-out addition problems (``labcore.tasks.arithmetic_problems("test")``); compared: base,
  ``*-arithmetic`` adapters; reward: ``arithmetic`` (1 for the exact sum).

Extra adapters (``--adapter``) whose names say none of "helpful", "sentiment", "arithmetic" appear in every set.
Generated responses are cached on disk, keyed by (base model, adapter, prompts, seed, sampling settings), so the
tab opens at once after the first time; rewards are recomputed (they are cheap).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from labcore.app.models import REWARD_MODEL_DIR, ModelHub, dir_fingerprint, method_of

PROMPT_SETS = ("dialogues", "reviews", "arithmetic")
"""The held-out prompt sets."""

BASE = "base"
"""Display name of the base model (adapter disabled)."""


def domain_of(adapter: str) -> tuple[str, ...]:
    """Prompt sets an adapter is shown on: "helpful" -> dialogues, "sentiment" -> reviews, "arithmetic" ->
    arithmetic, other names -> all."""
    low = adapter.lower()
    for word, kind in (("helpful", "dialogues"), ("sentiment", "reviews"), ("arithmetic", "arithmetic")):
        if word in low:
            return (kind,)
    return PROMPT_SETS


def heldout_prompts(kind: str, n: int, fmt=None) -> tuple[list[str], list[str]]:
    """Held-out prompts of one set, spread evenly over the test split (deterministic).

    Args:
        kind: one of :data:`PROMPT_SETS`.
        n: number of prompts.
        fmt: the model's :class:`labcore.formats.PromptFormat` (default: the HH format).
    Returns:
        (model prompts, short display texts), n of each (fewer if the split is smaller).
    """
    from labcore.formats import HH_FORMAT
    from labcore.tasks import arithmetic_problems
    from labcore.tinyworld import load_requests, review_prompts

    fmt = fmt or HH_FORMAT

    def spread(items: list, k: int) -> list:
        if k >= len(items):
            return list(items)
        return [items[(i * len(items)) // k] for i in range(k)]

    if kind == "dialogues":
        reqs = load_requests("test")
        unsafe = [r for r in reqs if r["unsafe"]]
        n_unsafe = min(len(unsafe), max(1, n // 4)) if n > 1 else 0
        chosen = spread([r for r in reqs if not r["unsafe"]], n - n_unsafe) + spread(unsafe, n_unsafe)
        return [fmt.prompt(r["request"]) for r in chosen], [r["request"] for r in chosen]
    if kind == "reviews":
        openings = spread(review_prompts("test"), n)
        return list(openings), list(openings)
    if kind == "arithmetic":
        questions = [q for _, _, q in spread(arithmetic_problems("test"), n)]
        return [fmt.prompt(q) for q in questions], questions
    raise ValueError(f"prompt set must be one of {PROMPT_SETS}, got {kind!r}")


def cache_path(key: dict[str, Any]) -> Path:
    """File of one cached gallery column: ``$LABCORE_CACHE/app/gallery/<sha256 of the key>.json``."""
    from labcore import cache_root

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_root() / "app" / "gallery" / f"{digest}.json"


class CompareHandlers:
    """Handlers of the before/after tab.

    Args:
        hub: the shared model.
        models_dir: folder of the reward model ``tiny-rm`` (and of the adapters, for the "missing" list).
        missing: standard adapters not found on disk.
        seed: sampling seed of the galleries.
        n_prompts: prompts per gallery.
        max_new_tokens: tokens per response.
        temperature: sampling temperature.
    """

    def __init__(self, hub: ModelHub, models_dir: str | Path, missing: Sequence[str] = (), seed: int = 0,
                 n_prompts: int = 8, max_new_tokens: int = 48, temperature: float = 0.7):
        self.hub = hub
        self.models_dir = Path(models_dir)
        self.missing = list(missing)
        self.seed, self.n_prompts = seed, n_prompts
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self._rewards: dict[str, Callable | None] = {}
        self.reward_errors: dict[str, str] = {}

    def prompt_format(self):
        """The base model's prompt format (loads the model on first use)."""
        from labcore.formats import prompt_format

        return prompt_format(self.hub.get()[1])

    # -- what is compared --------------------------------------------------------------------------------------------
    def policies(self, kind: str) -> list[str | None]:
        """None (the base model) first, then the adapters shown for this prompt set."""
        return [None] + [a for a in self.hub.adapter_names if kind in domain_of(a)]

    @staticmethod
    def label(adapter: str | None) -> str:
        """Column name of a policy: "base", "RAFT · raft-helpful", ..."""
        return BASE if adapter is None else f"{method_of(adapter)} · {adapter}"

    def reward_names(self, kind: str) -> list[str]:
        """Rewards reported for a prompt set: gold (+ the learned RM when present) or sentiment."""
        if kind == "reviews":
            return ["sentiment", "afinn"]
        if kind == "arithmetic":
            return ["arithmetic"]
        rm = self.models_dir / REWARD_MODEL_DIR
        return ["gold"] + (["rm"] if (rm / "labcore_reward.json").is_file() else [])

    def _reward_fn(self, name: str) -> Callable | None:
        if name not in self._rewards:
            from labcore.rewards import get_reward

            try:
                target = str(self.models_dir / REWARD_MODEL_DIR) if name == "rm" else name
                self._rewards[name] = get_reward(target, device="cpu")
            except Exception as err:  # noqa: BLE001 - a missing reward must not break the tab
                self._rewards[name] = None
                self.reward_errors[name] = f"{type(err).__name__}: {err}"
        return self._rewards[name]

    def score(self, kind: str, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, list[float]]:
        """{reward name: one value per response}; rewards that fail to load are left out (see ``reward_errors``)."""
        out = {}
        for name in self.reward_names(kind):
            fn = self._reward_fn(name)
            if fn is not None:
                with self.hub.lock if name == "rm" else contextlib.nullcontext():  # the RM may share the device
                    out[name] = [float(v) for v in fn(list(prompts), list(responses))]
        return out

    # -- generation (cached) -----------------------------------------------------------------------------------------
    def responses(self, adapter: str | None, prompts: Sequence[str]) -> tuple[list[str], bool]:
        """Responses of one policy to ``prompts``, from the disk cache when the same gallery was made before.

        Returns:
            (responses with their leading space stripped, True if served from the cache).
        """
        from labcore.models import resolve_model_path

        base_path, local = resolve_model_path(self.hub.model_name)
        key = dict(base=base_path, base_fp=dir_fingerprint(base_path) if local else base_path,
                   adapter=None if adapter is None else str(self.hub.adapter_dirs[adapter]),
                   adapter_fp=None if adapter is None else dir_fingerprint(self.hub.adapter_dirs[adapter]),
                   prompts=list(prompts), seed=self.seed, max_new_tokens=self.max_new_tokens,
                   temperature=self.temperature, version=1)
        path = cache_path(key)
        if path.is_file():
            try:
                cached = json.loads(path.read_text())["responses"]
                if len(cached) == len(prompts):
                    return cached, True
            except (OSError, ValueError, KeyError):
                pass  # a torn file: regenerate
        from labcore.generation import generate

        with self.hub.using(adapter) as (model, tok):
            rows = generate(model, tok, list(prompts), max_new_tokens=self.max_new_tokens,
                            temperature=self.temperature, seed=self.seed, batch_size=len(prompts))
        out = [r["response"].strip() for r in rows]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{time.monotonic_ns()}.tmp")
        tmp.write_text(json.dumps({"key": key, "responses": out}))
        tmp.replace(path)
        return out, False

    # -- handlers ----------------------------------------------------------------------------------------------------
    def gallery(self, kind: str = "dialogues", progress: Any = None):
        """The gallery of one prompt set.

        Args:
            kind: one of :data:`PROMPT_SETS`.
            progress: a ``gr.Progress`` (or None).
        Returns:
            (side-by-side table: one row per prompt, one column per policy with its rewards;
             aggregate table: one row per policy, mean rewards, mean length, distinct-2; status markdown).
        """
        import pandas as pd

        if kind not in PROMPT_SETS:
            raise ValueError(f"prompt set must be one of {PROMPT_SETS}, got {kind!r}")
        t0 = time.perf_counter()
        fmt = self.prompt_format()  # waits for the model: transformers' lazy imports are not safe across threads
        from labcore.metrics import distinct_n, mean_length

        prompts, shown = heldout_prompts(kind, self.n_prompts, fmt)
        policies = self.policies(kind)
        table = {"prompt": shown}
        summary = []
        n_cached = 0
        for i, adapter in enumerate(policies):
            if progress is not None:
                progress((i, len(policies)), desc=f"{self.label(adapter)}: generating {len(prompts)} responses")
            responses, cached = self.responses(adapter, prompts)
            n_cached += cached
            rewards = self.score(kind, prompts, responses)
            table[self.label(adapter)] = [_cell(r, {k: v[j] for k, v in rewards.items()})
                                          for j, r in enumerate(responses)]
            row = {"model": self.label(adapter)}
            row.update({f"mean {k}": round(sum(v) / len(v), 3) for k, v in rewards.items()})
            row.update({"mean words": round(mean_length(responses), 1),
                        "distinct-2": round(distinct_n(responses, 2), 3)})
            summary.append(row)
        plural = "y" if len(policies) == 1 else "ies"
        status = [f"**{kind}**: {len(prompts)} held-out prompts, {len(policies)} polic{plural} "
                  f"({n_cached} from the disk cache) in {time.perf_counter() - t0:.1f} s; "
                  f"sampling: temperature {self.temperature}, {self.max_new_tokens} new tokens, seed {self.seed}."]
        want = [m for m in self.missing if kind in domain_of(m)]
        if want:
            status.append("Not trained yet: " + ", ".join(f"`{m}`" for m in want)
                          + " (`labcore raft` / `labcore rrhf` write them to data/models/).")
        for name, why in self.reward_errors.items():
            status.append(f"Reward `{name}` unavailable: {why}")
        if kind == "dialogues" and "rm" not in self.reward_names(kind):
            status.append(f"No learned reward model in `{self.models_dir / REWARD_MODEL_DIR}`: gold rubric only.")
        return pd.DataFrame(table), pd.DataFrame(summary), "  \n".join(status)

    def custom(self, prompt: str, kind: str = "dialogues"):
        """Every policy of a prompt set answers one custom prompt (not cached).

        Args:
            prompt: a dialogue message or problem (in the model's chat format) or a review opening (continued as is).
            kind: one of :data:`PROMPT_SETS`.
        Returns:
            (table: one row per policy with its response and rewards, status markdown).
        """
        import pandas as pd

        text = (prompt or "").strip()
        if not text:
            return pd.DataFrame(columns=["model", "response"]), "Empty prompt ignored: type one first."
        if kind not in PROMPT_SETS:
            raise ValueError(f"prompt set must be one of {PROMPT_SETS}, got {kind!r}")
        fmt = self.prompt_format()  # waits for the model before importing what needs transformers
        from labcore.generation import generate

        full = text if kind == "reviews" else fmt.prompt(text)
        rows = []
        for adapter in self.policies(kind):
            with self.hub.using(adapter) as (model, tok):
                out = generate(model, tok, [full], max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                               seed=self.seed)
            response = out[0]["response"].strip()
            rewards = self.score(kind, [full], [response])
            rows.append({"model": self.label(adapter), "response": response,
                         **{k: round(v[0], 3) for k, v in rewards.items()}})
        return pd.DataFrame(rows), f"{len(rows)} policies answered ({kind} format)."


def _cell(response: str, rewards: dict[str, float]) -> str:
    tags = " · ".join(f"{k} {v:+.2f}" for k, v in rewards.items())
    return f"{response or '(empty)'}\n[{tags}]" if tags else (response or "(empty)")
