"""Drive this project's optimizer step along ``ibot_trajectory.npz`` (12 steps of the original code).

The stored initial weights are written as an original training checkpoint (original key layout)
and converted with :func:`attmask.engine.original.convert_original_checkpoint`; the method is then
rebuilt from the converted run folder, so every run also exercises the converter. Each step gets
the stored crops and, unless ``own_masks``, the stored masks through ``method.fixed_masks``.

The knobs ``resize``, ``decay_tokens`` and ``per_parameter_clip`` switch the documented
differences of ``train.fidelity=original`` one at a time on a default-fidelity method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from attmask.config import load_config
from attmask.engine.optim import build_optimizer, training_schedules
from attmask.engine.original import convert_original_checkpoint, project_name
from attmask.engine.restore import load_method
from attmask.engine.step import OptimizerStep, StepSettings
from attmask.masking import scores_from_cls_attention

STEPS, ITERS_PER_EPOCH, EPOCHS, BATCH = 12, 4, 3, 4
KEY_BIAS = slice(48, 96)  # attn.qkv.bias rows of the keys: true gradient 0, Adam amplifies rounding


def overrides(clip: float, fidelity: str) -> list[str]:
    """The trajectory's setup (reference README) as ``--set`` overrides."""
    return [
        "model.arch=vit_tiny",
        "model.depth=2",
        "model.embed_dim=48",
        "model.num_heads=3",
        "model.patch_size=8",
        "model.drop_path_rate=0.0",
        "head.out_dim=64",
        "head.patch_out_dim=64",
        "head.hidden_dim=64",
        "head.bottleneck_dim=32",
        "head.norm_last_layer=true",
        "head.shared_head=true",
        "loss.warmup_teacher_temp=0.04",
        "loss.teacher_temp=0.07",
        "loss.warmup_teacher_patch_temp=0.04",
        "loss.teacher_patch_temp=0.07",
        "loss.warmup_teacher_temp_epochs=1",
        "loss.student_temp=0.1",
        "loss.center_momentum=0.9",
        "masking.strategy=attmask_high",
        "masking.ratio=[0.3, 0.3]",
        "masking.probability=1.0",
        "data.crops=small32",
        "data.global_size=32",
        "data.local_size=16",
        "data.num_local=2",
        f"data.batch_size={BATCH}",
        f"optim.epochs={EPOCHS}",
        "optim.lr=0.032",
        "optim.min_lr=1e-5",
        "optim.warmup_epochs=1",
        "optim.weight_decay=0.04",
        "optim.weight_decay_end=0.4",
        "optim.teacher_momentum=0.99",
        "optim.teacher_momentum_end=1.0",
        f"optim.clip_grad={clip}",
        "optim.freeze_last_layer_epochs=1",
        "train.precision=fp32",
        f"train.fidelity={fidelity}",
    ]


def original_checkpoint(ref: dict[str, np.ndarray], path: Path) -> Path:
    """The stored initial student as an original ``checkpoint.pth`` (DDP prefix on the student)."""
    init = {
        k.removeprefix("init_student/"): torch.from_numpy(v.copy())
        for k, v in ref.items()
        if k.startswith("init_student/")
    }
    init["head.last_layer2.weight_g"] = init["head.last_layer.weight_g"]  # shared head: one tensor
    init["head.last_layer2.weight_v"] = init["head.last_layer.weight_v"]
    teacher = {k: v.clone() for k, v in init.items() if k != "backbone.masked_embed"}
    teacher["head.last_layer2.weight_g"], teacher["head.last_layer2.weight_v"] = (
        teacher["head.last_layer.weight_g"],
        teacher["head.last_layer.weight_v"],
    )
    torch.save(
        {
            "student": {f"module.{k}": v for k, v in init.items()},
            "teacher": teacher,
            "epoch": 0,
            "ibot_loss": {"center": torch.zeros(1, 64), "center2": torch.zeros(1, 1, 64)},
        },
        path,
    )
    return path


@dataclass
class Trajectory:
    """Per-step values of one run (view-major rows, as the reference)."""

    method: torch.nn.Module
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **items: object) -> None:
        for key, value in items.items():
            self.values.setdefault(key, []).append(np.asarray(value))

    def __getitem__(self, key: str) -> np.ndarray:
        return np.stack(self.values[key])


def run(
    ref: dict[str, np.ndarray],
    run_name: str,
    tmp_path: Path,
    fidelity: str = "original",
    own_masks: bool = False,
    resize: bool = False,
    decay_tokens: bool = False,
    per_parameter_clip: bool = False,
) -> Trajectory:
    """Run the 12 steps of trajectory ``run_name`` (``A`` no clipping, ``B`` clip 0.3)."""
    clip = {"A": 0.0, "B": 0.3}[run_name]
    config = load_config(None, overrides(clip, fidelity))
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = original_checkpoint(ref, tmp_path / f"original_{run_name}.pth")
    convert_original_checkpoint(source, config, tmp_path / f"run_{run_name}_{fidelity}")
    method, _ = load_method(tmp_path / f"run_{run_name}_{fidelity}")
    method.train()
    original = fidelity == "original"
    if resize:
        for backbone in method.backbones():
            backbone.pos_embed_resize = "original"
    optimizer = build_optimizer(method.student, torch.device("cpu"), decay_tokens=original or decay_tokens)
    settings = StepSettings("fp32", clip, 1, per_parameter_clip=original or per_parameter_clip)
    step = OptimizerStep(method, optimizer, settings, torch.device("cpu"))
    schedules = training_schedules(0.032 * BATCH / 256, 1e-5, 1, 0.04, 0.4, 0.99, 1.0, EPOCHS, ITERS_PER_EPOCH)
    trajectory = Trajectory(method)
    for index in range(STEPS):
        epoch = index // ITERS_PER_EPOCH
        crops = [torch.from_numpy(ref["crops_global"][index, v].copy()) for v in range(2)]
        crops += [torch.from_numpy(ref["crops_local"][index, j].copy()) for j in range(2)]
        masks = torch.from_numpy(ref[f"{run_name}_masks"][index].reshape(8, 16).copy())
        _outputs(method, crops, masks, trajectory)
        lr, wd, momentum = (float(schedules[k][index]) for k in ("lr", "weight_decay", "momentum"))
        if own_masks:
            logs = step([crops], epoch, lr, wd, momentum)
        else:
            with method.fixed_masks(masks):
                logs = step([crops], epoch, lr, wd, momentum)
        temps = method.loss.teacher_temps(epoch)
        trajectory.add(
            loss=logs["loss"],
            loss_cls=logs["loss_cls"],
            loss_patch=logs["loss_patch"],
            grad_norm=logs["grad_norm"],
            lr=lr,
            wd=wd,
            momentum=momentum,
            teacher_temp=temps[0],
            teacher_patch_temp=temps[1],
            center=method.loss.center.center.clone(),
            center2=method.loss.patch_center.center.clone(),
        )
    return trajectory


@torch.no_grad()
def _outputs(method: torch.nn.Module, crops: list[torch.Tensor], masks: torch.Tensor, trajectory: Trajectory) -> None:
    """Teacher [CLS] outputs and attention, own masks, student outputs of the step's input weights."""
    global_views = torch.cat(crops[:2])
    target = method.teacher(global_views, return_cls_attention=True)
    pred = method.student(global_views, masks, crops[2:])
    trajectory.add(
        teacher_cls=target.cls,
        student_cls=pred.cls,
        student_local_cls=pred.local_cls,
        cls_attention=scores_from_cls_attention(target.cls_attention),
        own_masks=method.draw_masks(global_views, target.cls_attention),
    )


def final_weights(trajectory: Trajectory, branch: str) -> dict[str, np.ndarray]:
    """The run's final ``branch`` weights under the original's names (``head.last_layer.weight_g`` ...)."""
    state = trajectory.method.state_dict()
    return {key: state[f"{branch}.{project_name(key)}"].reshape(-1).numpy() for key in _names(branch)}


def _names(branch: str) -> list[str]:
    names = [
        "backbone.cls_token",
        "backbone.pos_embed",
        "backbone.patch_embed.proj.weight",
        "backbone.patch_embed.proj.bias",
        "backbone.norm.weight",
        "backbone.norm.bias",
        "head.last_layer.weight_g",
        "head.last_layer.weight_v",
    ]
    for block in range(2):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            names += [f"backbone.blocks.{block}.{part}.weight", f"backbone.blocks.{block}.{part}.bias"]
    names += [f"head.mlp.{i}.{kind}" for i in (0, 2, 4) for kind in ("weight", "bias")]
    return names + (["backbone.masked_embed"] if branch == "student" else [])
