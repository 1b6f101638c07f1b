"""``attmask`` entry point: one thin subcommand per file; errors are one line, not a trace."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from attmask.cli import convert, evaluate, experiment, export, pretrain, report, visualize

SUBCOMMANDS = {"pretrain": pretrain, "eval": evaluate, "export": export,
               "visualize": visualize, "report": report,
               "experiment": experiment, "convert": convert}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="attmask",
        description="Attention-guided masked image modeling (AttMask) for Vision Transformers.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        module.add_parser(commands, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(SUBCOMMANDS[args.command].run(args) or 0)
    except (ValueError, OSError, KeyError) as error:
        if args.debug:
            raise
        print(f"attmask {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    """The error's own message on one line.

    An error raised in a DataLoader worker arrives re-raised as ``Caught X in DataLoader worker
    process N. Original Traceback ...``: only its last line (the original message, without the
    exception's module path) is kept.
    """
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        head, _, rest = last.partition(": ")
        text = rest if rest and " " not in head else last
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
