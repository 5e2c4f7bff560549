"""Process groups and model wrapping on PyTorch's own distributed stack.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; with WORLD_SIZE > 1 we join the process
group (gloo on CPU, nccl on CUDA) and wrap the model in DDP, or shard it with FSDP2
(``torch.distributed.fsdp.fully_shard``) when asked. Checkpoints always hold the full,
unsharded state (``torch.distributed.checkpoint.state_dict``), gathered to rank 0, so a run
can resume with another number of processes or switch between DDP and FSDP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from cadenza.errors import ConfigError


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(device: str = "auto") -> Dist:
    """Join the process group if launched by torchrun; pick this process's device."""
    world = env_world_size()
    rank = int(os.environ.get("RANK", "0")) if world > 1 else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else 0
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
        here = True
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=dev, initialized_here=here)


def teardown(d: Dist) -> None:
    if d.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(d: Dist, values: list[float]) -> list[float]:
    """Sum a few floats over all ranks (one collective)."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(d: Dist, obj):
    """Rank 0's ``obj`` on every rank."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(d: Dist, obj) -> list:
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def wrap(model: nn.Module, d: Dist, fsdp: bool) -> nn.Module:
    """DDP, FSDP2 or nothing, applied from outside the model."""
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        if not d.enabled:
            raise ConfigError("--fsdp shards the model across processes; launch with torchrun "
                              "--nproc_per_node=N (N >= 2)")
        # Shard every repeated block (the children of the outermost ModuleLists), then the root.
        def shard_blocks(module: nn.Module) -> None:
            for child in module.children():
                if isinstance(child, nn.ModuleList):
                    for block in child:
                        fully_shard(block)
                else:
                    shard_blocks(child)

        shard_blocks(model)
        fully_shard(model)
        return model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def full_state(model: nn.Module, optimizer, d: Dist) -> tuple[dict, dict]:
    """Full (unsharded) model and optimizer state dicts on rank 0 (empty elsewhere), on CPU."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, optimizer, options=opts) if optimizer is not None else None
    return msd, osd


def load_full_state(model: nn.Module, optimizer, msd: dict | None, osd: dict | None, d: Dist) -> None:
    """Load full state dicts held by rank 0 into (possibly wrapped or sharded) model and optimizer."""
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=d.enabled)
    set_model_state_dict(model, msd if msd is not None else {}, options=opts)
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, osd if osd is not None else {}, options=opts)
