"""tests/test_transformers_contract.py's DDP run: `python -m tests.ddp_worker FOLDER PORT STEPS RESULT`
spawns two gloo ranks (in a process of its own: pytest's is no place to spawn from)."""

import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from modeling_instructblip import InstructBlipForConditionalGeneration


def run(rank, world_size, folder, port, steps, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
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
    dist.destroy_process_group()


if __name__ == "__main__":
    import torch.multiprocessing as mp

    folder, port, steps, result = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    mp.spawn(run, args=(2, folder, port, steps, result), nprocs=2, join=True)
