"""Whole original training checkpoints (DINO / iBOT / AttMask) converted and continued."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attmask.cli.main import main
from attmask.config import load_config
from attmask.core.checkpoint import load_checkpoint
from attmask.engine.logging import read_log
from attmask.engine.optim import build_optimizer, parameter_groups
from attmask.engine.original import convert_original_checkpoint, original_names, project_name
from attmask.engine.restore import load_method
from attmask.methods import build_method
from tests.conftest import load_reference
from tests.engine import trajectory


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference("ibot_trajectory.npz")


def _original(ref, tmp_path, **extra) -> tuple[dict, object]:
    path = trajectory.original_checkpoint(ref, tmp_path / "original.pth")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(extra)
    torch.save(checkpoint, path)
    return checkpoint, path


def _fake_adam_state(checkpoint: dict) -> dict:
    """An original AdamW state dict whose moments hold each parameter's index in the original order."""
    student = checkpoint["student"]
    names = [n for n in original_names(student) if not n.endswith("last_layer.weight_g")]
    decayed = [n for n in names if not (n.endswith(".bias") or student[f"module.{n}"].ndim == 1)]
    groups = [decayed, [n for n in names if n not in decayed]]
    state, index, param_groups = {}, 0, []
    for group in groups:
        ids = []
        for name in group:
            value = student[f"module.{name}"]
            state[index] = {
                "step": torch.tensor(7.0),
                "exp_avg": torch.full_like(value, float(index)),
                "exp_avg_sq": torch.full_like(value, 0.5),
            }
            ids.append(index)
            index += 1
        param_groups.append({"params": ids, "lr": 0.0, "weight_decay": 0.0})
    return {"state": state, "param_groups": param_groups}, [n for group in groups for n in group]


def test_original_parameter_groups_decay_what_the_original_decays(ref):
    """decay_tokens=True (fidelity original) groups parameters as the original get_params_groups."""
    config = load_config(None, trajectory.overrides(0.0, "original"))
    student = build_method(config, 32, 2).student
    expected = json.loads(str(ref["param_groups_json"]))
    names = {id(p): n for n, p in student.named_parameters()}
    for decay_tokens, tokens_decayed in ((True, True), (False, False)):
        decayed, undecayed = (
            {names[id(p)] for p in g["params"]} for g in parameter_groups(student, decay_tokens=decay_tokens)
        )
        wanted = {project_name(n) for n in expected["decay"]}
        tokens = {"backbone.cls_token", "backbone.pos_embed", "backbone.mask_token"}
        assert decayed == (wanted if tokens_decayed else wanted - tokens)
        assert undecayed == {project_name(n) for n in expected["no_decay"]} | (set() if tokens_decayed else tokens)


def test_optimizer_state_is_carried_over_by_name(ref, tmp_path):
    checkpoint, _ = _original(ref, tmp_path)
    optimizer, order = _fake_adam_state(checkpoint)
    _, path = _original(ref, tmp_path, optimizer=optimizer, epoch=2)
    config = load_config(None, trajectory.overrides(0.3, "default"))
    converted = convert_original_checkpoint(path, config, tmp_path / "run")
    assert converted.optimizer_mapped and converted.epoch == 2
    state = load_checkpoint(converted.path)
    assert state["progress"]["epoch"] == 2
    method, _ = load_method(tmp_path / "run")
    params = [p for n, p in method.student.named_parameters() if p.requires_grad]
    names = {id(p): n for n, p in method.student.named_parameters()}
    saved = state["optimizer"]
    ids = [i for g in saved["param_groups"] for i in g["params"]]
    ours = build_optimizer(method.student, torch.device("cpu"))
    ordered = [names[id(p)] for g in ours.param_groups for p in g["params"]]
    assert len(ids) == len(params) == len(order)
    for our_index, name in zip(ids, ordered):
        original_index = [project_name(n) for n in order].index(name)
        assert saved["state"][our_index]["exp_avg"].flatten()[0].item() == original_index, name


def test_converted_weights_and_centres(ref, tmp_path):
    centre = torch.arange(64.0).reshape(1, 64)
    _, path = _original(ref, tmp_path, ibot_loss={"center": centre, "center2": -centre.reshape(1, 1, 64)})
    config = load_config(None, trajectory.overrides(0.0, "original"))
    converted = convert_original_checkpoint(path, config, tmp_path / "run")
    assert not converted.optimizer_mapped and any("AdamW starts fresh" in n for n in converted.notes)
    method, _ = load_method(tmp_path / "run")
    torch.testing.assert_close(method.loss.center.center, centre)
    torch.testing.assert_close(method.loss.patch_center.center, -centre.reshape(1, 1, 64))
    torch.testing.assert_close(
        method.student.backbone.mask_token.reshape(-1),
        torch.from_numpy(ref["init_student/backbone.masked_embed"]).reshape(-1),
    )
    torch.testing.assert_close(
        method.teacher.head.last_layer.parametrizations.weight.original1,
        torch.from_numpy(ref["init_student/head.last_layer.weight_v"]),
    )


def test_dino_checkpoint_keeps_a_fresh_mask_token(ref, tmp_path):
    checkpoint, _ = _original(ref, tmp_path)
    strip = lambda s: {k: v for k, v in s.items() if "masked_embed" not in k and "last_layer2" not in k}  # noqa: E731
    path = tmp_path / "dino.pth"
    torch.save(
        {
            "student": strip(checkpoint["student"]),
            "teacher": strip(checkpoint["teacher"]),
            "epoch": 1,
            "dino_loss": {"center": torch.ones(1, 64)},
        },
        path,
    )
    config = load_config(None, [*trajectory.overrides(0.0, "default"), "train.method=dino", "masking.strategy=none"])
    converted = convert_original_checkpoint(path, config, tmp_path / "run")
    assert any("mask_token" in note for note in converted.notes)
    method, _ = load_method(tmp_path / "run")
    torch.testing.assert_close(method.loss.center.center, torch.ones(1, 64))


def test_separate_patch_prototypes_and_non_checkpoints_are_one_line_errors(ref, tmp_path, capsys):
    checkpoint, _ = _original(ref, tmp_path)
    student = dict(checkpoint["student"])
    student["module.head.last_layer2.weight_v"] = student["module.head.last_layer2.weight_v"].clone() + 1
    torch.save({**checkpoint, "student": student}, tmp_path / "separate.pth")
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "plain.pth")
    args = ["--config", "configs/fashion_mnist_ibot_attmask_tiny.yaml"]
    sets = [x for o in trajectory.overrides(0.0, "default") for x in ("--set", o)]
    assert main(["convert", str(tmp_path / "separate.pth"), *sets, "--out", str(tmp_path / "a")]) == 2
    assert "shared_head false" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "plain.pth"), *args, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "not a training checkpoint" in err and len(err.strip().splitlines()) == 1


def test_pretraining_continues_from_a_converted_checkpoint(ref, tmp_path, capsys):
    """`attmask convert` then `attmask pretrain` resumes at the original's epoch with its weights."""
    _, path = _original(ref, tmp_path, epoch=1)
    sets = [x for o in trajectory.overrides(0.0, "original") for x in ("--set", o)]
    sets += [
        "--set",
        "data.source=digits",
        "--set",
        "data.num_workers=0",
        "--set",
        "train.max_steps_per_epoch=2",
        "--set",
        "train.progress=false",
        "--set",
        "train.log_every_steps=1",
        "--set",
        "train.device=cpu",
    ]
    run = tmp_path / "run"
    assert main(["convert", str(path), *sets, "--out", str(run)]) == 0
    assert "epoch 1" in capsys.readouterr().out
    before = load_checkpoint(run / "checkpoint.pth")["method"]["teacher.backbone.pos_embed"].clone()
    torch.testing.assert_close(before, torch.from_numpy(ref["init_student/backbone.pos_embed"]))
    assert main(["pretrain", "--config", str(run / "config.yaml"), "--out", str(run)]) == 0
    steps = [r for r in read_log(run) if "loss" in r and "step" in r]
    assert [r["epoch"] for r in steps] == [1, 1, 2, 2]  # epoch 0 was the original's
    assert steps[0]["lr"] == pytest.approx(5e-4, rel=1e-6)  # the schedule after its 1-epoch warm-up
    after = load_checkpoint(run / "checkpoint.pth")["method"]["teacher.backbone.pos_embed"]
    assert not torch.equal(before, after)
