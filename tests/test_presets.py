"""One config and preset system: presets as data, the fast overlay, --set overrides typed by the field."""
from dataclasses import dataclass
from typing import Literal

import pytest

from labcore.config import Eval, Optim, RAFTConfig, RRHFConfig, check_choices
from labcore.presets import EVAL, UnknownSetting, build, parse_overrides


def test_overrides_are_typed_by_the_field():
    got = parse_overrides(RAFTConfig, ["optim.lr=1e-4", "num_samples=8", "lora.use=false", "max_length=none",
                                       "optim.max_grad_norm=none", "lora.target_modules=c_attn,c_fc",
                                       "selection=global"])
    assert got == {"optim.lr": 1e-4, "num_samples": 8, "lora.use": False, "max_length": None,
                   "optim.max_grad_norm": None, "lora.target_modules": ("c_attn", "c_fc"), "selection": "global"}
    assert parse_overrides(RAFTConfig, ["lr=0.5"]) == {"optim.lr": 0.5}  # a unique leaf name finds its piece


@pytest.mark.parametrize("pair, message", [
    ("max_new_tokens=3", "ambiguous"), ("nope=1", "unknown"), ("selection=best", "must be one of"),
    ("lora.use=maybe", "true or false"), ("num_samples=many", "number"), ("lr", "FIELD=VALUE")])
def test_bad_overrides_name_the_problem(pair, message):
    with pytest.raises(UnknownSetting, match=message):
        parse_overrides(RAFTConfig, [pair])


def test_build_layers_preset_fast_overlay_and_overrides():
    cfg = build(RRHFConfig, "tiny-helpful", fast=False)
    assert cfg.optim.scheduler == "cosine" and cfg.optim.warmup_ratio == 0.03  # the config's piece defaults stay
    assert cfg.optim.lr == 3e-4 and cfg.queries_per_step == 16 and cfg.lora.use
    assert cfg.eval == Eval(**EVAL["tiny-helpful"])  # the task's protocol, shared with RAFT
    assert build(RAFTConfig, "tiny-helpful", fast=False).eval == cfg.eval
    fast = build(RRHFConfig, "tiny-helpful", fast=True, overrides={"lora": {"r": 4}})
    assert (fast.queries, fast.optim.epochs, fast.lora.r, fast.lora.alpha) == (8, 1, 4, 32)
    with pytest.raises(ValueError, match="sampling.temperature must be > 0"):
        build(RAFTConfig, "tiny-sentiment", overrides=["sampling.temperature=-1"])
    with pytest.raises(UnknownSetting, match="unknown preset"):
        build(RAFTConfig, "nope")


def test_every_value_a_config_accepts_runs():
    with pytest.raises(ValueError, match="scheduler"):
        Optim(scheduler="linear")  # accepted before and rejected at run time; now refused at once

    @dataclass
    class WithOptional:
        mode: Literal["a", "b"] | None = None

    x = WithOptional()
    check_choices(x)
    x.mode = "c"
    with pytest.raises(ValueError, match="mode must be one of 'a', 'b'"):
        check_choices(x)
