"""Worker for tests/test_distributed.py: a few training steps of a tiny mlpmix model on
one rank of a gloo process group (DDP or FSDP2), or on one process with the global batch."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

import mlpmix

STEPS, GLOBAL_BATCH = 3, 8


def make_model_and_data():
    torch.manual_seed(0)
    model = mlpmix.create_model("dynamixer_tiny", num_classes=10, in_chans=1).double()
    images = torch.randn(STEPS, GLOBAL_BATCH, 1, 8, 8, dtype=torch.float64)
    labels = torch.randint(0, 10, (STEPS, GLOBAL_BATCH))
    return model, images, labels


def train(model, images, labels):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in zip(images, labels):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def main(mode: str, out_path: str) -> None:
    model, images, labels = make_model_and_data()
    if mode == "single":
        train(model, images, labels)
        torch.save({k: v.detach() for k, v in model.state_dict().items()}, out_path)
        return
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    if mode == "ddp":
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    else:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for stage in model.stages:
            fully_shard(stage, mesh=mesh)
        wrapped = fully_shard(model, mesh=mesh)
    train(wrapped, images[:, shard], labels[:, shard])
    state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach()
             for k, v in wrapped.state_dict().items()}
    if rank == 0:
        torch.save({k.removeprefix("module."): v for k, v in state.items()}, out_path)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
