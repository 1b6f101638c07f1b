"""The options every command shares."""

from __future__ import annotations

import argparse

from attmask.cli.options import add_set_option, field_docs


def test_set_is_repeatable_and_its_help_names_the_keys() -> None:
    parser = argparse.ArgumentParser()
    add_set_option(parser, "experiment key", "eval.linear_epochs=50")
    assert parser.parse_args([]).overrides == []
    assert parser.parse_args(["--set", "a=1", "--set", "b.c=2"]).overrides == ["a=1", "b.c=2"]
    text = parser.format_help()
    assert "override an experiment key, e.g. --set eval.linear_epochs=50 (repeatable)" in " ".join(text.split())


class _Documented:
    """A section.

    Attributes:
        lr, min_lr: learning rates,
            per 256 images.
        epochs: passes over the data.
    """


def test_field_docs_reads_attributes_with_continuations_and_shared_names() -> None:
    docs = field_docs(_Documented)
    assert docs == {
        "lr": "learning rates, per 256 images.",
        "min_lr": "learning rates, per 256 images.",
        "epochs": "passes over the data.",
    }
    assert field_docs(argparse.Namespace) == {}
