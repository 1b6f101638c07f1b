"""``attmask launch slurm``: submit ``attmask pretrain ...`` as a SLURM job of N nodes x G GPUs with
submitit, requeued on preemption and timeout (the run resumes from its run folder's checkpoint)."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attmask.core.stop import STOP_SIGNALS

EXAMPLE = (
    "example:\n"
    "  attmask launch slurm --nodes 2 --gpus-per-node 8 --partition gpu --time-minutes 720 -- \\\n"
    "      pretrain --config configs/ibot_attmask_vits16_in1k.yaml --out runs/vits16_attmask\n"
    "Each task exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT from SLURM's job\n"
    "and runs the pretraining. On preemption or timeout (SLURM's USR2 signal) the job is requeued\n"
    "with the same command, which resumes from the run folder's checkpoint: work since the last one\n"
    "is redone (save it more often with --set train.save_every_steps=N)."
)
NO_COMMAND = "nothing to launch: end with -- pretrain ... --out RUN (the pretraining to submit)"


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register the subcommand (``launch slurm``)."""
    parser = commands.add_parser(
        name,
        help="submit pretraining to SLURM (submitit): N nodes x G GPUs, requeued on preemption",
        description="Submit a pretraining to a cluster with submitit (pip install 'attmask[launch]').",
    )
    backends = parser.add_subparsers(dest="backend", required=True, metavar="BACKEND")
    slurm = backends.add_parser(
        "slurm",
        help="a SLURM job of N nodes x G tasks (one per GPU)",
        description="Submit `attmask pretrain ARGS` (after --) as a SLURM job of N nodes x G tasks, one per GPU.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    slurm.add_argument("--nodes", type=int, default=1, metavar="N", help="nodes (default 1)")
    slurm.add_argument(
        "--gpus-per-node", type=int, default=1, metavar="G", help="GPUs per node, one task each (default 1)"
    )
    slurm.add_argument("--partition", metavar="P", help="SLURM partition (default: the cluster's)")
    slurm.add_argument(
        "--time-minutes",
        type=int,
        default=24 * 60,
        metavar="M",
        help="time limit per run of the job; requeued at its end (1440)",
    )
    slurm.add_argument("--account", metavar="A", help="SLURM account (default: yours)")
    slurm.add_argument("--cpus-per-task", type=int, metavar="C", help="CPU cores per task, for data loader workers")
    slurm.add_argument("--mem-gb", type=float, metavar="X", help="memory per node in GB")
    slurm.add_argument("--job-name", default="attmask", metavar="NAME", help="name in the queue (default attmask)")
    slurm.add_argument(
        "--logs", metavar="DIR", help="submitit's folder: scripts, pickles, one log per task (default RUN/submitit)"
    )
    slurm.add_argument(
        "--max-requeues",
        type=int,
        default=3,
        metavar="K",
        help="requeues after a timeout (default 3; preemptions always requeue)",
    )
    slurm.add_argument(
        "--local", action="store_true", help="run the G tasks as processes of this machine instead and wait for them"
    )
    slurm.add_argument("command_args", nargs=argparse.REMAINDER, metavar="-- pretrain ARGS", help="the pretraining")


class PretrainJob:
    """``attmask pretrain`` in one task of a submitit job, requeued as is on preemption or timeout.

    submitit's Checkpointable protocol: on the preemption / timeout signal submitit calls
    :meth:`checkpoint` in task 0 and requeues what it returns. This is that protocol without
    subclassing ``submitit.helpers.Checkpointable`` (which only adds the same ``checkpoint``), so that
    this module imports without submitit.

    Attributes:
        argv: the command, ``["pretrain", ..., "--out", RUN, ...]``.
        requeues: how many times the job was requeued before this run.
    """

    def __init__(self, argv: Sequence[str], requeues: int = 0) -> None:
        self.argv = list(argv)
        self.requeues = requeues

    def __call__(self) -> int:
        """Export torch.distributed's variables from submitit's job environment, then pretrain (the
        trainer resumes from the run folder's checkpoint when there is one)."""
        from submitit.helpers import TorchDistributedEnvironment

        from attmask.cli.main import main

        # every task sees its node's GPUs and takes cuda:LOCAL_RANK; overwrite what the submitting shell set
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        code = main(self.argv)
        if code > 128 and signal.Signals(code - 128) in STOP_SIGNALS:  # e.g. SLURM's SIGTERM after a requeue
            raise RuntimeError(
                f"attmask {self.argv[0]} stopped by {signal.Signals(code - 128).name} with its checkpoint "
                "written (the line above in this log): the requeued job, or the same command, resumes from it"
            )
        if code:
            raise RuntimeError(f"attmask {self.argv[0]} exited with code {code} (its error is above in this log)")
        return code

    def checkpoint(self) -> Any:
        """The same command again, as a ``submitit.helpers.DelayedSubmission`` (the run folder holds
        the state to resume from)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(type(self)(self.argv, self.requeues + 1))


def pretrain_argv(command_args: Sequence[str]) -> tuple[list[str], Path]:
    """The ``pretrain ...`` command after ``--`` (checked with pretrain's parser) and its run folder."""
    from attmask.cli.main import build_parser

    argv = list(command_args[1:] if command_args[:1] == ["--"] else command_args)
    if not argv:
        raise ValueError(NO_COMMAND)
    if argv[0] != "pretrain":
        raise ValueError(f"only pretrain can be launched, got {argv[0]!r}: end with -- pretrain ... --out RUN")
    parsed = build_parser("pretrain").parse_args(argv)  # a typo stops here, not in the queue
    if parsed.out is None:
        raise ValueError("the pretrain arguments need --out RUN: a requeued job resumes from its run folder")
    return argv, Path(parsed.out)


def run(args: argparse.Namespace) -> int:
    """Check the command, submit it, print the job id, the log folder and the run folder."""
    from attmask.runs.launch import SlurmSpec, require_submitit, submit

    argv, out = pretrain_argv(args.command_args)
    require_submitit()
    spec = SlurmSpec(
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        partition=args.partition,
        time_minutes=args.time_minutes,
        account=args.account,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        job_name=args.job_name,
        max_requeues=args.max_requeues,
        local=args.local,
    )
    job = submit(spec, PretrainJob(argv), Path(args.logs) if args.logs else out / "submitit")
    where = "local" if spec.local else "SLURM"
    print(
        f"submitted {where} job {job.job_id} ({spec.nodes} x {spec.gpus_per_node} tasks): "
        f"logs in {job.paths.folder.resolve()}, run folder {out.resolve()}",
        flush=True,
    )
    return _wait(job) if spec.local else 0


def _wait(job: Any) -> int:
    """Wait for a local job; a failed one is one line: the task's own error and where its logs are."""
    try:
        job.results()
    except RuntimeError as error:  # submitit's UncompletedJobError and FailedJobError
        raise ValueError(
            f"local job {job.job_id} failed: {_task_error(job, error)}; logs in {job.paths.folder}"
        ) from None
    print(f"local job {job.job_id} finished")
    return 0


def _task_error(job: Any, error: RuntimeError) -> str:
    """The first ``attmask ...: error: ...`` line the job's tasks wrote, else the exception's last
    ``...Error: ...`` line (submitit wraps the task's traceback)."""
    for log in sorted(Path(job.paths.folder).glob(f"{job.job_id}_*_log.err")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("attmask ")]
        if lines:
            return lines[0]
    raised = [line.strip() for line in str(error).splitlines() if "Error: " in line or "Exception: " in line]
    return raised[-1] if raised else " ".join(str(error).split()[:30])
