"""``attmask eval <protocol>``: evaluate a checkpoint on a labelled data set.

Every protocol writes a JSON result (default ``<checkpoint folder>/eval/<protocol>.json``) and
prints one summary line. Protocol arguments live in ``attmask.cli.eval_protocols``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from attmask.cli import eval_protocols


def parse_subset(text: str) -> float | int:
    """``"0.2"`` -> 0.2 (fraction), ``"10"`` -> 10 (images per class)."""
    try:
        return int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--subset takes a fraction or a count, got {text!r}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by every protocol."""
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint file or run folder (attmask, DINO/iBOT/AttMask, timm, .safetensors)")
    parser.add_argument("--student", action="store_true", help="evaluate the student instead of the evaluated backbone (the teacher for iBOT, DINO, MST)")
    parser.add_argument("--num-heads", type=int, help="attention heads, if the checkpoint cannot tell")
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist, digits, or a labelled folder")
    parser.add_argument("--data-dir", help="folder holding a built-in data set's files")
    parser.add_argument("--test-data", help="separate labelled folder for the test split")
    parser.add_argument("--subset", type=parse_subset,
                        help="first fraction (0.2) or count (10) of training images per class")
    parser.add_argument("--img-size", type=int, help="evaluation crop size (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--cache-dir", help="cache extracted features here (keyed by checkpoint, data, options)")
    parser.add_argument("--out", help="result JSON (default: <checkpoint folder>/eval/<protocol>.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register ``eval`` and its protocol subcommands."""
    parser = commands.add_parser(
        name, help="evaluate a checkpoint: knn, fewshot, linear, finetune, retrieval, robustness",
        description="Evaluate a pretrained ViT with the protocols of the AttMask paper.")
    protocols = parser.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    for protocol, (help_text, add_arguments, _) in eval_protocols.PROTOCOLS.items():
        sub = protocols.add_parser(protocol, help=help_text, description=help_text)
        _common(sub)
        add_arguments(sub)


def _default_out(args: argparse.Namespace) -> Path:
    checkpoint = Path(args.checkpoint)
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return folder / "eval" / f"{args.protocol}.json"


def _write(result: dict[str, Any], out: Path) -> None:
    from attmask.core.files import write_atomic

    text = (json.dumps(result, indent=2, default=str) + "\n").encode()
    write_atomic(out, lambda stream: stream.write(text))


def run(args: argparse.Namespace) -> int:
    """Load the backbone, run the protocol, write the JSON, print the summary (rank 0)."""
    import torch

    from attmask.core.distributed import init_distributed, shutdown
    from attmask.eval.session import DataOptions, EvalSession
    from attmask.models.checkpoints import load_backbone

    if args.batch_size < 1 or args.num_workers < 0:
        raise ValueError(f"--batch-size must be >= 1 and --num-workers >= 0, got {args.batch_size}, "
                         f"{args.num_workers}")
    start = time.perf_counter()
    loaded = load_backbone(args.checkpoint, "student" if args.student else None, args.num_heads)
    data = DataOptions(args.data, args.data_dir, args.test_data, args.subset, args.img_size,
                       args.batch_size, args.num_workers)
    ctx = init_distributed(args.device)
    try:
        session = EvalSession(loaded, data, ctx.device, Path(args.cache_dir) if args.cache_dir else None,
                              progress=not args.no_progress and ctx.is_main)
        result, summary = eval_protocols.PROTOCOLS[args.protocol][2](session, args)
    finally:
        shutdown()
    if ctx.is_main:
        result = {**result, "session": session.describe(), "seconds": time.perf_counter() - start,
                  "torch": torch.__version__, "device": str(ctx.device), "world_size": ctx.world_size}
        out = Path(args.out) if args.out else _default_out(args)
        _write(result, out)
        print(f"{summary}  -> {out}")
    return 0
