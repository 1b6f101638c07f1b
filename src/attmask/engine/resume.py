"""Resuming a run safely: what may change between the first run and the resumed one, and the
housekeeping of a run folder that a killed process left behind.

* Settings that change the trajectory (lr, seed, masking, batch size, schedules, model, ...) must
  be those the checkpoint was trained with: :func:`changed_settings` names the keys that differ,
  and the trainer refuses them unless the user allows the change (``--allow-config-change``), in
  which case ``config.yaml`` is rewritten and the change is logged.
* Monitoring, logging and machine settings (:data:`FREE_KEYS`) may change freely.
* A killed write leaves ``.*.tmp`` files (removed), a partial last line in ``log.jsonl``
  (dropped), and rows of steps that are trained again after the resume (dropped, so every step
  is logged once).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attmask.config import ConfigError, drop_removed_keys
from attmask.core.checkpoint import FORMAT, load_checkpoint
from attmask.core.dcp import META_NAME
from attmask.core.files import remove_stale_temporaries, write_atomic
from attmask.core.typed_yaml import flatten
from attmask.engine.logging import LOG_NAME, read_log


@dataclass
class Progress:
    """Position in the run: ``step`` optimizer steps done in ``epoch``; ``global_step`` overall;
    ``train_seconds`` of wall time spent in the training loop (monitors excluded), over resumes."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    train_seconds: float = 0.0


class TrainingError(ValueError):
    """Training cannot go on (diverged loss, data smaller than a batch, a resume with other settings, ...)."""


#: Keys that change neither what is trained nor what is measured: where and how the run computes,
#: how often it saves, logs and draws. A stored experiment cell stays valid when only these differ.
MACHINE_KEYS = frozenset(
    {
        "train.progress",
        "train.log_every_steps",
        "train.figures_every_epochs",
        "train.figure_images",
        "train.num_threads",
        "train.save_every_steps",
        "train.keep_every_epochs",
        "train.device",
        "data.num_workers",
        "data.data_dir",
        "data.max_image_pixels",
        "train.loggers",
        "train.activation_checkpointing",  # same numbers, less memory: e.g. after running out of it
        "train.parallel",  # same numbers, sharded or not (the checkpoint is read either way)
    }
)

#: Keys of the k-NN monitor: they change what is measured during training, not what is trained.
MONITOR_KEYS = frozenset(
    {"train.knn_every_epochs", "train.knn_k", "train.knn_train_samples", "train.knn_test_samples", "train.knn_baseline"}
)

#: Keys whose change does not change what is trained (where, how often it is monitored or logged).
FREE_KEYS = MACHINE_KEYS | MONITOR_KEYS


def changed_settings(saved: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, requested value)}`` for every trajectory-changing key that differs.

    Keys absent from ``saved`` (added to the config after the checkpoint was written) count as
    unchanged when the requested value is the default the old run implicitly had.
    """
    old, new = flatten(saved), flatten(wanted)
    return {
        key: (old.get(key), value)
        for key, value in new.items()
        if key in old and old[key] != value and key not in FREE_KEYS
    }


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """``optim.lr 0.0005 -> 0.001, train.seed 0 -> 1``."""
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())


def read_resumable(path: Path, device: torch.device, wanted: dict[str, Any], allow_change: bool) -> tuple[dict, str]:
    """The checkpoint at ``path`` and its described setting changes (``""`` if none). For a sharded
    checkpoint folder, its ``meta.pth`` (the weights are read by :func:`attmask.engine.run_checkpoint.restore`).

    The saved config loses its removed keys (:func:`~attmask.config.drop_removed_keys`): set to
    their old default, they are dropped; set otherwise, the checkpoint cannot be resumed.

    Raises:
        TrainingError: not a pretraining checkpoint, a removed setting on, or trajectory-changing
            settings differ and ``allow_change`` is False (naming the keys and the ways out).
        ValueError: another architecture or method (:func:`check_compatible`), unreadable file.
    """
    state = load_checkpoint(path / META_NAME if path.is_dir() else path, map_location=device)  # sharded: meta only
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainingError(f"{path} is not an attmask pretraining checkpoint; use a new --out folder")
    try:
        state["config"] = drop_removed_keys(state["config"])
    except ConfigError as error:
        raise TrainingError(f"{path} cannot be resumed: {error}; use a new --out folder") from None
    check_compatible(state["config"], wanted, path)
    changes = describe_changes(changed_settings(state["config"], wanted))
    if changes and not allow_change:
        raise TrainingError(
            f"{path} was trained with other settings ({changes}); resume with --config "
            f"{path.parent / 'config.yaml'}, use a new --out folder, or pass --allow-config-change "
            "to go on with the new settings"
        )
    return state, changes


def resume_record(state: dict, path: Path, notes: list[str], changes: str, world_size: int) -> dict[str, Any]:
    """The log row of a resume: repairs made, rows of re-run steps dropped, settings and world size changed
    (the latter also printed as a warning)."""
    record: dict[str, Any] = {
        "resumed_from": str(path),
        "repairs": notes,
        "dropped_rows": drop_rows_after(path.parent, state["progress"]["global_step"]),
    }
    if changes:
        record["config_changed"] = changes
    trained_with = state.get("world_size", world_size)
    if trained_with != world_size:
        record["world_size_changed"] = (
            f"resumed with {world_size} processes, trained with {trained_with}: the "
            "global batch and the data order change from here on"
        )
        print(f"warning: {record['world_size_changed']}", file=sys.stderr)
    return record


def tidy_run_dir(run_dir: Path) -> list[str]:
    """Remove stale temporary files and a partial last log line; one note per repair."""
    notes = [f"removed {path.name}, left by a write that was killed" for path in remove_stale_temporaries(run_dir)]
    log = run_dir / LOG_NAME
    if log.is_file():
        data = log.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data[: data.rfind(b"\n") + 1]
            write_atomic(log, lambda stream: stream.write(keep))
            notes.append(
                f"dropped a partial last line of {len(data) - len(keep)} bytes from {log.name} (its write was cut off)"
            )
    return notes


def epoch_logged(run_dir: Path, epoch: int) -> bool:
    """Whether the run's log holds the end-of-epoch record of ``epoch`` (0-based)."""
    return any(r.get("epoch_done") and r.get("epoch") == epoch for r in read_log(run_dir))


def logged_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary a finished run's :meth:`~attmask.engine.trainer.Trainer.fit` returned: its last
    end-of-epoch record updated with its end-of-training record (``train_done``); None when the
    log has no end-of-training record (the run is unfinished, or was killed while its last
    monitors ran)."""
    records = read_log(run_dir)
    ended = [r for r in records if r.get("train_done")]
    if not ended:
        return None
    epochs = [r for r in records if r.get("epoch_done")]
    return {**(epochs[-1] if epochs else {}), **ended[-1]}


def drop_rows_after(run_dir: Path, global_step: int) -> int:
    """Remove the log rows of steps after ``global_step`` (trained again after a resume); returns how many."""
    log = run_dir / LOG_NAME
    if not log.is_file():
        return 0
    lines = log.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= global_step]
    if len(kept) != len(lines):
        write_atomic(log, lambda stream: stream.write("".join(kept).encode()))
    return len(lines) - len(kept)


def nonfinite_message(run_dir: Path, epoch: int, step: int, checkpoint_written: bool) -> str:
    """Why training stops after a NaN/inf loss, and which checkpoint to trust (from the logged weight norms)."""
    where = f"loss became NaN/inf before epoch {epoch} step {step}"
    advice = "Lower optim.lr, raise optim.warmup_epochs or use train.precision=fp32"
    if not checkpoint_written:
        return f"{where}; no checkpoint was written yet, so there is nothing to resume from. {advice}"
    try:
        rows = read_log(run_dir)
    except ValueError:  # a damaged log: say only what is certain
        rows = []
    saves = [r for r in rows if "checkpoint_weight_norm" in r]
    first = next((r["weight_norm"] for r in rows if "weight_norm" in r), None)
    if not saves or not first:
        return f"{where}; the last checkpoint in {run_dir} is intact. {advice}"
    last = saves[-1]
    ratio = last["checkpoint_weight_norm"] / first
    state = "sane" if ratio < 10 else "already exploding: do not resume from it"
    return (
        f"{where}; the last checkpoint in {run_dir} (step {last['step']}) has weight norm "
        f"{last['checkpoint_weight_norm']:.4g}, {ratio:.2f}x the first logged ({first:.4g}): {state}. {advice}"
    )


def ways_out(path: Path) -> str:
    """What to do about a checkpoint that the requested model cannot continue: the run's own
    settings (``config.yaml`` next to it) resume it; a new folder starts another run."""
    return f"resume it with --config {path.parent / 'config.yaml'}, or use a new --out folder"


def check_compatible(saved_config: dict, config: dict, path: Path) -> None:
    """Refuse to resume a run whose model differs from the requested one."""
    for section in ("model", "head"):
        saved, wanted = saved_config.get(section, {}), config.get(section, {})
        changed = sorted(k for k in wanted if saved.get(k) != wanted.get(k) and k != "drop_path_rate")
        if changed:
            key = changed[0]
            raise ValueError(
                f"{path} holds a checkpoint of another architecture ({section}.{key}: "
                f"{saved.get(key)!r} vs {wanted.get(key)!r}); {ways_out(path)}"
            )
    for section, keys in (
        ("recon", ("decoder_dim", "decoder_depth", "decoder_heads")),
        ("lut", ("hidden_dim", "out_dim")),
    ):
        saved, wanted = saved_config.get(section), config.get(section, {})
        changed = [k for k in keys if saved is not None and saved.get(k) != wanted.get(k)]
        if changed:
            raise ValueError(
                f"{path} holds a checkpoint with {section}.{changed[0]}={saved.get(changed[0])!r}, "
                f"not {wanted.get(changed[0])!r}; {ways_out(path)}"
            )
    if saved_config.get("train", {}).get("method") != config.get("train", {}).get("method"):
        raise ValueError(f"{path} holds a checkpoint of method {saved_config['train']['method']!r}; {ways_out(path)}")
