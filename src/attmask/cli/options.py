"""Command-line pieces every ``attmask`` command shares: the ``--set`` option and the config
reference read from the dataclasses' docstrings."""

from __future__ import annotations

import argparse


def add_set_option(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """Add the repeatable ``--set KEY=VALUE`` option, collected in ``args.overrides``.

    Args:
        parser: the command's parser.
        what: what the keys belong to, e.g. ``"config key"`` or ``"experiment key"``.
        example: one override shown in the help, e.g. ``"optim.lr=1e-3"``.
    """
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a{'n' if what[0] in 'aeiou' else ''} {what}, e.g. --set {example} (repeatable)",
    )


def field_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Attributes:`` section of a config dataclass's docstring
    (``name: text`` lines and their indented continuations; ``a, b: text`` documents both)."""
    docs: dict[str, str] = {}
    lines = (cls.__doc__ or "").splitlines()
    if not any(line.strip() == "Attributes:" for line in lines):
        return docs
    start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
    names: list[str] = []
    for line in lines[start:]:
        text = line.strip()
        head, sep, rest = text.partition(": ")
        if sep and all(part.strip().isidentifier() for part in head.split(",")):
            names = [part.strip() for part in head.split(",")]
            for name in names:
                docs[name] = rest
        elif text and names:
            for name in names:
                docs[name] += " " + text
    return docs
