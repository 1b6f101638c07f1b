"""ViT backbone: timm parity, mask token, cheap [CLS] attention, intermediate layers."""

from __future__ import annotations

import pytest
import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from attmask.models import VIT_ARCHITECTURES, build_vit, timm_kwargs, to_timm_state_dict


def _tiny(**overrides):
    settings = {"img_size": 32, "patch_size": 4, "depth": 3, **overrides}
    return build_vit("vit_tiny", **settings).eval()


def _timm_twin(model, **extra):
    twin = timm.models.vision_transformer.VisionTransformer(**timm_kwargs(model), **extra).eval()
    twin.load_state_dict(to_timm_state_dict(model.state_dict()), strict=True)
    return twin


@pytest.mark.parametrize("name", list(VIT_ARCHITECTURES))
def test_state_dict_loads_strictly_into_timm_with_equal_features(name: str) -> None:
    depth = 12 if name == "vit_tiny" else 2
    model = build_vit(name, depth=depth).eval()  # the default 224 / 16 geometry
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    twin = _timm_twin(model)
    with torch.no_grad():
        ours = model(images)
        reference = twin.forward_features(images)
    torch.testing.assert_close(ours.cls_token, reference[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.patch_tokens, reference[:, 1:], rtol=0, atol=1e-5)


def test_other_resolutions_interpolate_position_embeddings_like_timm() -> None:
    model = _tiny()
    twin = _timm_twin(model, dynamic_img_size=True)
    images = torch.randn(2, 3, 16, 24)  # a local crop, not square
    with torch.no_grad():
        ours = model(images)
        reference = twin.forward_features(images)
    assert ours.patch_tokens.shape == (2, 4 * 6, 192)
    torch.testing.assert_close(ours.patch_tokens, reference[:, 1:], rtol=0, atol=1e-5)


def _explicit_cls_attention(model, images: torch.Tensor, block_index: int) -> torch.Tensor:
    """The full softmax attention matrix of one block, row 0 without column 0."""
    tokens = model.embed(images)
    for index, block in enumerate(model.blocks):
        if index == block_index:
            attn = block.attn
            batch, count, dim = tokens.shape
            qkv = attn.qkv(block.norm1(tokens)).reshape(batch, count, 3, attn.num_heads, -1)
            q, k, _ = qkv.permute(2, 0, 3, 1, 4)
            full = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)  # (B, h, T, T)
            return full[:, :, 0, 1:]
        tokens = block(tokens)
    raise AssertionError("block not reached")


@pytest.mark.parametrize("block_index", [-1, 0, 1])
def test_cls_attention_equals_explicit_attention(block_index: int) -> None:
    model = _tiny()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = model(images, return_cls_attention=True, attention_block=block_index)
        explicit = _explicit_cls_attention(model, images, block_index % model.depth)
    assert output.cls_attention.shape == (3, 3, 64)
    assert (output.cls_attention - explicit).abs().max().item() <= 1e-5
    assert (output.cls_attention.sum(-1) < 1).all(), "CLS->CLS dropped without renormalising"


class _ShapeRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.shapes.append((str(func), tuple(value.shape)))
        return out


@pytest.mark.parametrize("grad", [False, True])
def test_no_full_attention_matrix_is_materialised(grad: bool) -> None:
    model = _tiny(img_size=40)  # 100 patches -> 101 tokens, a size no other dim has
    images = torch.randn(2, 3, 40, 40)
    tokens = 101
    recorder = _ShapeRecorder()
    with torch.set_grad_enabled(grad), recorder:
        output = model(images, return_cls_attention=True)
        if grad:
            (output.cls_token.sum() + output.cls_attention.sum()).backward()
    square = [(op, shape) for op, shape in recorder.shapes if shape[-2:] == (tokens, tokens)]
    assert not square, f"(N+1)x(N+1) tensors were created: {square[:3]}"
    assert any(shape[-1] == tokens for _, shape in recorder.shapes)


def test_mask_token_replaces_patch_embeddings_before_position_embeddings() -> None:
    model = _tiny()
    with torch.no_grad():
        model.mask_token.normal_()
    images = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[0, [0, 5, 63]] = True
    original = mask.clone()
    embedded = model.embed(images, mask)
    expected = model.mask_token[0, 0] + model.pos_embed[0, 1:]
    torch.testing.assert_close(embedded[0, 1:][mask[0]], expected[mask[0]])
    torch.testing.assert_close(embedded[1], model.embed(images)[1])
    assert torch.equal(mask, original)
    with torch.no_grad():
        unmasked = model(images, mask=torch.zeros_like(mask)).patch_tokens
        plain = model(images).patch_tokens
    torch.testing.assert_close(unmasked, plain)


def test_mask_token_receives_gradients() -> None:
    model = _tiny().train()
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, :10] = True
    model(torch.randn(2, 3, 32, 32), mask=mask).patch_tokens.sum().backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


def test_intermediate_layers_end_with_the_forward_output() -> None:
    model = _tiny()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        layers = model.intermediate_layers(images, num_blocks=2)
        output = model(images)
    assert len(layers) == 2 and layers[0].shape == (2, 65, 192)
    torch.testing.assert_close(layers[-1][:, 0], output.cls_token)
    assert not torch.allclose(layers[0][:, 0], layers[1][:, 0])


def test_bf16_autocast_keeps_cls_attention_in_float32() -> None:
    model = _tiny()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(torch.randn(2, 3, 32, 32), return_cls_attention=True)
    assert output.cls_attention.dtype == torch.float32
    assert torch.isfinite(output.cls_token.float()).all()


def test_overrides_and_drop_path() -> None:
    model = build_vit("vit_small", img_size=28, patch_size=7, in_chans=1, depth=4, drop_path_rate=0.2)
    assert model.grid_size == (4, 4) and model.embed_dim == 384
    assert model.blocks[-1].drop_path.drop_prob == pytest.approx(0.2)
    assert model(torch.randn(2, 1, 28, 28)).patch_tokens.shape == (2, 16, 384)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_vit("vit_gigantic"), "unknown architecture"),
        (lambda: build_vit("vit_tiny", img_sz=32), "unknown ViT option"),
        (lambda: build_vit("vit_tiny", img_size=30, patch_size=4), "divisible"),
        (lambda: _tiny()(torch.randn(1, 3, 30, 30)), "not divisible by the patch size 4"),
        (lambda: _tiny()(torch.randn(1, 1, 32, 32)), "expected images of shape"),
        (lambda: _tiny()(torch.randn(1, 3, 32, 32), mask=torch.ones(1, 63, dtype=torch.bool)), "mask must be"),
        (lambda: _tiny()(torch.randn(1, 3, 32, 32), return_cls_attention=True, attention_block=5), "out of range"),
    ],
)
def test_bad_input_is_one_clear_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_activation_checkpointing_gives_the_same_outputs_and_gradients() -> None:
    def grads(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = build_vit("vit_tiny", img_size=16, patch_size=4, depth=3, drop_path_rate=0.3).train()
        model.set_grad_checkpointing(checkpointing)
        images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        mask = torch.zeros(4, 16, dtype=torch.bool)
        mask[:, ::3] = True
        torch.manual_seed(2)  # the stochastic-depth draws
        out = model(images, mask=mask)
        (out.cls_token.square().sum() + out.patch_tokens.mean()).backward()
        return out.cls_token.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_out, plain = grads(False)
    checked_out, checked = grads(True)
    torch.testing.assert_close(checked_out, plain_out, rtol=0, atol=0)
    assert plain.keys() == checked.keys() and len(plain) > 10
    for name in plain:
        torch.testing.assert_close(checked[name], plain[name], rtol=1e-6, atol=1e-7, msg=name)


def test_activation_checkpointing_recomputes_blocks_in_the_backward_only_while_training() -> None:
    model = build_vit("vit_tiny", img_size=16, patch_size=4, depth=2)
    model.set_grad_checkpointing()
    calls = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: calls.append(torch.is_grad_enabled()))
    model(torch.randn(2, 3, 16, 16)).cls_token.sum().backward()
    assert len(calls) == 2, "the block ran again in the backward pass (its activations were not kept)"
    calls.clear()
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
    assert len(calls) == 1
