"""DINO projection head: shapes, official key layout, weight-normalised last layer, freezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attmask.heads import DINOHead, last_layer_parameters


def _head(**kwargs) -> DINOHead:
    torch.manual_seed(0)
    defaults = {"in_dim": 12, "out_dim": 20, "hidden_dim": 16, "bottleneck_dim": 8}
    return DINOHead(**{**defaults, **kwargs})


@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("shape", [(4, 12), (3, 5, 12)])
def test_any_leading_dims(shape: tuple[int, ...], use_bn: bool) -> None:
    out = _head(use_bn=use_bn)(torch.randn(shape))
    assert out.shape == (*shape[:-1], 20) and torch.isfinite(out).all()


def test_batch_norm_statistics_cover_all_leading_dims() -> None:
    head = _head(use_bn=True).train()
    tokens = torch.randn(3, 5, 12)
    twin = _head(use_bn=True).train()
    twin.load_state_dict(head.state_dict())
    torch.testing.assert_close(head(tokens), twin(tokens.reshape(15, 12)).reshape(3, 5, 20))


@pytest.mark.parametrize(
    ("num_layers", "use_bn", "linear_keys"),
    [
        (1, False, ["mlp"]),
        (2, False, ["mlp.0", "mlp.2"]),
        (3, False, ["mlp.0", "mlp.2", "mlp.4"]),
        (3, True, ["mlp.0", "mlp.3", "mlp.6"]),
    ],
)
def test_state_dict_keys_follow_the_official_head(num_layers: int, use_bn: bool, linear_keys: list[str]) -> None:
    keys = set(_head(num_layers=num_layers, use_bn=use_bn).state_dict())
    for prefix in linear_keys:
        assert {f"{prefix}.weight", f"{prefix}.bias"} <= keys
    assert {"last_layer.parametrizations.weight.original0", "last_layer.parametrizations.weight.original1"} <= keys
    assert "last_layer.bias" not in keys


def test_init_truncated_normal_and_zero_bias() -> None:
    head = DINOHead(64, 32, hidden_dim=256, bottleneck_dim=128)
    for module in head.mlp.modules():
        if isinstance(module, nn.Linear):
            assert torch.count_nonzero(module.bias) == 0
            assert module.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_normalised_last_layer_has_unit_rows_and_frozen_magnitude() -> None:
    head = _head(norm_last_layer=True)
    magnitude = head.last_layer.parametrizations.weight.original0
    assert not magnitude.requires_grad and torch.equal(magnitude, torch.ones(20, 1))
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(20))
    out = head(torch.randn(6, 12))
    assert out.abs().max() <= 1.0 + 1e-5  # cosine similarities to unit prototypes
    out.sum().backward()
    assert magnitude.grad is None and head.last_layer.parametrizations.weight.original1.grad is not None


def test_unnormalised_last_layer_trains_its_magnitude() -> None:
    head = _head(norm_last_layer=False)
    magnitude = head.last_layer.parametrizations.weight.original0
    assert magnitude.requires_grad and torch.equal(magnitude, torch.ones(20, 1))
    head(torch.randn(6, 12)).square().sum().backward()
    assert magnitude.grad is not None


def test_last_layer_parameters_are_the_prototypes_of_nested_heads_only() -> None:
    model = nn.ModuleDict({"cls": _head(norm_last_layer=False), "patch": _head(), "other": nn.Linear(3, 3)})
    found = last_layer_parameters(model)
    expected = [p for key in ("cls", "patch") for p in model[key].last_layer.parameters()]
    assert len(found) == len(expected) == 4 and all(a is b for a, b in zip(found, expected))
    assert not {id(p) for p in found} & {id(p) for key in ("cls", "patch") for p in model[key].mlp.parameters()}
    assert last_layer_parameters(nn.Linear(3, 3)) == []


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        _head(num_layers=0)
    with pytest.raises(ValueError, match="expects"):
        _head()(torch.randn(2, 11))
