"""Builders: the only code under ``methods`` that reads the configuration.

``registry`` (:func:`build_method`, :data:`METHODS`, :class:`MethodSpec`) dispatches by
``train.method`` to the self-distillation builders there (iBOT, DINO, MST) and to ``pixel`` (MAE,
SimMIM, LUT, LUT-SimMIM); ``parts`` builds what they share (backbone, masking strategy, the
attention teacher of pixel methods).
"""

from attmask.methods.build.parts import check_heads, original_numerics
from attmask.methods.build.registry import METHODS, MethodSpec, build_method, method_spec

__all__ = ["METHODS", "MethodSpec", "build_method", "check_heads", "method_spec", "original_numerics"]
