"""Time to accuracy: teacher k-NN against training wall-clock and images seen (Fashion-MNIST, CPU).

Each recipe is pretrained from scratch with the k-NN monitor after every epoch (weighted 20-NN of
the teacher's [CLS], mean patch token and both; 10,000-image bank from the training set, 2,000
test queries); its ``train_seconds`` count the training loop only (the monitor's own time is left
out). The raw-pixel and random-init levels on the same bank and queries come from the same run.

After training, few-shot k-NN (1 / 5 / 10 / 20 images per class, 5 disjoint subsets each, the
whole test split as queries) of the teacher, of the run's initial weights and of raw pixels.

Recipes: ``demo_v1`` (the demo preset before the "pretraining that learns" work, kept in
``benchmarks/presets/``), ``demo_anneal`` (``make demo``'s preset as it was before it held the
teacher momentum at 0.99), ``demo`` (``make demo``'s preset), ``small_anneal`` (the 60-minute
recipe before it held the momentum) and ``small`` (the 60-minute recipe).
Each recipe's record lands in ``tta-<device>.json`` as soon as it finishes (records of recipes
not run this time are kept), with the PNG curve ``tta-<device>.png``. Timings are only
meaningful on an otherwise idle machine.

Usage: ``python benchmarks/bench_tta.py [--recipes demo small] [--smoke] [--out DIR]``;
``--from-run demo=out/demo/run`` records a finished ``make demo`` run instead of training again.
``--smoke`` trains each recipe for 2 x 2 steps of 16 images on 20 images per class (k-NN on 200 / 100 images)
and writes ``tta-smoke-<device>.*``: it checks the benchmark, not the recipes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from attmask.config import load_config
from attmask.core.environment import environment
from attmask.data.augment import eval_transform
from attmask.data.splits import labelled_splits
from attmask.engine.data import crop_config
from attmask.engine.logging import read_log
from attmask.eval.features import extract_features
from attmask.eval.fewshot import few_shot_knn
from attmask.experiments.cells import initial_backbone
from attmask.models.checkpoints import load_backbone
from attmask.viz.render import plt, save_figure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

#: name -> (preset, extra overrides). Every recipe gets the monitor after each epoch.
#: Recipes kept for their committed record, not re-run by default (``--recipes demo_anneal`` does).
HISTORICAL = ("demo_anneal", "demo_k1024", "small_anneal")
RECIPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "demo_v1": ("benchmarks/presets/fashion_mnist_ibot_attmask_tiny_v1.yaml", ()),
    "demo_anneal": (
        "configs/fashion_mnist_ibot_attmask_tiny.yaml",
        ("optim.teacher_momentum_end=1.0", "head.out_dim=1024", "head.patch_out_dim=1024"),
    ),
    "demo_k1024": ("configs/fashion_mnist_ibot_attmask_tiny.yaml", ("head.out_dim=1024", "head.patch_out_dim=1024")),
    "demo": ("configs/fashion_mnist_ibot_attmask_tiny.yaml", ()),
    "small_anneal": ("configs/fashion_mnist_ibot_attmask_small.yaml", ("optim.teacher_momentum_end=1.0",)),
    "small": ("configs/fashion_mnist_ibot_attmask_small.yaml", ()),
}
MONITOR = ("train.knn_every_epochs=1", "train.knn_baseline=true", "train.progress=false")
SMOKE = (
    "optim.epochs=2",
    "train.max_steps_per_epoch=2",
    "data.subset=null",
    "data.per_class=20",
    "train.knn_train_samples=200",
    "train.knn_test_samples=100",
    "data.num_workers=0",
    "data.batch_size=16",
)


def curve_of(run_dir: Path) -> dict:
    """The k-NN curve and baselines of a finished run folder.

    Returns:
        ``{"points": [{epoch, train_seconds, images_seen, knn_top1, knn_gap_top1, ...}],
        "baselines": {knn_pixels_top1, knn_random_init_top1, ...}}``.
    """
    rows = read_log(run_dir)
    points = [
        {
            key: value
            for key, value in row.items()
            if key.startswith("knn") or key in ("epoch", "train_seconds", "images_seen")
        }
        for row in rows
        if "knn_top1" in row and "epoch_done" in row
    ]
    baselines = next(
        ({k: v for k, v in row.items() if k.startswith("knn")} for row in rows if "knn_pixels_top1" in row), {}
    )
    return {"points": points, "baselines": baselines}


def _features(backbone: torch.nn.Module | None, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] features of ``backbone`` (None: the flattened pixels) and labels."""
    loader = DataLoader(dataset, batch_size=256)
    if backbone is None:
        images, labels = zip(*loader)
        return torch.cat(images).flatten(1), torch.cat([torch.as_tensor(y) for y in labels]).long()
    return extract_features(backbone, loader, "cpu")


def fewshot_levels(run_dir: Path, smoke: bool) -> dict[str, dict[int, float]]:
    """Few-shot k-NN (mean top-1 over disjoint subsets of the training set, whole test split as
    queries) of the pretrained teacher, of the same run's initial weights and of raw pixels.

    Returns:
        ``{"pretrained" | "random_init" | "pixels": {nu: mean top-1}}``.
    """
    config = load_config(run_dir / "config.yaml")
    size = crop_config(config.data).global_size
    splits = labelled_splits(
        config.data.source, eval_transform(size), config.data.data_dir, subset=20 if smoke else None
    )
    shots, repeats = ((1, 2), 2) if smoke else ((1, 5, 10, 20), 5)
    test = splits.test.select(torch.arange(200).numpy()) if smoke else splits.test
    backbones = {
        "pretrained": load_backbone(run_dir).model,
        "random_init": initial_backbone(config).eval(),
        "pixels": None,
    }
    levels = {}
    for name, backbone in backbones.items():
        bank, bank_labels = _features(backbone, splits.train)
        queries, query_labels = _features(backbone, test)
        results = few_shot_knn(bank, bank_labels, queries, query_labels, splits.num_classes, shots, repeats)
        levels[name] = {nu: round(result.mean, 2) for nu, result in results.items()}
    return levels


def run_recipe(name: str, out: Path, smoke: bool) -> dict:
    """Pretrain one recipe from scratch in ``out/name`` and return its curve."""
    preset, overrides = RECIPES[name]
    run_dir = out / name
    command = [sys.executable, "-m", "attmask.cli.main", "pretrain", "--config", preset, "--out", str(run_dir)]
    for item in (*overrides, *MONITOR, *(SMOKE if smoke else ())):
        command += ["--set", item]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"recipe {name} failed: {done.stderr.strip().splitlines()[-1:]}")
    return {
        "preset": preset,
        "overrides": list(overrides),
        **curve_of(run_dir),
        "fewshot": fewshot_levels(run_dir, smoke),
    }


def ingest_run(name: str, run_dir: Path, smoke: bool) -> dict:
    """The record of a finished run folder of recipe ``name`` (e.g. ``make demo``'s ``out/demo/run``,
    whose own k-NN points are its curve), instead of training it again."""
    preset, overrides = RECIPES[name]
    return {
        "preset": preset,
        "overrides": list(overrides),
        "run": str(run_dir),
        **curve_of(run_dir),
        "fewshot": fewshot_levels(run_dir, smoke),
    }


def plot(records: dict[str, dict], path: Path) -> Path:
    """Teacher [CLS] 20-NN against training minutes and images seen, with the raw-pixel and
    random-init levels of the same bank and queries."""
    figure, axes = plt.subplots(1, 2, figsize=(14, 4.4), sharey=True, layout="constrained")
    levels: dict[tuple[str, float], list[str]] = {}  # (kind, value) -> recipes sharing that level
    order = list(RECIPES)
    for name, record in sorted(records.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99):
        points = record["points"]
        minutes = [p["train_seconds"] / 60 for p in points]
        images = [p["images_seen"] / 1000 for p in points]
        top1 = [p["knn_top1"] for p in points]
        loaded = " (timed under load)" if record.get("timed_under_load") else ""  # see the record's note
        (line,) = axes[0].plot(minutes, top1, "o-", label=f"{name} [CLS]{loaded}")
        axes[1].plot(images, top1, "o-", color=line.get_color(), label=f"{name} [CLS]")
        gap = [p.get("knn_gap_top1") for p in points]
        if all(value is not None for value in gap):
            axes[0].plot(minutes, gap, "x:", color=line.get_color(), alpha=0.7, label=f"{name} GAP")
            axes[1].plot(images, gap, "x:", color=line.get_color(), alpha=0.7)
        for key, kind in (("knn_pixels_top1", "raw pixels"), ("knn_random_init_top1", "random init")):
            if key in record["baselines"]:
                levels.setdefault((kind, record["baselines"][key]), []).append(name)
    for (kind, value), names in levels.items():
        label = kind if kind == "raw pixels" else f"{kind} ({', '.join(names)})"
        for axis in axes:
            axis.axhline(value, linestyle="--", linewidth=1, color="black" if kind == "raw pixels" else "grey")
        axes[0].annotate(f"{label} {value:.1f}%", (0, value), textcoords="offset points", xytext=(2, 2), fontsize=8)
    axes[0].set(
        xlabel="training wall-clock (minutes, 2 CPU cores)",
        ylabel="weighted 20-NN top-1 (%)",
        title="Teacher k-NN vs time (Fashion-MNIST test queries)",
    )
    axes[1].set(xlabel="images seen (thousands)", title="Teacher k-NN vs images seen")
    figure.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside right center")
    for axis in axes:
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--recipes", nargs="*", default=[r for r in RECIPES if r not in HISTORICAL], choices=list(RECIPES)
    )
    parser.add_argument("--smoke", action="store_true", help="2 x 2 steps per recipe on a tiny subset")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    parser.add_argument(
        "--work", type=Path, default=None, help="run folders (default: out/tta, a temporary folder with --smoke)"
    )
    parser.add_argument(
        "--from-run",
        nargs="*",
        default=[],
        metavar="NAME=RUN_DIR",
        help="take recipe NAME's curve from a finished run folder (e.g. demo=out/demo/run after "
        "make demo) instead of training it; only these recipes are then recorded",
    )
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON and exit")
    args = parser.parse_args(argv)
    for item in args.from_run:
        if "=" not in item or item.split("=", 1)[0] not in RECIPES:
            parser.error(f"--from-run takes NAME=RUN_DIR with NAME one of {', '.join(RECIPES)}, got {item!r}")
    stem = f"tta-{'smoke-' if args.smoke else ''}cpu"
    target = args.out / f"{stem}.json"
    work = args.work or (Path(tempfile.mkdtemp()) if args.smoke else ROOT / "out" / "tta")
    record = json.loads(target.read_text()) if target.is_file() else {"benchmark": "tta", "recipes": {}}
    if args.replot:
        return 0 if plot(record["recipes"], args.out / f"{stem}.png") else 1
    ingested = dict(item.split("=", 1) for item in args.from_run)
    for name in list(ingested) if ingested else args.recipes:
        if name in ingested:
            result = ingest_run(name, Path(ingested[name]), args.smoke)
        else:
            result = run_recipe(name, work, args.smoke)
        result.update(environment(torch.device("cpu")))
        record["recipes"][name] = result
        args.out.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=1) + "\n")
        plot(record["recipes"], args.out / f"{stem}.png")
        last = result["points"][-1]
        print(
            f"{name}: 20-NN {last['knn_top1']:.2f}% after {last['train_seconds'] / 60:.1f} min "
            f"(raw pixels {result['baselines'].get('knn_pixels_top1', float('nan')):.2f}%, random init "
            f"{result['baselines'].get('knn_random_init_top1', float('nan')):.2f}%); few-shot "
            f"{result['fewshot']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
