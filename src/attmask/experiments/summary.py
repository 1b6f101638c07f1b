"""Aggregating the ablation's cells into tables: mean +- std over seeds, paired differences with
95% intervals, k-NN curves and the epoch at which an arm reaches the baseline's final accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import stats as scipy_stats

from attmask.config import Config
from attmask.engine.data import crop_config
from attmask.experiments.config import ExperimentConfig, arm_notes
from attmask.experiments.plan import Cell, CellPlan, main_fraction, table_specs

#: How feature kinds are named in column titles.
KIND_LABEL = {"cls": "[CLS]", "gap": "GAP", "cls+gap": "[CLS]+GAP"}


def stats(values: Sequence[float]) -> dict[str, Any]:
    """``{mean, std, n, values}``; ``std`` is the sample standard deviation (0 for n = 1)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "values": []}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "values": values}


def interval(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """:func:`stats` plus the two-sided ``level`` confidence interval of the mean,
    ``mean -+ t_{(1+level)/2, n-1} * std / sqrt(n)`` (t-distribution; ``low``/``high`` are None
    below two values)."""
    result = stats(values)
    n = result["n"]
    if n < 2:
        return {**result, "low": None, "high": None}
    half = float(scipy_stats.t.ppf((1 + level) / 2, n - 1)) * result["std"] / math.sqrt(n)
    return {**result, "low": result["mean"] - half, "high": result["mean"] + half}


def metric_columns(config: ExperimentConfig) -> list[tuple[str, str]]:
    """``(key, column title)`` of the tables; few-shot keys read ``fewshot.<nu>``, extra feature
    kinds ``<kind>.knn_top1`` and ``<kind>.linear_top1``."""
    shots = [(f"fewshot.{nu}", f"{nu}-shot") for nu in config.eval.shots]
    extra = []
    for kind in config.eval.features[1:]:
        extra += [
            (f"{kind}.knn_top1", f"{KIND_LABEL[kind]} {config.eval.knn_k}-NN"),
            (f"{kind}.linear_top1", f"{KIND_LABEL[kind]} linear"),
        ]
    return [("knn_top1", f"{config.eval.knn_k}-NN"), *shots, ("linear_top1", "Linear"), *extra]


def paired_columns(config: ExperimentConfig) -> list[tuple[str, str]]:
    """``(key, title)`` of the paired-difference columns: k-NN and linear of the headline
    feature, k-NN of every other kind."""
    extra = [(f"{kind}.knn_top1", f"{KIND_LABEL[kind]} k-NN") for kind in config.eval.features[1:]]
    return [("knn_top1", "k-NN"), ("linear_top1", "linear"), *extra]


def metric(metrics: dict[str, Any], key: str) -> float:
    """The value at dotted ``key``: ``knn_top1``, ``fewshot.5`` or ``gap.knn_top1``."""
    if key.startswith("fewshot."):
        return float(metrics["fewshot"][key.split(".", 1)[1]])
    kind, _, rest = key.partition(".")
    return metric(metrics[kind], rest) if rest else float(metrics[key])


def has_metric(metrics: dict[str, Any], key: str) -> bool:
    """Whether dotted ``key`` exists in ``metrics`` (the raw-pixel row has no GAP columns)."""
    if key.startswith("fewshot."):
        return key.split(".", 1)[1] in metrics.get("fewshot", {})
    kind, _, rest = key.partition(".")
    return kind in metrics and (not rest or has_metric(metrics[kind], rest))


def _row(results: Sequence[dict[str, Any]], columns: list[tuple[str, str]]) -> dict[str, Any]:
    """Stats of every column over ``results``; a column a result lacks leaves that result out."""
    return {
        key: stats([metric(r["metrics"], key) for r in results if has_metric(r["metrics"], key)]) for key, _ in columns
    }


def provenance(results: Sequence[dict[str, Any]], key: str) -> set[str]:
    """Every ``key`` (``device`` or ``commit``) of ``results``: the evaluating process's and
    those of the processes that trained each cell (``segments``)."""
    values = {r[key] for r in results if r.get(key)}
    return values | {s[key] for r in results for s in r.get("segments", []) if s.get(key)}


def table_summary(
    config: ExperimentConfig,
    cells: Sequence[Cell],
    results: dict[Cell, dict],
    inits: dict[int, dict],
    baseline: str,
    pixels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rows (raw pixels when given, random init, then each arm of ``cells``) and per-seed paired
    differences of every arm to ``baseline`` with 95% intervals. Missing cells are left out."""
    columns = metric_columns(config)
    rows = {"pixels": _row([pixels], columns)} if pixels is not None else {}
    rows["random_init"] = _row(list(inits.values()), columns)
    arms = list(dict.fromkeys(cell.arm for cell in cells))
    for arm in arms:
        rows[arm] = _row([results[c] for c in cells if c.arm == arm and c in results], columns)
    by_key = {(c.arm, c.seed): results[c] for c in cells if c in results}
    paired = {}
    for arm in arms if baseline in arms else []:
        if arm == baseline:
            continue
        seeds = [c.seed for c in cells if c.arm == arm and (arm, c.seed) in by_key and (baseline, c.seed) in by_key]
        paired[arm] = {
            key: interval(
                [metric(by_key[arm, s]["metrics"], key) - metric(by_key[baseline, s]["metrics"], key) for s in seeds]
            )
            for key, _ in paired_columns(config)
        }
    return {"rows": rows, "paired": paired, "baseline": baseline if paired else ""}


def curves(
    arms: Sequence[str], seeds: Sequence[int], inits: dict[int, dict], results: dict[Cell, dict], subset: Any
) -> dict[str, Any]:
    """Mean +- std over seeds of the online k-NN per epoch (epoch 0 = the shared random init)."""
    drawn = {}
    for arm in arms:
        by_epoch: dict[float, list[float]] = {}
        for seed in seeds:
            result = results.get(Cell(arm, seed, subset))
            if result is None:
                continue
            for epoch, value in inits.get(seed, {}).get("curve", []) + result["curve"]:
                by_epoch.setdefault(epoch, []).append(value)
        epochs = sorted(by_epoch)
        drawn[arm] = {"epochs": epochs, **{k: [stats(by_epoch[e])[k] for e in epochs] for k in ("mean", "std", "n")}}
    return drawn


def reach(curves_by_arm: dict[str, Any], reference: str) -> dict[str, Any]:
    """AttMask Fig. 4's speed-up: for every other arm, the first epoch at which its mean curve
    reaches ``reference``'s final mean (None if it never does).

    Returns:
        ``{reference, final, final_epoch, epochs: {arm: epoch or None}}``; empty without a
        finished reference curve.
    """
    ref = curves_by_arm.get(reference)
    if not ref or not ref["epochs"]:
        return {}
    final = ref["mean"][-1]
    epochs = {}
    for arm, curve in curves_by_arm.items():
        if arm != reference and curve["epochs"]:
            epochs[arm] = next((e for e, m in zip(curve["epochs"], curve["mean"]) if m >= final), None)
    return {"reference": reference, "final": final, "final_epoch": ref["epochs"][-1], "epochs": epochs}


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


def _stored(inits: dict[str, dict[int, dict]], results: dict[Cell, dict], pixels: dict | None) -> dict[str, Any]:
    """Every finished cell's raw numbers for ``results.json``: ``cells``, ``inits`` and ``pixels``."""
    return {
        "cells": {
            c.name: {
                **{k: r[k] for k in ("metrics", "curve", "train_images", "steps", "seconds", "resumed")},
                "stalled_seconds": r.get("stalled_seconds"),  # None in cells stored before it was measured
                "segments": r.get("segments", []),  # none in cells stored before segments existed
            }
            for c, r in results.items()
        },
        "inits": {
            f"{prefix}-s{seed}" if prefix else str(seed): {"metrics": r["metrics"], "curve": r["curve"]}
            for prefix, group in inits.items()
            for seed, r in group.items()
        },
        "pixels": None if pixels is None else {"metrics": pixels["metrics"], "seconds": pixels["seconds"]},
    }


def summarize(
    config: ExperimentConfig,
    inits: dict[str, dict[int, dict]],
    results: dict[Cell, dict],
    plan: CellPlan,
    pixels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The tables of the finished cells (missing cells are left out of the statistics).

    Args:
        inits: random-init results by table prefix ("" for the main table) and seed.
        pixels: the raw-pixel result, a row of every table (None: no such row).
    """
    subset = plan.main[0].subset if plan.main else None
    main_inits = inits.get("", {})
    main = table_summary(config, plan.main, results, main_inits, config.baseline, pixels)
    tables = {}
    for prefix, spec in table_specs(config).items():
        cells = plan.tables.get(prefix, [])
        tables[prefix] = {
            **table_summary(config, cells, results, inits.get(prefix, {}), spec.baseline, pixels),
            "title": spec.title or prefix,
            "overrides": list(spec.overrides),
            "seeds": list(spec.seeds),
        }
    finished = [r for group in inits.values() for r in group.values()] + list(results.values())
    finished += [pixels] if pixels is not None else []
    seconds = sum(sum(r.get("seconds", {}).values()) for r in finished)
    images = next((results[c]["train_images"] for c in plan.main if c in results), None)
    drawn = curves(config.curve_arms, config.seeds, main_inits, results, subset)
    return {
        "columns": metric_columns(config),
        "paired_columns": paired_columns(config),
        "main_table": main["rows"],
        "paired": main["paired"],
        "baseline": main["baseline"],
        "tables": tables,
        "curves": drawn,
        "curve_reach": reach(drawn, config.curve_arms[0]) if config.curve_arms else {},
        "fractions": _fractions(config, results, subset),
        "fraction_baseline": _row(
            [main_inits[s] for s in config.seeds[: config.fraction_seeds] if s in main_inits],
            [("knn_top1", ""), ("linear_top1", "")],
        ),
        "main_images": images,
        "compute_seconds": seconds,
        "stalled_seconds": sum(r.get("stalled_seconds", 0.0) for r in results.values()),
        "devices": sorted(provenance(finished, "device")),
        "commits": sorted(provenance(finished, "commit")),
        **_stored(inits, results, pixels),
    }


def recipe(shared: Config) -> dict[str, Any]:
    """The shared pretraining recipe's facts the report prints: epochs, data, architecture."""
    return {
        "epochs": shared.optim.epochs,
        "subset": shared.data.subset,
        "arch": shared.model.arch,
        "depth": shared.model.depth,
        "patch_size": shared.model.patch_size,
        "source": shared.data.source,
    }


def recipe_notes(config: ExperimentConfig, shared: Config) -> list[str]:
    """:func:`arm_notes` of the main table's arms on the shared recipe's token grid (e.g. that
    AttMask-Hint equals -High where the grid is too coarse to reveal a token)."""
    tokens = (crop_config(shared.data).global_size // shared.model.patch_size) ** 2
    hint_elsewhere = "attmask_hint" in config.fine_grid.arms
    return arm_notes(config.arms, tokens, shared.masking.show_ratio, hint_elsewhere)
