"""One writer per output folder: an advisory lock (``fcntl.flock``) on ``<folder>/.lock``.

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

#: The lock file's name inside the locked folder.
LOCK_NAME = ".lock"

#: ``flock`` errors of a file system that has no locks: the job runs without one (and says so).
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class FolderBusyError(OSError):
    """Another process holds the folder's lock (one line: folder, holder's pid, the fix)."""


@contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock (created with the folder if needed) for the ``with`` block.

    On a file system without locks (some network mounts) the block runs unguarded, with a warning
    on stderr, rather than not at all.

    Args:
        folder: the output folder.
        what: the kind of job holding it, named to a refused second job (e.g. ``"attmask pretrain"``).

    Raises:
        FolderBusyError: another process holds it; nothing in the folder was touched.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+") as stream:
        if not _try_lock(stream, folder):
            yield
            return
        stream.truncate(0)
        stream.write(f"{os.getpid()} {what}")
        stream.flush()
        try:
            yield
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


def _try_lock(stream: TextIO, folder: Path) -> bool:
    """Lock ``stream``'s file: True when locked, False when the file system has no locks."""
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        stream.seek(0)
        pid, _, holder = stream.read().strip().partition(" ")
        raise FolderBusyError(
            f"{folder} is in use by {holder or 'another process'} (pid {pid or 'unknown'}); wait for it "
            "to end, stop it, or choose another output folder"
        ) from None
    except OSError as error:
        if error.errno not in UNSUPPORTED:
            raise
        print(
            f"warning: cannot lock {folder} ({error.strerror}); a second job there would not be refused",
            file=sys.stderr,
        )
        return False
    return True
