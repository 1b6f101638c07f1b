"""The reference design (the original code's costly choices) trains exactly like the fast path."""

from __future__ import annotations

import pytest
import torch

from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.methods import build_method
from tests.engine.tiny import tiny_config

# lr > 0 from the first step; a clipping threshold above every gradient norm, because the
# reference clips each parameter on its own and the fast path the global norm (the same while
# neither scales); half the images masked, so the MIM term averages over unmasked images too.
SETTINGS = ("optim.epochs=1", "train.max_steps_per_epoch=3", "optim.warmup_epochs=0",
            "optim.clip_grad=1e6", "masking.probability=0.5")
KEYS = ("loss", "loss_cls", "loss_patch", "mask_fraction", "grad_norm")


def _steps(tmp_path, reference: bool) -> tuple[Trainer, list[dict]]:
    config = tiny_config(*SETTINGS, f"train.reference_design={reference}")
    trainer = Trainer(config, tmp_path / ("reference" if reference else "fast"))
    trainer.fit()
    return trainer, [r for r in read_log(trainer.run_dir) if "loss" in r]


def test_same_losses_as_the_fast_path_for_three_steps(tmp_path, one_thread) -> None:
    fast_trainer, fast = _steps(tmp_path, reference=False)
    reference_trainer, reference = _steps(tmp_path, reference=True)
    assert reference_trainer.method.student.backbone.explicit_attention
    assert reference_trainer.train_step.settings.reference_design
    assert not fast_trainer.method.reference_design and not fast_trainer.method.student.backbone.explicit_attention
    assert [r["step"] for r in fast] == [r["step"] for r in reference] == [1, 2, 3]
    assert len({round(r["loss"], 4) for r in fast}) == 3, "the weights must change between steps"
    assert all(r["mask_fraction"] > 0 for r in fast) and all(r["loss_patch"] > 0 for r in fast)
    for ours, theirs in zip(fast, reference):
        for key in KEYS:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), (ours["step"], key)
    fast_weights = fast_trainer.method.state_dict()
    for name, value in reference_trainer.method.state_dict().items():
        torch.testing.assert_close(value, fast_weights[name], rtol=1e-4, atol=1e-5, msg=name)


def test_one_step_gives_the_same_loss_and_student_gradients(one_thread) -> None:
    crops = [torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    crops += [torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(i + 2)) for i in range(2)]
    results = []
    for reference in (False, True):
        config = tiny_config("masking.probability=0.5", f"train.reference_design={reference}")
        torch.manual_seed(0)
        method = build_method(config, img_size=16, num_local_crops=2, seed=3)
        out = method.training_step(crops, epoch=0)
        out.loss.backward()
        grads = {n: p.grad for n, p in method.student.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (fast, fast_grads), (reference, reference_grads) = results
    assert 0 < fast.logs["mask_fraction"].item() < 1
    for key in ("loss", "loss_cls", "loss_patch"):
        torch.testing.assert_close(fast.logs[key], reference.logs[key], rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == reference_grads.keys()
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-3, atol=1e-6, msg=name)


def test_a_non_finite_loss_stops_the_reference_design_in_one_line() -> None:
    from attmask.engine.optim import build_optimizer
    from attmask.engine.step import OptimizerStep, StepSettings

    config = tiny_config("train.reference_design=true")
    torch.manual_seed(0)
    method = build_method(config, 16, 2)
    device = torch.device("cpu")
    step = OptimizerStep(method, build_optimizer(method.student, device, True),
                         StepSettings(reference_design=True), device)
    crops = [torch.full((4, 3, s, s), float("nan")) for s in (16, 16, 8, 8)]
    with pytest.raises(ValueError, match="loss is nan .reference design reads it every step."):
        step([crops], 1, 1e-3, 0.04, 0.99)
