"""``attmask launch slurm``: submitit's LocalExecutor runs the tasks here (2 gloo processes on CPU)
and gives the losses of one process with the same global batch; a preempted job is requeued and
finishes from its checkpoint; the refusals are one line."""

from __future__ import annotations

import os
import signal
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from attmask.cli.launch import PretrainJob, _task_error
from attmask.cli.main import main
from attmask.engine.logging import read_log
from attmask.runs.launch import NO_SLURM, SlurmSpec, submit
from tests.conftest import REPO_ROOT
from tests.engine.test_distributed import COMMON
from tests.engine.tiny import TINY, losses_by_step, tiny_config

submitit = pytest.importorskip("submitit")

#: The tiny config on 2 tasks: half the global batch each, one intra-op thread per process.
OVERRIDES = (*COMMON, "data.batch_size=4", "train.num_threads=1")


def _pretrain(run_dir) -> list[str]:
    """``pretrain`` arguments of the 2-task tiny run in ``run_dir``."""
    sets = [arg for override in (*TINY, *OVERRIDES) for arg in ("--set", override)]
    return ["pretrain", "--out", str(run_dir), *sets]


@pytest.fixture(scope="module")
def single_losses(tmp_path_factory) -> dict[int, float]:
    """Losses by step of one process with the 2 tasks' global batch (8)."""
    from attmask.engine.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    try:
        Trainer(tiny_config(*COMMON, "data.batch_size=8", "train.num_threads=1"), run_dir).fit()
    finally:
        torch.set_num_threads(threads)
    return losses_by_step(read_log(run_dir))


def _assert_same_losses(run_dir, single: dict[int, float]) -> None:
    assert (run_dir / "checkpoint.pth").is_file()
    losses = losses_by_step(read_log(run_dir))
    assert sorted(losses) == sorted(single) == [1, 2, 3, 4]
    for step in single:
        assert losses[step] == pytest.approx(single[step], rel=1e-5, abs=1e-6)


def test_local_job_of_two_tasks_matches_one_process(tmp_path, capsys, single_losses) -> None:
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    argv = ["launch", "slurm", "--local", "--nodes", "1", "--gpus-per-node", "2", "--logs", str(logs)]
    argv += ["--time-minutes", "4", "--max-requeues", "0", "--"]  # a hung job is stopped after 4 minutes
    assert main([*argv, *_pretrain(run_dir)]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("submitted local job ") and str(logs) in first and str(run_dir) in first, out
    assert "finished" in out
    _assert_same_losses(run_dir, single_losses)


class PreemptedOnce(PretrainJob):
    """Preempted before logging step 3 of its first run: every task gets submitit's signal (USR2),
    as SLURM sends it to every task before preempting the job."""

    def __call__(self) -> int:
        if self.requeues == 0:
            from attmask.engine.trainer import Trainer

            original = Trainer._log_step

            def preempt(trainer, *args) -> None:
                if trainer.progress.global_step == 3:
                    os.kill(os.getpid(), signal.SIGUSR2)
                original(trainer, *args)

            Trainer._log_step = preempt  # in this task's process only
        return super().__call__()


def test_preempted_local_job_is_requeued_and_finishes_from_its_checkpoint(tmp_path, monkeypatch, single_losses) -> None:
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))  # the tasks unpickle PreemptedOnce from here
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    job = submit(SlurmSpec(gpus_per_node=2, local=True), PreemptedOnce(_pretrain(run_dir)), logs)
    deadline = time.monotonic() + 240
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not job.done():
        job.cancel()  # the controller stops its tasks
        pytest.fail(f"the local job did not finish in 4 minutes; see {logs}")
    job.results()
    stdout = (logs / f"{job.job_id}_0_log.out").read_text()
    assert "this job is preempted" in stdout and "Requeued job" in stdout, stdout
    requeued = submitit.helpers.DelayedSubmission.load(job.paths.submitted_pickle).function
    assert isinstance(requeued, PreemptedOnce) and requeued.requeues == 1
    _assert_same_losses(run_dir, single_losses)


def test_a_task_stopped_by_sigterm_says_its_checkpoint_is_written(monkeypatch) -> None:
    """SLURM sends SIGTERM to every task once the job is requeued or cancelled: the run stops with
    its checkpoint (exit code 143) and the task's error says so instead of pointing at an error."""
    monkeypatch.setattr("attmask.cli.main.main", lambda argv: 128 + signal.SIGTERM)
    environment = SimpleNamespace(export=lambda **kwargs: None)  # no job around this test
    monkeypatch.setattr("submitit.helpers.TorchDistributedEnvironment", lambda: environment)
    with pytest.raises(RuntimeError, match=r"^attmask pretrain stopped by SIGTERM with its checkpoint written"):
        PretrainJob(["pretrain", "--out", "run"])()
    monkeypatch.setattr("attmask.cli.main.main", lambda argv: 1)
    with pytest.raises(RuntimeError, match=r"exited with code 1 \(its error is above"):
        PretrainJob(["pretrain", "--out", "run"])()


def test_checkpoint_requeues_the_same_command(tmp_path) -> None:
    job = PretrainJob(["pretrain", "--config", "c.yaml", "--out", "run"])
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert (delayed.args, delayed.kwargs) == ((), {})
    assert type(delayed.function) is PretrainJob and delayed.function.argv == job.argv
    assert delayed.function.requeues == 1
    delayed.dump(tmp_path / "submitted.pkl")  # what submitit writes for the requeued job
    again = submitit.helpers.DelayedSubmission.load(tmp_path / "submitted.pkl").function
    assert again.argv == job.argv and again.checkpoint().function.requeues == 2


def _fake_slurm(tmp_path, monkeypatch) -> None:
    """``srun`` and an ``sbatch`` that accepts every script as job 4242, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", "exit 0"), ("sbatch", "echo 'Submitted batch job 4242'")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{text}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))


def test_slurm_job_asks_for_nodes_times_gpus_and_requeues(tmp_path, capsys, monkeypatch) -> None:
    _fake_slurm(tmp_path, monkeypatch)
    run_dir = tmp_path / "run"
    argv = ["--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--time-minutes", "90"]
    argv += ["--mem-gb", "64", "--max-requeues", "5", "--", "pretrain", "--config", "c.yaml", "--out", str(run_dir)]
    assert main(["launch", "slurm", *argv]) == 0
    out = capsys.readouterr().out.strip()
    logs = run_dir / "submitit"
    assert out == f"submitted SLURM job 4242 (2 x 4 tasks): logs in {logs}, run folder {run_dir}"
    script = (logs / "4242_submission.sh").read_text()
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--time=90"):
        assert f"#SBATCH {line}\n" in script, script
    assert "#SBATCH --mem=64GB" in script and "#SBATCH --signal=USR2@" in script, script
    submitted = submitit.helpers.DelayedSubmission.load(logs / "4242_submitted.pkl")
    assert submitted.function.argv == ["pretrain", "--config", "c.yaml", "--out", str(run_dir)]
    assert submitted._timeout_countdown == 5  # --max-requeues: submitit's max_num_timeout


def test_no_slurm_here_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    assert main(["launch", "slurm", "--", "pretrain", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == f"attmask launch: error: {NO_SLURM}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--local"], "nothing to launch: end with -- pretrain"),
        (["--local", "--"], "nothing to launch: end with -- pretrain"),
        (["--", "evaluate", "knn"], "only pretrain can be launched"),
        (["--", "pretrain", "--set", "optim.lr=1e-3"], "the pretrain arguments need --out RUN"),
        (["--local", "--nodes", "2", "--", "pretrain", "--out", "RUN"], "--local runs on this machine only"),
    ],
)
def test_refusals_are_one_line(argv, message, tmp_path, capsys) -> None:
    argv = [item.replace("RUN", str(tmp_path / "run")) for item in argv]
    assert main(["launch", "slurm", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attmask launch: error: ") and message in err and "\n" not in err, err


def test_a_failed_local_job_names_the_tasks_error(tmp_path) -> None:
    (tmp_path / "7_1_log.err").write_text("Traceback ...\nattmask pretrain: error: unknown config key foo\n")
    job = SimpleNamespace(job_id="7", paths=SimpleNamespace(folder=tmp_path))
    assert _task_error(job, RuntimeError("trace")) == "attmask pretrain: error: unknown config key foo"
    wrapped = RuntimeError("Job (task=0) failed with trace:\nTraceback\nRuntimeError: boom\n----")
    assert _task_error(SimpleNamespace(job_id="8", paths=job.paths), wrapped) == "RuntimeError: boom"


def test_missing_submitit_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    assert main(["launch", "slurm", "--", "pretrain", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "attmask launch: error: attmask launch needs submitit: pip install 'attmask[launch]'"
