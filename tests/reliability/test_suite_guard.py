"""The suite's own guard (tests/conftest.py ``pytest_sessionfinish``): a child process that outlives
the tests and ignores SIGTERM makes the run fail quickly, named and killed, instead of hanging at
exit (what multiprocessing's exit handler did in CI for 70 minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO_ROOT

LEAKING_TEST = """
import multiprocessing
import signal
import time
from pathlib import Path


def _linger(pid_file):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(pid_file).write_text("ready")
    time.sleep(600)


def test_leaves_a_child_behind(tmp_path):
    child = multiprocessing.Process(target=_linger, args=(str(tmp_path / "ready"),), name="Lingerer")
    child.start()
    Path({pid_out!r}).write_text(str(child.pid))
    while not (tmp_path / "ready").exists():
        time.sleep(0.05)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_lingering_child_fails_the_run_named_and_killed(tmp_path: Path) -> None:
    pid_out = tmp_path / "child.pid"
    test_file = tmp_path / "test_leak.py"
    test_file.write_text(LEAKING_TEST.format(pid_out=str(pid_out)))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider", str(test_file)],
        cwd=REPO_ROOT,
        env={**os.environ, "ATTMASK_TEST_CHILD_GRACE_S": "1", "PYTHONPATH": str(REPO_ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    pid = int(pid_out.read_text())
    assert result.returncode == 1, output
    assert "1 passed" in output  # the test itself passed: the guard alone failed the run
    assert f"child processes still alive after the tests, killed: Lingerer (pid {pid})" in output
    assert not _alive(pid), "the guard must kill the child, not leave it running"
    assert time.monotonic() - started < 100  # no 70-minute hang at exit
