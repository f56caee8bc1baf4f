"""Run by tests/test_training.py under ``accelerate launch --num_processes 2`` on CPUs: a training step, then each
rank writes a checksum of its weights. Each rank trains on different data; DDP must leave identical weights."""
import json
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import make_model  # noqa: E402

from labcore.models import add_lora  # noqa: E402
from labcore.training import Learner, OptimConfig  # noqa: E402

out_dir, lora = sys.argv[1], sys.argv[2] == "lora"
model = make_model("gpt2", 64, seed=0)
if lora:
    model = add_lora(model, r=4, alpha=8, dropout=0.0)
before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
learner = Learner(model, OptimConfig(lr=1e-2), seed=0)
state = learner.accelerator
g = torch.Generator().manual_seed(100 + state.process_index)  # different data on each rank
ids = torch.randint(1, 64, (2, 12), generator=g).to(learner.device)


def loss_fn(m, batch):
    return m(input_ids=batch, labels=batch).loss, {}


for _ in range(2 if lora else 1):  # lora_B starts at zero: lora_A first moves on the second step
    learner.step(ids, loss_fn)
after = {n: p.detach() for n, p in learner.unwrapped().named_parameters() if p.requires_grad}
result = {
    "rank": state.process_index,
    "world": state.num_processes,
    "changed": sum(int(not torch.equal(before[n].cpu(), after[n].cpu())) for n in before),
    "trained": len(before),
    "weights": {n: after[n].double().sum().item() for n in after},
}
with open(f"{out_dir}/rank{state.process_index}.json", "w") as f:
    json.dump(result, f)
