"""One writer per output folder: an advisory lock (``fcntl.flock``) on ``<folder>/.lock``; the same
lock on any file (:func:`file_lock`) for finer things, such as one cell of an experiment.

Two processes training into the same folder would overwrite each other's checkpoints and logs.
The kernel drops the lock when its process ends, however it ends (kill -9 included), so a
stopped run never leaves a stale lock that blocks its restart. The file keeps the holder's pid
and kind of job (``"<pid> <what>"``) so the refusal can name it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

#: The lock file's name inside the locked folder.
LOCK_NAME = ".lock"

#: Seconds a busy lock is given before a refusal (longer than a :func:`lock_holder` probe holds it).
PROBE_GRACE = 0.2

#: ``flock`` errors of a file system that has no locks: the job runs without one (and says so).
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class FolderBusyError(OSError):
    """Another process holds the folder's lock (one line: folder, holder's pid, the fix)."""


@contextmanager
def folder_lock(folder: str | Path, what: str, shared: bool = False) -> Iterator[None]:
    """Hold ``folder``'s lock (created with the folder if needed) for the ``with`` block.

    On a file system without locks (some network mounts) the block runs unguarded, with a warning
    on stderr, rather than not at all.

    Args:
        folder: the output folder.
        what: the kind of job holding it, named to a refused second job (e.g. ``"attmask pretrain"``).
        shared: share it with other shared holders (experiments that lock each cell themselves),
            still excluding every exclusive one.

    Raises:
        FolderBusyError: another process holds it; nothing in the folder was touched.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / LOCK_NAME, what, subject=folder, shared=shared):
        yield


@contextmanager
def file_lock(
    path: str | Path, what: str, subject: str | Path | None = None, wait: bool = False, shared: bool = False
) -> Iterator[None]:
    """Hold the lock of the file ``path`` (created if needed; its folder must exist) for the block:
    one file per thing that one process at a time may do (a folder, one cell of an experiment).

    Args:
        path: the lock file.
        what: the kind of job holding it, named to a refused second job.
        subject: what the lock guards, as messages name it (default: ``path``).
        wait: block until the holder ends instead of refusing.
        shared: a shared lock (``LOCK_SH``): several shared holders at once, no exclusive one.

    Raises:
        FolderBusyError: ``wait`` is off and another process holds it.
    """
    path = Path(path)
    with open(path, "a+") as stream:
        if not _try_lock(stream, Path(subject or path), wait, shared):
            yield
            return
        stream.truncate(0)  # a shared lock names its latest holder
        stream.write(f"{os.getpid()} {what}")
        stream.flush()
        try:
            yield
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


def lock_holder(path: str | Path) -> str | None:
    """``"<pid> <what>"`` of the process holding the lock file ``path``, None when nobody does (or
    the file system has no locks). Takes and drops the lock when it is free."""
    if not Path(path).is_file():  # lock files are never removed: no file, no holder
        return None
    with open(path) as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return stream.read().strip() or "another process"
        except OSError:  # no locks on this file system
            return None
        fcntl.flock(stream, fcntl.LOCK_UN)
    return None


def _try_lock(stream: TextIO, subject: Path, wait: bool, shared: bool) -> bool:
    """Lock ``stream``'s file: True when locked, False when the file system has no locks.

    A refusal is confirmed after :data:`PROBE_GRACE` seconds: :func:`lock_holder` (``--status``)
    takes a free lock for an instant, which must not turn a job away.
    """
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    try:
        try:
            fcntl.flock(stream, mode)
        except BlockingIOError:
            time.sleep(PROBE_GRACE)
            fcntl.flock(stream, mode)
    except BlockingIOError:
        stream.seek(0)
        pid, _, holder = stream.read().strip().partition(" ")
        raise FolderBusyError(
            f"{subject} is in use by {holder or 'another process'} (pid {pid or 'unknown'}); wait for it "
            "to end, stop it, or choose another output folder"
        ) from None
    except OSError as error:
        if error.errno not in UNSUPPORTED:
            raise
        print(
            f"warning: cannot lock {subject} ({error.strerror}); a second job there would not be refused",
            file=sys.stderr,
        )
        return False
    return True
