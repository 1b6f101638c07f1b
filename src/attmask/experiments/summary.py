"""Aggregating the ablation's cells into tables: mean +- std over seeds, paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from attmask.experiments.config import ARMS, Cell, ExperimentConfig, main_fraction

BASELINE_ARM = "block"


def stats(values: Sequence[float]) -> dict[str, Any]:
    """``{mean, std, n, values}``; ``std`` is the sample standard deviation (0 for n = 1)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "values": []}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "values": values}


def metric_columns(config: ExperimentConfig) -> list[tuple[str, str]]:
    """``(key, column title)`` of the main table; few-shot keys read ``fewshot.<nu>``."""
    shots = [(f"fewshot.{nu}", f"{nu}-shot") for nu in config.eval.shots]
    return [("knn_top1", f"{config.eval.knn_k}-NN"), *shots, ("linear_top1", "Linear")]


def metric(metrics: dict[str, Any], key: str) -> float:
    """``metrics[key]``, with ``fewshot.<nu>`` reading the nested few-shot mean."""
    if key.startswith("fewshot."):
        return float(metrics["fewshot"][key.split(".", 1)[1]])
    return float(metrics[key])


def _row(results: Sequence[dict[str, Any]], columns: list[tuple[str, str]]) -> dict[str, Any]:
    return {key: stats([metric(r["metrics"], key) for r in results]) for key, _ in columns}


def _paired(config: ExperimentConfig, results: dict[Cell, dict], subset: Any, arm: str) -> dict[str, Any]:
    """Per-seed differences ``arm - block`` of k-NN and linear top-1 (same seed = same init)."""
    deltas: dict[str, list[float]] = {"knn_top1": [], "linear_top1": []}
    for seed in config.seeds:
        ours, theirs = results.get(Cell(arm, seed, subset)), results.get(Cell(BASELINE_ARM, seed, subset))
        if ours is not None and theirs is not None:
            for key in deltas:
                deltas[key].append(ours["metrics"][key] - theirs["metrics"][key])
    return {key: stats(values) for key, values in deltas.items()}


def _curves(config: ExperimentConfig, inits: dict[int, dict], results: dict[Cell, dict], subset: Any) -> dict[str, Any]:
    """Mean +- std over seeds of the online k-NN per epoch (epoch 0 = the shared random init)."""
    curves = {}
    for arm in config.curve_arms:
        by_epoch: dict[float, list[float]] = {}
        for seed in config.seeds:
            result = results.get(Cell(arm, seed, subset))
            if result is None:
                continue
            for epoch, value in inits.get(seed, {}).get("curve", []) + result["curve"]:
                by_epoch.setdefault(epoch, []).append(value)
        epochs = sorted(by_epoch)
        curves[arm] = {"epochs": epochs, **{k: [stats(by_epoch[e])[k] for e in epochs] for k in ("mean", "std", "n")}}
    return curves


def _fractions(config: ExperimentConfig, results: dict[Cell, dict], subset: Any) -> dict[str, Any]:
    """Data sweep: per arm and fraction (the main table's fraction included), k-NN / linear
    stats and the number of images."""
    table: dict[str, Any] = {}
    seeds = config.seeds[: config.fraction_seeds]
    columns: dict[float, Any] = {fraction: main_fraction(fraction, subset) for fraction in config.fractions}
    if subset is None or (isinstance(subset, float) and subset <= 1):
        columns[1.0 if subset is None else subset] = subset
    for arm in config.fraction_arms if config.fractions else []:
        table[arm] = {}
        for fraction in sorted(columns):
            cells = [results[c] for c in (Cell(arm, s, columns[fraction]) for s in seeds) if c in results]
            table[arm][str(fraction)] = {
                "images": cells[0]["train_images"] if cells else None,
                "knn_top1": stats([r["metrics"]["knn_top1"] for r in cells]),
                "linear_top1": stats([r["metrics"]["linear_top1"] for r in cells]),
            }
    return table


def summarize(
    config: ExperimentConfig, inits: dict[int, dict], results: dict[Cell, dict], main: Sequence[Cell]
) -> dict[str, Any]:
    """The tables of the finished cells (missing cells are left out of the statistics)."""
    columns = metric_columns(config)
    subset = main[0].subset if main else None
    rows = {"random_init": _row(list(inits.values()), columns)}
    paired = {}
    for arm in config.arms:
        rows[arm] = _row([results[c] for c in main if c.arm == arm and c in results], columns)
        if arm != BASELINE_ARM and BASELINE_ARM in config.arms:
            paired[arm] = _paired(config, results, subset, arm)
    finished = [r for r in [*inits.values(), *results.values()]]
    seconds = sum(sum(r.get("seconds", {}).values()) for r in finished)
    images = next((results[c]["train_images"] for c in main if c in results), None)
    return {
        "columns": columns,
        "main_table": rows,
        "paired_vs_block": paired,
        "curves": _curves(config, inits, results, subset),
        "fractions": _fractions(config, results, subset),
        "fraction_baseline": _row(
            [inits[s] for s in config.seeds[: config.fraction_seeds] if s in inits],
            [("knn_top1", ""), ("linear_top1", "")],
        ),
        "main_images": images,
        "compute_seconds": seconds,
        "devices": sorted({r["device"] for r in finished if r.get("device")}),
        "commits": sorted({r["commit"] for r in finished if r.get("commit")}),
        "cells": {
            c.name: {k: r[k] for k in ("metrics", "curve", "train_images", "steps", "seconds", "resumed")}
            for c, r in results.items()
        },
        "inits": {str(seed): {"metrics": r["metrics"], "curve": r["curve"]} for seed, r in inits.items()},
    }


def _cell_text(value: dict[str, Any], signed: bool = False) -> str:
    if value["n"] == 0:
        return "-"
    text = f"{value['mean']:+.2f}" if signed else f"{value['mean']:.2f}"
    return f"{text} ± {value['std']:.2f}" if value["n"] > 1 else text


def _label(arm: str) -> str:
    return "Random init (no pretraining)" if arm == "random_init" else ARMS[arm][0]


def main_table_markdown(summary: dict[str, Any]) -> list[str]:
    """The Table 1 analogue as markdown lines."""
    columns = summary["columns"]
    paired = summary["paired_vs_block"]
    titles = [title for _, title in columns] + (["Δ k-NN vs block", "Δ linear vs block"] if paired else [])
    lines = ["| Masking | n | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(titles)]
    for arm, row in summary["main_table"].items():
        cells = [_cell_text(row[key]) for key, _ in columns]
        if paired:
            delta = paired.get(arm)
            cells += (
                [_cell_text(delta["knn_top1"], True), _cell_text(delta["linear_top1"], True)] if delta else ["-", "-"]
            )
        lines.append(f"| {_label(arm)} | {row[columns[0][0]]['n']} | " + " | ".join(cells) + " |")
    return lines


def fraction_table_markdown(summary: dict[str, Any], key: str) -> list[str]:
    """The Table 2 analogue (one metric) as markdown lines; empty without a sweep."""
    table = summary["fractions"]
    if not table:
        return []
    fractions = list(next(iter(table.values())))
    heads = []
    for fraction in fractions:
        images = next((table[a][fraction]["images"] for a in table if table[a][fraction]["images"]), None)
        heads.append(f"{float(fraction) * 100:g}%" + (f" ({images} images)" if images else ""))
    lines = ["| Masking | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for arm, row in table.items():
        lines.append(f"| {_label(arm)} | " + " | ".join(_cell_text(row[f][key]) for f in fractions) + " |")
    baseline = summary.get("fraction_baseline", {}).get(key)
    if baseline and baseline["n"]:
        lines.append(f"| Random init (no pretraining) | {_cell_text(baseline)} (any size) |" + " |" * (len(heads) - 1))
    return lines


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def write_markdown(summary: dict[str, Any]) -> str:
    """``results.md``: set-up, the main table, the curves figure and the data sweep."""
    env, shared, experiment = summary["environment"], summary["pretrain_shared"], summary["experiment"]
    evaluation = experiment["eval"]
    per_class = evaluation["train_per_class"] or "all"
    lines = [
        "# Masking ablation: AttMask Table 1, Table 2 and Fig. 4 at small scale",
        "",
        f"Measured on {', '.join(summary['devices']) or env['device']} with torch {env['versions']['torch']}, "
        f"timm {env['versions']['timm']}; commit {', '.join(summary['commits']) or env['commit']}; {env['date']}; "
        f"compute {_duration(summary['compute_seconds'])}.",
        "",
        f"Pretraining: iBOT, {shared['arch']} (depth {shared['depth']}, patch {shared['patch_size']}) on "
        f"{shared['source']}, data.subset {shared['subset']} ({summary['main_images']} images), "
        f"{shared['epochs']} epochs, preset `{summary['pretrain_preset_name']}` with overrides "
        f"{experiment['pretrain']['overrides'] or 'none'}. Arms differ only in the masking strategy and "
        f"ratio; seeds {experiment['seeds']} (a seed fixes the initial weights and the data order, "
        "shared by every arm).",
        "",
        f"Evaluation of the teacher's [CLS] features: weighted {evaluation['knn_k']}-NN "
        f"(T = {evaluation['temperature']}) with a bank of {per_class} train images per class and the "
        f"whole test split as queries; few-shot k-NN with nu images per class (mean over "
        f"{evaluation['fewshot_repeats']} disjoint subsets, k = 1 for nu = 1); linear probe "
        f"({evaluation['linear_epochs']} epochs, SGD, standardised features). Top-1 in %, mean ± sample "
        "std over seeds; Δ columns are per-seed differences to block-wise masking.",
        "",
        "## Masking strategies (Table 1 analogue)",
        "",
        *main_table_markdown(summary),
        "",
        *[f"Note: {note}" for note in summary.get("notes", [])],
        *([""] if summary.get("notes") else []),
    ]
    if summary["curves"]:
        lines += [
            "## k-NN during pretraining (Fig. 4 analogue)",
            "",
            "Online weighted k-NN of the teacher after every epoch (epoch 0: random init), mean ± std over seeds.",
            "",
            "![k-NN vs epoch](figures/knn_vs_epoch.png)",
            "",
        ]
    if summary["fractions"]:
        lines += [
            "## Training-set size (Table 2 analogue)",
            "",
            "Fraction of each class of the training set, same number of epochs (fewer steps on less "
            f"data); seeds {experiment['seeds'][: experiment['fraction_seeds']]}.",
            "",
            f"{evaluation['knn_k']}-NN top-1:",
            "",
            *fraction_table_markdown(summary, "knn_top1"),
            "",
            "Linear probe top-1:",
            "",
            *fraction_table_markdown(summary, "linear_top1"),
            "",
            "![data fraction](figures/data_fraction.png)",
            "",
        ]
    return "\n".join(lines)
