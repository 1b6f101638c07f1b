"""``attmask report RUN_DIR``: an HTML page of a pretraining run."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="write RUN_DIR/report/index.html: curves, schedules, k-NN, monitors, figures, config",
        description="Summarise a pretraining run in a self-contained HTML page (PNGs next to it).",
    )
    parser.add_argument("run_dir", help="pretraining run folder (holds log.jsonl)")
    parser.add_argument("--num-images", type=int, default=4, help="images in the attention / mask figures")
    parser.add_argument("--no-figures", action="store_true", help="skip the attention / mask figures")


def run(args: argparse.Namespace) -> int:
    """Build the report and print its path."""
    from attmask.runs.report import build_report

    print(f"wrote {build_report(args.run_dir, args.num_images, not args.no_figures)}")
    return 0
