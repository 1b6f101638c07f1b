"""Which processes, machines and commits trained and evaluated a cell."""

from __future__ import annotations

import json
from pathlib import Path

from attmask.core.environment import git_commit
from attmask.experiments.cells import SEGMENTS_NAME, record_segment
from attmask.experiments.summary import provenance


def test_segments_accumulate_one_line_per_process(tmp_path: Path) -> None:
    first = record_segment(tmp_path, 0, "cpu (A, 2 cores, 2 threads)")
    assert len(first) == 1 and first[0]["from_step"] == 0 and first[0]["commit"] == git_commit()
    second = record_segment(tmp_path, 1200, "cpu (B, 2 cores, 2 threads)")
    assert [s["from_step"] for s in second] == [0, 1200]
    assert [s["device"] for s in second] == ["cpu (A, 2 cores, 2 threads)", "cpu (B, 2 cores, 2 threads)"]
    assert second[0] == first[0], "earlier segments are kept as written"


def test_a_line_torn_by_a_kill_is_skipped_and_does_not_swallow_the_next(tmp_path: Path) -> None:
    record_segment(tmp_path, 0, "cpu (A)")
    with (tmp_path / SEGMENTS_NAME).open("a") as stream:
        stream.write('{"commit": "abc", "dev')  # killed mid-write
    segments = record_segment(tmp_path, 600, "cpu (B)")
    assert [s["from_step"] for s in segments] == [0, 600]
    lines = (tmp_path / SEGMENTS_NAME).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["device"] == "cpu (B)"


def test_provenance_joins_evaluating_and_training_processes() -> None:
    results = [
        {"commit": "e1", "device": "cpu (B)", "segments": [{"commit": "t1", "device": "cpu (A)"}, {"commit": "e1"}]},
        {"commit": "e2", "device": "cpu (B)"},  # stored before segments were recorded
        {"metrics": {}},  # a reference row without provenance
    ]
    assert provenance(results, "commit") == {"e1", "e2", "t1"}
    assert provenance(results, "device") == {"cpu (A)", "cpu (B)"}
