"""Where a result was measured: device, library versions, git commit, date.

Benchmarks and experiments write this next to their numbers so a committed result says what
produced it.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import Any

import torch

import attmask


def git_commit(where: str | Path | None = None) -> str:
    """Short hash of ``HEAD`` of the repository holding ``where`` (default: this package),
    with ``+dirty`` when tracked files are modified; ``unknown`` outside a git checkout."""
    folder = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=folder
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=folder,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


@functools.cache
def running_commit() -> str:
    """The commit of the code this process runs: :func:`git_commit` of this package at the first
    call, the same answer for the rest of the process. A long run (an experiment's lanes train for
    hours) calls it when it starts; reading ``HEAD`` again when a result is written would name a
    later commit checked out meanwhile, not the code that computed the result."""
    return git_commit()


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The processor's name (``AMD EPYC 7B13``) from the ``model name`` line of Linux's
    ``cpuinfo``; ``platform.processor()`` or the machine type (``x86_64``) where there is none.

    Timings of one experiment can come from different machines (a run resumed in another
    session), so a result names the processor, not only the instruction set.
    """
    try:
        lines = Path(cpuinfo).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device, threads: int | None = None) -> str:
    """``NVIDIA H100 ...`` on CUDA; ``cpu (<processor>, <n> cores, <m> threads)`` otherwise
    (processor name, cores of the machine, ``threads`` or else this process's intra-op threads)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    processor = cpu_model()
    threads = threads or torch.get_num_threads()
    return f"cpu ({processor}, {os.cpu_count()} cores, {threads} thread{'' if threads == 1 else 's'})"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (a container's, ``taskset``'s or SLURM's
    cpuset, what PyTorch's DataLoader checks too), else every CPU of the machine (macOS, Windows)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def loader_workers(requested: int, key: str = "data.num_workers") -> int:
    """``requested`` DataLoader workers, at most :func:`usable_cpus` (with one warning naming ``key``).

    More worker processes than CPUs only compete with the training process for the same cores,
    and PyTorch warns about it in two lines on every loader it builds; a config written for a
    16-core machine (``num_workers: 10``) should still run as well as it can on a 2-core laptop.
    In pretraining the cap changes speed only: a sample's augmentation is seeded by the run's
    seed, the epoch and its index, not by the worker that loads it; evaluation loaders do not
    augment.
    """
    cpus = usable_cpus()
    if requested <= cpus:
        return requested
    warnings.warn(
        f"{key}={requested} is more than the {cpus} CPUs this process may use; using {cpus} loader workers",
        stacklevel=2,
    )
    return cpus


def environment(device: torch.device) -> dict[str, Any]:
    """``{date, commit, device, versions}`` of this process (versions of attmask, torch, timm, Python)."""
    import timm

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "device": device_name(device),
        "versions": {
            "attmask": attmask.__version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "python": platform.python_version(),
        },
    }
