"""`--status` of a long ablation and the results it reads: how far a cell in progress has logged, which
stored cells belong to the experiment."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from attmask.cli.main import main
from attmask.experiments import ExperimentConfig, plan_cells
from attmask.experiments.plan import Cell
from attmask.experiments.progress import InitCell, read_finished
from attmask.experiments.report import stalled_text
from attmask.experiments.run_log import Position, duration_text, logged_position, stalled_seconds
from tests.experiments.test_masking_experiment import _experiment_file


def _write_log(run_dir: Path, records: list[dict], tail: str = "", age: float = 0.0) -> None:
    """Write the log, last modified ``age`` seconds ago."""
    run_dir.mkdir(parents=True)
    path = run_dir / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    os.utime(path, (time.time() - age,) * 2)


def test_logged_position_is_the_last_training_record(tmp_path: Path) -> None:
    assert logged_position(tmp_path / "missing") is None
    records = [
        {"epoch": 0, "step": 50, "loss": 3.0},
        {"epoch": 1, "step": 650, "loss": 2.5},
        {"step": 650, "checkpoint_weight_norm": 60.0},  # not a training record: no epoch
    ]
    _write_log(tmp_path / "run", records, tail='{"epoch": 1, "step": 7', age=5)  # the run is writing a line
    position = logged_position(tmp_path / "run")
    assert (position.epoch, position.step, position.epoch_steps, position.steps_per_second) == (1, 650, None, None)
    assert 5 <= position.age_seconds < 60
    assert position.text(13) == "epoch 2 of 13, step 650 logged under 1 min ago"
    _write_log(tmp_path / "empty", [])
    assert logged_position(tmp_path / "empty") is None


def _rewrite(run_dir: Path, records: list[dict]) -> Path:
    (run_dir / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def _step(epoch: int, step: int, seconds: float) -> dict:
    return {"epoch": epoch, "step": step, "loss": 1.0, "images_per_second": 64.0, "train_seconds": seconds}


def test_position_knows_the_total_and_the_recent_pace(tmp_path: Path) -> None:
    records = [_step(0, 50, 100.0), _step(0, 100, 200.0), _step(1, 150, 300.0)]  # a process, stopped
    records += [_step(0, 100, 140.0)]  # the next one, resumed from a checkpoint at step 50 (90 s)
    records += [{"epoch": 0, "step": 100, "epoch_done": True, "train_seconds": 140.0}]
    records += [_step(1, 150, 190.0), _step(1, 200, 240.0), _step(1, 250, 340.0)]
    _write_log(tmp_path / "run", records, age=2 * 3600 + 5 * 60 + 1)  # paused or stuck for 2 h 05 min
    position = logged_position(tmp_path / "run")
    assert (position.epoch, position.step, position.epoch_steps) == (1, 250, 100)
    # the resumed process's 4 step records: steps 100-250 in 200 s (the stopped process's are left out)
    assert position.steps_per_second == pytest.approx(150 / 200)
    assert position.left(epochs=4) == pytest.approx(1 - 250 / 400)
    assert position.text(4) == (
        "epoch 2 of 4, step 250 of 400 logged 2 h 05 min ago; 0.75 steps/s lately, training done in about 3 min"
    )
    assert Position(1, 250, age_seconds=12 * 60 + 59).text(4) == "epoch 2 of 4, step 250 logged 12 min ago"
    paused = [*records, _step(1, 300, 340.0 + 50 + 1200)]  # continued after 20 min stopped
    assert logged_position(_rewrite(tmp_path / "run", paused)).steps_per_second == pytest.approx(150 / 200), (
        "the interval holding the pause is left out of the pace: steps 100-250 in 200 s"
    )
    assert Position(0, 40).text(4) == "epoch 1 of 4, step 40 logged", "before the first epoch ends: no total"
    assert Position(0, 40).left(4) is None
    assert Position(2, 400, 100, 0.5).left(4) == 0.0


def test_status_shows_how_far_an_unfinished_cell_has_logged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    preset, out = _experiment_file(tmp_path), tmp_path / "out"
    _write_log(out / "runs" / "attmask_high-s0-d0.5", [{"epoch": 0, "step": 2, "loss": 9.0}], age=3 * 60 + 1)
    assert main(["experiment", "masking", "--preset", str(preset), "--out", str(out), "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "pending  attmask_high-s0-d0.5  (epoch 1 of 2, step 2 logged 3 min ago)" in lines
    assert "pending  block-s0-d0.5" in lines, "a cell without a log has no position"


def test_read_finished_reads_only_the_experiments_own_cells(tmp_path: Path) -> None:
    config = ExperimentConfig(arms=["block", "attmask_high"], seeds=[0, 1], fractions=[1.0], fraction_arms=[])
    plan = plan_cells(config, 1.0)
    inits = [InitCell(f"init-s{s}", "", s, Cell("block", s, 1.0)) for s in (0, 1)]
    inits.append(InitCell("init-grid-s0", "grid", 0, Cell("attmask_hint", 0, 1.0, "grid")))
    folder = tmp_path / "cells"
    folder.mkdir()
    names = [plan.main[0].name, "init-s1", "init-grid-s0", "pixels", "random-s0-dall"]  # the last: an old arm
    for number, name in enumerate(names):
        (folder / f"{name}.json").write_text(json.dumps({"metrics": {"knn_top1": float(number)}}))
    finished = read_finished(folder, plan, inits, pixels=True)
    assert list(finished.results) == [plan.main[0]] and finished.plan is plan
    assert finished.results[plan.main[0]]["metrics"]["knn_top1"] == 0.0
    assert {table: sorted(seeds) for table, seeds in finished.inits.items()} == {"": [1], "grid": [0]}
    assert finished.pixels == {"metrics": {"knn_top1": 3.0}} and finished.failed == {}
    assert read_finished(folder, plan, inits, pixels=False).pixels is None, "the pixel row switched off"
    assert read_finished(tmp_path / "none", plan, inits, pixels=True).results == {}
    assert read_finished(tmp_path / "none", plan, inits, pixels=True).empty and not finished.empty


def test_report_only_of_a_folder_without_results_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    preset, out = _experiment_file(tmp_path), tmp_path / "mistyped"
    assert main(["experiment", "masking", "--preset", str(preset), "--out", str(out), "--report-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"attmask experiment: error: {out} holds no finished cell of this experiment; check --out and --preset, "
        "or run the experiment first (--status lists its cells)"
    )
    assert not out.exists(), "no empty report written"


def test_stalled_seconds_are_the_time_beyond_the_usual_pace_in_slow_stretches() -> None:
    records = [_step(0, 1, 1.0)] + [_step(0, step, step * 1.0) for step in range(50, 501, 50)]  # 1 s per step
    assert stalled_seconds(records) == 0.0
    paused = [*records, _step(0, 550, 500.0 + 50 + 600)]  # 10 min stopped between steps 500 and 550
    assert stalled_seconds(paused) == pytest.approx(600.0)
    slowed = [*records, _step(0, 550, 500.0 + 2.5 * 50)]  # 2.5x slower beside other work: not a stall
    assert stalled_seconds(slowed) == 0.0
    starved = [*records, _step(0, 550, 500.0 + 4 * 50)]  # 4x slower: its time beyond the usual pace
    assert stalled_seconds(starved) == pytest.approx(150.0)
    resumed = [*paused, _step(0, 300, 300.0), _step(0, 350, 350.0)]  # back to a checkpoint at step 250
    assert stalled_seconds(resumed) == pytest.approx(600.0), "the interval across the resume is left out"
    assert stalled_seconds([]) == stalled_seconds([{"epoch": 0, "step": 5, "loss": 1.0}]) == 0.0


def test_the_report_says_how_much_of_the_compute_stalled() -> None:
    assert stalled_text(59.0) == "", "under a minute: nothing to say"
    assert stalled_text(4860.0) == " (of which 1 h 21 min stalled: paused, or starved by other work on the cores)"


def test_one_duration_format_for_status_lines_and_reports() -> None:
    assert [duration_text(s) for s in (0, 29, 31, 59 * 60 + 29, 59 * 60 + 31, 14 * 3600 + 5 * 60)] == [
        "0 min",
        "0 min",
        "1 min",
        "59 min",
        "1 h 00 min",
        "14 h 05 min",
    ]
    assert Position(0, 1, age_seconds=59.9).text(2) == "epoch 1 of 2, step 1 logged under 1 min ago"
    assert Position(0, 1, age_seconds=3599.0).text(2) == "epoch 1 of 2, step 1 logged 59 min ago"  # not rounded up
