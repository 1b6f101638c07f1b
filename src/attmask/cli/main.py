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
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"attmask {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
