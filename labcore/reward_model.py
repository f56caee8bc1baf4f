"""A learned Bradley-Terry reward model on a frozen sentence encoder: what RAFT and RRHF *optimise* in practice.

Bradley & Terry 1952, "Rank analysis of incomplete block designs: I. The method of paired comparisons"
(Biometrika 39): P(y_w preferred to y_l | x) = sigma(r(x, y_w) - r(x, y_l)).
Ouyang et al. 2022, "Training language models to follow instructions with human feedback", arXiv 2203.02155, Eq. 1:

    loss(theta) = - E_{(x, y_w, y_l) ~ D} [ log sigma( r_theta(x, y_w) - r_theta(x, y_l) ) ]

Model. The prompt x and the response y are embedded separately by the frozen offline MiniLM encoder of
``labcore.embed`` (masked mean pooling + L2 norm, e in R^d, d = 384), and a small MLP head scores the features

    phi(x, y) = [e_x, e_y, e_x * e_y]                              (3d,)  the product carries "is y about x?"
    r_raw(x, y) = w_2 . GELU(W_1 phi(x, y) + b_1) + b_2            (scalar)
    r(x, y)     = (r_raw(x, y) - mu) / sigma                        mu, sigma: mean, std of r_raw on the train responses

The normalisation changes no ranking (Eq. 1 only sees differences, and sigma > 0), but puts every saved model on
one scale: train rewards have mean 0 and std 1, so reward curves, RAFT thresholds and ``reward_summary`` tables are
comparable across models and seeds.

Deliberate deviations from Ouyang et al.: their reward model is a fine-tuned 6B language model with a scalar head on
the final token and is trained on all C(K, 2) comparisons of a prompt as one batch element; ours keeps the encoder
frozen, so the embeddings are computed once (and cached on disk by ``labcore.embed``), training takes seconds on a
CPU, and a saved model is only the head (a few hundred KB: ``head.safetensors`` + ``labcore_reward.json``). Each
preference record is one comparison; the loss is the mean over records. Frozen features reach the accuracy the tiny
world needs (see the report of ``labcore train-rm``), so fine-tuning the encoder is not offered.

Also here: :func:`pair_accuracy` (share of pairs ranked as the labels say), :func:`style_pairs` (pairs from the
tiny world's style order), :func:`analyse_reward` (agreement with the ``gold`` rubric and the cases where a learned
reward model and the rubric disagree — teaching material for the "reward models" notebook), and the CLI glue of
``labcore train-rm``.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labcore import DATA_DIR, fast_mode
from labcore.utils import resolve_device, set_seed

CONFIG_NAME = "labcore_reward.json"
"""Marker file of a saved reward-model folder (``labcore.rewards.get_reward`` dispatches on it)."""
WEIGHTS_NAME = "head.safetensors"
FORMAT = "labcore-bt-reward"
FORMAT_VERSION = 1
FEATURES = "[e_x, e_y, e_x*e_y]"
DEFAULT_OUT = DATA_DIR / "models" / "tiny-rm"


# --------------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class RewardModelConfig:
    """Architecture and training settings of the Bradley-Terry reward head."""

    encoder: str = "minilm"
    """sentence encoder of ``labcore.embed`` (frozen): "minilm" (offline all-MiniLM-L6-v2) or a local folder."""
    max_length: int = 256
    """tokens kept per text by the encoder (part of the embedding-cache key)."""
    hidden: int = 128
    """width of the MLP head's hidden layer (the saved head has about 3 d hidden floats)."""
    dropout: float = 0.1
    """dropout on the hidden layer during training."""
    epochs: int = 30
    """passes over the preference pairs."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-2
    """AdamW weight decay (decoupled)."""
    batch_size: int = 256
    """preference pairs per optimiser step."""
    seed: int = 0
    """seed of the head's initialisation, dropout and pair shuffling."""

    def __post_init__(self):
        if not self.encoder:
            raise ValueError("encoder must name a sentence encoder, e.g. 'minilm'")
        for name in ("max_length", "hidden", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


# --------------------------------------------------------------------------------------------------------------------
# The loss (pure tensor function)
# --------------------------------------------------------------------------------------------------------------------
def bt_loss(r_w: torch.Tensor, r_l: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry pairwise loss, Ouyang et al. 2022 (arXiv 2203.02155) Eq. 1.

    Args:
        r_w: (B,) rewards of the preferred responses y_w.
        r_l: (B,) rewards of the rejected responses y_l.
    Returns:
        scalar: mean over pairs of -log sigma(r_w - r_l) (``logsigmoid`` is the stable form of log(sigma(.))).
    """
    return -F.logsigmoid(r_w - r_l).mean()  # Eq. 1


# --------------------------------------------------------------------------------------------------------------------
# Features and head
# --------------------------------------------------------------------------------------------------------------------
def embed_unique(texts: Sequence[str], encoder: str, max_length: int, device: str | torch.device = "auto",
                 cache: bool = True, progress: bool = False) -> torch.Tensor:
    """Embeddings of ``texts`` (each distinct text encoded once).

    Returns:
        (N, d) float32 CPU tensor, unit-norm rows.
    """
    from labcore.embed import embed_texts

    dev = str(resolve_device(device))
    e = embed_texts(list(texts), model=encoder, device=dev, cache=cache, max_length=max_length, progress=progress)
    return torch.from_numpy(np.ascontiguousarray(e))


def pair_features(e_x: torch.Tensor, e_y: torch.Tensor) -> torch.Tensor:
    """phi(x, y) = [e_x, e_y, e_x * e_y]: prompt, response and their elementwise product (whose sum is cos(x, y)).

    Args:
        e_x: (N, d) prompt embeddings.
        e_y: (N, d) response embeddings.
    Returns:
        (N, 3d) features.
    """
    return torch.cat([e_x, e_y, e_x * e_y], dim=-1)  # (N, 3d)


def _features(prompts: Sequence[str], responses: Sequence[str], cfg: RewardModelConfig, device, cache: bool,
              progress: bool) -> torch.Tensor:
    """phi(x, y) of N pairs with the encoder named in ``cfg``: (N, 3d) float32 CPU."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    e_x = embed_unique(prompts, cfg.encoder, cfg.max_length, device, cache, progress)  # (N, d)
    e_y = embed_unique(responses, cfg.encoder, cfg.max_length, device, cache, progress)  # (N, d)
    return pair_features(e_x, e_y)  # (N, 3d)


class RewardHead(nn.Module):
    """MLP r_raw(phi) = w_2 . GELU(W_1 phi + b_1) + b_2 on the (N, 3d) pair features."""

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """phi: (N, 3d) -> raw rewards (N,)."""
        return self.net(phi).squeeze(-1)  # (N, 1) -> (N,)


# --------------------------------------------------------------------------------------------------------------------
# The reward model: a callable with the labcore reward interface
# --------------------------------------------------------------------------------------------------------------------
class RewardModel:
    """A trained Bradley-Terry reward model: ``rm(prompts, responses) -> torch.FloatTensor (N,)`` on the CPU.

    Rewards are normalised, r = (r_raw - mu_) / sigma_ (train rewards have mean 0, std 1). Scoring is batched,
    deterministic and gradient-free. ``cache=True`` reuses/extends the on-disk embedding cache (good for fixed
    evaluation sets); the default ``False`` suits freshly sampled responses (RAFT/RRHF loops).

    Attributes:
        config: the :class:`RewardModelConfig` it was trained with.
        head: the :class:`RewardHead` (eval mode, on ``device``).
        mu_, sigma_: normalisation constants (floats).
        device: torch device of the encoder and the head.
        cache: whether scoring reads/writes the embedding cache.
    """

    def __init__(self, config: RewardModelConfig, head: RewardHead, mu: float = 0.0, sigma: float = 1.0,
                 device: str | torch.device = "auto", cache: bool = False, batch_size: int = 4096):
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.config = config
        self.device = resolve_device(device)
        self.head = head.to(self.device).eval()
        self.mu_ = float(mu)
        self.sigma_ = float(sigma)
        self.cache = cache
        self.batch_size = batch_size

    # -- scoring ----------------------------------------------------------------------------------------------------
    def features(self, prompts: Sequence[str], responses: Sequence[str], cache: bool | None = None,
                 progress: bool = False) -> torch.Tensor:
        """phi(x, y) for every (prompt, response) pair: (N, 3d) float32 on the CPU."""
        return _features(prompts, responses, self.config, self.device, self.cache if cache is None else cache,
                         progress)

    @torch.no_grad()
    def raw_from_features(self, phi: torch.Tensor) -> torch.Tensor:
        """Unnormalised head outputs r_raw for features (N, 3d) -> (N,) float32 CPU."""
        self.head.eval()
        out = [self.head(phi[i:i + self.batch_size].to(self.device)).float().cpu()
               for i in range(0, len(phi), self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def from_features(self, phi: torch.Tensor) -> torch.Tensor:
        """Normalised rewards r = (r_raw - mu) / sigma for features (N, 3d) -> (N,) float32 CPU."""
        return (self.raw_from_features(phi) - self.mu_) / self.sigma_

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Rewards r(x, y) of N (prompt, response) pairs.

        Args:
            prompts: N prompts (e.g. ``"\\n\\nHuman: ...\\n\\nAssistant:"``).
            responses: N responses.
        Returns:
            (N,) float32 CPU tensor, normalised (train mean 0, std 1).
        """
        if len(prompts) == 0:
            return torch.zeros(0)
        return self.from_features(self.features(list(prompts), list(responses)))

    # -- persistence ------------------------------------------------------------------------------------------------
    def save(self, out_dir: str | Path, extra: dict | None = None) -> Path:
        """Write ``head.safetensors`` and ``labcore_reward.json`` (encoder name, head architecture, mu, sigma).

        Args:
            out_dir: folder (created); the encoder itself is not copied.
            extra: more JSON-serialisable fields for the config file (e.g. training summary).
        Returns:
            the folder.
        """
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(out / WEIGHTS_NAME))
        in_dim = self.head.net[0].in_features
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION,
            "encoder": self.config.encoder, "max_length": self.config.max_length,
            "embedding_dim": in_dim // 3, "features": FEATURES,
            "head": {"type": "mlp", "in_dim": in_dim, "hidden": self.config.hidden, "activation": "gelu",
                     "dropout": self.config.dropout, "weights": WEIGHTS_NAME},
            "normalisation": {"mu": self.mu_, "sigma": self.sigma_,
                              "note": "reward = (head(phi) - mu) / sigma; train responses have mean 0, std 1"},
            "config": asdict(self.config),
            "paper": "Bradley-Terry loss, Ouyang et al. 2022 arXiv 2203.02155 Eq. 1",
            **(extra or {}),
        }
        (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out


def load_reward_model(path: str | Path, device: str = "auto", cache: bool = False) -> RewardModel:
    """Load a folder written by :meth:`RewardModel.save` (``labcore train-rm``).

    Args:
        path: folder holding ``labcore_reward.json`` and ``head.safetensors``.
        device: "auto" (cuda > mps > cpu) or a torch device string, for the encoder and the head.
        cache: score through the on-disk embedding cache (see :class:`RewardModel`).
    Returns:
        a :class:`RewardModel`, callable as ``rm(prompts, responses) -> (N,)`` float32 tensor.
    Raises:
        FileNotFoundError: the folder has no ``labcore_reward.json``.
        ValueError: the file is not a labcore Bradley-Terry reward model of a known version.
    """
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not a saved labcore reward model (no {CONFIG_NAME})")
    meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{cfg_file}: expected format {FORMAT!r} version {FORMAT_VERSION}, "
                         f"got {meta.get('format')!r} version {meta.get('version')!r}")
    if meta.get("features") != FEATURES:
        raise ValueError(f"{cfg_file}: unknown features {meta.get('features')!r} (this labcore knows {FEATURES})")
    known = set(RewardModelConfig.__dataclass_fields__)
    config = RewardModelConfig(**{k: v for k, v in meta.get("config", {}).items() if k in known})
    head = RewardHead(int(meta["head"]["in_dim"]), int(meta["head"]["hidden"]))
    head.load_state_dict(load_file(str(path / meta["head"].get("weights", WEIGHTS_NAME))))
    norm = meta["normalisation"]
    return RewardModel(config, head, mu=norm["mu"], sigma=norm["sigma"], device=device, cache=cache)


# --------------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------------
def _pair_tensors(pairs: Sequence[dict], cfg: RewardModelConfig, device, progress: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(phi(x, y_w), phi(x, y_l)), each (N, 3d), through the embedding cache."""
    n = len(pairs)
    prompts = [p["prompt"] for p in pairs]
    responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    phi = _features(prompts + prompts, responses, cfg, device, cache=True, progress=progress)  # (2N, 3d)
    return phi[:n], phi[n:]  # (N, 3d), (N, 3d)


@torch.no_grad()
def _accuracy_from_features(rm: RewardModel, phi_w: torch.Tensor, phi_l: torch.Tensor) -> float:
    """Share of pairs with r(y_w) > r(y_l) (ties count one half)."""
    d = rm.raw_from_features(phi_w) - rm.raw_from_features(phi_l)  # (N,)
    return float(((d > 0).float() + 0.5 * (d == 0).float()).mean()) if len(d) else float("nan")


def train_reward_model(pairs: Sequence[dict], *, eval_pairs: Sequence[dict] | None = None, epochs: int = 30,
                       lr: float = 1e-3, batch_size: int = 256, hidden: int = 128, dropout: float = 0.1,
                       weight_decay: float = 1e-2, encoder: str = "minilm", max_length: int = 256, seed: int = 0,
                       device: str = "auto", progress: bool = True) -> tuple[RewardModel, dict]:
    """Fit the reward head with the Bradley-Terry loss (arXiv 2203.02155 Eq. 1) on frozen-encoder features.

    Args:
        pairs: preference records ``{"prompt", "chosen", "rejected"}`` (``labcore.datasets.load_preferences``).
        eval_pairs: held-out records, scored after every epoch (reported only; no model selection on them).
        epochs, lr, batch_size, hidden, dropout, weight_decay, encoder, max_length, seed: see
            :class:`RewardModelConfig`.
        device: "auto" (cuda > mps > cpu) or a torch device string.
        progress: tqdm bars (embedding and epochs).
    Returns:
        (model, report): the :class:`RewardModel` (normalised on the train responses) and a dict with
        ``n_train``, ``n_eval``, ``history`` (per epoch: loss, train_acc, eval_acc), ``train_acc``, ``eval_acc``,
        ``mu``, ``sigma``, ``seconds_embed``, ``seconds_train``.
    """
    from tqdm.auto import tqdm

    if not pairs:
        raise ValueError("train_reward_model needs at least one preference pair")
    cfg = RewardModelConfig(encoder=encoder, max_length=max_length, hidden=hidden, dropout=dropout, epochs=epochs,
                            lr=lr, weight_decay=weight_decay, batch_size=batch_size, seed=seed)
    t0 = time.perf_counter()
    phi_w, phi_l = _pair_tensors(pairs, cfg, device, progress)  # (N, 3d) each
    ev = _pair_tensors(eval_pairs, cfg, device, progress) if eval_pairs else None
    t_embed = time.perf_counter() - t0
    set_seed(cfg.seed)  # the head's initialisation and dropout do not depend on what the cache held
    rm = RewardModel(cfg, RewardHead(phi_w.shape[1], cfg.hidden, cfg.dropout), device=device)

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(rm.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(phi_w)
    history = []
    bar = tqdm(range(cfg.epochs), desc="reward model (Bradley-Terry)", unit="epoch", disable=not progress)
    for epoch in bar:
        rm.head.train()
        order = torch.randperm(n, generator=gen)
        total, seen = 0.0, 0
        for s in range(0, n, cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            # One forward over [y_w; y_l] so both see the same dropout mode; (2b, 3d) -> (2b,)
            r = rm.head(torch.cat([phi_w[idx], phi_l[idx]]).to(rm.device))
            r_w, r_l = r[:len(idx)], r[len(idx):]  # (b,), (b,)
            loss = bt_loss(r_w, r_l)  # Eq. 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        rm.head.eval()
        row = {"epoch": epoch + 1, "loss": total / seen, "train_acc": _accuracy_from_features(rm, phi_w, phi_l)}
        if ev is not None:
            row["eval_acc"] = _accuracy_from_features(rm, *ev)
        history.append(row)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k != "epoch"})
    t_train = time.perf_counter() - t0

    # Normalise on the distinct train (prompt, response) pairs: mean 0, std 1.
    seen_pairs: dict[tuple[str, str], int] = {}
    for i, p in enumerate(pairs):
        seen_pairs.setdefault((p["prompt"], p["chosen"]), i)
        seen_pairs.setdefault((p["prompt"], p["rejected"]), n + i)
    rows = torch.tensor(sorted(seen_pairs.values()))
    raw = rm.raw_from_features(torch.cat([phi_w, phi_l])[rows])  # (U,)
    rm.mu_ = float(raw.mean())
    rm.sigma_ = float(raw.std()) if len(raw) > 1 and float(raw.std()) > 0 else 1.0
    report = {"n_train": n, "n_eval": len(eval_pairs or []), "config": asdict(cfg), "history": history,
              "train_acc": history[-1]["train_acc"], "eval_acc": history[-1].get("eval_acc"),
              "mu": rm.mu_, "sigma": rm.sigma_, "seconds_embed": round(t_embed, 2),
              "seconds_train": round(t_train, 2)}
    return rm, report


# --------------------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def pair_accuracy(reward_fn, pairs: Sequence[dict], batch_size: int = 4096) -> float:
    """Share of preference pairs that ``reward_fn`` ranks as labelled: r(x, chosen) > r(x, rejected).

    Args:
        reward_fn: any labcore reward, ``fn(prompts, responses) -> (N,)``.
        pairs: records ``{"prompt", "chosen", "rejected"}``.
        batch_size: pairs per reward call.
    Returns:
        accuracy in [0, 1] (ties count one half; NaN for no pairs).
    """
    if not pairs:
        return float("nan")
    hits = 0.0
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        prompts = [p["prompt"] for p in chunk]
        r = torch.as_tensor(reward_fn(prompts + prompts, [p["chosen"] for p in chunk] + [p["rejected"] for p in chunk]),
                            dtype=torch.float32)
        diff = r[:len(chunk)] - r[len(chunk):]  # (b,)
        hits += float((diff > 0).sum()) + 0.5 * float((diff == 0).sum())
    return hits / len(pairs)


# --------------------------------------------------------------------------------------------------------------------
# Train, evaluate and report (``labcore train-rm``)
# --------------------------------------------------------------------------------------------------------------------
def _display_path(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (shipped reports name no machine's folders)."""
    from labcore import REPO_ROOT

    p = Path(path).expanduser().resolve()
    return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(path)


def train_and_report(train_path: str | Path, test_path: str | Path | None, out: str | Path, *,
                     epochs: int | None = None, lr: float = RewardModelConfig.lr,
                     batch_size: int = RewardModelConfig.batch_size, hidden: int = RewardModelConfig.hidden,
                     encoder: str = RewardModelConfig.encoder, seed: int = 0, device: str = "auto",
                     analysis: bool = True, progress: bool = True) -> dict:
    """Train on preference pairs, save to ``out``, evaluate, write ``out/report.json`` and print the findings.

    Fast mode (``LABCORE_FAST=1``): 1,000 train pairs, 300 test pairs, 10 epochs, 40 requests in the analysis.
    """
    import random

    from labcore.datasets import load_preferences
    from labcore.reward_analysis import analyse_reward, format_findings, style_pairs
    from labcore.tinyworld import load_paraphrases, load_requests

    fast = fast_mode()
    train = load_preferences(train_path)
    test = load_preferences(test_path) if test_path else []
    if fast:
        rng = random.Random(seed)
        train = rng.sample(train, min(len(train), 1000))
        test = rng.sample(test, min(len(test), 300))
    epochs = epochs if epochs is not None else (10 if fast else RewardModelConfig.epochs)
    rm, fit = train_reward_model(train, eval_pairs=test or None, epochs=epochs, lr=lr, batch_size=batch_size,
                                 hidden=hidden, encoder=encoder, seed=seed, device=device, progress=progress)
    train_name, test_name = _display_path(train_path), (_display_path(test_path) if test_path else None)
    report: dict = {"train_file": train_name, "test_file": test_name, "fast_mode": fast, "fit": fit}
    rm.cache = True  # fixed evaluation sets: reuse the embedding cache
    if test:
        report["test"] = {"n_pairs": len(test), "pair_accuracy": pair_accuracy(rm, test)}
    if analysis:
        paras = load_paraphrases()
        requests = load_requests("test")
        if fast:
            paras, requests = paras[:40], requests[:40]
        pp = style_pairs(paras)
        report["paraphrase"] = {"n_pairs": len(pp), "pair_accuracy": pair_accuracy(rm, pp)}
        report["analysis"] = analyse_reward(rm, requests)
    rm.cache = False
    out = Path(out)
    summary = {"train": {"file": train_name, "n_pairs": len(train), "epochs": epochs,
                         "train_acc": fit["train_acc"]}}
    if test:
        summary["test"] = report["test"]
    rm.save(out, extra=summary)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_findings(report) if test else f"train pair accuracy: {fit['train_acc']:.1%}", file=sys.stderr)
    print(f"saved reward model to {out} (report: {out / 'report.json'})", file=sys.stderr)
    return report
