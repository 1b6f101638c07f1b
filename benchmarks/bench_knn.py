"""k-NN benchmark: weighted k-NN evaluation time and peak memory against bank size.

A synthetic bank of up to 1,281,167 x 384 features (ImageNet-train size, ViT-S width) is
generated chunk by chunk from a seeded generator (1000 class centres plus Gaussian noise,
stored as float16 by default: 0.98 GB at full size) and queried by
``attmask.eval.knn.weighted_knn`` (k 20, T 0.07) for several bank sizes and bank chunk sizes.
Per run it records the wall time and the peak memory above the memory held before the call:
on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak resident set (``VmHWM`` of
``/proc/self/status`` after a reset through ``/proc/self/clear_refs``, Linux only), which
misses blocks the allocator reuses from memory already resident, so small CPU values are lower
bounds. Each run also records ``similarity_block_bytes``, the largest similarity block (query
chunk x bank chunk x 4 bytes) the chunking allows. Before timing, a small problem checks that
the bank-chunked search returns the brute-force top-k of the full similarity matrix and the
same accuracy as an unchunked search.

Queries: 10,000 on CUDA, 1,000 on CPU (2 cores would take minutes per point otherwise).
Writes ``benchmarks/results/knn-<device>.json`` and ``knn-<device>.png`` (time and memory vs
bank size, log-log); ``--smoke`` uses tiny sizes and writes ``knn-smoke-<device>.*``.

Usage: ``python benchmarks/bench_knn.py [--smoke] [--out DIR] [--device cpu|cuda] [--dtype float16|float32]
[--threads N]``. On a CPU shared with other work, ``--threads`` below the core count avoids
intra-op threads waiting on each other (small chunks slow down many times otherwise).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from attmask.core.environment import environment
from attmask.eval.knn import nearest_neighbours, weighted_knn
from attmask.viz.render import plt, save_figure

RESULTS = Path(__file__).resolve().parent / "results"
IMAGENET_TRAIN = 1_281_167
NOISE = 3.0  # noise std around the class centres: a 20k bank of 1000 classes gives ~60% top-1


@dataclass(frozen=True)
class Setting:
    """What one benchmark run measures."""

    bank_sizes: tuple[int, ...]
    bank_chunk_sizes: tuple[int, ...]
    unchunked_up_to: int  # banks up to this size are also searched in one block (Q x M)
    num_queries: int
    query_chunk_size: int
    dim: int
    num_classes: int
    k: int
    temperature: float
    dtype: str
    repeats: int
    verify_bank: int
    verify_queries: int
    verify_bank_chunk: int
    smoke: bool


def make_setting(smoke: bool, device: torch.device, dtype: str) -> Setting:
    """Full sizes (ImageNet-train bank, ViT-S width) or tiny smoke sizes."""
    if smoke:
        return Setting((500, 2000), (256, 1024), 2000, 64, 32, 384, 10, 20, 0.07, dtype, 1, 600, 50, 97, True)
    queries = 10_000 if device.type == "cuda" else 1_000
    return Setting(
        (10_000, 100_000, IMAGENET_TRAIN),
        (8192, 32768, 131072),
        100_000,
        queries,
        1024,
        384,
        1000,
        20,
        0.07,
        dtype,
        3,
        20_000,
        1000,
        4096,
        False,
    )


def synthetic_features(
    count: int,
    dim: int,
    num_classes: int,
    dtype: torch.dtype,
    device: torch.device,
    seed: int,
    noise: float = NOISE,
    chunk: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-clustered features, written chunk by chunk so no float32 copy of the bank exists.

    Features are ``centre[label] + noise * N(0, I)`` with standard-normal centres that depend
    only on ``num_classes`` and ``dim``, so banks and queries of any seed share them.

    Returns:
        ``(features (count, dim) of dtype, labels (count,) int64)`` on ``device``.
    """
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(12345)).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    labels = torch.randint(num_classes, (count,), generator=generator, device=device)
    features = torch.empty(count, dim, dtype=dtype, device=device)
    for start in range(0, count, chunk):
        rows = labels[start : start + chunk]
        features[start : start + chunk] = centres[rows] + noise * torch.randn(
            rows.shape[0], dim, generator=generator, device=device
        )
    return features, labels


class PeakMemory:
    """Peak memory above the level at :meth:`reset` (CUDA allocator or CPU resident set)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.baseline = device, 0
        self.method = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM after clear_refs"

    @staticmethod
    def _status_kib(key: str) -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE).group(1))

    def reset(self) -> None:
        """Start a measurement from the memory held now."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
            self.baseline = self._status_kib("VmHWM") * 1024

    def peak_bytes(self) -> int:
        """Peak bytes above the baseline since :meth:`reset`."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        # The kernel's RSS counters are per-CPU approximations: when the previous repeat's
        # buffers are freed after the reset, VmHWM can read a few hundred KB below the baseline
        # (CI saw a negative peak). The peak since a reset is never below the level at it.
        return max(0, self._status_kib("VmHWM") * 1024 - self.baseline)


def _normalised(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features.float(), dim=1)


def verify(setting: Setting, device: torch.device) -> dict:
    """Check the bank-chunked search against a brute-force top-k of the full similarity matrix.

    Raises:
        RuntimeError: the chunked neighbours are not a top-k of the full matrix, or the
            chunked and unchunked accuracies differ.
    """
    dtype = getattr(torch, setting.dtype)
    bank, labels = synthetic_features(setting.verify_bank, setting.dim, setting.num_classes, dtype, device, 0)
    queries, query_labels = synthetic_features(
        setting.verify_queries, setting.dim, setting.num_classes, dtype, device, 1
    )
    full = _normalised(queries) @ _normalised(bank).T  # (Q, M), fine at this size
    brute_values, brute_indices = full.topk(setting.k, dim=1)
    values, indices = nearest_neighbours(bank, queries, setting.k, bank_chunk_size=setting.verify_bank_chunk)
    # Valid top-k: the chunked neighbours' similarities, read from the full matrix, are its top k.
    regathered_error = (full.gather(1, indices) - brute_values).abs().max().item()
    value_error = (values - brute_values).abs().max().item()
    arguments = (bank, labels, queries, query_labels, setting.num_classes, setting.k, setting.temperature)
    chunked = weighted_knn(*arguments, chunk_size=setting.query_chunk_size, bank_chunk_size=setting.verify_bank_chunk)
    unchunked = weighted_knn(*arguments, chunk_size=setting.verify_queries, bank_chunk_size=setting.verify_bank)
    record = {
        "bank_size": setting.verify_bank,
        "num_queries": setting.verify_queries,
        "bank_chunk_size": setting.verify_bank_chunk,
        "max_similarity_error_of_chunked_neighbours": regathered_error,
        "max_returned_similarity_error": value_error,
        "index_agreement": (indices == brute_indices).double().mean().item(),
        "top1_chunked": chunked.top1,
        "top1_unchunked": unchunked.top1,
        "top5_chunked": chunked.top5,
        "top5_unchunked": unchunked.top5,
    }
    record["passed"] = regathered_error <= 1e-5 and value_error <= 1e-5 and chunked == unchunked
    if not record["passed"]:
        raise RuntimeError(f"chunked k-NN differs from brute force: {record}")
    return record


def _timed(function, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure_bank(setting: Setting, size: int, device: torch.device, memory: PeakMemory) -> list[dict]:
    """Time and peak memory of ``weighted_knn`` on one bank size, for every chunk size."""
    dtype = getattr(torch, setting.dtype)
    bank, labels = synthetic_features(size, setting.dim, setting.num_classes, dtype, device, 0)
    queries, query_labels = synthetic_features(setting.num_queries, setting.dim, setting.num_classes, dtype, device, 1)
    chunks = [c for c in setting.bank_chunk_sizes if c < size]
    chunks += [size] if size <= setting.unchunked_up_to else []
    runs = []
    for bank_chunk in chunks:
        result, seconds, peaks = None, [], []
        for _ in range(setting.repeats):
            memory.reset()

            def call(bank_chunk: int = bank_chunk) -> None:  # bound now: called at once, in this iteration
                nonlocal result
                result = weighted_knn(
                    bank,
                    labels,
                    queries,
                    query_labels,
                    setting.num_classes,
                    setting.k,
                    setting.temperature,
                    setting.query_chunk_size,
                    bank_chunk_size=bank_chunk,
                )

            seconds.append(_timed(call, device))
            peaks.append(memory.peak_bytes())
        median = statistics.median(seconds)
        runs.append(
            {
                "bank_size": size,
                "bank_chunk_size": bank_chunk,
                "unchunked": bank_chunk >= size,
                "seconds": seconds,
                "median_seconds": median,
                "queries_per_second": setting.num_queries / median,
                "peak_bytes": max(peaks),
                "bank_bytes": bank.numel() * bank.element_size(),
                "similarity_block_bytes": min(setting.query_chunk_size, setting.num_queries) * bank_chunk * 4,
                "top1": result.top1,
                "top5": result.top5,
            }
        )
    return runs


def draw(runs: list[dict], setting: Setting, device_label: str, path: Path) -> Path:
    """Time and peak memory against bank size, one line per bank chunk size (log-log)."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    series: dict[str, list[dict]] = {}
    for run in runs:
        label = "unchunked (Q x M)" if run["unchunked"] else f"bank chunk {run['bank_chunk_size']}"
        series.setdefault(label, []).append(run)
    for label, points in series.items():
        sizes = [p["bank_size"] for p in points]
        axes[0].plot(sizes, [p["median_seconds"] for p in points], marker="o", label=label)
        axes[1].plot(sizes, [max(p["peak_bytes"], 1) / 2**20 for p in points], marker="o", label=label)
    for axis, ylabel in zip(axes, ("seconds (median)", "peak memory above bank (MiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("bank size M")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
    figure.suptitle(
        f"weighted {setting.k}-NN, {setting.num_queries} queries x {setting.dim} "
        f"({setting.dtype} bank) on {device_label}",
        fontsize=9,
    )
    return save_figure(figure, path)


def run(smoke: bool, device: torch.device, dtype: str = "float16") -> dict:
    """Verify, then measure every bank size; returns the result record."""
    setting = make_setting(smoke, device, dtype)
    memory = PeakMemory(device)
    verification = verify(setting, device)  # also warms up kernels before timing
    runs = [entry for size in setting.bank_sizes for entry in measure_bank(setting, size, device, memory)]
    return {
        "benchmark": "knn",
        **environment(device),
        "setting": {
            **asdict(setting),
            "bank_generation": "seeded, chunk-wise: standard-normal class "
            f"centre + {NOISE} x standard-normal noise, stored in the bank dtype",
        },
        "memory_method": memory.method,
        "verification": verification,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds, for CI")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="bank storage dtype")
    parser.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # recorded in the device string
    device = torch.device(args.device)
    result = run(args.smoke, device, args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"knn-{'smoke-' if args.smoke else ''}{device.type}"
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    figure = draw(
        result["runs"], make_setting(args.smoke, device, args.dtype), result["device"], args.out / f"{stem}.png"
    )
    check = result["verification"]
    print(f"device: {result['device']}  commit: {result['commit']}  memory: {result['memory_method']}")
    print(
        f"verified on {check['bank_size']} x {check['num_queries']}: chunked == brute force "
        f"(index agreement {check['index_agreement']:.4f}, top-1 {check['top1_chunked']:.2f}%)"
    )
    print("| bank | bank chunk | median s | queries/s | peak MiB | top-1 |\n|---|---|---|---|---|---|")
    for entry in result["runs"]:
        chunk = "all" if entry["unchunked"] else entry["bank_chunk_size"]
        print(
            f"| {entry['bank_size']} | {chunk} | {entry['median_seconds']:.3f} | "
            f"{entry['queries_per_second']:.0f} | {entry['peak_bytes'] / 2**20:.1f} | {entry['top1']:.2f} |"
        )
    print(f"wrote {path} and {figure}")


if __name__ == "__main__":
    main()
