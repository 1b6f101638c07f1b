"""SIGTERM asks for a stop instead of ending the process, while a StopSignal is entered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from attmask.core.stop import StopSignal, ignore_stop_signals


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


def test_loader_workers_ignore_sigterm() -> None:
    before = signal.getsignal(signal.SIGTERM)
    try:
        ignore_stop_signals(0)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
