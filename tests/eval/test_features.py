"""Feature extraction: every kind, equality with the backbone's outputs, modes, 2-rank gather."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

from attmask.eval.features import FEATURE_KINDS, extract_features
from tests.conftest import free_port

DIM = 192  # vit_tiny width


def _model(depth: int = 2) -> torch.nn.Module:
    from attmask.models import build_vit  # imported here: the spawned ranks do not need timm

    torch.manual_seed(0)
    return build_vit("vit_tiny", img_size=16, patch_size=4, depth=depth)


class _PoolingBackbone(torch.nn.Module):
    """A stand-in ViT for the distributed test: [CLS] = fixed projection of the mean pixel."""

    def forward(self, images: torch.Tensor) -> SimpleNamespace:
        pooled = images.mean(dim=(2, 3))  # (B, C)
        return SimpleNamespace(cls_token=pooled @ torch.linspace(-1, 1, 3 * 8).reshape(3, 8))


def _loader(sizes: tuple[int, ...] = (4, 4, 3), seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 3, 16, 16, generator=generator), torch.randint(10, (size,), generator=generator))
        for size in sizes
    ]


@pytest.mark.parametrize(
    ("kind", "width"), [("cls", DIM), ("gap", DIM), ("cls+gap", 2 * DIM), ("last4", 4 * DIM), ("last4+gap", 5 * DIM)]
)
def test_shapes_and_dtypes_of_every_kind(kind: str, width: int) -> None:
    features, labels = extract_features(_model(depth=4), _loader(), kind=kind)
    assert features.shape == (11, width) and features.dtype == torch.float32
    assert labels.shape == (11,) and labels.dtype == torch.int64
    assert features.device.type == labels.device.type == "cpu"
    assert kind in FEATURE_KINDS


def test_features_equal_the_backbone_outputs() -> None:
    model, loader = _model(depth=4).eval(), _loader()
    images = torch.cat([batch for batch, _ in loader])
    with torch.no_grad():
        output = model(images)
        last4 = torch.cat([tokens[:, 0] for tokens in model.intermediate_layers(images, 4)], -1)
    expected = {
        "cls": output.cls_token,
        "gap": output.patch_tokens.mean(1),
        "cls+gap": torch.cat([output.cls_token, output.patch_tokens.mean(1)], -1),
        "last4": last4,
        "last4+gap": torch.cat([last4, output.patch_tokens.mean(1)], -1),
    }
    for kind, target in expected.items():
        features, labels = extract_features(model, loader, kind=kind)
        torch.testing.assert_close(features, target, rtol=1e-5, atol=1e-5)
        assert torch.equal(labels, torch.cat([batch_labels for _, batch_labels in loader]))
    torch.testing.assert_close(expected["last4"][:, -DIM:], output.cls_token)


def test_eval_mode_during_extraction_and_modes_restored() -> None:
    model = _model().train()
    model.blocks[0].eval()  # a mixed state must come back exactly
    seen: list[bool] = []
    model.register_forward_pre_hook(lambda module, _: seen.append(module.training))
    extract_features(model, _loader(), progress=True)
    assert seen == [False, False, False]
    assert model.training and model.blocks[1].training and not model.blocks[0].training
    model.eval()
    extract_features(model, _loader())
    assert not any(module.training for module in model.modules())


def test_modes_restored_after_an_error() -> None:
    model = _model().train()
    with pytest.raises(ValueError):
        extract_features(model, [(torch.randn(2, 3, 15, 15), torch.zeros(2))])
    assert all(module.training for module in model.modules())


def test_invalid_requests_raise() -> None:
    with pytest.raises(ValueError, match="unknown feature kind"):
        extract_features(_model(), _loader(), kind="mean")
    with pytest.raises(ValueError, match="at least 4 blocks"):
        extract_features(_model(depth=2), _loader(), kind="last4")
    with pytest.raises(ValueError, match="no batch"):
        extract_features(_model(), [])


def _gather_worker(rank: int, port: int, directory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        loader = _loader(RANK_SHARES[rank], seed=rank)  # uneven shares exercise the padding
        torch.save(extract_features(_PoolingBackbone(), loader), f"{directory}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


RANK_SHARES = {0: (3,), 1: (2, 2)}


def test_two_ranks_gather_every_sample(tmp_path) -> None:
    mp.start_processes(_gather_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    single = [extract_features(_PoolingBackbone(), _loader(RANK_SHARES[rank], seed=rank)) for rank in (0, 1)]
    expected_features = torch.cat([features for features, _ in single])  # rank order
    expected_labels = torch.cat([labels for _, labels in single])
    for rank in (0, 1):
        features, labels = torch.load(tmp_path / f"rank{rank}.pt")
        assert features.shape == (7, 8)
        torch.testing.assert_close(features, expected_features)
        assert torch.equal(labels, expected_labels)
