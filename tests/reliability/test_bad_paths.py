"""A path that names a file where a folder is needed (or the reverse) is one line naming the path and the fix."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from attmask.cli.main import file_error, main
from tests.engine.tiny import TINY


def _sets() -> list[str]:
    return [arg for override in (*TINY, "optim.epochs=1") for arg in ("--set", override)]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("attmask ")]
    assert len(lines) == 1 and "Traceback" not in err and "Errno" not in err, err
    return lines[0]


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("kept\n")
    return path


def test_pretrain_out_that_is_a_file(tmp_path, capsys) -> None:
    path = _file(tmp_path)
    assert main(["pretrain", "--out", str(path), *_sets()]) == 2
    assert _one_line(capsys) == (
        f"attmask pretrain: error: {path} is a file where a folder is needed; pass a folder path or move the file away"
    )
    assert path.read_text() == "kept\n"


def test_pretrain_out_below_a_file(tmp_path, capsys) -> None:
    path = _file(tmp_path)
    assert main(["pretrain", "--out", str(path / "run"), *_sets()]) == 2
    line = _one_line(capsys)
    assert str(path) in line and "is a file, not a folder; pass another path" in line, line


def test_experiment_status_on_a_file_is_refused_not_all_pending(tmp_path, capsys) -> None:
    path = _file(tmp_path)
    assert main(["experiment", "masking", "--preset", "cpu_v2", "--out", str(path), "--status"]) == 2
    line = _one_line(capsys)
    assert f"--out {path} is a file; pass the experiment's folder" in line, line
    assert "pending" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        (FileExistsError, "FILE", "{} is a file where a folder is needed; pass a folder path"),
        (FileExistsError, "DIR", "{} exists already; pass another path or remove it"),
        (NotADirectoryError, "FILE/x", "{}: a part of this path is a file, not a folder"),
        (IsADirectoryError, "DIR", "{} is a folder where a file is needed; pass a file path"),
        (PermissionError, "DIR", "permission denied on {}; pass a path you may read and write"),
    ],
)
def test_file_error_names_the_path_and_the_fix(tmp_path, kind: type[OSError], name: str, expected: str) -> None:
    (tmp_path / "FILE").write_text("")
    (tmp_path / "DIR").mkdir()
    path = str(tmp_path / name)
    message = file_error(kind(errno.EPERM, "Python's text", path))
    assert message is not None and message.startswith(expected.format(path)), message


def test_other_os_errors_keep_their_text() -> None:
    assert file_error(OSError(errno.ENOSPC, "No space left on device", "/x")) is None
    assert file_error(FileNotFoundError("no filename")) is None
