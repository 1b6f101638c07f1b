"""``attmask convert``: an original DINO / iBOT / AttMask training checkpoint as a run folder to continue."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from attmask.cli.options import add_set_option
from attmask.config import load_config


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="turn an original DINO/iBOT/AttMask checkpoint, or a sharded (FSDP) one, into a single-file run folder",
        description=(
            "Map a whole training checkpoint of the original DINO, iBOT or AttMask code (student, "
            "teacher, heads, loss centres, AdamW state, epoch) onto the method that --config builds, "
            "and write OUT/checkpoint.pth and OUT/config.yaml. Then `attmask pretrain --config "
            "OUT/config.yaml --out OUT` continues the pretraining from the original's epoch. Add "
            "--set train.fidelity=original to continue with the original's numerics.\n"
            "Given a sharded checkpoint of a train.parallel=fsdp run (RUN/checkpoint.dcp, or the run "
            "folder), gather it into OUT/checkpoint.pth (weights, AdamW state, progress; no --config: "
            "its own config is kept), to evaluate, export or continue it anywhere."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint",
        help="the original checkpoint.pth (main_dino / main_ibot / main_attmask), or a sharded checkpoint.dcp",
    )
    parser.add_argument("--config", help="YAML preset of the same architecture and method (ibot or dino)")
    add_set_option(parser, "config value", "model.arch=vit_small")
    parser.add_argument("--out", required=True, help="new run folder")


def run(args: argparse.Namespace) -> int:
    """Convert and say what was carried over."""
    from attmask.core.dcp import sharded_source
    from attmask.engine.original import convert_original_checkpoint

    source = sharded_source(args.checkpoint)
    if source is not None:
        return _gather(source, args)
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


def _gather(source: Path, args: argparse.Namespace) -> int:
    """A sharded checkpoint, whole, as OUT/checkpoint.pth and OUT/config.yaml."""
    from attmask.core.checkpoint import CHECKPOINT_NAME, save_atomic
    from attmask.core.dcp import read_sharded

    if args.config or args.overrides:
        print("error: a sharded checkpoint keeps its own config; drop --config and --set", file=sys.stderr)
        return 2
    state = read_sharded(source)
    out = Path(args.out)
    path = save_atomic(state, out / CHECKPOINT_NAME)
    (out / "config.yaml").write_text(yaml.safe_dump(state["config"], sort_keys=False))
    step, processes = state["progress"]["global_step"], state.get("world_size", "?")
    print(
        f"wrote {path} (step {step}, gathered from {processes} processes' shards); continue with: attmask pretrain "
        f"--config {out}/config.yaml --out {out}, or evaluate / export {path}"
    )
    return 0
