"""Parameter groups: no weight decay on biases, norms and tokens."""

from __future__ import annotations

import torch

from attmask.engine.optim import build_optimizer, parameter_groups, set_hyperparameters
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
