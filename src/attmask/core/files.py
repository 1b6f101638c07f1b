"""Atomic file writes: temporary file in the destination folder, fsync, rename over the target.

A crash at any moment leaves either the previous file or the new one, never a torn file. A
process killed during a write leaves its temporary file behind (``.NAME.*.tmp``);
:func:`remove_stale_temporaries` clears those of a folder when a run starts again.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 minus the process umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _disk_full(error: BaseException) -> bool:
    text = str(error)
    return (
        (isinstance(error, OSError) and error.errno == errno.ENOSPC)
        or "No space left" in text
        or (isinstance(error, RuntimeError) and "inline_container" in text)
    )


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(stream)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets the mode of any other new file (the umask's), not ``mkstemp``'s 0600.

    Raises:
        OSError: the disk is full (one line; ``path`` as it was before, if it existed, is intact).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, _umask_mode())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if _disk_full(error):
            kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
            raise OSError(
                errno.ENOSPC,
                f"no space left on the device while writing {path}; {kept}; free "
                "some space and run the same command again",
            ) from None
        raise
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the half-written ``.*.tmp`` files that killed :func:`write_atomic` calls left in ``folder``.

    Call it only when no other process writes there (a run's start). Returns the removed paths.
    """
    removed = []
    for stale in Path(folder).glob(".*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed
