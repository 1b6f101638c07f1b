"""Where a result was measured: the processor's name reaches every device string."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch

from attmask.core import environment
from attmask.core.environment import cpu_model, device_name, running_commit


def test_cpu_model_reads_the_model_name_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n")
    assert cpu_model(info) == "AMD EPYC 7B13"


def test_cpu_model_falls_back_without_a_model_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: \n")
    fallback = platform.processor() or platform.machine()
    assert cpu_model(info) == fallback
    assert cpu_model(tmp_path / "missing") == fallback


def test_device_name_on_cpu_names_processor_cores_and_threads() -> None:
    name = device_name(torch.device("cpu"))
    assert name.startswith(f"cpu ({cpu_model()}, ")
    assert f"{torch.get_num_threads()} thread" in name
    assert device_name(torch.device("cpu"), threads=1).endswith(", 1 thread)")
    assert device_name(torch.device("cpu"), threads=3).endswith(", 3 threads)"), "the threads a run will use"


def test_running_commit_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lane started at one commit writes its cells hours later, after HEAD moved on: they must
    name the commit it started at."""
    answers = iter(["1b374fa", "949c315"])
    monkeypatch.setattr(environment, "git_commit", lambda: next(answers))
    running_commit.cache_clear()
    try:
        assert running_commit() == "1b374fa"
        assert running_commit() == "1b374fa"  # HEAD moved on: still the code this process runs
    finally:
        running_commit.cache_clear()
