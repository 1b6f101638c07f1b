"""More loader workers than CPUs are capped with one warning; the cap does not change the data."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from attmask.core import environment
from attmask.core.environment import loader_workers, usable_cpus
from attmask.engine.data import pretraining_loader
from tests.engine.tiny import tiny_config


def test_usable_cpus_is_the_affinity_mask_at_most_every_cpu() -> None:
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_workers_beyond_the_cpus_are_capped_with_one_warning(monkeypatch) -> None:
    monkeypatch.setattr(environment, "usable_cpus", lambda: 2)
    with pytest.warns(UserWarning, match=r"^eval.num_workers=10 is more than the 2 CPUs .* using 2 loader workers$"):
        assert loader_workers(10, "eval.num_workers") == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loader_workers(2) == 2 and loader_workers(0) == 0


def test_the_pretraining_loader_uses_the_capped_count(monkeypatch) -> None:
    monkeypatch.setattr(environment, "usable_cpus", lambda: 1)
    with pytest.warns(UserWarning, match="data.num_workers=8 is more than the 1 CPUs"):
        loader = pretraining_loader(tiny_config("data.num_workers=8"), torch.device("cpu"))
    assert loader.num_workers == 1


def test_the_worker_count_does_not_change_a_pretraining_batch() -> None:
    """What the cap's docstring promises: samples are seeded by index, not by worker."""
    batches = [
        next(iter(pretraining_loader(tiny_config(f"data.num_workers={workers}"), torch.device("cpu"))))
        for workers in (0, min(2, usable_cpus()))
    ]
    (crops_a, labels_a), (crops_b, labels_b) = batches
    assert torch.equal(labels_a, labels_b)
    assert all(torch.equal(a, b) for a, b in zip(crops_a, crops_b, strict=True))
