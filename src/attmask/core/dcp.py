"""Sharded checkpoint folders (``torch.distributed.checkpoint``, DCP) on disk: where they are, which
one is finished, and how to read one back whole in a single process, without unpickling code.

An FSDP run (``train.parallel=fsdp``) writes ``checkpoint.dcp/``: DCP's ``.metadata`` and one
``__R_0.distcp`` file per rank, then ``meta.pth`` (progress, config, ...; tensors and plain
containers only), then the marker ``COMPLETE``, last. A new checkpoint is written to
``checkpoint.dcp.partial/`` and swapped in by renames only when its marker is there, so a crash at
any moment leaves a finished folder to resume from; :func:`tidy_sharded` finishes an interrupted
swap and removes a half-written folder.

DCP reads ``.metadata`` with plain ``pickle.load``, which would run code from a malicious file.
:class:`SafeFileSystemReader` reads it with an unpickler that admits only DCP's own metadata
classes, dtypes, sizes and paths (the tensor files DCP already reads with ``weights_only=True``).
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

from attmask.core.checkpoint import CHECKPOINT_NAME, load_checkpoint

SHARDED_NAME = "checkpoint.dcp"
PARTIAL_NAME = "checkpoint.dcp.partial"
OLD_NAME = "checkpoint.dcp.old"
MARKER = "COMPLETE"
META_NAME = "meta.pth"

#: What a DCP ``.metadata`` pickle may name: module -> admitted names (None: any dtype / Size of torch).
_ADMITTED: dict[str, frozenset[str] | None] = {
    "torch.distributed.checkpoint.metadata": frozenset(
        {
            "Metadata",
            "TensorStorageMetadata",
            "TensorProperties",
            "_MEM_FORMAT_ENCODING",
            "ChunkStorageMetadata",
            "BytesStorageMetadata",
            "MetadataIndex",
            "StorageMeta",
        }
    ),
    "torch.distributed.checkpoint.filesystem": frozenset({"_StorageInfo"}),
    "torch.serialization": frozenset({"_get_layout"}),
    "pathlib": frozenset({"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"}),
    "collections": frozenset({"OrderedDict"}),
    "torch": None,
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        admitted = _ADMITTED.get(module, frozenset())
        if admitted is None:  # torch.float32, torch.Size: nothing else of torch
            value = getattr(torch, name, None)
            if isinstance(value, torch.dtype) or value is torch.Size:
                return value
        elif name in admitted:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a DCP checkpoint's metadata")


class SafeFileSystemReader(dcp.FileSystemReader):
    """DCP's file reader, with ``.metadata`` unpickled through an allow-list (no code runs)."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = Path(self.path) / ".metadata"
        try:
            with open(path, "rb") as stream:
                metadata = _MetadataUnpickler(stream).load()
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as error:
            message = f"sharded checkpoint {path.parent} has unreadable metadata ({error}); use another"
            raise ValueError(message) from None
        if not isinstance(metadata, Metadata):
            raise ValueError(f"sharded checkpoint {path.parent} has no DCP metadata in {path.name}; use another")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


@contextlib.contextmanager
def single_process_quiet() -> Iterator[None]:
    """Silence DCP's warning that it saves / loads in one process: that is intended here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def is_finished(folder: Path) -> bool:
    """True for a sharded checkpoint folder whose marker was written (everything else was before it)."""
    return (folder / MARKER).is_file()


def tidy_sharded(run_dir: Path) -> list[str]:
    """Finish a swap that a killed save left (rank 0, before resuming); one note per repair.

    A finished ``.partial`` folder is newer than ``checkpoint.dcp``: it takes its place. An
    unfinished one is removed. ``.old`` is removed once ``checkpoint.dcp`` is finished, and
    becomes it otherwise.
    """
    final, partial, old = run_dir / SHARDED_NAME, run_dir / PARTIAL_NAME, run_dir / OLD_NAME
    notes = []
    if partial.is_dir() and is_finished(partial):
        swap_in(run_dir)
        notes.append(f"finished the swap of {PARTIAL_NAME} into {SHARDED_NAME} (a save was killed before it)")
    elif partial.is_dir():
        shutil.rmtree(partial)
        notes.append(f"removed {PARTIAL_NAME}, a sharded checkpoint whose write was killed")
    if old.is_dir() and not is_finished(final) and is_finished(old):
        if final.is_dir():
            shutil.rmtree(final)
        old.rename(final)
        notes.append(f"restored {SHARDED_NAME} from {OLD_NAME} (a save was killed while swapping)")
    if old.is_dir():
        shutil.rmtree(old)
    return notes


def swap_in(run_dir: Path) -> Path:
    """Make the finished ``.partial`` folder ``checkpoint.dcp`` by renames (rank 0, after its marker)."""
    final, partial, old = run_dir / SHARDED_NAME, run_dir / PARTIAL_NAME, run_dir / OLD_NAME
    if old.is_dir():
        shutil.rmtree(old)
    if final.is_dir():
        final.rename(old)
    partial.rename(final)
    if old.is_dir():
        shutil.rmtree(old)
    return final


def read_sharded(folder: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A finished sharded checkpoint, whole, in this process (no process group needed).

    Returns the single-file checkpoint's dict (:data:`attmask.core.checkpoint.FORMAT`): ``meta.pth``'s
    entries plus ``method`` (full tensors by name) and ``optimizer`` in the name-keyed layout of
    :func:`torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`
    (``optimizer_layout: "names"``).

    Raises:
        FileNotFoundError: no such folder.
        ValueError: the folder is not a finished sharded checkpoint, or unreadable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"sharded checkpoint not found: {folder}")
    if not is_finished(folder):
        raise ValueError(f"{folder} is not a finished sharded checkpoint (no {MARKER} marker); use an earlier one")
    meta = load_checkpoint(folder / META_NAME, map_location=map_location)
    state: dict[str, Any] = {}
    # What torch's dcp_to_torch_save does (dcp.load would only fill keys already in ``state``).
    reader, planner = SafeFileSystemReader(folder), _EmptyStateDictLoadPlanner()
    reader.read_metadata()  # its one-line error here, not wrapped in DCP's CheckpointException
    try:
        with single_process_quiet():
            _load_state_dict(state, storage_reader=reader, planner=planner, no_dist=True)
    except CheckpointException as error:  # e.g. a truncated or missing shard file
        last = str(error).strip().splitlines()[-1]
        raise ValueError(
            f"cannot read sharded checkpoint {folder}: a shard file is damaged or missing ({last}); use an earlier one"
        ) from None
    tensors = {k: v.to(map_location) if isinstance(v, torch.Tensor) else v for k, v in state["method"].items()}
    return {**meta, "method": tensors, "optimizer": state["optimizer"], "optimizer_layout": "names"}


def remove_sharded(run_dir: Path) -> None:
    """Delete every sharded checkpoint folder of ``run_dir`` (after a single-file checkpoint replaced them)."""
    for name in (SHARDED_NAME, PARTIAL_NAME, OLD_NAME):
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The run's checkpoint to resume or evaluate: ``checkpoint.pth`` or a finished ``checkpoint.dcp``
    (the newer of the two when a run switched ``train.parallel``), or None."""
    candidates = [run_dir / CHECKPOINT_NAME] if (run_dir / CHECKPOINT_NAME).is_file() else []
    if is_finished(run_dir / SHARDED_NAME):
        candidates.append(run_dir / SHARDED_NAME)
    if not candidates:
        return None
    return max(candidates, key=lambda path: (path / MARKER if path.is_dir() else path).stat().st_mtime_ns)


def sharded_source(path: str | Path) -> Path | None:
    """The finished sharded checkpoint that ``path`` names (the folder itself, or a run folder whose
    newest checkpoint is sharded), else None."""
    path = Path(path)
    if not path.is_dir():
        return None
    if is_finished(path):
        return path
    latest = latest_checkpoint(path)
    return latest if latest is not None and latest.is_dir() else None
