"""An option before a command's second word (``attmask eval --checkpoint C knn``) is one line with the fix."""

from __future__ import annotations

import pytest

from attmask.cli.main import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["eval", "--checkpoint", "runs/my run", "knn"],
            "attmask eval: error: the protocol comes first, then its options: "
            "attmask eval knn --checkpoint 'runs/my run'",
        ),
        (
            ["--debug", "visualize", "--out", "figs", "attention", "--checkpoint", "c"],
            "attmask visualize: error: the figure comes first, then its options: "
            "attmask visualize attention --out figs --checkpoint c",
        ),
        (
            ["experiment", "--status", "masking"],
            "attmask experiment: error: the experiment comes first, then its options: "
            "attmask experiment masking --status",
        ),
        (
            ["eval", "--checkpoint", "c"],
            "attmask eval: error: name the protocol first (knn, fewshot, linear, finetune, retrieval, "
            "robustness, revisited, davis), then its options",
        ),
    ],
)
def test_options_before_the_second_word(argv: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == expected and err[0].startswith("usage: attmask"), err


@pytest.mark.parametrize(
    "argv", [["eval", "--help"], ["eval", "knn", "--help"], ["pretrain", "--help"], ["experiment", "-h"]]
)
def test_help_and_the_right_order_are_untouched(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["export", "RUN", "--out", "b.safetensors"], "attmask export --checkpoint RUN --out b.safetensors"),
        (["eval", "knn", "--data", "digits", "RUN"], "attmask eval knn --checkpoint RUN --data digits"),
        (["--debug", "visualize", "attention", "--out", "v", "RUN"],
         "attmask visualize attention --checkpoint RUN --out v"),
    ],
)  # fmt: skip
def test_a_checkpoint_given_as_a_bare_word_is_one_line_with_the_option(
    argv: list[str], expected: str, tmp_path, monkeypatch, capsys
) -> None:
    """``attmask report RUN`` takes the run folder as a word; export, eval and visualize take
    ``--checkpoint``: argparse said --checkpoint was missing and RUN unrecognized."""
    (tmp_path / "RUN").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"error: the checkpoint is an option: {expected}"), err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["export", "MISSING", "--out", "b"], "the following arguments are required: --checkpoint"),  # not a path
        (["export", "--checkpoint", "RUN", "RUN", "--out", "b"], "unrecognized arguments: RUN"),  # given twice
        (["export", "--out", "b"], "the following arguments are required: --checkpoint"),
    ],
)
def test_other_mistakes_keep_argparse_s_words(argv: list[str], expected: str, tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "RUN").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(argv)
    assert expected in capsys.readouterr().err
