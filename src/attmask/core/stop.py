"""A polite stop: SIGTERM asks a training run to finish its step, write a checkpoint and exit,
instead of killing it and losing the steps since the last checkpoint.

SIGTERM is what a scheduler or supervisor sends before it kills (Kubernetes, ``docker stop``,
systemd, SLURM's ``scancel`` and end of time limit, ``kill PID``). While a :class:`StopSignal` is
entered, the signal only sets a flag; the training loop reads it at its next step boundary (see
:meth:`attmask.engine.trainer.Trainer.fit`), saves and raises :class:`TrainingStopped`. A second
SIGTERM while the first is pending kills the process as usual (a stuck step stays killable).

Data-loader workers end on a stop signal from their parent only (:func:`shield_from_stop_signals`
as the loader's ``worker_init_fn``): a signal sent to the whole process group, or to every process
of a job, would otherwise kill them, and PyTorch turns a worker's death into an error raised at any
point of the main process, possibly in the middle of an optimizer step or a checkpoint write. They
cannot simply ignore SIGTERM: the parent ends workers still alive at its exit with SIGTERM and then
waits for them (``multiprocessing``'s exit handler, e.g. after an iterator left unfinished), so a
worker that ignores it makes the parent's exit wait forever.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from types import FrameType, TracebackType

#: The signals that ask for a stop.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM,)


class TrainingStopped(Exception):
    """The run stopped on a signal after writing its checkpoint; running it again resumes it.

    Attributes:
        signum: the signal's number (the CLI exits with ``128 + signum``, as a shell reports a
            process killed by that signal).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @classmethod
    def after(cls, stop: StopSignal, step: int, where: str, checkpoint: object) -> TrainingStopped:
        """The stop after global ``step`` (``where``: e.g. ``epoch 3 of 13``) with ``checkpoint``
        written; ``stop`` did not see the signal itself when another process got it."""
        name = stop.name or "a stop signal on another process"
        return cls(
            f"stopped by {name} after step {step} ({where}); checkpoint written to {checkpoint}: "
            "run the same command again to resume",
            stop.signum or int(STOP_SIGNALS[0]),
        )


class StopSignal:
    """Context manager: while entered, the :data:`STOP_SIGNALS` set :attr:`signum` instead of
    ending the process; the previous handlers come back on exit.

    Handlers can only be installed from the main thread: entered from another thread (a run
    started inside a thread), nothing is installed and the signal keeps its usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived while entered."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM`` (``""`` when none arrived)."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # asked twice: the usual end
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.signum = signum

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for chosen in STOP_SIGNALS:
                self._previous[chosen] = signal.signal(chosen, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for chosen, handler in self._previous.items():
            signal.signal(chosen, handler)  # type: ignore[arg-type]
        self._previous.clear()


def shield_from_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of the data loaders: the worker ends on a stop signal sent by its parent
    process and ignores one sent by anyone else (a signal to the process group, a scheduler's
    signal to every process of a job).

    The sender is known from ``sigwaitinfo``: the stop signals are blocked in the worker and one
    daemon thread waits for them. Where ``sigwaitinfo`` does not exist (macOS, Windows) the worker
    keeps the default (a stop signal ends it, and the run fails with PyTorch's worker error).
    """
    if not hasattr(signal, "sigwaitinfo"):
        return
    parent = multiprocessing.parent_process()  # the creating process, whatever the start method
    parent_pid = parent.pid if parent is not None and parent.pid is not None else os.getppid()
    for chosen in STOP_SIGNALS:  # a forked worker inherits the parent's StopSignal handler
        signal.signal(chosen, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # threads started later inherit the mask
    waiter = threading.Thread(target=_end_on_signal_from, args=(parent_pid,), name="stop-signals", daemon=True)
    waiter.start()


def _end_on_signal_from(parent_pid: int) -> None:
    """Take the blocked stop signals one by one; the first one sent by ``parent_pid`` ends the
    process as the signal's default action does (exit status ``-signum`` to ``multiprocessing``)."""
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_pid == parent_pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [info.si_signo])
            signal.raise_signal(info.si_signo)  # to this thread, where it is unblocked: the default action
