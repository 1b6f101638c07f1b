"""Schedules of the DINO / iBOT recipe, value for value as the official code.

``cosine_schedule`` is ``utils.cosine_scheduler`` (per iteration: learning rate, weight decay,
teacher EMA momentum); ``teacher_temperature_schedule`` is the per-epoch teacher temperature of
``DINOLoss`` / ``iBOTLoss`` (Caron et al., 2021, Sec. 3.1 and App.; Zhou et al., 2022, App.).
"""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base_value: float,
    final_value: float,
    epochs: int,
    iters_per_epoch: int,
    warmup_epochs: int = 0,
    start_warmup_value: float = 0.0,
) -> np.ndarray:
    """Per-iteration linear warm-up, then half-cosine decay (official ``cosine_scheduler``).

    The warm-up ramps ``start_warmup_value -> base_value`` over ``warmup_epochs * iters_per_epoch``
    iterations, both ends included. The remaining ``n`` iterations take
    ``final + (base - final) * (1 + cos(pi * i / n)) / 2`` for ``i = 0 .. n-1``, so the last value
    stays slightly above ``final_value``. A warm-up longer than the run is cut to the run.

    Args:
        base_value: value after the warm-up (peak).
        final_value: asymptote of the cosine.
        epochs: number of epochs.
        iters_per_epoch: optimizer steps per epoch.
        warmup_epochs: epochs of linear warm-up (0: none).
        start_warmup_value: first value of the warm-up.

    Returns:
        float64 array of ``epochs * iters_per_epoch`` values.
    """
    if epochs < 1 or iters_per_epoch < 1 or warmup_epochs < 0:
        raise ValueError(
            f"need epochs >= 1, iters_per_epoch >= 1 and warmup_epochs >= 0, "
            f"got {epochs}, {iters_per_epoch}, {warmup_epochs}"
        )
    total = epochs * iters_per_epoch
    warmup_iters = min(warmup_epochs, epochs) * iters_per_epoch
    warmup = np.linspace(start_warmup_value, base_value, warmup_iters)
    steps = np.arange(total - warmup_iters)
    cosine = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * steps / max(len(steps), 1)))
    return np.concatenate((warmup, cosine)).astype(np.float64)


def teacher_temperature_schedule(
    warmup_temp: float, final_temp: float, warmup_epochs: int, num_epochs: int, start_epoch: int = 0
) -> np.ndarray:
    """Per-epoch teacher temperature T_t (DINO ``DINOLoss`` / iBOT ``iBOTLoss``).

    Hold ``warmup_temp`` for ``start_epoch`` epochs (iBOT's ``mim_start_epoch``, used for the
    patch temperature; 0 for DINO), then ramp linearly to ``final_temp`` over ``warmup_epochs``
    epochs with both ends included (``final_temp`` is reached at epoch
    ``start_epoch + warmup_epochs - 1``), then stay constant. When hold plus ramp is longer than
    ``num_epochs`` (short test runs) the same curve is cut at ``num_epochs``; the official code
    fails there.

    Args:
        warmup_temp: temperature at epoch 0.
        final_temp: temperature after the warm-up.
        warmup_epochs: length of the ramp.
        num_epochs: length of the schedule.
        start_epoch: epochs to hold ``warmup_temp`` before the ramp.

    Returns:
        float64 array of ``num_epochs`` values.
    """
    if num_epochs < 1 or warmup_epochs < 0 or start_epoch < 0:
        raise ValueError(
            f"need num_epochs >= 1, warmup_epochs >= 0 and start_epoch >= 0, "
            f"got {num_epochs}, {warmup_epochs}, {start_epoch}"
        )
    hold = np.full(start_epoch, warmup_temp, dtype=np.float64)
    ramp = np.linspace(warmup_temp, final_temp, warmup_epochs)
    rest = np.full(max(num_epochs - start_epoch - warmup_epochs, 0), final_temp, dtype=np.float64)
    return np.concatenate((hold, ramp, rest))[:num_epochs]


def epoch_due(every: int, epoch: int, num_epochs: int) -> bool:
    """True after every ``every`` epochs and after the last one (``epoch`` 0-based, just finished);
    never when ``every <= 0``. The monitors' (k-NN, figures) timing."""
    if every <= 0:
        return False
    return (epoch + 1) % every == 0 or epoch + 1 == num_epochs
