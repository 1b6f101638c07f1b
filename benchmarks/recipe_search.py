"""Recipe search on the validation split (Fashion-MNIST, CPU): every recipe tried, failures included.

Each recipe is a set of ``--set`` overrides on a base preset, trained for a fixed number of
optimizer steps with the k-NN monitor on the VALIDATION split (``data.val_images``: training
images held out of pretraining; the bank comes from the rest of the training set). The test split
is never read here. One JSON per recipe lands in ``--out`` as soon as it finishes (the search is
resumable: finished recipes are skipped), and ``docs/recipes.md`` is written from them.

    python benchmarks/recipe_search.py --list
    python benchmarks/recipe_search.py --only lr4e-3 stem32
    python benchmarks/recipe_search.py --threads 1 &  python benchmarks/recipe_search.py --threads 1

Several workers may share the list: each claims a recipe before running it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = "benchmarks/presets/fashion_mnist_ibot_attmask_tiny_v1.yaml"  # the demo preset the search started from
NEW_DEMO = "configs/fashion_mnist_ibot_attmask_tiny.yaml"
SMALL = "configs/fashion_mnist_ibot_attmask_small.yaml"  # the 60-minute preset
_SMALL_SCHEDULE = (
    "--base-preset",
    SMALL,
    "optim.epochs=13",
    "train.max_steps_per_epoch=600",
    "train.knn_every_epochs=1",
    "optim.teacher_momentum_end=1.0",
)

#: The demo preset's 6 x 300 = 1800 steps with k-NN every 600 (as `demo2_mom099` ran).
_DEMO_SCHEDULE = (
    "--base-preset",
    NEW_DEMO,
    "optim.epochs=6",
    "train.max_steps_per_epoch=300",
    "train.knn_every_epochs=2",
    "optim.teacher_momentum_end=0.99",
)

#: Search protocol shared by every recipe: full training set minus 2,000 validation images,
#: 4 "epochs" of 150 steps (600 steps of 64 images), k-NN on the validation split after each.
PROTOCOL = (
    "data.subset=null",
    "data.val_images=2000",
    "optim.epochs=4",
    "train.max_steps_per_epoch=150",
    "train.knn_every_epochs=1",
    "train.knn_baseline=true",
    "train.progress=false",
    "train.log_every_steps=50",
)

#: name -> (what changes, overrides). The first is the demo preset as it was.
RECIPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "demo": ("demo preset (lr 1e-3 per 256 = 2.5e-4 at batch 64)", ()),
    "lr4e-3": ("lr 4e-3 per 256 (1e-3 at batch 64)", ("optim.lr=4e-3",)),
    "stem32": ("3x3 conv stem of 32 channels before the 7x7 patch projection", ("model.stem_channels=32",)),
    "crops_mild": (
        "milder crops: global scale (0.7, 1), local (0.3, 0.6)",
        ("data.global_scale=[0.7, 1.0]", "data.local_scale=[0.3, 0.6]"),
    ),
    "bs32": ("batch 32 (lr per 256 unchanged: 1.25e-4), 600 steps = half the images", ("data.batch_size=32",)),
    "proto_trained": (
        "prototypes (head last layer) trained after the first 150 steps",
        ("optim.freeze_last_layer_epochs=1",),
    ),
    "proto_trained_slow": (
        "prototypes trained after 150 steps at 0.1x lr",
        ("optim.freeze_last_layer_epochs=1", "optim.last_layer_lr_scale=0.1"),
    ),
    "no_local": ("no local crops (2 global crops only)", ("data.num_local=0",)),
    "mild_no_local": ("global scale (0.7, 1), no local crops", ("data.global_scale=[0.7, 1.0]", "data.num_local=0")),
    "stem32_k4096": (
        "conv stem 32 + 4096 prototypes ([CLS] and patch heads)",
        ("model.stem_channels=32", "head.out_dim=4096", "head.patch_out_dim=4096"),
    ),
    "stem32_mom996": (
        "conv stem 32 + teacher momentum 0.996 (DINO's default)",
        ("model.stem_channels=32", "optim.teacher_momentum=0.996"),
    ),
    "stem32_mim2": ("conv stem 32 + MIM weight 2 (lambda_patch)", ("model.stem_channels=32", "loss.lambda_patch=2.0")),
    "sincos": (
        "position embedding initialised with MAE's 2-D sin-cos table (trained)",
        ("model.pos_embed_init=sincos",),
    ),
    "stem32_sincos": (
        "conv stem 32 + sin-cos position init",
        ("model.stem_channels=32", "model.pos_embed_init=sincos"),
    ),
    "tt02": (
        "teacher temperature 0.02 ([CLS] and patches; 0.04 before)",
        (
            "loss.teacher_temp=0.02",
            "loss.warmup_teacher_temp=0.02",
            "loss.teacher_patch_temp=0.02",
            "loss.warmup_teacher_patch_temp=0.02",
        ),
    ),
    "stem32_tt02": (
        "conv stem 32 + teacher temperature 0.02",
        (
            "model.stem_channels=32",
            "loss.teacher_temp=0.02",
            "loss.warmup_teacher_temp=0.02",
            "loss.teacher_patch_temp=0.02",
            "loss.warmup_teacher_patch_temp=0.02",
        ),
    ),
    "stem32_long": (
        "conv stem 32, 2,400 steps (16 x 150; k-NN every 300): does [CLS] recover?",
        ("model.stem_channels=32", "optim.epochs=16", "train.knn_every_epochs=2"),
    ),
    "demo_long": (
        "demo preset, 2,400 steps (16 x 150; k-NN every 300)",
        ("optim.epochs=16", "train.knn_every_epochs=2"),
    ),
    "demo2": (
        "the chosen demo preset (stem; 6 x 300 = 1800 steps; k-NN every 600)",
        (
            "--base-preset",
            NEW_DEMO,
            "optim.epochs=6",
            "train.max_steps_per_epoch=300",
            "train.knn_every_epochs=2",
            "optim.teacher_momentum_end=1.0",
        ),
    ),  # as it ran, before the preset held the momentum
    "demo2_mom099": (
        "the chosen demo preset with the teacher momentum held at 0.99 (not annealed to 1)",
        _DEMO_SCHEDULE,
    ),
    "demo3_sched26": (
        "the demo preset's 1800 steps cut from schedules of 26 x 300 = 7800 steps (lr and weight decay "
        "where the 60-minute recipe has them at step 1800)",
        (
            "--base-preset",
            NEW_DEMO,
            "optim.epochs=6",
            "optim.schedule_epochs=26",
            "train.max_steps_per_epoch=300",
            "train.knn_every_epochs=2",
            "optim.teacher_momentum_end=0.99",
        ),
    ),
    "demo2_seed1": (
        "the demo preset (as `demo2_mom099`) with train.seed=1: one seed's noise (initial weights, data "
        "order, crops, masks; the validation bank and queries stay the same)",
        (*_DEMO_SCHEDULE, "train.seed=1"),
    ),
    "demo2_local6": (
        "the demo preset with 6 local crops instead of 4 (the small28 preset's number)",
        (*_DEMO_SCHEDULE, "data.num_local=6"),
    ),
    "demo2_crops_strong": (
        "the demo preset with stronger global crops: scale (0.25, 1) instead of (0.4, 1)",
        (*_DEMO_SCHEDULE, "data.global_scale=[0.25, 1.0]"),
    ),
    "demo2_mask_all": (
        "the demo preset with every global view masked (masking.probability 1 instead of 0.5)",
        (*_DEMO_SCHEDULE, "masking.probability=1.0"),
    ),
    "demo2_k256": (
        "the demo preset with 256 prototypes instead of 1024 ([CLS] and patch heads)",
        (*_DEMO_SCHEDULE, "head.out_dim=256", "head.patch_out_dim=256"),
    ),
    "small": (
        "the 60-minute preset (13 x 600 = 7800 steps; k-NN every 600), teacher momentum 0.99 -> 1",
        _SMALL_SCHEDULE,
    ),
    "small_mom099": (
        "the 60-minute preset with the teacher momentum held at 0.99 (not annealed to 1)",
        (*_SMALL_SCHEDULE, "optim.teacher_momentum_end=0.99"),
    ),
    "small_k256": (
        "the 60-minute preset (momentum held at 0.99) with 256 prototypes instead of 1024, as the demo",
        (*_SMALL_SCHEDULE, "optim.teacher_momentum_end=0.99", "head.out_dim=256", "head.patch_out_dim=256"),
    ),
    "small_grid4": (
        "the 60-minute preset (momentum held at 0.99) on 4 px patches (7x7 tokens, 12 px local crops) for "
        "3 x 600 = 1800 steps: the masking ablation's fine-grid table (AttMask-Hint reveals tokens on 7x7)",
        (
            *_SMALL_SCHEDULE,
            "optim.teacher_momentum_end=0.99",
            "model.patch_size=4",
            "data.local_size=12",
            "optim.epochs=3",
        ),
    ),
    "no_mim": ("no masking (iBOT without its MIM term: DINO loss on [CLS] only)", ("masking.strategy=none",)),
}


def run_recipe(name: str, overrides: tuple[str, ...], base: str, work: Path) -> dict:
    """Train one recipe in ``work/name`` and return its record (log rows with k-NN)."""
    run_dir = work / name
    command = [sys.executable, "-m", "attmask.cli.main", "pretrain", "--config", base, "--out", str(run_dir)]
    for item in (*PROTOCOL, *overrides):
        command += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    error = done.stderr.strip().splitlines()[-1:] if done.returncode else []
    return collect(name, overrides, base, run_dir, done.returncode, error, time.perf_counter() - started)


def collect(
    name: str,
    overrides: tuple[str, ...],
    base: str,
    run_dir: Path,
    returncode: int = 0,
    error: list[str] | None = None,
    wall: float = 0.0,
) -> dict:
    """The record of the run in ``run_dir`` as far as it got (its log rows with k-NN)."""
    rows = []
    log = run_dir / "log.jsonl"
    if log.is_file():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    curve = [
        {k: r[k] for k in r if k.startswith("knn") or k in ("epoch", "train_seconds", "images_seen")}
        for r in rows
        if "knn_top1" in r
    ]
    baseline = next((r for r in rows if "knn_pixels_top1" in r), {})
    collapse = [
        {k: r.get(k) for k in ("step", "loss", "teacher_entropy", "teacher_kl_centre", "feature_std")}
        for r in rows
        if "teacher_entropy" in r
    ]
    return {
        "name": name,
        "overrides": list(overrides),
        "base": base,
        "protocol": list(PROTOCOL),
        "returncode": returncode,
        "error": error or [],
        "wall_seconds": round(wall, 1),
        "steps": max((r["step"] for r in rows if "loss" in r), default=0),
        "curve": curve,
        "baseline": baseline,
        "collapse": collapse[-3:],
    }


TABLE_START, TABLE_END = (
    "<!-- recipe table: written by benchmarks/recipe_search.py --table -->",
    "<!-- end of table -->",
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(records: list[dict]) -> str:
    """Markdown table of every finished recipe, in the order tried (file times)."""
    lines = [
        "| recipe | what changes | steps | val [CLS] | val GAP | val [CLS]+GAP | best [CLS] "
        "| random init [CLS] / GAP | raw pixels | teacher entropy (last) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        curve, base = record["curve"], record["baseline"]
        last = curve[-1] if curve else {}
        steps = record["steps"]
        best = max((point["knn_top1"] for point in curve), default=None)
        entropy = record["collapse"][-1]["teacher_entropy"] if record.get("collapse") else None
        failed = f" (failed: {' '.join(record['error'])})" if record.get("returncode") else ""
        lines.append(
            f"| `{record['name']}` | {record['what']}{failed} | {steps} | {_cell(last.get('knn_top1'))} "
            f"| {_cell(last.get('knn_gap_top1'))} | {_cell(last.get('knn_clsgap_top1'))} | {_cell(best)} "
            f"| {_cell(base.get('knn_random_init_top1'))} / {_cell(base.get('knn_random_init_gap_top1'))} "
            f"| {_cell(base.get('knn_pixels_top1'))} | {_cell(entropy)} |"
        )
    return "\n".join(lines)


def write_table(results: Path, document: Path) -> None:
    """Replace the table between the markers of ``document`` by the records in ``results``."""
    records = sorted(
        (json.loads(path.read_text()) for path in results.glob("*.json")), key=lambda record: record["finished"]
    )
    text = document.read_text()
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    document.write_text(f"{head}{TABLE_START}\n{table(records)}\n{TABLE_END}{tail}")


def _base_of(overrides: tuple[str, ...], default: str) -> tuple[str, tuple[str, ...]]:
    """A recipe's base preset (``"--base-preset", PATH`` at the start of its overrides) and the rest."""
    if overrides[:1] == ("--base-preset",):
        return overrides[1], overrides[2:]
    return default, overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="recipes to run (default: all not yet finished)")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument("--stopped", metavar="NAME", help="record a run stopped by hand as far as it got")
    parser.add_argument("--table", action="store_true", help="rewrite the table of docs/recipes.md and exit")
    parser.add_argument("--base", default=DEMO, help="base preset")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/recipes")
    parser.add_argument("--work", type=Path, default=ROOT / "out/recipes", help="run folders (not committed)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="train.num_threads of each run (e.g. 1 for two workers on 2 cores; accuracy at a "
        "fixed step count does not depend on it, the times do)",
    )
    args = parser.parse_args(argv)
    if args.table:
        write_table(args.out, ROOT / "docs" / "recipes.md")
        return 0
    if args.stopped:  # a run stopped by hand: record how far it got
        name = args.stopped
        record = collect(name, RECIPES[name][1], args.base, args.work / name)
        record.update(
            what=f"{RECIPES[name][0]} (stopped by hand after {record['steps']} steps)",
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        (args.out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        return 0
    if args.list:
        for name, (what, overrides) in RECIPES.items():
            print(f"{name:24s} {what}  {' '.join(overrides)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(RECIPES):
        target, claim = args.out / f"{name}.json", args.work / f"{name}.claimed"
        if target.is_file() or claim.is_file():  # finished, or another worker runs it
            continue
        claim.parent.mkdir(parents=True, exist_ok=True)
        claim.touch()
        what, overrides = RECIPES[name]
        base, overrides = _base_of(overrides, args.base)
        threads = (f"train.num_threads={args.threads}",) if args.threads else ()
        record = run_recipe(name, (*overrides, *threads), base, args.work)
        record["what"] = what
        record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        target.write_text(json.dumps(record, indent=1) + "\n")
        claim.unlink()
        last = record["curve"][-1] if record["curve"] else {}
        print(
            f"{name}: val 20-NN {last.get('knn_top1')} (GAP {last.get('knn_gap_top1')}) "
            f"in {last.get('train_seconds', 0):.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
