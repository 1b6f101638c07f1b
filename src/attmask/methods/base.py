"""What the trainer drives: a pretraining method with a trained student and an optional EMA teacher.

Every method (iBOT, DINO, MST, MAE, SimMIM, LUT) is a :class:`PretrainingMethod`. The trainer
only touches this interface: it optimises ``student``, calls ``training_step`` on each batch of
views, then ``update_teacher``, and evaluates ``eval_backbone``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from attmask.masking import MaskingStrategy, scores_from_cls_attention
from attmask.methods.ema import Pairs, ema_update, make_teacher, paired_parameters
from attmask.models import VisionTransformer


@dataclass
class StepOutput:
    """What ``training_step`` returns.

    Attributes:
        loss: scalar to back-propagate.
        logs: detached scalar tensors (no host sync until the trainer logs them).
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Reconstruction:
    """What a pixel-reconstruction method makes of some images (for figures).

    Attributes:
        images: ``(B, C, H, W)`` the inputs (normalised).
        masks: bool ``(B, N)``, True = hidden from the encoder.
        reconstruction: ``(B, C, H, W)`` the predicted image, in the inputs' normalisation.
        patch_size: pixels per token side (to draw the masks).
    """

    images: torch.Tensor
    masks: torch.Tensor
    reconstruction: torch.Tensor
    patch_size: int


class PretrainingMethod(nn.Module):
    """Student (trained), optional EMA teacher, masking strategy and its generator.

    Args:
        student: module holding every trained parameter; its ViT is ``student.backbone``.
        teacher: EMA module whose parameter names are a subset of the student's (e.g. backbone
            + projector), initialised from the student and frozen; None for methods without one.
        masking: the masking strategy.
        seed: seed of the CPU generator that drives every masking draw.

    Attributes:
        evaluated_branch: ``teacher`` or ``student``: whose backbone k-NN, figures, export and
            evaluation use (DINO / iBOT evaluate the teacher, MAE / SimMIM the encoder).
        reconstructs: True when :meth:`reconstruct` is implemented (pixel methods).
        title: the method's name as its paper writes it, for messages (``iBOT``).
    """

    evaluated_branch = "teacher"
    reconstructs: bool = False
    title = "this method"

    def __init__(self, student: nn.Module, teacher: nn.Module | None, masking: MaskingStrategy, seed: int = 0) -> None:
        super().__init__()
        self.student = student
        self.teacher = make_teacher(teacher, student) if teacher is not None else None
        self.masking = masking
        self.generator = torch.Generator().manual_seed(seed)
        object.__setattr__(self, "_student_runner", student)  # not a submodule: no second copy in state_dict
        self._ema_pairs: Pairs | None = None  # teacher / student parameters by name, found once
        self._fixed_masks: torch.Tensor | None = None  # set by fixed_masks()

    def training_step(self, crops: list[torch.Tensor], epoch: int) -> StepOutput:
        """Loss and logs of one batch of views ``[view_1, view_2, ...]``, each ``(B, C, H, W)``."""
        raise NotImplementedError

    @contextlib.contextmanager
    def fixed_masks(self, masks: torch.Tensor) -> Iterator[None]:
        """Use ``masks`` instead of drawing them, inside the ``with`` block (tests, debugging, figures).

        Every mask the method would draw in the block is ``masks``: bool ``(R, N)``, True = hidden,
        one row per masked view row (``G*B`` global-view rows, view-major, for iBOT / DINO / MST;
        ``B`` for MAE / SimMIM; ``2B`` for LUT's two views), N patch tokens of the view's grid.
        Neither the teacher's attention nor the masking generator is consulted, so the generator's
        state is left as it was.

        Example:
            >>> with method.fixed_masks(masks):
            ...     out = method.training_step(crops, epoch)
        """
        if masks.dtype != torch.bool or masks.dim() != 2:
            raise ValueError(
                f"fixed masks must be a bool tensor (rows, tokens), got {masks.dtype} {tuple(masks.shape)}"
            )
        previous, self._fixed_masks = self._fixed_masks, masks
        try:
            yield
        finally:
            self._fixed_masks = previous

    def given_masks(self, rows: int, num_tokens: int, device: torch.device) -> torch.Tensor | None:
        """The masks of :meth:`fixed_masks` on ``device`` if set (checked against ``(rows, num_tokens)``), else None."""
        if self._fixed_masks is None:
            return None
        if tuple(self._fixed_masks.shape) != (rows, num_tokens):
            raise ValueError(
                f"fixed masks have shape {tuple(self._fixed_masks.shape)}, but this step masks "
                f"({rows}, {num_tokens}) (view rows, patch tokens)"
            )
        return self._fixed_masks.to(device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """``nn.Module.load_state_dict``, ignoring the ``_student_runner.*`` duplicate of the student
        that checkpoints written before 2026-11-30 carry."""
        state = {key: value for key, value in state_dict.items() if not key.startswith("_student_runner.")}
        return super().load_state_dict(state, strict=strict, assign=assign)

    def set_student_runner(self, runner: nn.Module) -> None:
        """Run the student through ``runner`` (e.g. its DDP wrapper) without changing state keys."""
        object.__setattr__(self, "_student_runner", runner)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA step of the teacher towards the student (DINO eq. 2); nothing without a teacher."""
        if self.teacher is None:
            return
        if self._ema_pairs is None:
            self._ema_pairs = paired_parameters(self.teacher, self.student)
        ema_update(self.teacher, self.student, momentum, self._ema_pairs)

    @property
    def eval_backbone(self) -> VisionTransformer:
        """The ViT that evaluation uses (see ``evaluated_branch``)."""
        branch = self.teacher if self.evaluated_branch == "teacher" and self.teacher is not None else self.student
        return branch.backbone

    @property
    def eval_name(self) -> str:
        """``teacher`` or ``encoder``: what :attr:`eval_backbone` is, for figure titles."""
        return "teacher" if self.evaluated_branch == "teacher" and self.teacher is not None else "encoder"

    def backbones(self) -> list[VisionTransformer]:
        """Every ViT the step runs (what ``train.compile`` compiles)."""
        return [self.student.backbone] + ([self.teacher.backbone] if self.teacher is not None else [])

    def attention_scores(self, views: torch.Tensor, cls_attention: torch.Tensor | None = None) -> torch.Tensor | None:
        """Head-mean last-block [CLS] attention scores ``(B, N)`` of the teacher on full ``views``, or
        None when the masking strategy does not rank tokens.

        ``cls_attention`` ``(B, heads, N)``: the teacher's attention from its own forward (iBOT,
        DINO, MST get it for free); without it the teacher runs once more on ``views`` (methods
        whose teacher gives no attention in its own forward)."""
        if not self.masking.requires_attention:
            return None
        if cls_attention is None:
            if self.teacher is None:
                raise ValueError(f"masking strategy {self.masking.config.strategy!r} needs an EMA teacher")
            with torch.no_grad():
                cls_attention = self.teacher.backbone(views, return_cls_attention=True).cls_attention
        return scores_from_cls_attention(cls_attention)

    def draw_masks(self, views: torch.Tensor, cls_attention: torch.Tensor | None = None) -> torch.Tensor:
        """Masks ``(B, N)`` of ``views`` ``(B, C, H, W)`` from the strategy (scored by the teacher's
        attention ``cls_attention`` ``(B, heads, N)`` when the strategy needs it: see
        :meth:`attention_scores`) or the :meth:`fixed_masks` given, on the views' device."""
        grid = self.student.backbone.grid_for(*views.shape[-2:])
        given = self.given_masks(views.shape[0], grid[0] * grid[1], views.device)
        if given is not None:
            return given
        masks = self.masking(views.shape[0], grid, self.attention_scores(views, cls_attention), self.generator)
        return masks.to(views.device)

    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        """Masks, then reconstructs ``images`` ``(B, C, H, W)`` (pixel methods only)."""
        raise ValueError(f"{self.title} does not reconstruct pixels; use mae, simmim, mst or lut")


class BackboneOnly(nn.Module):
    """A ViT under the name ``backbone``: the EMA attention source of MAE / SimMIM with AttMask."""

    def __init__(self, backbone: VisionTransformer) -> None:
        super().__init__()
        self.backbone = backbone
