"""Collapse monitors on the two collapse modes and on healthy outputs."""

from __future__ import annotations

import math

import pytest
import torch

from attmask.methods.monitors import collapse_monitors


def test_uniform_collapse() -> None:
    row = torch.randn(1, 16)
    logits = row.repeat(8, 1)  # every image gives the same output, and the centre has caught up
    logs = collapse_monitors(logits, row, 0.04, torch.ones(8, 5))
    assert logs["teacher_entropy"].item() == pytest.approx(math.log(16), rel=1e-5)
    assert logs["teacher_kl_centre"].item() == pytest.approx(0.0, abs=1e-6)
    assert logs["feature_std"].item() == pytest.approx(0.0, abs=1e-7)


def test_one_hot_collapse_and_healthy_outputs() -> None:
    logits = torch.zeros(8, 16)
    logits[:, 3] = 10.0  # all images on prototype 3
    one_hot = collapse_monitors(logits, torch.zeros(1, 16), 0.04)
    assert one_hot["teacher_entropy"].item() < 1e-6 and one_hot["teacher_batch_entropy"].item() < 1e-6
    generator = torch.Generator().manual_seed(0)
    healthy = torch.randn(256, 16, generator=generator)
    embedding = torch.randn(256, 64, generator=generator)
    logs = collapse_monitors(healthy, healthy.mean(0, keepdim=True), 0.1, embedding)
    assert 0.1 < logs["teacher_entropy"].item() < math.log(16) - 0.1
    assert logs["teacher_kl_centre"].item() > 0.5
    assert logs["teacher_batch_entropy"].item() > logs["teacher_entropy"].item() + 0.5, "images spread"
    assert logs["feature_std"].item() == pytest.approx(1 / math.sqrt(64), rel=0.1)


def test_matches_the_definition() -> None:
    generator = torch.Generator().manual_seed(1)
    logits, centre = torch.randn(4, 6, generator=generator), torch.randn(1, 6, generator=generator)
    logs = collapse_monitors(logits, centre, 0.5)
    p = torch.softmax((logits - centre) / 0.5, -1)
    entropy = -(p * p.log()).sum(-1).mean()
    q, c = torch.softmax(logits / 0.5, -1), torch.softmax(centre / 0.5, -1)
    kl = (q * (q.log() - c.log())).sum(-1).mean()
    torch.testing.assert_close(logs["teacher_entropy"], entropy)
    torch.testing.assert_close(logs["teacher_kl_centre"], kl)
    mean = p.mean(0)
    torch.testing.assert_close(logs["teacher_batch_entropy"], -(mean * mean.log()).sum())
    assert "feature_std" not in logs


def test_collapse_warning_names_the_mode_and_the_remedy() -> None:
    from attmask.methods.monitors import collapse_warning

    log_k = math.log(1024)
    assert collapse_warning(0.5 * log_k, 0.8 * log_k, 1024) is None, "sharp per image, spread over the batch"
    uniform = collapse_warning(0.9 * log_k, 0.95 * log_k, 1024)
    assert "uniform" in uniform and "teacher_temp" in uniform and "\n" not in uniform
    one_hot = collapse_warning(0.01, 0.1 * log_k, 1024)
    assert "same few prototypes" in one_hot and "center_momentum" in one_hot
