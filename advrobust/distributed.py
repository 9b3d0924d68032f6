"""torch.distributed glue for runs launched with ``torchrun`` (one home for rank and world size).

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in
every process; :func:`launched_by_torchrun` looks for them and :func:`init_from_env` joins the
process group (gloo on the CPU, nccl when the process drives a CUDA device). Without torchrun every
helper answers for a single process (rank 0 of 1), so callers need no special case.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist

__all__ = ["launcher_rank", "launched_by_torchrun", "init_from_env", "is_distributed", "rank", "world_size", "local_rank",
           "is_main", "barrier", "shutdown", "default_backend"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: (launcher, rank variable, size variable), looked for in this order after torchrun's
_MPI_VARS = (("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
             ("mvapich", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),
             ("pmi", "PMI_RANK", "PMI_SIZE"))


def launcher_rank() -> tuple[int, int, str]:
    """``(rank, world_size, launcher)`` of this process as its launcher set them in the environment,
    with no process group needed: ``torchrun`` (``RANK``/``WORLD_SIZE``); SLURM (``SLURM_PROCID`` /
    ``SLURM_NTASKS``, and in a job array each task's tasks after the previous ones':
    ``SLURM_ARRAY_TASK_ID``, ``_MIN``, ``_STEP``, ``_COUNT``; a non-arithmetic index list wraps); MPI (Open MPI's
    ``OMPI_COMM_WORLD_RANK``/``_SIZE``, MVAPICH's ``MV2_COMM_WORLD_*``, MPICH / Intel MPI's
    ``PMI_RANK``/``PMI_SIZE``); ``(0, 1, "none")`` otherwise.

    Raises:
        ValueError: a variable that is not an integer, or a rank outside ``[0, world_size)``.
    """
    env = os.environ

    def number(name: str) -> int:
        try:
            return int(env[name])
        except ValueError:
            raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from None

    if "RANK" in env and "WORLD_SIZE" in env:
        found = (number("RANK"), number("WORLD_SIZE"), "torchrun")
    elif "SLURM_PROCID" in env:
        rank, world = number("SLURM_PROCID"), number("SLURM_NTASKS") if "SLURM_NTASKS" in env else 1
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            step = number("SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
            first = number("SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
            count = number("SLURM_ARRAY_TASK_COUNT")
            # an index list that is not arithmetic (--array=1,3,10, e.g. resubmitted failures) gives
            # no exact task number: the rank only spreads the starting chunks, so wrap it
            task = ((number("SLURM_ARRAY_TASK_ID") - first) // max(step, 1)) % max(count, 1)
            rank, world = task * world + rank, count * world
        found = (rank, world, "slurm")
    else:
        mpi = next((entry for entry in _MPI_VARS if entry[1] in env and entry[2] in env), None)
        found = (number(mpi[1]), number(mpi[2]), mpi[0]) if mpi else (0, 1, "none")
    rank, world, launcher = found
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"{launcher}: rank {rank} is not in [0, {world}) (from the launcher's environment)")
    return found


def launched_by_torchrun() -> bool:
    """True when every variable torchrun sets is in the environment."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def default_backend(device: torch.device) -> str:
    """``"nccl"`` for a CUDA device, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_env(device: Optional[torch.device] = None, backend: Optional[str] = None) -> bool:
    """Join the torchrun process group once; return True when running distributed.

    Args:
        device: the device this process computes on (chooses the backend); default: CUDA device
            ``LOCAL_RANK`` when CUDA is available, else the CPU.
        backend: override (``"gloo"`` or ``"nccl"``).

    Returns:
        False (and does nothing) outside torchrun; True once the group is initialised.
    """
    if not launched_by_torchrun():
        return False
    if dist.is_initialized():
        return True
    if device is None:
        device = torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend or default_backend(device))
    return True


def is_distributed() -> bool:
    """A process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """Rank on this machine (``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Rank 0: the process that writes files and shows progress."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op for a single process)."""
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
