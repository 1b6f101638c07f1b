"""The source checkout's files: finding a file, listing presets for --help."""

from __future__ import annotations

from pathlib import Path

import pytest

from attmask.core.repository import REPOSITORY, find_file, portable_path, preset_names


def test_repository_holds_the_experiment_presets() -> None:
    assert (REPOSITORY / "configs" / "experiments" / "masking_cpu_v2.yaml").is_file()


def test_find_file_prefers_the_working_folder_then_folders_then_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = Path("configs/experiments/masking_cpu.yaml")
    assert find_file(name) == REPOSITORY / name
    beside = tmp_path / "beside"
    (beside / name.parent).mkdir(parents=True)
    (beside / name).write_text("{}")
    assert find_file(name, beside) == beside / name
    name.parent.mkdir(parents=True)
    name.write_text("{}")
    assert find_file(name, beside) == name
    assert find_file("configs/no_such_file.yaml", beside) is None


def test_preset_names_merge_working_folder_and_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = preset_names("configs/experiments", "masking_")
    assert {"cpu", "cpu_v2", "gpu", "gpu_short"} <= set(shipped)
    (tmp_path / "configs" / "experiments").mkdir(parents=True)
    (tmp_path / "configs" / "experiments" / "masking_mine.yaml").write_text("{}")
    (tmp_path / "configs" / "experiments" / "other_x.yaml").write_text("{}")
    names = preset_names("configs/experiments", "masking_")
    assert names == sorted({*shipped, "mine"})


def test_portable_path_is_relative_inside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """results.json records the preset so that another clone finds it: not /work/main/configs/..."""
    monkeypatch.chdir(tmp_path)
    preset = REPOSITORY / "configs" / "fashion_mnist_ibot_attmask_small.yaml"
    assert portable_path(preset) == "configs/fashion_mnist_ibot_attmask_small.yaml"
    outside = tmp_path / "mine.yaml"
    assert portable_path(outside) == str(outside)
