"""``attmask convert``: an original DINO / iBOT / AttMask training checkpoint as a run folder to continue."""

from __future__ import annotations

import argparse

from attmask.config import load_config


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="turn an original DINO/iBOT/AttMask training checkpoint into a run folder to continue",
        description=(
            "Map a whole training checkpoint of the original DINO, iBOT or AttMask code (student, "
            "teacher, heads, loss centres, AdamW state, epoch) onto the method that --config builds, "
            "and write OUT/checkpoint.pth and OUT/config.yaml. Then `attmask pretrain --config "
            "OUT/config.yaml --out OUT` continues the pretraining from the original's epoch. Add "
            "--set train.fidelity=original to continue with the original's numerics."
        ),
    )
    parser.add_argument("checkpoint", help="the original checkpoint.pth (main_dino / main_ibot / main_attmask)")
    parser.add_argument("--config", help="YAML preset of the same architecture and method (ibot or dino)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.arch=vit_small (repeatable)",
    )
    parser.add_argument("--out", required=True, help="new run folder")


def run(args: argparse.Namespace) -> int:
    """Convert and say what was carried over."""
    from attmask.engine.original import convert_original_checkpoint

    config = load_config(args.config, args.overrides)
    converted = convert_original_checkpoint(args.checkpoint, config, args.out)
    optimizer = "with its AdamW state" if converted.optimizer_mapped else "with a fresh AdamW state"
    print(
        f"wrote {converted.path} ({config.train.method}, epoch {converted.epoch}, {optimizer}); "
        f"continue with: attmask pretrain --config {args.out}/config.yaml --out {args.out}"
    )
    for note in converted.notes:
        print(f"  note: {note}")
    return 0
