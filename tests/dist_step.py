"""Run by tests/test_training.py under ``accelerate launch --num_processes 2`` on CPUs: a training step, then each
rank writes a checksum of its weights. Each rank trains on different data; DDP must leave identical weights."""
import json
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import make_model, make_tokenizer  # noqa: E402

from labcore.models import add_lora  # noqa: E402
from labcore.config import Optim  # noqa: E402
from labcore.training import Learner  # noqa: E402

out_dir, mode = sys.argv[1], sys.argv[2]
lora = mode == "lora"
tok = make_tokenizer()
model = make_model("gpt2", len(tok), seed=0)
if lora:
    model = add_lora(model, r=4, alpha=8, dropout=0.0)
before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
learner = Learner(model, Optim(lr=1e-2), seed=0)
state = learner.accelerator
g = torch.Generator().manual_seed(100 + state.process_index)  # different data on each rank
ids = torch.randint(1, len(tok), (2, 12), generator=g).to(learner.device)


def loss_fn(m, batch):
    return m(input_ids=batch, labels=batch).loss, {}


if mode == "rrhf":  # the RRHF step (Eq. 5) on different queries per rank
    from labcore.rrhf import build_rrhf_batch, rrhf_forward, rrhf_loss

    r = float(state.process_index)
    ids = build_rrhf_batch(tok, [f"\n\nHuman: q{state.process_index}\n\nAssistant:"],
                           [[" Water it deeply.", " Figure it out yourself.", " Jog slowly."]], max_length=64,
                           rewards_list=[[1.0 + r, -1.0, 0.5 - r]])

    def loss_fn(m, batch):
        fwd = rrhf_forward(m, batch)
        return rrhf_loss(fwd.scores, fwd.token_logp, batch["response_mask"], batch["rewards"]).loss, {}


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
state.wait_for_everyone()
state.end_training()  # destroy the process group before exit (an undestroyed gloo group can abort at teardown)
