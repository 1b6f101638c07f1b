"""``attmask pretrain`` end to end, its help, and one-line errors for bad input."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from PIL import Image

from attmask.cli.main import main
from attmask.engine.logging import read_log
from tests.engine.tiny import TINY


def _run(arguments: list[str], tmp_path, capsys) -> tuple[int, str, str]:
    code = main(["pretrain", "--out", str(tmp_path / "run"), *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _sets(*extra: str) -> list[str]:
    return [arg for override in (*TINY, "optim.epochs=1", *extra) for arg in ("--set", override)]


def _image_folder(root, count: int = 12, corrupt: int = 0):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{index}.png")
    for index in range(corrupt):
        (root / "a" / f"broken{index}.png").write_bytes(b"not a png")
    return root


def test_help_documents_every_config_key(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = capsys.readouterr().out
    for key in (
        "optim.lr",
        "masking.strategy",
        "masking.show_max",
        "data.crops",
        "train.precision",
        "loss.teacher_temp",
        "head.out_dim",
        "optim.accumulation_steps",
        "recon.mask_patch_size",
        "lut.weight",
        "optim.betas",
    ):
        assert key in text
    from attmask.methods import METHODS

    for method in METHODS:  # every registered method is named in the description
        assert method in text.split("config keys")[0]
    reference = text.split("config keys")[1]
    for key, values in (
        ("masking.strategy", "attmask_hint"),
        ("data.crops", "small28"),
        ("data.augment_on", "workers, device"),
        ("train.method", "lut_simmim"),
        ("optim.lr", "per 256 images"),
        ("optim.teacher_momentum", "in [0, 1]"),
        ("optim.clip_grad", "gradient norm limit"),
        ("masking.probability", "chance that an image"),
        ("model.stem_channels", "convolutional stem"),
    ):
        lines = reference.split(f"  {key} ", 1)[1].splitlines()[1:]
        notes = " ".join(s.strip() for s in itertools.takewhile(lambda s: s.startswith("      "), lines))
        assert values in notes, (key, notes)  # the indented lines under the key


def test_pretrain_on_an_image_folder_with_a_corrupt_file(tmp_path, capsys) -> None:
    folder = _image_folder(tmp_path / "images", corrupt=1)
    with pytest.warns(UserWarning, match="broken0.png"):
        code, out, err = _run(["--data", str(folder), *_sets("train.max_steps_per_epoch=2")], tmp_path, capsys)
    assert code == 0, err
    assert "finished 1 epochs" in out
    assert (tmp_path / "run" / "checkpoint.pth").is_file()
    epochs = [r for r in read_log(tmp_path / "run") if r.get("epoch_done")]
    assert epochs[-1]["skipped_images"] == 1
    code, again, err = _run(["--data", str(folder), *_sets("train.max_steps_per_epoch=2")], tmp_path, capsys)
    assert code == 0, err
    assert again.startswith(f"{tmp_path / 'run'} had finished already: nothing trained")
    assert again.splitlines()[1:] == out.splitlines()  # the same summary, from the log


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "data set path not found"),
        ("empty", "no images found"),
        ("unknown_key", "unknown config key optim.lrr"),
        ("bad_ratio", "masking.ratio must satisfy 0 <= low <= high <= 1"),
        ("bad_config_file", "config file not found"),
        ("too_big_batch", "lower data.batch_size"),
    ],
)
def test_bad_input_is_one_line_and_builds_nothing(tmp_path, capsys, case: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    arguments = {
        "missing": ["--data", str(tmp_path / "nowhere"), *_sets()],
        "empty": ["--data", str(tmp_path / "empty"), *_sets()],
        "unknown_key": [*_sets("optim.lrr=1")],
        "bad_ratio": [*_sets("masking.ratio=[0.2, 1.5]")],
        "bad_config_file": ["--config", str(tmp_path / "nope.yaml"), *_sets()],
        "too_big_batch": [*_sets("data.batch_size=100000")],
    }[case]
    code, _, err = _run(arguments, tmp_path, capsys)
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


def test_progress_shows_the_loss_from_the_first_step_and_announces_each_knn(tmp_path, capsys) -> None:
    code, _, err = _run(
        _sets(
            "train.progress=true",
            "train.log_every_steps=20",
            "train.knn_every_epochs=1",
            "train.knn_baseline=true",
            "train.knn_train_samples=100",
            "train.knn_test_samples=50",
        ),
        tmp_path,
        capsys,
    )
    assert code == 0
    steps = [r["step"] for r in read_log(tmp_path / "run") if "loss" in r and "epoch_done" not in r]
    assert steps[0] == 1 and "loss=" in err  # the bar shows the loss from the first step, not from step 20
    for prefix in ("knn:", "knn_random_init:"):
        assert f"{prefix} 20-NN of 50 test queries against 100 images" in err


def test_a_closed_reader_ends_the_command_quietly(tmp_path) -> None:
    """``attmask ... | head``: no 'Broken pipe' error line and no traceback, exit code 141."""
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes anything
    status = ["experiment", "masking", "--preset", "cpu_v2", "--out", str(tmp_path / "out"), "--status"]
    command = [sys.executable, "-m", "attmask.cli.main", *status]
    done = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert done.stderr == "" and done.returncode == 141, done.stderr


def test_a_run_of_another_model_names_its_own_config_as_the_way_out(tmp_path, capsys) -> None:
    assert _run(_sets(), tmp_path, capsys)[0] == 0
    code, _, err = _run(_sets("model.depth=1"), tmp_path, capsys)  # the settings of another run
    saved = tmp_path / "run" / "config.yaml"
    assert code == 2 and err.endswith(f"resume it with --config {saved}, or use a new --out folder"), err
    code, out, _ = _run(["--config", str(saved)], tmp_path, capsys)  # the way out works
    assert code == 0 and "had finished already: nothing trained" in out, out
