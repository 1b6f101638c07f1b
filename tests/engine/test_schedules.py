"""Schedules against the official ``cosine_scheduler`` and teacher-temperature values."""

from __future__ import annotations

import numpy as np
import pytest

from attmask.core.schedules import cosine_schedule, teacher_temperature_schedule
from tests.conftest import load_reference


@pytest.mark.parametrize("name", ["lr", "wd", "momentum"])
def test_cosine_schedule_matches_reference(name: str) -> None:
    ref = load_reference("schedules.npz")
    base, final, epochs, iters, warmup = ref[f"{name}_args"].tolist()
    values = cosine_schedule(base, final, int(epochs), int(iters), warmup_epochs=int(warmup))
    assert values.dtype == np.float64 and values.shape == ref[name].shape
    np.testing.assert_allclose(values, ref[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("key", "start_epoch"),
    [("teacher_temp_100ep", 0), ("teacher_patch_temp_100ep", 0), ("teacher_patch_temp_100ep_mimstart10", 10)],
)
def test_teacher_temperature_matches_reference(key: str, start_epoch: int) -> None:
    ref = load_reference("schedules.npz")
    values = teacher_temperature_schedule(0.04, 0.07, 30, 100, start_epoch=start_epoch)
    np.testing.assert_allclose(values, ref[key], rtol=1e-12, atol=1e-12)


def test_reference_has_no_untested_key() -> None:
    tested = {f"{n}{s}" for n in ("lr", "wd", "momentum") for s in ("", "_args")}
    tested |= {"teacher_temp_100ep", "teacher_patch_temp_100ep", "teacher_patch_temp_100ep_mimstart10"}
    assert set(load_reference("schedules.npz")) == tested


def test_cosine_schedule_shape_and_ends() -> None:
    values = cosine_schedule(1.0, 0.1, epochs=4, iters_per_epoch=3, warmup_epochs=1, start_warmup_value=0.5)
    assert values.shape == (12,)
    np.testing.assert_allclose(values[:3], [0.5, 0.75, 1.0])
    assert values[3] == pytest.approx(1.0) and 0.1 < values[-1] < values[-2]
    assert np.all(np.diff(values[3:]) < 0)


def test_cosine_schedule_warmup_longer_than_run_is_cut() -> None:
    values = cosine_schedule(1.0, 0.0, epochs=2, iters_per_epoch=2, warmup_epochs=5)
    np.testing.assert_allclose(values, np.linspace(0.0, 1.0, 4))


def test_teacher_temperature_reaches_final_at_warmup_end() -> None:
    values = teacher_temperature_schedule(0.04, 0.07, warmup_epochs=3, num_epochs=6, start_epoch=2)
    np.testing.assert_allclose(values, [0.04, 0.04, 0.04, 0.055, 0.07, 0.07])


def test_teacher_temperature_short_run_is_a_prefix_of_the_long_one() -> None:
    long = teacher_temperature_schedule(0.04, 0.07, warmup_epochs=30, num_epochs=100, start_epoch=5)
    short = teacher_temperature_schedule(0.04, 0.07, warmup_epochs=30, num_epochs=2, start_epoch=5)
    np.testing.assert_array_equal(short, long[:2])
    assert len(teacher_temperature_schedule(0.04, 0.07, 0, 3)) == 3


@pytest.mark.parametrize("args", [(1.0, 0.0, 0, 5), (1.0, 0.0, 2, 0), (1.0, 0.0, 2, 5, -1)])
def test_cosine_schedule_rejects_bad_lengths(args: tuple) -> None:
    with pytest.raises(ValueError):
        cosine_schedule(*args)
