"""One gloo rank of tests/modeling_instructblip/test_transformers_contract.py's DDP run:
`torchrun --standalone --nproc_per_node 2 -m tests.modeling_instructblip.ddp_worker FOLDER STEPS RESULT`."""

import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from modeling_instructblip import InstructBlipForConditionalGeneration


def run(rank, world_size, folder, steps, result_path):
    torch.set_num_threads(1)  # two ranks on a 2-core machine that runs other tests too
    # torchrun's rendezvous (--standalone: a free port of its own), as the Trainer's launchers do
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=120))
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration.from_pretrained(folder)
    model.freeze_for_instruction_tuning()
    # what the Trainer does with activation checkpointing on: no find_unused_parameters
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    assert model.qformer.encoder.layer[0].gradient_checkpointing and model.language_model.is_gradient_checkpointing
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = torch.load(os.path.join(folder, "batch.pt"), weights_only=True)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = []
    for step in range(steps):
        rows = slice(rank, None, world_size)  # each rank its own samples
        inputs = {k: v[rows] for k, v in batch.items()}
        loss = ddp(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    flat = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
    gathered = [torch.zeros_like(flat) for _ in range(world_size)]
    dist.all_gather(gathered, flat)
    moved = sum(int(not torch.equal(start[n], p)) for n, p in model.named_parameters() if p.requires_grad)
    if rank == 0:
        torch.save({"gathered": gathered, "losses": losses, "moved": moved, "trainable": len(start)}, result_path)
    # the DDP wrapper goes before its process group: torn down after it, gloo can wait forever at exit
    del ddp
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":  # one rank, started by torchrun
    folder, steps, result = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), folder, steps, result)
