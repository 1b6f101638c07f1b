"""One writer per output folder: a second pretraining or experiment in a folder in use is refused
in one line, naming the holder; the lock dies with its process (kill -9 included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from attmask.cli.main import main
from attmask.core.lock import LOCK_NAME, FolderBusyError, folder_lock
from tests.engine.tiny import TINY

HOLD = """
import sys, time
from attmask.core.lock import folder_lock
with folder_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held(tmp_path):
    """A folder whose lock another process ("attmask experiment") holds; yields ``(folder, that process)``."""
    folder = tmp_path / "out"
    command = [sys.executable, "-c", HOLD, str(folder), "attmask experiment"]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield folder, holder
    finally:
        holder.kill()
        holder.wait()


def test_second_holder_is_refused_with_the_pid_and_a_killed_holder_frees_the_folder(held) -> None:
    folder, holder = held
    with pytest.raises(FolderBusyError, match=rf"out is in use by attmask experiment \(pid {holder.pid}\); wait"):
        with folder_lock(folder, "attmask pretrain"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with folder_lock(folder, "attmask pretrain"):
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()} attmask pretrain"
    with folder_lock(folder, "attmask pretrain"):  # released at the end of the block
        pass


def test_pretrain_and_experiment_refuse_a_folder_in_use(held, tmp_path, capsys) -> None:
    folder, holder = held
    sets = [arg for override in (*TINY, "optim.epochs=1") for arg in ("--set", override)]
    assert main(["pretrain", "--out", str(folder), *sets]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"in use by attmask experiment (pid {holder.pid})" in error
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME], "nothing written into the folder"
    assert main(["experiment", "masking", "--preset", "cpu_v2", "--out", str(folder)]) == 2
    assert f"in use by attmask experiment (pid {holder.pid})" in capsys.readouterr().err
    assert main(["experiment", "masking", "--preset", "cpu_v2", "--out", str(folder), "--status"]) == 0, (
        "--status only reads"
    )
    assert not Path(tmp_path / "out" / "cells").exists()


def test_a_file_system_without_locks_runs_unguarded_with_a_warning(tmp_path, monkeypatch, capsys) -> None:
    import errno
    import fcntl

    def no_locks(stream, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with folder_lock(tmp_path / "out", "attmask pretrain"):
        ran.append(True)
    assert ran == [True]
    assert capsys.readouterr().err.strip() == (
        f"warning: cannot lock {tmp_path / 'out'} (No locks available); a second job there would not be refused"
    )


def test_shared_holders_coexist_and_keep_an_exclusive_one_out(tmp_path) -> None:
    from attmask.core.lock import lock_holder

    folder = tmp_path / "out"
    assert lock_holder(folder / LOCK_NAME) is None, "no lock file yet"
    with folder_lock(folder, "attmask experiment", shared=True):
        with folder_lock(folder, "attmask experiment", shared=True):  # a second lane
            assert lock_holder(folder / LOCK_NAME) == f"{os.getpid()} attmask experiment"
        with pytest.raises(FolderBusyError, match="out is in use by attmask experiment"):
            with folder_lock(folder, "attmask pretrain"):
                pass
    assert lock_holder(folder / LOCK_NAME) is None
    with folder_lock(folder, "attmask pretrain"):
        with pytest.raises(FolderBusyError, match="out is in use by attmask pretrain"):
            with folder_lock(folder, "attmask experiment", shared=True):
                pass


def test_a_lock_held_for_an_instant_does_not_turn_a_job_away(tmp_path, monkeypatch) -> None:
    """``--status`` probes a cell's lock by taking it for an instant; a lane trying then still gets it."""
    import fcntl

    real, calls = fcntl.flock, []

    def busy_once(stream, operation):
        calls.append(operation)
        if len(calls) == 1:
            raise BlockingIOError
        return real(stream, operation)

    monkeypatch.setattr(fcntl, "flock", busy_once)
    with folder_lock(tmp_path / "out", "attmask experiment", shared=True):
        assert calls[:2] == [fcntl.LOCK_SH | fcntl.LOCK_NB] * 2, "refused once, taken on the second try"
