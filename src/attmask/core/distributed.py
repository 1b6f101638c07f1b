"""torch.distributed set-up from torchrun's environment; every call is a no-op single-process.

``torchrun --nproc_per_node 4 -m attmask.cli.main pretrain ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; without them the run is single-process on the chosen device.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor


@dataclass
class DistributedContext:
    """Where this process runs.

    Attributes:
        rank: global rank (0 single-process).
        world_size: number of processes.
        local_rank: rank on this node.
        device: the torch device of this process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True when a process group with more than one process is in use."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs and checkpoints."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local CUDA device when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda but no CUDA device is available; use cpu or auto")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def init_distributed(device_name: str = "auto") -> DistributedContext:
    """Initialise the process group when launched by torchrun (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    warning = elastic_restart_warning(os.environ)
    if warning and rank == 0:
        print(f"warning: {warning}", file=sys.stderr)
    if world_size > 1 and not (dist.is_available() and dist.is_initialized()):
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, device)


def elastic_restart_warning(environ: Mapping[str, str]) -> str | None:
    """What to fix when torchrun may restart workers on several nodes with the store it shares with
    them (``TORCHELASTIC_USE_AGENT_STORE``): each agent counts its restarts on its own, so restarted
    workers can read the addresses of the killed ones and fail to connect or hang (pytorch#135712)."""
    nodes = int(environ.get("GROUP_WORLD_SIZE", "1"))
    restarts = int(environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    shared = environ.get("TORCHELASTIC_USE_AGENT_STORE", "False") == "True"
    if nodes > 1 and restarts > 0 and shared:
        return (
            f"torchrun --max-restarts {restarts} on {nodes} nodes with the agents' shared store: restarted "
            "workers may hang connecting (pytorch#135712); start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"
        )
    return None


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over processes (a copy; the input itself single-process)."""
    if not is_distributed():
        return tensor
    return all_reduce_sum(tensor) / dist.get_world_size()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over processes (a copy; the input itself single-process)."""
    if not is_distributed():
        return tensor
    reduced = tensor.clone()
    dist.all_reduce(reduced)
    return reduced


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (a collective: every process must call it); a plain tensor as is."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def barrier() -> None:
    """Synchronise processes (no-op single-process)."""
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    """Destroy the process group if this module created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
