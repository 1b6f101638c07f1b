"""Resumable data order and per-sample seeded augmentation."""

from __future__ import annotations

import torch

from attmask.data.resumable import EpochSampler, SeededTransformDataset


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    sampler = EpochSampler(100, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    again = EpochSampler(100, seed=3)
    again.set_epoch(2)
    assert list(again) == first and sorted(first) == list(range(100))
    again.set_epoch(3)
    assert list(again) != first


def test_resume_position_skips_exactly_the_consumed_indices() -> None:
    sampler = EpochSampler(50, seed=0)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, start=20)
    assert list(sampler) == full[20:] and len(sampler) == 30


def test_ranks_partition_the_single_process_order() -> None:
    single = EpochSampler(101, seed=5)
    single.set_epoch(0)
    order = list(single)[:100]
    ranks = [EpochSampler(101, num_replicas=2, rank=r, seed=5) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(0)
    assert list(ranks[0]) == order[0::2] and list(ranks[1]) == order[1::2]
    assert len(ranks[0]) == 50


def test_augmentation_is_a_function_of_seed_epoch_and_index() -> None:
    base = [(torch.zeros(3), 0)] * 4
    dataset = SeededTransformDataset(base, lambda x: x + torch.rand(3), seed=1)
    first = dataset[2][0]
    torch.rand(10)  # global RNG use in between must not matter
    assert torch.equal(dataset[2][0], first)
    assert not torch.equal(dataset[3][0], first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2][0], first)
    state = torch.get_rng_state()
    dataset[0]
    assert torch.equal(torch.get_rng_state(), state), "the global RNG is left untouched"
