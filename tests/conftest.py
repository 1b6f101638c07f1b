"""Shared fixtures: golden values from ../shared/reference (required in CI)."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("ATTMASK_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
#: Seconds child processes get to end after the last test before they fail the run.
CHILD_GRACE_SECONDS = float(os.environ.get("ATTMASK_TEST_CHILD_GRACE_S", "30"))


def load_reference(name: str) -> dict[str, np.ndarray]:
    """Load a reference ``.npz``; fail in CI when it is missing, skip elsewhere."""
    path = REFERENCE_DIR / name
    if not path.is_file():
        message = f"reference file {path} is missing"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run with ../shared/reference beside the repository")
        pytest.skip(f"{message}; set ATTMASK_REFERENCE_DIR to run the parity tests")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def reference_json(arrays: dict[str, np.ndarray], key: str) -> object:
    """Decode a JSON string stored as a 0-d unicode array."""
    return json.loads(str(arrays[key]))


@pytest.fixture
def reference():
    return load_reference


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for tests of tiny tensors (far faster on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    """A free TCP port on localhost for a gloo rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run, instead of hanging at exit, when child processes outlive the tests.

    ``multiprocessing`` ends live children at interpreter exit (SIGTERM, then an unbounded wait):
    one that does not end, such as a data-loader worker ignoring SIGTERM, kept pytest from ever
    exiting after printing its summary. Unfinished loader iterators are collected first (their
    workers then end normally); what is still alive after ``CHILD_GRACE_SECONDS`` (30 s, or
    ``ATTMASK_TEST_CHILD_GRACE_S``) is named, killed and fails the run.
    """
    gc.collect()
    deadline = time.monotonic() + CHILD_GRACE_SECONDS
    children = multiprocessing.active_children()
    survivors = [child for child in children if not _ended(child, timeout=max(0.0, deadline - time.monotonic()))]
    if not survivors:
        return
    names = ", ".join(f"{child.name} (pid {child.pid})" for child in survivors)
    print(f"\nchild processes still alive after the tests, killed: {names}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # PyTorch's handler would raise on a killed loader worker
    for child in survivors:
        child.kill()
        child.join()


def _ended(child: multiprocessing.process.BaseProcess, timeout: float) -> bool:
    child.join(timeout=timeout)
    return not child.is_alive()
