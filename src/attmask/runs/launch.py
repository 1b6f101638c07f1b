"""A pretraining as a SLURM job through submitit: ``nodes x gpus_per_node`` tasks, one per GPU.

:class:`SlurmSpec` holds what to ask SLURM for, :func:`build_executor` turns it into a submitit
executor (``SlurmExecutor``, or ``LocalExecutor`` to run the tasks as local processes) and
:func:`submit` submits a callable to it. The callable itself (which runs ``attmask pretrain``)
lives in :mod:`attmask.cli.launch`. submitit is optional (``pip install 'attmask[launch]'``), so it
is imported only here, when a job is submitted.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

MISSING_SUBMITIT = "attmask launch needs submitit: pip install 'attmask[launch]'"
NO_SLURM = "SLURM's srun is not on PATH: submit from the cluster's login node, or run the tasks here with --local"


@dataclass(frozen=True)
class SlurmSpec:
    """The resources of one pretraining job.

    Attributes:
        nodes: nodes of the job.
        gpus_per_node: GPUs per node; one task (one training process) per GPU.
        partition: SLURM partition (None: the cluster's default).
        time_minutes: time limit of one run of the job; at its end submitit requeues the job.
        account: SLURM account to charge (None: the user's default).
        cpus_per_task: CPU cores per task, for the data loader workers (None: SLURM's default).
        mem_gb: memory per node in GB (None: SLURM's default).
        job_name: name of the job in the queue.
        max_requeues: how many times a timed-out job is requeued (submitit's ``max_num_timeout``);
            a preempted job is requeued whatever this is.
        local: run the tasks as processes of this machine (submitit's ``LocalExecutor``; one node).
    """

    nodes: int = 1
    gpus_per_node: int = 1
    partition: str | None = None
    time_minutes: int = 24 * 60
    account: str | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    job_name: str = "attmask"
    max_requeues: int = 3
    local: bool = False

    @property
    def tasks(self) -> int:
        """Training processes in all: one per GPU."""
        return self.nodes * self.gpus_per_node

    def check(self) -> None:
        """Refuse impossible values, in one line."""
        for name in ("nodes", "gpus_per_node", "time_minutes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_requeues < 0:
            raise ValueError(f"--max-requeues must be >= 0, got {self.max_requeues}")
        if self.local and self.nodes != 1:
            raise ValueError(f"--local runs on this machine only: use --nodes 1, not {self.nodes}")


def require_submitit() -> ModuleType:
    """The submitit module, or a ValueError saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise ValueError(MISSING_SUBMITIT) from None
    return submitit


def slurm_parameters(spec: SlurmSpec) -> dict[str, Any]:
    """The ``SlurmExecutor.update_parameters`` of ``spec`` (sbatch options, without the unset ones)."""
    parameters: dict[str, Any] = {
        "nodes": spec.nodes,
        "ntasks_per_node": spec.gpus_per_node,
        "gpus_per_node": spec.gpus_per_node,
        "time": spec.time_minutes,
        "job_name": spec.job_name,
        "partition": spec.partition,
        "account": spec.account,
        "cpus_per_task": spec.cpus_per_task,
        "mem": None if spec.mem_gb is None else f"{spec.mem_gb:g}GB",
    }
    return {key: value for key, value in parameters.items() if value is not None}


def build_executor(spec: SlurmSpec, folder: str | Path) -> Any:
    """A submitit executor for ``spec`` writing its scripts, pickles and logs to ``folder``.

    SLURM: ``nodes`` nodes, ``gpus_per_node`` tasks and GPUs each (srun starts the tasks; every
    task sees its node's GPUs and picks its own by ``LOCAL_RANK``). Local: ``gpus_per_node`` local
    processes, stopped after ``time_minutes`` like a SLURM job.
    """
    spec.check()
    submitit = require_submitit()
    if spec.local:
        executor = submitit.LocalExecutor(folder=str(folder), max_num_timeout=spec.max_requeues)
        executor.update_parameters(
            nodes=1, tasks_per_node=spec.gpus_per_node, gpus_per_node=spec.gpus_per_node, timeout_min=spec.time_minutes
        )
        return executor
    if shutil.which("srun") is None:
        raise ValueError(NO_SLURM)
    executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=spec.max_requeues)
    executor.update_parameters(**slurm_parameters(spec))
    return executor


def submit(spec: SlurmSpec, job: Callable[[], Any], folder: str | Path) -> Any:
    """Submit ``job`` (called with no argument in every task) as ``spec`` asks; returns submitit's Job.

    Args:
        spec: the resources.
        job: the callable; with a ``checkpoint()`` method (submitit's Checkpointable protocol) it
            is requeued on preemption and timeout.
        folder: submitit's folder (submission script, pickles, one log per task).
    """
    executor = build_executor(spec, folder)
    try:
        return executor.submit(job)
    except RuntimeError as error:  # submitit's FailedJobError / FailedSubmissionError: sbatch's answer
        raise ValueError(f"the job was not submitted: {' '.join(str(error).split())}") from None
