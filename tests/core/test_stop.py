"""SIGTERM asks for a stop instead of ending the process, while a StopSignal is entered."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from attmask.core.stop import StopSignal, shield_from_stop_signals


def test_sigterm_sets_the_flag_and_the_previous_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        assert not stop.requested and stop.name == ""
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM and stop.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before, seen = signal.getsignal(signal.SIGTERM), []

    def enter() -> None:
        with StopSignal():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_second_sigterm_ends_the_process() -> None:
    code = (
        "import os, signal\n"
        "from attmask.core.stop import StopSignal\n"
        "with StopSignal() as stop:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    print('asked', stop.requested, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    print('still alive', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGTERM and done.stdout == "asked True\n", (done.stdout, done.stderr)


#: A loader with one worker: SIGTERM from another process (``kill``) leaves the worker serving;
#: the script then exits with its iterator unfinished, which multiprocessing's exit handler ends
#: with SIGTERM from the parent and waits for (a worker ignoring SIGTERM made this wait forever).
WORKER_SCRIPT = """
import multiprocessing, signal, subprocess, time
import torch
from torch.utils.data import DataLoader, TensorDataset
from attmask.core.stop import shield_from_stop_signals

loader = DataLoader(TensorDataset(torch.arange(64.0)), batch_size=2, num_workers=1,
                    worker_init_fn=shield_from_stop_signals)
batches = iter(loader)
next(batches)
[worker] = multiprocessing.active_children()
subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)
time.sleep(1)
print("alive after kill:", worker.is_alive(), "next batch:", int(next(batches)[0][0]), flush=True)
"""


def test_loader_workers_end_on_their_parents_sigterm_only() -> None:
    if not hasattr(signal, "sigwaitinfo"):
        pytest.skip("no sigwaitinfo on this platform: workers keep the default SIGTERM")
    done = subprocess.run([sys.executable, "-c", WORKER_SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "alive after kill: True next batch: 2\n", done.stderr


def test_a_worker_shielded_from_stop_signals_is_ended_by_its_parent() -> None:
    if not hasattr(signal, "sigwaitinfo"):
        pytest.skip("no sigwaitinfo on this platform")
    context = multiprocessing.get_context("spawn")
    shielded = context.Event()
    worker = context.Process(target=_shielded_sleep, args=(shielded,), daemon=True)
    worker.start()
    assert shielded.wait(timeout=120)
    worker.terminate()
    worker.join(timeout=30)
    if worker.exitcode is None:
        worker.kill()
    assert worker.exitcode == -signal.SIGTERM


def _shielded_sleep(shielded) -> None:
    shield_from_stop_signals(0)
    shielded.set()
    time.sleep(120)
