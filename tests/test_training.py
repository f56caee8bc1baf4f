"""The shared accelerate training step: one step trains, accumulation, checkpoints, and 2-process DDP on the CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_model
from labcore.models import add_lora
from labcore.config import Optim
from labcore.training import Learner


def _loss(m, batch):
    return m(input_ids=batch, labels=batch).loss, {"tokens": float(batch.numel())}


def test_step_changes_every_trained_weight():
    model = make_model("gpt2", 64)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    learner = Learner(model, Optim(lr=1e-2), cpu=True, seed=0)
    logs = learner.step(torch.randint(1, 64, (2, 10)), _loss)
    assert {"loss", "lr", "grad_norm", "tokens"} <= set(logs)
    for n, p in learner.unwrapped().named_parameters():
        assert not torch.equal(before[n], p.detach()), n


def test_lora_trains_adapter_only():
    model = add_lora(make_model("gpt2", 64), r=4, alpha=8, dropout=0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    learner = Learner(model, Optim(lr=1e-2), cpu=True, seed=0)
    for _ in range(2):  # lora_B starts at zero, so lora_A gets its first gradient on the second step
        learner.step(torch.randint(1, 64, (2, 10)), _loss)
    for n, p in learner.unwrapped().named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if "lora_B" in n or "lora_A" in n:
            assert changed, n
        else:
            assert not changed, n


def test_gradient_accumulation_equals_big_batch():
    # accelerate's gradient state is process-global: one Learner at a time, so a finishes before b starts
    batch = torch.randint(1, 64, (4, 10))
    a = Learner(make_model("gpt2", 64), Optim(lr=1e-2, grad_accum=2, max_grad_norm=None), cpu=True)
    assert a.step(batch[:2], _loss).get("lr") is None  # no optimiser step yet
    a.step(batch[2:], _loss)
    b = Learner(make_model("gpt2", 64), Optim(lr=1e-2, grad_accum=1, max_grad_norm=None), cpu=True)
    b.step(batch, _loss)
    assert a.optimizer_steps == b.optimizer_steps == 1
    for (n, pa), (_, pb) in zip(a.unwrapped().named_parameters(), b.unwrapped().named_parameters()):
        torch.testing.assert_close(pa, pb, atol=2e-5, rtol=1e-4, msg=n)


def test_checkpoint_resume_continues_identically(tmp_path):
    data = [torch.randint(1, 64, (2, 10), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    full = Learner(make_model("gpt2", 64), Optim(lr=1e-2), cpu=True, seed=0)
    for d in data:
        full.step(d, _loss)
    first = Learner(make_model("gpt2", 64), Optim(lr=1e-2), cpu=True, seed=0)
    for d in data[:2]:
        first.step(d, _loss)
    first.save_checkpoint(tmp_path / "ckpt", extra={"epoch": 1})
    state = json.loads((tmp_path / "ckpt" / "labcore_state.json").read_text())
    assert state["optim"]["lr"] == 1e-2 and state["optimizer_steps"] == 2  # the Optim settings, as saved
    resumed = Learner(make_model("gpt2", 64, seed=5), Optim(lr=1e-2), cpu=True, seed=0)
    assert resumed.load_checkpoint(tmp_path / "ckpt")["epoch"] == 1
    for d in data[2:]:
        resumed.step(d, _loss)
    for (n, pa), (_, pb) in zip(full.unwrapped().named_parameters(), resumed.unwrapped().named_parameters()):
        torch.testing.assert_close(pa, pb, msg=n)


def test_config_validation():
    with pytest.raises(ValueError, match="total_steps"):
        Learner(make_model("gpt2", 64), Optim(scheduler="cosine"), cpu=True)  # a cosine schedule needs its length
    with pytest.raises(ValueError, match="grad_accum"):
        Optim(grad_accum=0)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "lora", "rrhf"])
def test_two_process_ddp_step_identical_weights(tmp_path, mode):
    """`accelerate launch` with 2 CPU processes (gloo): different data per rank, identical weights after the step."""
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    port = str(29500 + os.getpid() % 1000 + ["full", "lora", "rrhf"].index(mode))
    # accelerate's own CPU launcher needs MPI; --multi_gpu uses torchrun, and the Learner picks gloo on the CPU
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
           str(Path(__file__).parent / "dist_step.py"), str(tmp_path), mode]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2))
    assert r0["world"] == r1["world"] == 2
    assert r0["changed"] == r0["trained"] > 0
    assert r0["weights"] == r1["weights"]
