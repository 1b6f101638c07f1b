"""Precision from one string."""

from __future__ import annotations

import pytest
import torch

from attmask.engine.precision import autocast, grad_scaler, resolve_precision

CPU = torch.device("cpu")


def test_auto_is_fp32_on_cpu_and_fp16_needs_a_gpu() -> None:
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)


def test_autocast_and_scaler() -> None:
    layer = torch.nn.Linear(4, 4)
    with autocast("bf16", CPU):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with autocast("fp32", CPU):
        assert layer(torch.randn(2, 4)).dtype == torch.float32
    assert not grad_scaler("fp32", CPU).is_enabled()
