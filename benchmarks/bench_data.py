"""Data benchmark: images/s of the pretraining input pipeline, per-image augmentation in the
loader workers (``data.augment_on=workers``) against decoding in the workers and batched
augmentation on the training device (``data.augment_on=device``).

Both paths run the loader the trainer builds (:func:`attmask.runs.data_bench.measure_pretraining_loader`:
same data, crops, workers, batch size and threads, the device path augmenting inside the timed
loop), interleaved A B A B over several rounds so that drifting machine load hits both. Reports
the median over rounds of the steady images/s (after the first batch, which includes worker
start-up) and writes ``benchmarks/results/data-<device>.json`` with device, versions and commit.

Default setting: the demo preset (``configs/fashion_mnist_ibot_attmask_tiny.yaml``: 6 multi-crop
views of 28 / 14 px, batch 64, 1 worker) with its threads. ``--smoke``: digits, tiny crops, 3
batches, one round, written as ``data-smoke-<device>.json``.

Usage: ``python benchmarks/bench_data.py [--smoke] [--out DIR] [--device cpu|cuda] [--batches N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from attmask.config import load_config
from attmask.core.environment import environment
from attmask.runs.data_bench import measure_pretraining_loader

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRESET = ROOT / "configs" / "fashion_mnist_ibot_attmask_tiny.yaml"
SMOKE = ["data.source=digits", "data.crops=tiny", "data.batch_size=8", "data.num_workers=0"]
PATHS = ("workers", "device")


def run(smoke: bool, device: torch.device, batches: int, rounds: int) -> dict:
    """Interleaved measurements of both paths; returns the JSON record."""
    overrides = [f"train.device={device.type}", *(SMOKE if smoke else [])]
    configs = {path: load_config(PRESET, [*overrides, f"data.augment_on={path}"]) for path in PATHS}
    runs: dict[str, list[dict]] = {path: [] for path in PATHS}
    for _ in range(rounds):
        for path in PATHS:
            result = measure_pretraining_loader(configs[path], batches)
            runs[path].append(
                {
                    "images_per_second": result.images_per_second,
                    "steady_images_per_second": result.steady_images_per_second,
                    "seconds": result.seconds,
                    "images": result.images,
                    "crops_per_image": result.crops_per_image,
                }
            )
    median = {
        path: statistics.median(r["steady_images_per_second"] or r["images_per_second"] for r in runs[path])
        for path in PATHS
    }
    data = configs["workers"].data
    return {
        "benchmark": "data",
        **environment(device),
        "setting": {
            "preset": str(PRESET.relative_to(ROOT)),
            "smoke": smoke,
            "batches": batches,
            "rounds": rounds,
            "source": data.source,
            "batch_size": data.batch_size,
            "num_workers": data.num_workers,
            "num_threads": configs["workers"].train.num_threads,
        },
        "runs": runs,
        "median_steady_images_per_second": median,
        "speedup_device_vs_workers": median["device"] / median["workers"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="digits, tiny crops, 3 batches, one round (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batches", type=int, default=40, help="batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds")
    args = parser.parse_args()
    batches, rounds = (3, 1) if args.smoke else (args.batches, args.rounds)
    device = torch.device(args.device)
    result = run(args.smoke, device, batches, rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"data-{'smoke-' if args.smoke else ''}{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    median = result["median_steady_images_per_second"]
    print(
        f"data pipeline on {result['device']}: workers {median['workers']:.1f} images/s, device "
        f"{median['device']:.1f} images/s ({result['speedup_device_vs_workers']:.2f}x)"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
