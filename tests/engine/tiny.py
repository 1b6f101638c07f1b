"""A tiny, fast pretraining config for CPU tests (ViT of 2 blocks on 16 px digits)."""

from __future__ import annotations

from attmask.config import Config, load_config

TINY = [
    "model.arch=vit_tiny",
    "model.depth=2",
    "model.patch_size=4",
    "model.drop_path_rate=0.0",
    "head.out_dim=64",
    "head.patch_out_dim=64",
    "head.hidden_dim=64",
    "head.bottleneck_dim=32",
    "data.source=digits",
    "data.crops=tiny",
    "data.batch_size=8",
    "data.num_workers=0",
    "optim.epochs=2",
    "optim.warmup_epochs=1",
    "loss.warmup_teacher_temp_epochs=1",
    "train.max_steps_per_epoch=2",
    "train.progress=false",
    "train.log_every_steps=1",
    "train.device=cpu",
    "train.precision=fp32",
    "masking.probability=1.0",
]


def monitored_trainer(config, run_dir, **kwargs):
    """A Trainer with the monitors the CLI gives it (k-NN and figures, as the config asks)."""
    from attmask.engine.trainer import Trainer
    from attmask.runs.monitors import build_monitors

    return Trainer(config, run_dir, callbacks=build_monitors(config, run_dir), **kwargs)


def tiny_config(*overrides: str) -> Config:
    """The tiny config with extra ``key=value`` overrides."""
    return load_config(None, [*TINY, *overrides])


def losses_by_step(records: list[dict]) -> dict[int, float]:
    """Last logged loss of every global step (a resumed run re-logs replayed steps)."""
    return {r["step"]: r["loss"] for r in records if "loss" in r and "step" in r}


#: Overrides of a tiny MAE run (random masking, 75% hidden, a one-block decoder).
TINY_MAE = (
    "train.method=mae",
    "masking.strategy=random",
    "masking.ratio=0.75",
    "masking.probability=1.0",
    "recon.decoder_dim=32",
    "recon.decoder_depth=1",
    "recon.decoder_heads=2",
)


def crash_and_resume(overrides: tuple[str, ...], run_dir, crash_step: int, monkeypatch) -> dict[int, float]:
    """Train with ``overrides`` in ``run_dir``, crash before logging ``crash_step``, resume, finish.

    Returns:
        The losses by step of the resumed run (compare with an uninterrupted run's).
    """
    import pytest

    from attmask.engine.logging import read_log
    from attmask.engine.trainer import Trainer

    original = Trainer._log_step

    def crash(self, logs, bar, rate):
        if self.progress.global_step == crash_step:
            raise KeyboardInterrupt("simulated crash")
        original(self, logs, bar, rate)

    monkeypatch.setattr(Trainer, "_log_step", crash)
    with pytest.raises(KeyboardInterrupt):
        monitored_trainer(tiny_config(*overrides), run_dir).fit()
    monkeypatch.setattr(Trainer, "_log_step", original)
    monitored_trainer(tiny_config(*overrides), run_dir).fit()
    return losses_by_step(read_log(run_dir))


def _gloo_worker(
    rank: int, world_size: int, port: int, run_dir: str, overrides: tuple[str, ...], crash_step: int
) -> None:
    import os

    import torch

    from attmask.core.distributed import shutdown
    from attmask.engine.trainer import Trainer

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    original = Trainer._log_step

    def crash(self, logs, bar, rate):
        if self.progress.global_step == crash_step:
            raise SystemExit(3)  # every rank stops at the same step, as if the job were killed
        original(self, logs, bar, rate)

    Trainer._log_step = crash  # in this spawned process only
    try:
        monitored_trainer(tiny_config(*overrides), run_dir).fit()
    finally:
        shutdown()


def train_on_gloo(run_dir, overrides: tuple[str, ...], world_size: int = 2, crash_step: int = 0) -> None:
    """Train the tiny config with ``overrides`` in ``run_dir`` on ``world_size`` gloo processes.

    With ``crash_step``, every process exits just before logging that global step (the checkpoints
    written before it stay), and ``torch.multiprocessing.ProcessExitedException`` is raised here.
    """
    import torch.multiprocessing as mp

    from tests.conftest import free_port

    mp.start_processes(
        _gloo_worker,
        args=(world_size, free_port(), str(run_dir), tuple(overrides), crash_step),
        nprocs=world_size,
        join=True,
        start_method="spawn",
    )
