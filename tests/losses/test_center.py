"""EMA centre: formula, input safety, the single-process guard and the 2-process gloo all-reduce."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp

from attmask.losses.center import Center, is_distributed
from tests.conftest import free_port


def test_zero_init_buffer_and_state_dict() -> None:
    center = Center((1, 1, 5), momentum=0.8)
    assert torch.equal(center.center, torch.zeros(1, 1, 5))
    assert list(center.state_dict()) == ["center"]
    assert not center.center.requires_grad


@pytest.mark.parametrize("momentum", [-0.1, 1.5])
def test_rejects_bad_momentum(momentum: float) -> None:
    with pytest.raises(ValueError, match="momentum"):
        Center((1, 4), momentum)


def test_update_is_the_ema_of_the_batch_mean() -> None:
    rows = torch.randn(6, 4, dtype=torch.float64)
    center = Center((1, 4), momentum=0.9).double()
    start = torch.randn(1, 4, dtype=torch.float64)
    center.center.copy_(start)
    center.update(rows.sum(dim=0), rows.shape[0])
    torch.testing.assert_close(center.center, 0.9 * start + 0.1 * rows.mean(dim=0, keepdim=True))


def test_update_from_rows_equals_update_and_keeps_the_buffer_object() -> None:
    rows = torch.randn(5, 1, 3)
    by_rows, by_sum = Center((1, 1, 3)), Center((1, 1, 3))
    buffer = by_rows.center
    by_rows.update_from_rows(rows)
    by_sum.update(rows.sum(dim=0), 5)
    torch.testing.assert_close(by_rows.center, by_sum.center)
    assert by_rows.center is buffer  # in-place: optimizers / DDP buffers keep pointing at it


def test_update_neither_mutates_nor_tracks_its_input() -> None:
    rows = torch.randn(4, 3, requires_grad=True)
    before = rows.detach().clone()
    center = Center((1, 3))
    center.update_from_rows(rows * 2)
    assert torch.equal(rows.detach(), before)
    assert center.center.grad_fn is None and not center.center.requires_grad


def test_low_precision_rows_are_accumulated_in_the_buffer_dtype() -> None:
    rows = torch.randn(8, 4).to(torch.bfloat16)
    center = Center((1, 4))
    center.update_from_rows(rows)
    assert center.center.dtype == torch.float32
    torch.testing.assert_close(center.center, 0.1 * rows.float().mean(dim=0, keepdim=True))


def test_rejects_empty_batch_and_wrong_size() -> None:
    center = Center((1, 3))
    with pytest.raises(ValueError, match="at least one row"):
        center.update(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="elements"):
        center.update(torch.zeros(4), 2)


def test_guard_is_off_without_a_process_group() -> None:
    assert not torch.distributed.is_initialized()
    assert not is_distributed()
    center = Center((1, 2))
    center.update(torch.ones(2), 1)  # must not try to all-reduce
    torch.testing.assert_close(center.center, torch.full((1, 2), 0.1))


# ------------------------------------------------------------------- 2 gloo processes
ROWS_PER_RANK = (3, 5)  # unequal on purpose: the count is all-reduced too


def _rows(dim: int = 4) -> torch.Tensor:
    return torch.randn(sum(ROWS_PER_RANK), dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        assert is_distributed()
        rows = _rows().split(ROWS_PER_RANK)[rank]
        center = Center((1, 4)).double()
        center.center.fill_(0.5)
        center.update_from_rows(rows)
        torch.save(center.center, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes_equal_one_process_on_the_whole_batch(tmp_path) -> None:
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    single = Center((1, 4)).double()
    single.center.fill_(0.5)
    single.update_from_rows(_rows())
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result, single.center, rtol=1e-12, atol=1e-12)
