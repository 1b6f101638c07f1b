"""Every bad input of the hostile tour (issue "Reliability") gets one clear line, or the right behaviour."""

from __future__ import annotations

import errno
import os
import random
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attmask.cli.main import main
from attmask.core.checkpoint import save_atomic
from attmask.data.images import load_image
from attmask.engine.logging import read_log
from tests.engine.tiny import TINY, TINY_MAE


def _sets(*extra: str) -> list[str]:
    return [arg for override in (*TINY, "optim.epochs=1", *extra) for arg in ("--set", override)]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("attmask ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _bomb_png(path: Path, side: int = 50000) -> Path:
    """A PNG whose header claims ``side x side`` pixels (a few bytes of data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )
    return path


def _folder(root: Path, bombs: int = 0, broken: int = 0) -> Path:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(10):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / label / f"{index}.png")
    for index in range(bombs):
        _bomb_png(root / "a" / f"bomb{index}.png")
    for index in range(broken):
        (root / "b" / f"broken{index}.png").write_bytes(b"not a png")
    return root


def test_decompression_bomb_is_skipped_like_any_unreadable_image(tmp_path, capsys) -> None:
    folder = _folder(tmp_path / "images", bombs=1)
    with pytest.warns(UserWarning, match="skipping unreadable image .*bomb0.png"):
        code = main(["pretrain", "--out", str(tmp_path / "run"), *_sets(f"data.source={folder}")])
    assert code == 0
    with warnings.catch_warnings():  # the worker process warns on its own
        warnings.simplefilter("ignore")
        assert (
            main(["pretrain", "--out", str(tmp_path / "run1"), *_sets(f"data.source={folder}", "data.num_workers=1")])
            == 0
        )
    with warnings.catch_warnings():  # eval's loader workers warn on their own
        warnings.simplefilter("ignore")
        assert (
            main(["eval", "knn", "--checkpoint", str(tmp_path / "run"), "--data", str(folder), "--img-size", "16"]) == 0
        )
    with pytest.raises(ValueError, match=r"too large to decode safely.*2500000000 pixels.*data.max_image_pixels"):
        load_image(folder / "a" / "bomb0.png")
    with pytest.raises(ValueError, match=r"20x20 pixels, more than the limit of 100"):
        load_image(folder / "a" / "0.png", max_pixels=100)  # the limit is a data option
    assert (
        main(
            [
                "visualize",
                "attention",
                "--checkpoint",
                str(tmp_path / "run"),
                "--images",
                str(folder / "a" / "bomb0.png"),
                "--out",
                str(tmp_path / "fig"),
            ]
        )
        == 2
    )
    assert "too large to decode safely" in _one_line(capsys)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_folder_of_unreadable_files_is_one_line_even_from_a_worker(tmp_path, capsys, workers) -> None:
    folder = tmp_path / "bad"
    (folder / "a").mkdir(parents=True)
    for index in range(20):
        (folder / "a" / f"{index}.png").write_bytes(b"junk")
    with warnings.catch_warnings():  # one warning per file (in the worker process with workers=1)
        warnings.simplefilter("ignore")
        code = main(
            ["pretrain", "--out", str(tmp_path / "run"), *_sets(f"data.source={folder}", f"data.num_workers={workers}")]
        )
    assert code == 2
    line = _one_line(capsys)
    assert "none of the 20 image files of the data set is readable" in line and "DataLoader" not in line
    if workers == 0:
        assert main(["pretrain", "--out", str(tmp_path / "ok"), *_sets()]) == 0
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert (
                main(["eval", "knn", "--checkpoint", str(tmp_path / "ok"), "--data", str(folder), "--img-size", "16"])
                == 2
            )
        assert "is readable" in _one_line(capsys)


@pytest.mark.parametrize(
    "override",
    ["optim.lr=1e-3", "train.seed=1", "masking.strategy=random", "data.batch_size=4", "optim.warmup_epochs=0"],
)
def test_resume_with_a_changed_training_setting_is_refused(tmp_path, capsys, override) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), *_sets("optim.epochs=2", "train.max_steps_per_epoch=1")]) == 0
    state = torch.load(run / "checkpoint.pth", weights_only=True)
    state["progress"]["epoch"] = 1  # as if stopped after the first epoch
    torch.save(state, run / "checkpoint.pth")
    before = (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["pretrain", "--out", str(run), *_sets("optim.epochs=2", "train.max_steps_per_epoch=1", override)]) == 2
    line = _one_line(capsys)
    assert f"{override.split('=')[0]} " in line and "--allow-config-change" in line
    assert (run / "config.yaml").read_text() == before
    assert (
        main(
            [
                "pretrain",
                "--out",
                str(run),
                *_sets(
                    "optim.epochs=2",
                    "train.max_steps_per_epoch=1",
                    "train.log_every_steps=5",
                    "train.activation_checkpointing=true",
                ),
            ]
        )
        == 0
    )  # monitoring and memory settings may change


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "must hold a mapping of sections .* not a list"),
        ("42\n", "must hold a mapping of sections .* not a int"),
    ],
)
def test_config_file_that_is_not_a_mapping(tmp_path, capsys, text, message) -> None:
    (tmp_path / "c.yaml").write_text(text)
    assert main(["pretrain", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert re.search(message, _one_line(capsys))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=[1,", "the value is not valid YAML"),
        ("optim.lr={a: 1", "the value is not valid YAML"),
        ("optim.lr=!!python/object/apply:os.system [echo]", "the value is not valid YAML"),
        ("model.patch_size=0", "model.patch_size must be >= 1"),
        ("optim.accumulation_steps=0", "optim.accumulation_steps must be >= 1"),
        ("optim.lr=inf", "optim.lr must be a finite number"),
        ("optim.lr=nan", "optim.lr must be a finite number"),
        ("optim.lr=-1", "optim.lr must be >= 0"),
        ("optim.teacher_momentum=2", r"optim.teacher_momentum must be in \[0, 1\]"),
        ("optim.clip_grad=-1", "optim.clip_grad must be >= 0"),
        ("train.save_every_steps=-5", "train.save_every_steps must be >= 0"),
        ("data.subset=50", "data.subset must be a fraction in .* use data.per_class"),
        (
            "model.patch_size=5",
            r"data.global_size \(16\) is not a multiple of model.patch_size \(5\); set it to 15 or 20",
        ),
        (
            "data.local_size=10",
            r"data.local_size \(10\) is not a multiple of model.patch_size \(4\); set it to 8 or 12",
        ),
        (
            "model.num_heads=5",
            r"model.embed_dim 192 \(of vit_tiny\) does not split into model.num_heads=5 heads; "
            r"set model.num_heads to one of 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, or model.embed_dim to a multiple of 5",
        ),
        ("data.local_size=3", r"data.local_size \(3\) is not a multiple of model.patch_size \(4\); set it to 4,"),
    ],
)
def test_bad_values_are_one_line_and_leave_no_files(tmp_path, capsys, override, message) -> None:
    assert main(["pretrain", "--out", str(tmp_path / "run"), *_sets(override)]) == 2
    assert re.search(message, _one_line(capsys))
    assert not (tmp_path / "run").exists()


def test_subset_one_means_every_image_and_per_class_is_a_count() -> None:
    from attmask.config import load_config
    from attmask.engine.data import build_pretraining_data

    everything, _, _ = build_pretraining_data(load_config(None, [*TINY, "data.subset=1.0"]).data, "ibot")
    assert len(everything) == 1500  # scikit-learn digits' training split, not one image per class
    two, _, _ = build_pretraining_data(load_config(None, [*TINY, "data.per_class=2"]).data, "ibot")
    assert len(two) == 20


def test_local_crops_that_patches_do_not_tile_are_fine_without_local_crops(tmp_path, capsys) -> None:
    """MAE uses only global crops, and iBOT with ``num_local=0`` none: data.local_size is not checked."""
    for name, extra in (("mae", [*TINY_MAE]), ("no_local", ["data.num_local=0"])):
        run = [
            "pretrain",
            "--out",
            str(tmp_path / name),
            *_sets(*extra, "data.local_size=10", "train.max_steps_per_epoch=1"),
        ]
        assert main(run) == 0, capsys.readouterr().err


def test_zero_heads_is_refused(tmp_path, capsys) -> None:
    assert main(["pretrain", "--out", str(tmp_path / "run"), *_sets()]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tmp_path / "run"),
                "--out",
                str(tmp_path / "b.safetensors"),
                "--num-heads",
                "0",
            ]
        )
        == 2
    )
    assert "--num-heads must be >= 1" in _one_line(capsys)


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch) -> None:
    path = save_atomic({"value": torch.ones(1)}, tmp_path / "checkpoint.pth")
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="no space left on the device .* the previous checkpoint.pth is intact") as error:
        save_atomic({"value": torch.zeros(1)}, path)
    assert error.value.errno == errno.ENOSPC and "\n" not in str(error.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def test_sixteen_bit_and_float_gray_images_are_scaled_not_clipped(tmp_path) -> None:
    ramp = np.linspace(0, 65535, 256 * 16).astype(np.uint16).reshape(16, 256)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    pixels = np.asarray(load_image(tmp_path / "ramp16.png"))
    assert pixels.shape == (16, 256, 3) and pixels.min() == 0 and pixels.max() == 255
    assert abs(pixels.mean() - 127.5) < 1.0  # convert("RGB") alone gives 98% white
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F").save(tmp_path / "f.tiff")
    floats = np.asarray(load_image(tmp_path / "f.tiff"))
    assert floats.max() == 255 and abs(floats.mean() - 127.5) < 2


def test_files_get_the_umask_mode(tmp_path) -> None:
    previous = os.umask(0o022)
    try:
        path = save_atomic({"value": torch.ones(1)}, tmp_path / "checkpoint.pth")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_nonfinite_weights_are_refused_by_eval_and_export(tmp_path, capsys) -> None:
    assert main(["pretrain", "--out", str(tmp_path / "run"), *_sets()]) == 0
    capsys.readouterr()
    state = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    state["method"]["teacher.backbone.norm.weight"][0] = float("nan")
    torch.save(state, tmp_path / "run" / "checkpoint.pth")
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "b.safetensors")]) == 2
    assert "NaN/inf weights" in _one_line(capsys) and not (tmp_path / "b.safetensors").exists()
    assert main(["eval", "knn", "--checkpoint", str(tmp_path / "run"), "--data", "digits"]) == 2
    assert "NaN/inf weights" in _one_line(capsys)


#: 64 bytes that are neither a zip archive nor a pickle (which would start with b"\x80").
GARBAGE = b"x" + random.Random(0).randbytes(63)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (GARBAGE, "is not a PyTorch checkpoint"), (b"PK\x03\x04" + b"\0" * 60, "truncated")],
    ids=[
        "empty",
        "garbage",
        "truncated-zip",
    ],  # fixed names and bytes: every run (and xdist worker) collects the same tests
)
def test_bad_checkpoint_files_say_what_they_are(tmp_path, capsys, content, message) -> None:
    (tmp_path / "bad.pth").write_bytes(content)
    assert main(["export", "--checkpoint", str(tmp_path / "bad.pth"), "--out", str(tmp_path / "b.safetensors")]) == 2
    line = _one_line(capsys)
    assert message in line and "weights_only=False" not in line


def test_nan_before_the_first_checkpoint_says_none_was_written(tmp_path, capsys) -> None:
    code = main(
        [
            "pretrain",
            "--out",
            str(tmp_path / "run"),
            *_sets("optim.lr=1e30", "optim.warmup_epochs=0", "train.precision=fp32"),
        ]
    )
    if code == 0:
        pytest.skip("lr 1e30 did not diverge here")
    assert "no checkpoint was written yet" in _one_line(capsys)


def test_a_cut_off_log_line_is_skipped_when_read_and_repaired_on_resume(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), *_sets()]) == 0
    complete = read_log(run)
    with (run / "log.jsonl").open("a") as stream:
        stream.write('{"epoch": 0, "step": 9, "loss": 1.')
    assert read_log(run) == complete, "a line being written (or cut off) is not a record yet"
    assert main(["report", str(run), "--no-figures"]) == 0  # beside a running or killed run
    capsys.readouterr()
    assert main(["pretrain", "--out", str(run), *_sets("optim.epochs=2")]) == 2  # a longer schedule: refused
    assert "optim.epochs 1 -> 2" in _one_line(capsys)
    assert main(["pretrain", "--out", str(run), *_sets("optim.epochs=2"), "--allow-config-change"]) == 0
    rows = read_log(run)  # parses again
    resumed = next(r for r in rows if "resumed_from" in r)
    assert any("partial last line" in note for note in resumed["repairs"])
    assert resumed["config_changed"] == "optim.epochs 1 -> 2"
    assert (run / "log.jsonl").read_text().endswith("\n") and '"loss": 1.\n' not in (run / "log.jsonl").read_text()
    assert "epochs: 2" in (run / "config.yaml").read_text()


def test_a_damaged_log_line_before_the_last_is_named_when_read(tmp_path) -> None:
    (tmp_path / "log.jsonl").write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"log.jsonl line 2 is not valid JSON .*delete or repair that line"):
        read_log(tmp_path)
    (tmp_path / "log.jsonl").write_text('{"step": 1}\n{"step": 2, "lo\n')  # ended by its newline: damage
    with pytest.raises(ValueError, match=r"line 2 is not valid JSON"):
        read_log(tmp_path)


def test_the_trainer_refuses_crops_the_patches_do_not_tile_before_building(tmp_path) -> None:
    """The library path (no CLI) checks too, before the loader, the model or the folder exist."""
    from attmask.config import ConfigError, load_config
    from attmask.engine.trainer import Trainer

    with pytest.raises(ConfigError, match=r"data.local_size \(10\) is not a multiple of model.patch_size \(4\)"):
        Trainer(load_config(None, [*TINY, "data.local_size=10"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
