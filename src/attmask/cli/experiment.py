"""``attmask experiment masking``: the paper's masking ablation, resumable, with tables and figures."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from attmask.cli.options import add_set_option
from attmask.core.repository import find_file, preset_names

PRESET_FOLDER = "configs/experiments"


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(name, help="reproducible experiments (masking ablation of AttMask)")
    experiments = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    masking = experiments.add_parser(
        "masking",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="iBOT with every masking strategy: k-NN, few-shot, linear; tables and figures",
        description=(
            "Pretrain iBOT with block-wise, random, AttMask-Low/-Hint/-High masking under one recipe and\n"
            "several seeds (optionally DINO arms and a finer patch grid as extra tables), evaluate every\n"
            "teacher (weighted k-NN, few-shot k-NN, linear probe; [CLS] and optionally GAP), sweep the\n"
            "training-set size, and write OUT/results.md, OUT/results.json and OUT/figures/.\n"
            "Running the same command again skips finished cells and resumes a started one; started\n"
            "twice at once (e.g. --pretrain-set train.num_threads=1 on 2 cores), the two processes\n"
            "share the cells, each skipping those the other is computing; --status lists what is\n"
            "left (done, running, started, pending) and its expected time."
        ),
    )
    masking.add_argument(
        "--preset",
        default="cpu",
        help=f"{', '.join(preset_names(PRESET_FOLDER, 'masking_')) or 'a name'} "
        f"(= {PRESET_FOLDER}/masking_<name>.yaml) or an experiment YAML file",
    )
    masking.add_argument("--out", required=True, help="output folder (resumed when it holds results)")
    masking.add_argument("--data", help="data set name or labelled image folder (sets data.source)")
    masking.add_argument("--data-dir", help="folder holding a built-in data set's files (sets data.data_dir)")
    masking.add_argument("--seeds", type=int, nargs="+", help="seeds of the main table (default: the preset's)")
    add_set_option(masking, "experiment key", "eval.linear_epochs=50")
    masking.add_argument(
        "--pretrain-set",
        dest="pretrain_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a pretraining key for every cell, e.g. "
        "--pretrain-set optim.epochs=2 (repeatable; see attmask pretrain --help)",
    )
    masking.add_argument(
        "--cells",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="compute only the cells whose names match these shell patterns (names as --status "
        "lists them, e.g. 'grid-*' block-s1-dall); the others are read when finished, skipped otherwise",
    )
    masking.add_argument(
        "--status",
        action="store_true",
        help="list the cells (done, running, started, pending), how far each one in progress got and "
        "its recent pace, and the expected time left",
    )
    masking.add_argument(
        "--report-only", action="store_true", help="write the tables and figures from the finished cells only"
    )
    masking.add_argument("--progress", action="store_true", help="show the trainer's progress bars")


def preset_path(preset: str) -> Path:
    """An existing file, else ``configs/experiments/masking_<preset>.yaml`` in the working
    folder or the repository; the loader reports a missing file in one line."""
    if Path(preset).is_file() or preset.endswith((".yaml", ".yml")):
        return Path(preset)
    relative = Path(PRESET_FOLDER) / f"masking_{preset}.yaml"
    return find_file(relative) or relative


def run(args: argparse.Namespace) -> int:
    """Run, resume, list or report the experiment."""
    from attmask.experiments import MaskingExperiment, load_experiment
    from attmask.experiments.progress import CellSelection
    from attmask.experiments.run_log import logged_position

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "the experiment runs its cells one after another in one process (one GPU); "
            "start it without torchrun (torchrun is for attmask pretrain)"
        )
    if Path(args.out).exists() and not Path(args.out).is_dir():  # --status would list every cell pending
        raise ValueError(f"--out {args.out} is a file; pass the experiment's folder (made if missing)")
    overrides = list(args.overrides)
    if args.seeds:
        overrides.append(f"seeds=[{', '.join(str(s) for s in args.seeds)}]")
    config, preset = load_experiment(preset_path(args.preset), overrides)
    shared = list(args.pretrain_overrides)
    if args.data:
        shared.append(f"data.source={args.data}")
    if args.data_dir:
        shared.append(f"data.data_dir={args.data_dir}")
    experiment = MaskingExperiment(
        config, preset, Path(args.out), shared, args.progress, CellSelection(tuple(args.cells))
    )
    experiment.pretrain_config()  # a bad key or value fails here, before any work
    if args.status:
        experiment.selected()  # a pattern matching no cell is an error here too
        cells = {cell.name: cell for cell in experiment.cells().all()}
        for name, state in experiment.status():
            position = logged_position(Path(args.out) / "runs" / name) if state != "done" else None
            if position is None or name not in cells:
                print(f"{state:8s} {name}")
            else:  # only a cell in progress needs its config (its number of epochs)
                epochs = experiment.pretrain_config(cells[name]).optim.epochs
                print(f"{state:8s} {name}  ({position.text(epochs)})")
        print(f"pretraining left: {experiment.time_left().text()}")
        return 0
    if args.report_only:
        import torch

        finished = experiment.finished()
        if finished.empty:  # a mistyped --out would get a report of empty tables
            raise ValueError(
                f"{args.out} holds no finished cell of this experiment; check --out and --preset, "
                "or run the experiment first (--status lists its cells)"
            )
        experiment.report(finished, torch.device("cpu"))
        print(f"wrote {Path(args.out) / 'results.md'}")
        return 0
    failed = experiment.run()["progress"]["failed"]
    print(f"wrote {Path(args.out) / 'results.md'}")
    for name, error in failed.items():
        print(f"attmask experiment: cell {name} failed: {' '.join(error.split())}", file=sys.stderr)
    return 1 if failed else 0
