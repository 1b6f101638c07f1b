"""One optimizer step of any pretraining method, shared by the trainer and the benchmarks.

The whole step reads top to bottom in :meth:`OptimizerStep.__call__`: set lr and weight decay,
forward + backward of each micro-batch (DDP syncs on the last), unscale, clip, drop the last
layer's gradients during the first epoch(s), AdamW step, EMA teacher update. Neither the
clipping nor the logs wait for the device (no host sync). The step benchmark's replica of the
original code's costs (under ``benchmarks/``) overrides :meth:`OptimizerStep.clip`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from attmask.config import Config
from attmask.engine.optim import build_optimizer, clip_global_norm, clip_per_parameter, set_hyperparameters
from attmask.engine.precision import autocast, grad_scaler
from attmask.heads import last_layer_parameters
from attmask.methods import PretrainingMethod, original_numerics


@dataclass
class StepSettings:
    """How a step runs.

    Attributes:
        precision: resolved precision (``fp32``, ``bf16`` or ``fp16``).
        clip_grad: gradient clipping threshold (``<= 0``: off).
        freeze_last_layer_epochs: epochs during which the heads' last layers get no update.
        per_parameter_clip: clip each parameter's gradient on its own, as the original code
            does (``train.fidelity=original``), without its host syncs.
    """

    precision: str = "fp32"
    clip_grad: float = 3.0
    freeze_last_layer_epochs: int = 1
    per_parameter_clip: bool = False


class OptimizerStep:
    """Callable running one optimizer step of ``method``.

    Args:
        method: the method (student, EMA teacher, loss).
        optimizer: AdamW over the student's parameters.
        settings: :class:`StepSettings`.
        device: where the crops live (selects autocast and the GradScaler).
        runner: the student's DDP wrapper, if any (its ``no_sync`` skips all-reduces on all but
            the last micro-batch).

    Attributes:
        scaler: the GradScaler (enabled in fp16 only); checkpoint its state.
        last_layer: the heads' last-layer parameters (no update while frozen).
    """

    def __init__(
        self,
        method: PretrainingMethod,
        optimizer: torch.optim.Optimizer,
        settings: StepSettings,
        device: torch.device,
        runner: nn.Module | None = None,
    ) -> None:
        self.method, self.optimizer, self.settings, self.device = method, optimizer, settings, device
        self.runner = runner
        self.scaler = grad_scaler(settings.precision, device)
        self.last_layer = last_layer_parameters(method.student)

    def __call__(
        self, micro: list[list[torch.Tensor]], epoch: int, lr: float, weight_decay: float, momentum: float
    ) -> dict[str, torch.Tensor]:
        """Run the step on ``micro`` (micro-batches of crops ``[global_1, global_2, local_1, ...]``).

        Args:
            micro: per micro-batch, the crops ``(B, C, H, W)`` each, on ``device``.
            epoch: current epoch (teacher temperatures, last-layer freezing).
            lr, weight_decay: this iteration's AdamW settings.
            momentum: this iteration's teacher EMA momentum.

        Returns:
            Detached logs averaged over micro-batches, plus ``grad_norm`` (before clipping).
        """
        set_hyperparameters(self.optimizer, lr, weight_decay)
        logs: dict[str, torch.Tensor] = {}
        for index, crops in enumerate(micro):  # forward + backward; DDP all-reduces on the last only
            no_sync = getattr(self.runner, "no_sync", None)
            last = index == len(micro) - 1
            with contextlib.nullcontext() if last or no_sync is None else no_sync():
                with autocast(self.settings.precision, self.device):
                    out = self.method.training_step(crops, epoch)
                self.scaler.scale(out.loss / len(micro)).backward()
            for key, value in out.logs.items():
                logs[key] = logs.get(key, 0) + value.float() / len(micro)
        self.scaler.unscale_(self.optimizer)
        logs["grad_norm"] = self.clip([p for p in self.method.student.parameters() if p.grad is not None])
        if epoch < self.settings.freeze_last_layer_epochs:  # DINO's cancel_gradients_last_layer
            for parameter in self.last_layer:
                parameter.grad = None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.method.update_teacher(momentum)
        return logs

    def clip(self, parameters: list[torch.Tensor]) -> torch.Tensor:
        """Clip the (unscaled) gradients of ``parameters`` in place at ``settings.clip_grad``: their
        global norm, or each one's own norm with ``per_parameter_clip``. Returns the global norm
        before clipping (0-d, on the device: no host sync)."""
        if self.settings.per_parameter_clip:
            return clip_per_parameter(parameters, self.settings.clip_grad)
        return clip_global_norm(parameters, self.settings.clip_grad)


def configured_step(
    config: Config, method: PretrainingMethod, precision: str, device: torch.device, runner: nn.Module | None = None
) -> OptimizerStep:
    """The run's optimizer step: AdamW over the student (:func:`~attmask.engine.optim.build_optimizer`
    with ``optim.betas`` and ``optim.last_layer_lr_scale``), clipping and last-layer freezing from
    ``optim``; ``train.fidelity=original`` decays the tokens and clips per parameter."""
    original, optim = original_numerics(config), config.optim
    optimizer = build_optimizer(method.student, device, optim.betas, optim.last_layer_lr_scale, decay_tokens=original)
    settings = StepSettings(precision, optim.clip_grad, optim.freeze_last_layer_epochs, per_parameter_clip=original)
    return OptimizerStep(method, optimizer, settings, device, runner)


def compile_backbones(method: PretrainingMethod, backend: str = "inductor") -> None:
    """``torch.compile`` every backbone of the method (student's, teacher's) in place (state keys unchanged).

    ``dynamic=True``: the batch size and the crop resolution are symbolic, so a new size does not
    recompile (the teacher pass, the masked student pass and the local crops still get their own
    graphs: different arguments). Compilation happens lazily, during the first steps.

    Args:
        method: its two backbones are compiled.
        backend: ``torch.compile`` backend (tests use ``aot_eager``, which skips code generation).
    """
    for backbone in method.backbones():
        backbone.compile(dynamic=True, backend=backend)
