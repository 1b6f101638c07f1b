"""DINO projection head: MLP -> L2-normalised bottleneck -> weight-normalised linear layer.

Caron et al., 2021, Sec. 3.1 and App. (projection head g: a 3-layer MLP of hidden width 2048,
L2 normalisation and a weight-normalised linear layer of K dimensions); iBOT (Zhou et al., 2022)
applies such a head to the [CLS] and to the patch tokens. The state-dict keys of the MLP match
the official ``DINOHead`` (``mlp.0``, ``mlp.2``, ...; ``mlp`` alone for one layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _mlp(in_dim: int, hidden_dim: int, bottleneck_dim: int, num_layers: int, use_bn: bool) -> nn.Module:
    """``Linear (-BN) - GELU`` repeated ``num_layers - 1`` times, then ``Linear`` to the bottleneck."""
    if num_layers == 1:
        return nn.Linear(in_dim, bottleneck_dim)
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(width, hidden_dim))
        if use_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.GELU())
        width = hidden_dim
    layers.append(nn.Linear(hidden_dim, bottleneck_dim))
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """Projection head ``(..., in_dim) -> (..., out_dim)`` (DINO Sec. 3.1).

    ``x -> mlp(x) (..., bottleneck_dim) -> x / ||x||_2 -> last_layer (..., out_dim)``, where
    ``last_layer`` is ``weight_norm(Linear(bottleneck_dim, out_dim, bias=False))``: each output
    row is ``g_k v_k / ||v_k||``. The magnitudes ``g`` (``parametrizations.weight.original0``)
    start at 1; with ``norm_last_layer=True`` they stay 1 (frozen, DINO's default for
    stability), otherwise they train (iBOT's default).

    Args:
        in_dim: backbone width D.
        out_dim: K, number of prototypes.
        hidden_dim: MLP width.
        bottleneck_dim: width before the last layer.
        num_layers: MLP depth (>= 1).
        norm_last_layer: freeze the weight-norm magnitudes of the last layer at 1.
        use_bn: BatchNorm1d after each hidden Linear (statistics over all leading dims).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"head num_layers must be >= 1, got {num_layers}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.mlp = _mlp(in_dim, hidden_dim, bottleneck_dim, num_layers, use_bn)
        self.mlp.apply(_init_linear)
        # Created after the init above, so its direction keeps nn.Linear's default init (as upstream).
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0  # (out_dim, 1)
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x`` ``(..., in_dim)``, e.g. ``(B, D)`` or ``(B, N, D)``, to ``(..., out_dim)``."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"DINOHead expects (..., {self.in_dim}), got {tuple(x.shape)}")
        leading = x.shape[:-1]
        hidden = self.mlp(x.reshape(-1, self.in_dim))  # (M, bottleneck): BN sees every row
        hidden = F.normalize(hidden, dim=-1, p=2)
        return self.last_layer(hidden).reshape(*leading, self.out_dim)


def _init_linear(module: nn.Module) -> None:
    """Truncated normal (std 0.02) weights and zero biases for every Linear (as upstream)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def last_layer_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The prototype-layer (``last_layer``) parameters of every :class:`DINOHead` inside ``module``
    (or ``module`` itself), in module order.

    The one definition of "the heads' last layer": the trainer drops their gradients during the
    first ``optim.freeze_last_layer_epochs`` epochs (the official ``cancel_gradients_last_layer``)
    and scales their lr by ``optim.last_layer_lr_scale``.
    """
    return [p for head in module.modules() if isinstance(head, DINOHead) for p in head.last_layer.parameters()]
