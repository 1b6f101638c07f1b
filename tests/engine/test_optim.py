"""Parameter groups: no weight decay on biases, norms and tokens."""

from __future__ import annotations

import pytest
import torch

from attmask.engine.optim import (
    build_optimizer,
    clip_global_norm,
    clip_per_parameter,
    parameter_groups,
    set_hyperparameters,
)
from attmask.models import build_vit


def test_no_decay_on_biases_norms_and_tokens() -> None:
    model = build_vit("vit_tiny", img_size=16, patch_size=4, depth=1)
    decay, no_decay = parameter_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "pos_embed", "mask_token", "norm.weight", "blocks.0.attn.qkv.bias"} <= no_decay_names
    assert all(names[id(p)].endswith("weight") and p.ndim > 1 for p in decay["params"])
    total = len(decay["params"]) + len(no_decay["params"])
    assert total == len(list(model.parameters()))


def test_schedule_values_reach_the_right_groups() -> None:
    model = build_vit("vit_tiny", img_size=16, patch_size=4, depth=1)
    optimizer = build_optimizer(model, torch.device("cpu"))
    set_hyperparameters(optimizer, 0.1, 0.05)
    decay, no_decay = optimizer.param_groups
    assert decay["lr"] == no_decay["lr"] == 0.1
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_prototype_layer_gets_its_own_lr_scale() -> None:
    from attmask.heads import DINOHead

    model = torch.nn.ModuleDict(
        {
            "backbone": build_vit("vit_tiny", img_size=16, patch_size=4, depth=1),
            "head": DINOHead(192, 32, 16, 8, norm_last_layer=False),
        }
    )
    assert len(parameter_groups(model)) == 2, "scale 1 keeps the original two groups"
    optimizer = build_optimizer(model, torch.device("cpu"), last_layer_lr_scale=0.1)
    set_hyperparameters(optimizer, 0.1, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        in_last = {"last_layer." in names[id(p)] for p in group["params"]}
        assert len(in_last) == 1, "a group never mixes prototypes with other parameters"
        assert group["lr"] == pytest.approx(0.01 if in_last == {True} else 0.1)
        assert group["weight_decay"] == (0.05 if group["apply_weight_decay"] else 0.0)
    scaled = [p for g in optimizer.param_groups if g.get("lr_scale") == 0.1 for p in g["params"]]
    assert {names[id(p)] for p in scaled} == {n for n, p in model.named_parameters() if "last_layer." in n}


def _gradients(*norms: float) -> list[torch.Tensor]:
    """Parameters whose gradients have the given L2 norms."""
    generator = torch.Generator().manual_seed(0)
    parameters = []
    for norm in norms:
        parameter = torch.nn.Parameter(torch.zeros(3, 4))
        direction = torch.randn(3, 4, generator=generator)
        parameter.grad = direction / direction.norm() * norm
        parameters.append(parameter)
    return parameters


def test_clipping_below_the_threshold_changes_nothing_and_both_rules_agree() -> None:
    per_parameter, global_ = _gradients(0.5, 1.0, 2.0), _gradients(0.5, 1.0, 2.0)
    before = [p.grad.clone() for p in per_parameter]
    norm_a = clip_per_parameter(per_parameter, 3.0)
    norm_b = clip_global_norm(global_, 3.0)
    expected = (0.25 + 1.0 + 4.0) ** 0.5
    assert norm_a.item() == pytest.approx(expected, rel=1e-6) and norm_b.item() == pytest.approx(expected, rel=1e-6)
    for old, a, b in zip(before, per_parameter, global_):
        assert torch.equal(a.grad, old) and torch.equal(b.grad, old)


def test_per_parameter_clipping_is_dinos_rule() -> None:
    parameters = _gradients(0.5, 4.0, 10.0)
    before = [p.grad.clone() for p in parameters]
    norm = clip_per_parameter(parameters, 3.0)
    assert norm.item() == pytest.approx((0.25 + 16 + 100) ** 0.5, rel=1e-6)  # measured before clipping
    assert torch.equal(parameters[0].grad, before[0])  # under the threshold: untouched
    for parameter, old in zip(parameters[1:], before[1:]):  # over it: own norm scaled to ~3
        assert parameter.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
        torch.testing.assert_close(parameter.grad / parameter.grad.norm(), old / old.norm())
    global_ = _gradients(0.5, 4.0, 10.0)
    clip_global_norm(global_, 3.0)  # the global rule scales every gradient by one factor instead
    assert sum(p.grad.norm() ** 2 for p in global_).item() ** 0.5 == pytest.approx(3.0, rel=1e-5)


def test_the_optimizer_is_foreach_on_cpu() -> None:
    optimizer = build_optimizer(build_vit("vit_tiny", img_size=16, patch_size=4, depth=1), torch.device("cpu"))
    assert optimizer.defaults["foreach"] is True and not optimizer.defaults["fused"]
