"""Training on several processes with ``torch.distributed``: one process per GPU (or CPU worker), started by torchrun.

``torchrun --nproc_per_node=N -m frcnn.cli.train ...`` starts N copies of the command. Each finds its rank in
torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; under SLURM without torchrun,
translated from SLURM's) and joins one process group: NCCL on GPUs, gloo on the CPU. A plain process (no such
environment) is rank 0 of a world of 1 and never touches torch.distributed. Rank 0 is the one that writes: logs,
progress bar, TensorBoard, checkpoints, metrics.json.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.distributed as dist

from frcnn.launchers import distributed_env_from_slurm


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_from(environ: Optional[Mapping[str, str]] = None) -> DistEnv:
    """The process's place in the job from torchrun's variables; a single process when they are absent.

    Without ``environ`` (this process's own environment) a SLURM task (srun, Hydra's submitit_slurm launcher) that
    torchrun did not start gets torchrun's variables from SLURM's first (:mod:`frcnn.launchers`)."""
    if environ is None:
        environ = os.environ
        os.environ.update(distributed_env_from_slurm(os.environ) or {})
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return DistEnv()
    return DistEnv(rank=int(environ["RANK"]), world_size=int(environ["WORLD_SIZE"]),
                   local_rank=int(environ.get("LOCAL_RANK", 0)))


def is_main_process() -> bool:
    """Rank 0, or a plain single process: the one that writes. Works before the process group exists."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_from().rank == 0


def init_process_group(env: DistEnv, device: torch.device) -> torch.device:
    """Join the job's process group (once) and return this rank's device: ``cuda:LOCAL_RANK`` on GPUs."""
    if not env.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=env.rank,
                                world_size=env.world_size)
    return device


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all ranks (itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / dist.get_world_size()


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable object; returned unchanged in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (its state dict has no ``module.`` prefix)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when the process group has more than one rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
