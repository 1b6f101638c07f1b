"""A polite stop: SIGTERM asks a training run to finish its step, write a checkpoint and exit,
instead of killing it and losing the steps since the last checkpoint.

SIGTERM is what a scheduler or supervisor sends before it kills (Kubernetes, ``docker stop``,
systemd, SLURM's ``scancel`` and end of time limit, ``kill PID``). While a :class:`StopSignal` is
entered, the signal only sets a flag; the training loop reads it at its next step boundary (see
:meth:`attmask.engine.trainer.Trainer.fit`), saves and raises :class:`TrainingStopped`. A second
SIGTERM while the first is pending kills the process as usual (a stuck step stays killable).

Data-loader workers ignore SIGTERM (:func:`ignore_stop_signals` as the loader's
``worker_init_fn``): a signal sent to the whole process group would otherwise kill them, and
PyTorch turns a worker's death into an error raised at any point of the main process, possibly in
the middle of an optimizer step. The main process ends its workers when it exits.
"""

from __future__ import annotations

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


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of the data loaders: a worker ignores the stop signals (its parent stops
    it when it ends)."""
    for chosen in STOP_SIGNALS:
        signal.signal(chosen, signal.SIG_IGN)
