"""The pretraining loop: one readable trainer from a laptop CPU to torchrun on many GPUs.

Per optimizer step: seed the step's randomness, set lr / weight decay from the schedules,
then :class:`attmask.engine.step.OptimizerStep`: forward + backward each micro-batch (DDP syncs on
the last), unscale, clip the global gradient norm, drop the last layer's gradients during the
first epoch(s), step, update the EMA teacher.
Randomness is a pure function of (seed, rank, step) and the data order of (seed, epoch), so a
resumed run continues exactly like an uninterrupted one without saving RNG states. With
``data.augment_on=device`` the loader delivers decoded uint8 images and the batched augmentation
runs on the device, seeded by (seed, rank, step, micro-batch). Monitors (online k-NN, figures)
are callbacks handed in by whoever starts the run (:mod:`attmask.core.callbacks`). A SIGTERM
stops the run after its current step with a checkpoint written (:mod:`attmask.core.stop`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from attmask.config import Config, to_dict
from attmask.core.callbacks import Callback, EpochEnd
from attmask.core.checkpoint import FORMAT
from attmask.core.dcp import latest_checkpoint, tidy_sharded
from attmask.core.distributed import DistributedContext, all_reduce_mean, barrier, init_distributed
from attmask.core.environment import environment
from attmask.core.stop import StopSignal, TrainingStopped
from attmask.data.resumable import mix_seed
from attmask.engine.data import (
    augmentation_seed,
    batch_augmentation,
    check_patch_fit,
    crop_config,
    pretraining_loader,
    steps_per_epoch,
)
from attmask.engine.logging import CollapseWatch, RunLogger
from attmask.engine.optim import run_schedules, weight_norm
from attmask.engine.parallel import parallelize
from attmask.engine.precision import resolve_precision
from attmask.engine.resume import Progress, TrainingError, epoch_logged, logged_summary, nonfinite_message
from attmask.engine.run_checkpoint import keep_copy, resume_run, start_run_dir, write_checkpoint
from attmask.engine.step import compile_backbones, configured_step
from attmask.methods import build_method


class Trainer:
    """Builds data, method, optimizer from a config and runs or resumes the pretraining.

    Args:
        config: the resolved configuration.
        run_dir: run folder (config, log, checkpoints); an existing checkpoint is resumed.
        context: distributed context (default: from torchrun's environment).
        allow_config_change: resume a checkpoint even when settings that change the trajectory
            differ from those it was trained with (the change is then logged and ``config.yaml``
            rewritten); otherwise such a resume is refused, naming the keys.
        callbacks: called after every epoch and after the last one, e.g. the k-NN and figure
            monitors of :func:`attmask.runs.monitors.build_monitors` (default: none).
    """

    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        context: DistributedContext | None = None,
        allow_config_change: bool = False,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.config, self.run_dir, self.allow_config_change = config, Path(run_dir), allow_config_change
        self.callbacks = list(callbacks)
        self.ctx = context or init_distributed(config.train.device)
        if config.train.num_threads > 0:  # e.g. 1 on a 2-core laptop, the other core augments
            torch.set_num_threads(config.train.num_threads)
        self.device = self.ctx.device
        self.precision = resolve_precision(config.train.precision, self.device)
        check_patch_fit(crop_config(config.data), config.model.patch_size, config.train.method)
        self.loader = pretraining_loader(config, self.device, self.ctx.world_size, self.ctx.rank)  # errors first
        self.dataset, self.sampler = self.loader.dataset, self.loader.sampler
        self.images, self.crops = self.dataset.dataset, crop_config(config.data)
        self.augmentation = batch_augmentation(config.data, config.train.method)  # None: workers augment
        self.augmentation_generator = torch.Generator(device=self.device)
        self.steps_per_epoch = steps_per_epoch(config, self.loader, self.ctx.world_size)
        torch.manual_seed(config.train.seed)  # identical initial weights on every rank
        self.method = build_method(config, self.crops.global_size, self.crops.num_local).to(self.device)
        if config.train.compile:
            compile_backbones(self.method)
        self.runner = parallelize(self.method, self.ctx, config.train.parallel, self.precision)
        self.train_step = configured_step(config, self.method, self.precision, self.device, self.runner)
        self.optimizer, self.scaler = self.train_step.optimizer, self.train_step.scaler
        batch = config.data.batch_size * self.ctx.world_size * config.optim.accumulation_steps
        self.schedules = run_schedules(config.optim, batch, self.steps_per_epoch)
        self.progress = Progress()
        self.logger = RunLogger(self.run_dir, self.ctx.is_main, config.train.loggers, to_dict(config))
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self._loss_sum = torch.zeros((), device=self.device)  # of this epoch's steps, kept over resumes
        self._finished_epoch_loss: float | None = None  # mean loss of the last finished epoch
        self._watch_collapse = CollapseWatch(self.logger, config.head.out_dim, speak=self.ctx.is_main)
        self._stop = StopSignal()
        self._saved: tuple[int, Path] | None = None  # (global step, path) of the last checkpoint written
        self._resume_or_start()

    # ---------------------------------------------------------------- the loop
    def fit(self) -> dict[str, float]:
        """Train until ``optim.epochs``; returns the last epoch's summary record.

        Raises:
            TrainingStopped: a SIGTERM arrived; the checkpoint of the last finished step is written.
        """
        finished = self._finished_summary()
        if finished is not None:  # run again after it finished: nothing to train, no monitor run twice
            self.logger.close()
            return finished
        summary: dict[str, float] = {}
        if self.ctx.is_main:  # what this segment of the run ran on: versions, commit, device
            where = {"step": self.progress.global_step, "process_start": True, "world_size": self.ctx.world_size}
            self.logger.log({**where, **environment(self.device)})
        with self._stop:
            self._catch_up_epoch_end()
            for epoch in range(self.progress.epoch, self.config.optim.epochs):
                epoch_loss = self._train_epoch(epoch)
                summary = self._end_epoch(epoch, epoch_loss)
                if epoch + 1 < self.config.optim.epochs:  # a signal during the epoch's monitors
                    self._stop_if_asked(meet=True)
        record: dict = {"epoch": self.progress.epoch - 1, "step": self.progress.global_step}
        for callback in self.callbacks:
            record.update(callback.on_train_end(self._event(self.progress.epoch - 1)))
        summary.update(self.logger.log({**record, "train_done": True}, step=self.progress.global_step))
        self.logger.close()
        return summary

    def _finished_summary(self) -> dict[str, float] | None:
        """For a run that had finished, monitors included, before this process: the summary its
        log holds (the main process's; ``{}`` on the others). None when there is work left."""
        if self.progress.epoch < self.config.optim.epochs:
            return None
        summary = logged_summary(self.run_dir) if self.ctx.is_main else None
        ended = summary is not None
        if self.ctx.world_size > 1:  # every process follows the main one's reading of the log
            ended = bool(all_reduce_mean(torch.tensor(float(ended), device=self.device)) > 0)
        return (summary or {}) if ended else None

    def _train_epoch(self, epoch: int) -> torch.Tensor:
        batch, accumulation = self.config.data.batch_size, self.config.optim.accumulation_steps
        start = self.progress.step
        self.sampler.set_epoch(epoch, start * batch * accumulation)
        self.dataset.set_epoch(epoch)
        self.method.train()
        batches = iter(self.loader)
        show = self.ctx.is_main and self.config.train.progress
        bar = tqdm(total=self.steps_per_epoch, initial=start, desc=f"epoch {epoch}", disable=not show)
        tick, images = time.perf_counter(), 0
        seconds, started = self.progress.train_seconds, time.perf_counter()
        for step in range(start, self.steps_per_epoch):
            micro = [self._to_device(next(batches)[0], index) for index in range(accumulation)]
            logs = self._optimizer_step(micro, epoch)
            self._loss_sum += logs["loss"]
            images += batch * accumulation * self.ctx.world_size
            elapsed = seconds + time.perf_counter() - started
            self.progress = Progress(epoch, step + 1, self.progress.global_step + 1, elapsed)
            if self._should_log(step):
                rate = images / max(time.perf_counter() - tick, 1e-9)
                self._log_step(logs, bar, rate)
                tick, images = time.perf_counter(), 0
            every = self.config.train.save_every_steps
            if every and self.progress.global_step % every == 0:
                self.save()
            bar.update(1)
            self._stop_if_asked(self._should_log(step), bar)
        bar.close()
        epoch_loss, self._loss_sum = self._loss_sum / self.steps_per_epoch, torch.zeros_like(self._loss_sum)
        return epoch_loss

    def _stop_if_asked(self, meet: bool, bar: tqdm | None = None) -> None:
        """After a step or an epoch's end: if a stop signal arrived, write the checkpoint and raise
        :class:`TrainingStopped`. Several processes agree first (any one asked) where they ``meet``
        anyway (logged steps, epoch ends); one process looks every time, at no cost."""
        asked = self._stop.requested
        if self.ctx.world_size > 1:
            if not meet:
                return
            asked = bool(all_reduce_mean(torch.tensor(float(asked), device=self.device)) > 0)
        if not asked:
            return
        if bar is not None:
            bar.close()
        step, saved = self.progress.global_step, self._saved
        path = saved[1] if saved is not None and saved[0] == step else self.save()  # an epoch end wrote it
        self.logger.close()
        epoch, epochs = self.progress.epoch, self.config.optim.epochs
        where = f"end of epoch {epoch} of {epochs}" if self.progress.step == 0 else f"epoch {epoch + 1} of {epochs}"
        raise TrainingStopped.after(self._stop, step, where, path)

    def _to_device(self, batch: list[torch.Tensor] | torch.Tensor, micro_index: int = 0) -> list[torch.Tensor]:
        """The micro-batch's crops on the device: the workers' crops moved, or (``augment_on=device``)
        the uint8 images ``(B, 3, S, S)`` moved, then augmented there, seeded by (seed, rank, step, micro-batch)."""
        if self.augmentation is None:
            return [crop.to(self.device, non_blocking=True) for crop in batch]
        seed, rank, step = self.config.train.seed, self.ctx.rank, self.progress.global_step
        self.augmentation_generator.manual_seed(augmentation_seed(seed, rank, step, micro_index))
        return self.augmentation(batch.to(self.device, non_blocking=True), self.augmentation_generator)

    def _optimizer_step(self, micro: list[list[torch.Tensor]], epoch: int) -> dict[str, torch.Tensor]:
        iteration = epoch * self.steps_per_epoch + self.progress.step
        self._seed_step()
        lr, weight_decay, momentum = (
            float(self.schedules[key][iteration]) for key in ("lr", "weight_decay", "momentum")
        )
        logs = self.train_step(micro, epoch, lr, weight_decay, momentum)
        self._nonfinite |= ~torch.isfinite(logs["loss"])
        logs.update(lr=torch.tensor(lr), weight_decay=torch.tensor(weight_decay), momentum=torch.tensor(momentum))
        return logs

    def _seed_step(self) -> None:
        seed, rank, step = self.config.train.seed, self.ctx.rank, self.progress.global_step
        torch.manual_seed(mix_seed(seed, rank, step))
        self.method.generator.manual_seed(mix_seed(seed, rank, step, 1))

    # ------------------------------------------------------- logging and state
    def _should_log(self, step: int) -> bool:
        every = max(self.config.train.log_every_steps, 1)
        return step == 0 or (step + 1) % every == 0 or step + 1 == self.steps_per_epoch  # step 0: loss shown at once

    def _log_step(self, logs: dict[str, torch.Tensor], bar: tqdm, images_per_second: float) -> None:
        self._check_finite()
        keys = sorted(logs)
        averaged = all_reduce_mean(torch.stack([logs[k].float().to(self.device) for k in keys]))
        logs = dict(zip(keys, averaged.unbind()))  # mean over ranks = the global-batch value
        record = {
            "epoch": self.progress.epoch,
            "step": self.progress.global_step,
            **logs,
            "weight_norm": weight_norm(self.method.student),
            "images_per_second": images_per_second,
            **self._position(),
        }
        plain = self.logger.log(record, step=self.progress.global_step)
        self._watch_collapse(plain, self.progress.epoch, self.progress.global_step)
        bar.set_postfix(
            loss=f"{plain['loss']:.4f}", lr=f"{plain['lr']:.2e}", img_s=f"{images_per_second:.0f}", refresh=False
        )  # drawn by the next update

    def _position(self) -> dict[str, float]:
        """Training wall time and images seen so far (the time-to-accuracy axes)."""
        per_step = self.config.data.batch_size * self.config.optim.accumulation_steps * self.ctx.world_size
        return {"train_seconds": self.progress.train_seconds, "images_seen": self.progress.global_step * per_step}

    def _check_finite(self) -> None:
        if bool(all_reduce_mean(self._nonfinite.float()) > 0):
            written = latest_checkpoint(self.run_dir) is not None
            raise TrainingError(nonfinite_message(self.run_dir, self.progress.epoch, self.progress.step, written))

    def _end_epoch(self, epoch: int, epoch_loss: torch.Tensor) -> dict[str, float]:
        """Checkpoint first, then the monitors: a run killed during a long k-NN pass loses no
        training, and its resume runs the monitors it missed (:meth:`_catch_up_epoch_end`)."""
        self.progress = Progress(epoch + 1, 0, self.progress.global_step, self.progress.train_seconds)
        self._finished_epoch_loss = float(epoch_loss)
        path = self.save()
        keep = self.config.train.keep_every_epochs
        if keep and (epoch + 1) % keep == 0 and self.ctx.is_main:
            keep_copy(path, epoch + 1)
        return self._epoch_record(epoch)

    def _epoch_record(self, epoch: int) -> dict[str, float]:
        """Run the callbacks of the end of ``epoch`` and log its record (with the monitors' keys)."""
        record: dict = {
            "epoch": epoch,
            "step": self.progress.global_step,
            "epoch_done": True,
            **({"epoch_loss": self._finished_epoch_loss} if self._finished_epoch_loss is not None else {}),
            # Unreadable files skipped so far, as counted in this process (each loader worker
            # counts, and warns, on its own).
            "skipped_images": getattr(self.images, "num_skipped", 0),
            **self._position(),
        }
        for callback in self.callbacks:
            record.update(callback.on_epoch_end(self._event(epoch)))
        return self.logger.log(record, step=self.progress.global_step)

    def _catch_up_epoch_end(self) -> None:
        """Resumed at the end of an epoch whose record was never logged (killed while its monitors
        ran, after its checkpoint): run them now, so the k-NN curve has no hole. Every process
        follows the main one's reading of the log."""
        if self.progress.step != 0 or self.progress.global_step == 0:
            return
        missing = self.ctx.is_main and not epoch_logged(self.run_dir, self.progress.epoch - 1)
        if self.ctx.world_size > 1:
            missing = bool(all_reduce_mean(torch.tensor(float(missing), device=self.device)) > 0)
        if missing:
            self._epoch_record(self.progress.epoch - 1)

    def _event(self, epoch: int) -> EpochEnd:
        total, step = self.config.optim.epochs, self.progress.global_step
        return EpochEnd(epoch, total, step, self.method, self.run_dir, self.ctx.is_main, self.logger.writer)

    def checkpoint_meta(self) -> dict:
        """What a checkpoint holds besides the weights and the optimizer: progress, scaler, config, ..."""
        return {
            "format": FORMAT,
            "version": 1,
            "progress": dataclasses.asdict(self.progress),
            "evaluated_branch": self.method.evaluated_branch if self.method.teacher is not None else "student",
            "scaler": self.scaler.state_dict(),
            "config": to_dict(self.config),
            "world_size": self.ctx.world_size,
            "parallel": self.config.train.parallel,
            "epoch_loss_sum": float(self._loss_sum),
            "finished_epoch_loss": self._finished_epoch_loss,  # of the last finished epoch
        }

    def save(self) -> Path:
        """Write the run's checkpoint atomically, only if the loss is finite: ``checkpoint.pth`` (rank 0)
        or, with ``train.parallel=fsdp``, ``checkpoint.dcp/`` (every process its shards)."""
        self._check_finite()
        norm = weight_norm(self.method.student)  # a collective when sharded
        sharded = self.config.train.parallel == "fsdp"
        meta = self.checkpoint_meta()
        path = write_checkpoint(self.run_dir, sharded, self.method, self.optimizer, meta, self.ctx.is_main)
        self.logger.log({"step": self.progress.global_step, "checkpoint_weight_norm": norm})
        barrier()
        self._saved = (self.progress.global_step, path)
        return path

    def _resume_or_start(self) -> None:
        notes = tidy_sharded(self.run_dir) if self.ctx.is_main and self.run_dir.is_dir() else []
        barrier()  # a killed sharded save repaired before any process looks
        path = latest_checkpoint(self.run_dir)
        if path is None:
            if self.ctx.is_main:
                start_run_dir(self.run_dir, self.config)
            return
        train = (self.method, self.optimizer, self.scaler)
        world_size, is_main = self.ctx.world_size, self.ctx.is_main
        resumed = resume_run(path, self.config, self.allow_config_change, train, notes, world_size, is_main)
        self.progress, self._finished_epoch_loss = resumed.progress, resumed.finished_epoch_loss
        self._loss_sum.fill_(resumed.epoch_loss_sum)
        norm = weight_norm(self.method.student)  # a collective when sharded; = the save's checkpoint_weight_norm
        if self.ctx.is_main:
            self.logger.log({**resumed.record, **dataclasses.asdict(self.progress), "resumed_weight_norm": norm})
