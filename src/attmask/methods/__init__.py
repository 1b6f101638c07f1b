"""Pretraining methods: each an nn.Module with ``training_step(crops, epoch) -> StepOutput``."""

from attmask.methods.base import Encoder, EncoderOutput, StepOutput, unwrap
from attmask.methods.build import METHODS, build_method
from attmask.methods.distillation import DINO, IBOT, SelfDistillation
from attmask.methods.ema import ema_update, make_teacher

__all__ = [
    "DINO",
    "IBOT",
    "METHODS",
    "Encoder",
    "EncoderOutput",
    "SelfDistillation",
    "StepOutput",
    "build_method",
    "ema_update",
    "make_teacher",
    "unwrap",
]
