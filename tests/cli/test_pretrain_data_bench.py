"""``attmask pretrain --data-bench``: one line with the loader's rate, no training, no files."""

from __future__ import annotations

import re

from attmask.cli.main import main
from tests.engine.tiny import TINY


def _sets(*extra: str) -> list[str]:
    return [arg for override in (*TINY, *extra) for arg in ("--set", override)]


def test_data_bench_prints_a_rate_and_writes_nothing(tmp_path, capsys, one_thread) -> None:
    run = tmp_path / "run"
    code = main(["pretrain", "--out", str(run), "--data-bench", "--data-bench-batches", "3", *_sets()])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, captured.out
    match = re.search(r"([\d.]+) images/s .* (\d+) batches x (\d+) = (\d+) images, (\d+) workers", lines[0])
    assert match, lines[0]
    rate, batches, batch_size, images, workers = (float(match[1]), *map(int, match.groups()[1:]))
    assert rate > 0 and (batches, batch_size, workers) == (3, 8, 0)
    assert images == batches * batch_size
    assert not run.exists()  # no run folder, config, log or checkpoint
    assert "finished" not in captured.out


def test_data_bench_needs_no_out_but_training_does(tmp_path, capsys, one_thread) -> None:
    assert main(["pretrain", "--data-bench", "--data-bench-batches", "1", *_sets()]) == 0
    assert "1 batches x 8 = 8 images" in capsys.readouterr().out
    assert main(["pretrain", *_sets()]) == 2
    err = capsys.readouterr().err.strip()
    assert "--out is required" in err and len(err.splitlines()) == 1
