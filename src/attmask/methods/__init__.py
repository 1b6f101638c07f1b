"""Pretraining methods: each an nn.Module with ``training_step(crops, epoch) -> StepOutput``."""

from attmask.methods.base import BackboneOnly, PretrainingMethod, Reconstruction, StepOutput
from attmask.methods.build import METHODS, MethodSpec, build_method, method_spec, original_numerics
from attmask.methods.distillation import DINO, IBOT, SelfDistillation
from attmask.methods.ema import ema_update, make_teacher
from attmask.methods.encoder import Encoder, EncoderOutput
from attmask.methods.mst import MST

__all__ = [
    "BackboneOnly",
    "DINO",
    "IBOT",
    "METHODS",
    "MST",
    "Encoder",
    "EncoderOutput",
    "MethodSpec",
    "PretrainingMethod",
    "Reconstruction",
    "SelfDistillation",
    "StepOutput",
    "build_method",
    "ema_update",
    "make_teacher",
    "method_spec",
    "original_numerics",
]
