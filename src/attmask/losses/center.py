"""Centre of the teacher outputs, updated by an exponential moving average.

DINO (Caron et al., 2021, Sec. 3.1, "Avoiding collapse"): ``c <- m c + (1 - m) / B sum_i g_t(x_i)``;
iBOT (Zhou et al., 2022) keeps one such centre for the [CLS] outputs and one for the patch outputs.
The mean runs over the rows of **every** process: the sum and the row count are all-reduced
when a process group of more than one process is initialised, and nothing is communicated
otherwise (so the module works on CPU without ``torch.distributed``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from attmask.core.distributed import is_distributed


class Center(nn.Module):
    """EMA centre ``c <- m c + (1 - m) sum_rows / count_rows`` (DINO Sec. 3.1).

    The state is the buffer ``center`` (zeros at construction), so it is saved in the
    owner's ``state_dict`` and follows ``.to(device / dtype)``. The update is done in place
    on the buffer, in the buffer's dtype, without autograd.

    Args:
        shape: shape of the centre, e.g. ``(1, K)`` for [CLS] or ``(1, 1, K)`` for patches.
        momentum: m (DINO / iBOT: 0.9).
    """

    def __init__(self, shape: tuple[int, ...], momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"center momentum must lie in [0, 1], got {momentum}")
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(shape))

    @torch.no_grad()
    def update(self, batch_sum: torch.Tensor, count: int) -> None:
        """Fold the rows of this step into the centre.

        Args:
            batch_sum: sum over this process's rows, ``center.numel()`` elements (typically
                ``center.shape``); it is not modified.
            count: number of rows this process summed (>= 1).

        Single-process the batch mean is ``batch_sum / count``. With ``world_size > 1`` the
        sum and the count are all-reduced (SUM) in one collective first, so processes with
        different batch sizes still give the exact mean over the global batch.
        """
        if count < 1:
            raise ValueError(f"center update needs at least one row, got count={count}")
        if batch_sum.numel() != self.center.numel():
            raise ValueError(f"center update expects {tuple(self.center.shape)} elements, got {tuple(batch_sum.shape)}")
        total = batch_sum.detach().to(self.center.dtype).reshape(-1)
        if is_distributed():
            packed = torch.cat([total, total.new_tensor([float(count)])])
            dist.all_reduce(packed)
            total, rows = packed[:-1], packed[-1]
        else:
            rows = float(count)
        batch_center = (total / rows).reshape(self.center.shape)
        self.center.mul_(self.momentum).add_(batch_center, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def update_from_rows(self, rows: torch.Tensor) -> None:
        """:meth:`update` with the sum and count of ``rows`` ``(M, ...)`` (summed over dim 0)."""
        self.update(rows.detach().to(self.center.dtype).sum(dim=0), rows.shape[0])

    def extra_repr(self) -> str:
        return f"shape={tuple(self.center.shape)}, momentum={self.momentum}"
