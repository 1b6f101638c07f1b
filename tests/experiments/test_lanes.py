"""Several processes in one experiment folder: each cell is computed under its own lock, so a
second process (a lane) skips the cells the first one holds, and the last one writes the tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from attmask.cli.main import main
from tests.experiments.test_masking_experiment import _experiment_file

HOLD = """
import sys, time
from attmask.core.lock import file_lock
with file_lock(sys.argv[1], "attmask experiment"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_cell_another_process_holds_is_skipped_shown_running_and_done_later(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    preset, out = _experiment_file(tmp_path), tmp_path / "out"
    arguments = ["experiment", "masking", "--preset", str(preset), "--out", str(out), "--set", "fractions=[]"]
    lock = out / "runs" / "attmask_high-s0-d0.5.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(arguments) == 0
        text = capsys.readouterr().out
        assert f"skipped, attmask experiment (pid {holder.pid}) is computing it" in text, text
        assert text.count("done in") == 3, "pixels, init, block-wise: the held cell is left to its holder"
        assert "(median of 1 timed cell, on this device); about 0 min of wall time in 2 lanes" in text, text
        assert text.count("expected pretraining time left") == 1, "after block-wise only: a skipped cell brings no news"
        assert not (out / "cells" / "attmask_high-s0-d0.5.json").exists()
        report = (out / "results.md").read_text()
        assert "**Partial results: 3 of 4 cells finished.** Left: `attmask_high-s0-d0.5`." in report
        assert main([*arguments, "--status"]) == 0
        assert "running  attmask_high-s0-d0.5" in capsys.readouterr().out.splitlines()
    finally:
        holder.kill()
        holder.wait()
    assert main(arguments) == 0, "its holder gone, the next run computes it"
    text = capsys.readouterr().out
    assert text.count("done in") == 1 and text.count("already done") == 3
    assert "Partial results" not in (out / "results.md").read_text()
    assert sorted(p.name for p in (out / "cells").iterdir()) == [
        "attmask_high-s0-d0.5.json",
        "block-s0-d0.5.json",
        "init-s0.json",
        "pixels.json",
    ], "locks live in runs/, not among the results"


def test_two_lanes_started_together_compute_every_cell_once(tmp_path: Path) -> None:
    preset, out = _experiment_file(tmp_path), tmp_path / "out"
    command = [sys.executable, "-m", "attmask.cli.main", "experiment", "masking", "--preset", str(preset)]
    command += ["--out", str(out), "--set", "fractions=[]", "--pretrain-set", "train.num_threads=1"]
    lanes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [lane.communicate(timeout=600) for lane in lanes]
    assert [lane.returncode for lane in lanes] == [0, 0], [error for _, error in outputs]
    text = "".join(output for output, _ in outputs)
    assert text.count("done in") == 4, text  # pixels, init, 2 cells: each computed by one lane only
    assert len(list((out / "cells").glob("*.json"))) == 4
    assert "Partial results" not in (out / "results.md").read_text(), "the last lane wrote every cell"


def test_estimate_text_gives_the_wall_time_of_several_lanes() -> None:
    from attmask.experiments.progress import Estimate

    assert (
        Estimate(14 * 3600 + 300, 17, 3).text()
        == "about 14 h 05 min for 17 cells (median of 3 timed cells, on this device)"
    )
    assert Estimate(14 * 3600, 17, 3, this_device=False, lanes=2).text() == (
        "about 14 h 00 min for 17 cells (median of 3 timed cells, none on this device); "
        "about 7 h 00 min of wall time in 2 lanes"
    )
    assert Estimate(0.0, 0, 15).text() == "none, every cell is finished"  # not "about 0 min for 0 cells"
