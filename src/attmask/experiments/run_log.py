"""What a cell's run log says while it trains: how far it got, its recent pace, how long it has been
quiet, and how long it stalled. Read while the run may be writing to it."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attmask.engine.logging import LOG_NAME


def duration_text(seconds: float) -> str:
    """``45 min`` under an hour, ``14 h 05 min`` from one, to the nearest minute: the one way the
    experiment's status lines and reports write a length of time."""
    minutes = round(max(seconds, 0.0) / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


@dataclass(frozen=True)
class Position:
    """How far a cell's pretraining has logged.

    Attributes:
        epoch: the last record's epoch (0-based).
        step: its global step.
        epoch_steps: steps per epoch, from an end-of-epoch record (None before the first one).
        steps_per_second: the training pace over the last :data:`PACE_RECORDS` step records of the
            process that wrote them (training loop only; None with fewer than two).
        age_seconds: seconds since the log was last written (None: not known). A cell shown as
            running whose log has been quiet for long is paused (``kill -STOP``) or stuck; one
            shown as pending or started was stopped that long ago.
    """

    epoch: int
    step: int
    epoch_steps: int | None = None
    steps_per_second: float | None = None
    age_seconds: float | None = None

    def total(self, epochs: int) -> int | None:
        """Steps of ``epochs`` epochs (None: steps per epoch not known yet)."""
        return epochs * self.epoch_steps if self.epoch_steps else None

    def left(self, epochs: int) -> float | None:
        """Fraction of the ``epochs``' steps still to train (None: steps per epoch not known yet)."""
        total = self.total(epochs)
        return None if total is None else max(0.0, 1.0 - self.step / total)

    def text(self, epochs: int) -> str:
        """E.g. ``epoch 3 of 13, step 1500 of 7800 logged 1 min ago; 0.86 steps/s lately, training
        done in about 2 h 01 min``, less what is not known yet (the total before the first epoch
        ends)."""
        total = self.total(epochs)
        text = f"epoch {self.epoch + 1} of {epochs}, step {self.step}{f' of {total}' if total else ''} logged"
        text += f" {_ago(self.age_seconds)}" if self.age_seconds is not None else ""
        if total is None or not self.steps_per_second:
            return text
        to_go = duration_text(max(total - self.step, 0) / self.steps_per_second)
        return f"{text}; {self.steps_per_second:.2f} steps/s lately, training done in about {to_go}"


def _ago(seconds: float) -> str:
    """``under 1 min ago``, ``12 min ago``, ``2 h 05 min ago``."""
    whole_minutes = 60 * (max(seconds, 0.0) // 60)  # an age is not rounded up: 59 s is not 1 min
    return f"{duration_text(whole_minutes)} ago" if whole_minutes else "under 1 min ago"


def json_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` ([] when missing), skipping any line that does not parse: a file
    another process may be appending to, or a line torn by a kill (unlike
    :func:`attmask.engine.logging.read_log`, which reports damage)."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


#: Step records the pace of a cell in progress is measured over (with a log every 50 steps, the
#: last 200 steps): recent enough to follow a change of load, long enough to smooth it.
PACE_RECORDS = 5


def logged_position(run_dir: Path) -> Position | None:
    """The last training record of ``run_dir``'s log, with the steps per epoch, the recent pace and
    the time since the log was last written (its modification time; None: no run folder or nothing
    logged yet).

    Read while the run may be writing: a partial last line is skipped, not an error.
    """
    path = run_dir / LOG_NAME
    age = time.time() - path.stat().st_mtime if path.is_file() else None
    records = [r for r in json_records(path) if "epoch" in r and "step" in r]
    if not records:
        return None
    ends = [r for r in records if r.get("epoch_done")]  # its step is the global step at the epoch's end
    epoch_steps = int(ends[-1]["step"]) // (int(ends[-1]["epoch"]) + 1) if ends else None
    return Position(int(records[-1]["epoch"]), int(records[-1]["step"]), epoch_steps, _pace(records), age)


def _timed_steps(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(global step, training-loop seconds)`` of every step record (the records that carry a
    pace; ``train_seconds`` counts on across resumes from the checkpoint's value)."""
    return [(int(r["step"]), float(r["train_seconds"])) for r in records if "images_per_second" in r]


def _pace(records: list[dict[str, Any]]) -> float | None:
    """Steps per second of the training loop over the last :data:`PACE_RECORDS` step records
    written by one process, its stalls left out (a lane continued after a SIGSTOP would otherwise
    read as slow until its pause leaves the window): an earlier process's records (before a
    resume from a checkpoint) end where the steps or the training seconds go back."""
    timed = _timed_steps(records)
    recent = timed[-1:]
    for step, seconds in reversed(timed[:-1]):
        if len(recent) == PACE_RECORDS or step >= recent[0][0] or seconds >= recent[0][1]:
            break
        recent.insert(0, (step, seconds))
    usual = _usual(_intervals(timed))
    kept = [(steps, seconds) for steps, seconds in _intervals(recent) if seconds <= STALL_FACTOR * steps * usual]
    return sum(steps for steps, _ in kept) / sum(seconds for _, seconds in kept) if kept else None


def _intervals(timed: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """``(steps, seconds)`` between consecutive step records of one process (across a resume,
    where the steps or seconds go back, none)."""
    return [(s1 - s0, t1 - t0) for (s0, t0), (s1, t1) in zip(timed, timed[1:]) if s1 > s0 and t1 > t0]


def _usual(intervals: list[tuple[int, float]]) -> float:
    """The median seconds per step of ``intervals`` (0.0 when there are none)."""
    return statistics.median(seconds / steps for steps, seconds in intervals) if intervals else 0.0


#: A log interval whose seconds per step exceed this many times the median is a stall.
STALL_FACTOR = 3.0


def stalled_seconds(records: list[dict[str, Any]]) -> float:
    """Training-loop seconds a run spent stalled: over each interval between consecutive step
    records whose seconds per step exceed :data:`STALL_FACTOR` times the median interval's, the
    seconds beyond the median pace. A run paused with SIGSTOP for 80 min gives about 80 min; one
    starved by other work on its cores (a test suite) gives the part of that slower than 3x.
    Intervals across a resume (the steps or seconds go back) are left out.

    Measured on the ``cpu_v2`` logs it matched the recorded pauses: 80.8 min for a lane stopped
    80.7 min; 52.1 min for a cell paused 30.1 min and run about 26 min beside a test suite.
    """
    intervals = _intervals(_timed_steps(records))
    usual = _usual(intervals)
    return sum(seconds - steps * usual for steps, seconds in intervals if seconds > STALL_FACTOR * steps * usual)
