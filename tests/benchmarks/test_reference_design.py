"""The step benchmark's replica of the original code's costs (benchmarks/reference_design.py):
it does each costly thing it claims, and trains exactly like the library's fast path."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from attmask.engine.optim import build_optimizer, clip_per_parameter
from attmask.engine.step import OptimizerStep, StepSettings
from attmask.methods import build_method, ema_update
from attmask.models import build_vit
from tests.conftest import REPO_ROOT
from tests.engine.tiny import tiny_config


def _load_replica():
    """benchmarks/reference_design.py, loaded once (its classes must be the same in every test)."""
    if "reference_design" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "reference_design", REPO_ROOT / "benchmarks" / "reference_design.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["reference_design"] = module
        spec.loader.exec_module(module)
    return sys.modules["reference_design"]


replica = _load_replica()
CPU = torch.device("cpu")
# a clipping threshold above every gradient norm: the replica clips each parameter on its own and
# the fast path the global norm (the same while neither scales); half the images masked, so the
# MIM term averages over unmasked images too.
SETTINGS = ("optim.clip_grad=1e6", "masking.probability=0.5")
KEYS = ("loss", "loss_cls", "loss_patch", "mask_fraction", "grad_norm")
LR = 5e-4 * 8 / 256  # the lr of a tiny run (batch 8)


class _Recorder(TorchDispatchMode):
    """Names and output shapes of every aten op run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        self.ops.append((str(func), tuple(first.shape) if isinstance(first, torch.Tensor) else ()))
        return out

    def count(self, name: str) -> int:
        return sum(name in op for op, _ in self.ops)


def _crops(batch: int = 4) -> list[torch.Tensor]:
    crops = [torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    return crops + [torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(i + 2)) for i in range(2)]


def _pair(*overrides: str) -> tuple[OptimizerStep, OptimizerStep]:
    """The fast step and the replica's, from identical weights and masking seeds."""
    config = tiny_config(*SETTINGS, *overrides)
    steps = []
    for reference in (False, True):
        torch.manual_seed(0)
        method = build_method(config, img_size=16, num_local_crops=2, seed=3)
        if reference:
            steps.append(replica.build_reference_step(method, config, CPU))
        else:
            settings = StepSettings("fp32", config.optim.clip_grad, config.optim.freeze_last_layer_epochs)
            steps.append(OptimizerStep(method, build_optimizer(method.student, CPU), settings, CPU))
    return steps[0], steps[1]


def test_same_losses_and_weights_as_the_fast_path_for_three_steps(one_thread) -> None:
    fast, reference = _pair()
    assert isinstance(reference.method.student.backbone, replica.ExplicitAttentionViT)
    assert isinstance(reference.method, replica.ReferenceMethod) and reference.settings.precision == "fp32"
    assert not isinstance(fast.method, replica.ReferenceMethod)
    logs = {"fast": [], "reference": []}
    for name, step in (("fast", fast), ("reference", reference)):
        for _ in range(3):  # epoch 1: the last layer trains too
            logs[name].append({k: float(v) for k, v in step([_crops()], 1, LR, 0.04, 0.99).items()})
    assert len({round(r["loss"], 4) for r in logs["fast"]}) == 3, "the weights must change between steps"
    assert all(r["mask_fraction"] > 0 for r in logs["fast"]) and all(r["loss_patch"] > 0 for r in logs["fast"])
    for index, (ours, theirs) in enumerate(zip(logs["fast"], logs["reference"])):
        for key in KEYS:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), (index, key)
    fast_weights = fast.method.state_dict()
    assert fast_weights.keys() == reference.method.state_dict().keys()
    for name, value in reference.method.state_dict().items():
        ours = fast_weights[name]
        if name.endswith("attn.qkv.bias"):  # the key bias: no gradient but float noise, Adam steps <= lr
            third = value.shape[0] // 3
            assert (value[third : 2 * third] - ours[third : 2 * third]).abs().max() <= 3 * LR, name
            value, ours = torch.cat([value[:third], value[2 * third :]]), torch.cat([ours[:third], ours[2 * third :]])
        torch.testing.assert_close(value, ours, rtol=1e-4, atol=1e-5, msg=name)


def test_one_step_gives_the_same_loss_and_student_gradients(one_thread) -> None:
    results = []
    for step in _pair():
        out = step.method.training_step(_crops(), epoch=0)
        out.loss.backward()
        grads = {n: p.grad for n, p in step.method.student.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (fast, fast_grads), (reference, reference_grads) = results
    assert 0 < fast.logs["mask_fraction"].item() < 1
    for key in ("loss", "loss_cls", "loss_patch"):
        torch.testing.assert_close(fast.logs[key], reference.logs[key], rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == reference_grads.keys()
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-3, atol=1e-6, msg=name)


@pytest.mark.parametrize("block_index", [-1, 1])
def test_explicit_attention_matches_the_fused_path(block_index: int) -> None:
    fused = build_vit("vit_tiny", img_size=32, patch_size=4, depth=3).eval()
    explicit = build_vit("vit_tiny", img_size=32, patch_size=4, depth=3).eval()
    explicit.load_state_dict(fused.state_dict())
    explicit.__class__ = replica.ExplicitAttentionViT  # no extra parameters: same keys, same weights
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[1, 10:30] = True
    recorder = _Recorder()
    with torch.no_grad(), recorder:
        reference = explicit(images, mask=mask, return_cls_attention=True, attention_block=block_index)
    ours = fused(images, mask=mask, return_cls_attention=True, attention_block=block_index)
    torch.testing.assert_close(reference.cls_token, ours.cls_token, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reference.patch_tokens, ours.patch_tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reference.cls_attention, ours.cls_attention, rtol=1e-5, atol=1e-6)
    squares = [shape for _, shape in recorder.ops if shape[-2:] == (65, 65)]
    assert len(squares) >= explicit.depth  # every block builds its (T, T) attention matrix
    assert recorder.count("scaled_dot_product") == 0


def test_every_vit_of_the_method_is_swapped_and_state_keys_stay() -> None:
    config = tiny_config()
    torch.manual_seed(0)
    method = build_method(config, img_size=16, num_local_crops=2)
    keys = list(method.state_dict())
    assert replica.make_reference(replica.make_reference(method)) is method  # idempotent
    assert type(method).__name__ == "ReferenceIBOT" and list(method.state_dict()) == keys
    assert all(isinstance(b, replica.ExplicitAttentionViT) for b in method.backbones())


def test_ibots_student_patch_head_runs_on_every_patch_token(one_thread) -> None:
    rows = {}
    for name, step in zip(("fast", "reference"), _pair("head.shared_head=false")):
        seen = []
        head = step.method.student.patch_head
        head.register_forward_hook(lambda module, args, out, seen=seen: seen.append(args[0].shape[:-1].numel()))
        step.method.training_step(_crops(), epoch=0)
        rows[name] = seen
    tokens = 2 * 4 * 16  # global views x batch x patch tokens of a 16 px view, patch 4
    assert rows["reference"] == [tokens]
    assert len(rows["fast"]) == 1 and 0 < rows["fast"][0] < tokens  # only the masked tokens


def test_the_ema_is_a_python_loop_equal_to_the_fused_update() -> None:
    fast, reference = _pair()
    pairs = sum(1 for _ in reference.method.teacher.parameters())
    recorders = {}
    for name, step in (("fast", fast), ("reference", reference)):
        recorders[name] = _Recorder()
        with recorders[name]:
            step.method.update_teacher(0.9)
    assert recorders["fast"].count("_foreach_lerp_") == 1
    assert recorders["reference"].count("_foreach") == 0 and recorders["reference"].count("mul_") == pairs
    for (name, ours), theirs in zip(
        fast.method.teacher.state_dict().items(), reference.method.teacher.state_dict().values()
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("momentum", [0.0, 0.996, 1.0])
def test_ema_loop_is_the_original_update(momentum: float) -> None:
    def pair() -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7)), nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7))

    (fused, student), (loop, _) = pair(), pair()
    before = [p.detach().clone() for p in loop.parameters()]
    ema_update(fused, student, momentum)
    replica.ema_update_loop(loop, student, momentum)
    for old, ours, theirs, source in zip(before, fused.parameters(), loop.parameters(), student.parameters()):
        torch.testing.assert_close(theirs, momentum * old + (1 - momentum) * source.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="structures differ"):
        replica.ema_update_loop(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)


def test_per_parameter_clip_syncs_once_per_parameter_and_equals_the_batched_one() -> None:
    torch.manual_seed(0)
    grads = [torch.randn(5, 3) * scale for scale in (0.01, 1.0, 10.0)]
    looped = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    batched = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for a, b, g in zip(looped, batched, grads):
        a.grad, b.grad = g.clone(), g.clone()
    recorder = _Recorder()
    with recorder:
        norm_a = replica.clip_each_with_host_sync(looped, 0.3)
    assert recorder.count("_local_scalar_dense") >= len(grads)  # .item(): a host sync per parameter
    norm_b = clip_per_parameter(batched, 0.3)
    torch.testing.assert_close(norm_a, norm_b)
    for a, b in zip(looped, batched):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=0)
    assert torch.equal(looped[0].grad, grads[0])  # under the threshold: untouched
    assert all(g.norm().item() == pytest.approx(0.3, rel=1e-4) for g in (looped[1].grad, looped[2].grad))


def test_a_reference_step_reads_the_loss_and_clips_with_host_syncs(one_thread) -> None:
    fast, reference = _pair()
    syncs = {}
    for name, step in (("fast", fast), ("reference", reference)):
        recorder = _Recorder()
        with recorder:
            step([_crops()], 1, 1e-3, 0.04, 0.99)
        syncs[name] = recorder.count("_local_scalar_dense")
    parameters = sum(1 for p in reference.method.student.parameters() if p.requires_grad)
    assert syncs["reference"] >= syncs["fast"] + parameters + 1  # a norm per parameter, the loss


def test_a_non_finite_loss_stops_the_reference_design_in_one_line() -> None:
    config = tiny_config()
    torch.manual_seed(0)
    step = replica.build_reference_step(build_method(config, 16, 2), config, CPU)
    crops = [torch.full((4, 3, s, s), float("nan")) for s in (16, 16, 8, 8)]
    with pytest.raises(ValueError, match="loss is nan .reference design reads it every step."):
        step([crops], 1, 1e-3, 0.04, 0.99)


def test_the_optimizer_is_the_default_adamw() -> None:
    model = build_vit("vit_tiny", img_size=16, patch_size=4, depth=1)
    reference = replica.reference_optimizer(model)
    fast = build_optimizer(model, CPU)
    assert reference.defaults["foreach"] is None and reference.defaults["fused"] is None
    assert fast.defaults["foreach"] is True
    assert [len(g["params"]) for g in reference.param_groups] == [len(g["params"]) for g in fast.param_groups]


def test_precision_is_fp16_on_cuda_and_fp32_on_cpu() -> None:
    assert replica.reference_precision(CPU) == "fp32"
    assert replica.reference_precision(torch.device("cuda")) == "fp16"
    config = tiny_config("train.precision=bf16")
    step = replica.build_reference_step(build_method(config, 16, 2), config, CPU)
    assert step.settings.precision == "fp32" and not step.scaler.is_enabled()
