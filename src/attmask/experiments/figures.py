"""Figures of the masking ablation: k-NN vs epoch (Fig. 4), data sweep (Table 2), main table,
and the paired differences to each table's baseline arm (the Δ columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attmask.experiments.config import ARMS
from attmask.viz.render import plt, save_figure

#: Short titles and bar colours of the rows that are not arms.
REFERENCE_ROWS = {"pixels": ("Raw pixels", "0.35"), "random_init": ("Random init", "0.6")}


def _label(arm: str) -> str:
    return REFERENCE_ROWS[arm][0] if arm in REFERENCE_ROWS else ARMS[arm][0]


def draw_curves(curves: dict[str, Any], path: Path, reach: dict[str, Any] | None = None) -> Path | None:
    """Mean online k-NN per epoch with a +- std band, one line per arm; with ``reach`` (see
    :func:`~attmask.experiments.summary.reach`) the reference's final level as a dotted line and
    the epoch at which each other arm first reaches it as a vertical line (AttMask Fig. 4)."""
    drawn = {arm: c for arm, c in curves.items() if c["epochs"]}
    if not drawn:
        return None
    figure, axis = plt.subplots(figsize=(5.2, 3.6))
    for arm, curve in drawn.items():
        mean, std = curve["mean"], curve["std"]
        axis.plot(curve["epochs"], mean, marker="o", markersize=3, label=_label(arm))
        axis.fill_between(
            curve["epochs"], [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2
        )
    if reach:
        axis.axhline(reach["final"], color="0.4", linestyle=":", linewidth=1)
        for index, (arm, epoch) in enumerate(reach["epochs"].items()):
            if epoch is not None and arm in drawn:
                color = f"C{list(drawn).index(arm)}"
                axis.axvline(epoch, color=color, linestyle="--", linewidth=1)
                axis.plot([epoch], [reach["final"]], "o", color=color, markersize=6, markerfacecolor="none")
                axis.text(
                    0.98,
                    0.04 + 0.12 * index,
                    f"{_label(arm)} reaches {_label(reach['reference'])}'s\n"
                    f"final {reach['final']:.1f}% at epoch {epoch:g} of {reach['final_epoch']:g}",
                    transform=axis.transAxes,
                    ha="right",
                    va="bottom",
                    fontsize=7,
                    color=color,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                )
    axis.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel("k-NN top-1 (%)")
    axis.set_title("Teacher k-NN during pretraining", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path, dpi=100)


def draw_fractions(fractions: dict[str, Any], path: Path, baseline: dict[str, Any] | None = None) -> Path | None:
    """k-NN and linear top-1 against the training-set fraction (log x), one line per arm, and
    the random-init level (``baseline``: its main-table row) as a dashed line."""
    if not fractions:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for axis, key, title in zip(axes, ("knn_top1", "linear_top1"), ("k-NN top-1 (%)", "linear top-1 (%)")):
        for arm, row in fractions.items():
            points = [(float(f) * 100, v[key]) for f, v in row.items() if v[key]["n"]]
            if points:
                axis.errorbar(
                    [p[0] for p in points],
                    [p[1]["mean"] for p in points],
                    yerr=[p[1]["std"] for p in points],
                    marker="o",
                    capsize=3,
                    label=_label(arm),
                )
        if baseline and baseline[key]["n"]:
            axis.axhline(baseline[key]["mean"], color="0.5", linestyle="--", label="Random init")
        axis.set_xscale("log")
        ticks = sorted({float(f) * 100 for row in fractions.values() for f in row})
        axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
        axis.xaxis.set_minor_formatter(plt.NullFormatter())
        axis.set_xlabel("% of each class used for pretraining")
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return save_figure(figure, path, dpi=100)


def draw_main_table(summary: dict[str, Any], path: Path) -> Path | None:
    """k-NN and linear top-1 per row: every seed (small dots) and the mean +- std (a marker with
    whiskers), on an axis fitted to the values. Markers, not bars: bars must start at 0, where
    differences of a point between arms would be invisible."""
    rows = {arm: row for arm, row in summary["main_table"].items() if row["knn_top1"]["n"]}
    if not rows:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [_label(arm) for arm in rows]
    for axis, key, title in zip(axes, ("knn_top1", "linear_top1"), ("k-NN top-1 (%)", "linear top-1 (%)")):
        for x, (arm, row) in enumerate(rows.items()):
            stat = row[key]
            color = REFERENCE_ROWS[arm][1] if arm in REFERENCE_ROWS else "C0"
            axis.plot([x + 0.18] * stat["n"], stat["values"], "o", color="0.45", markersize=3)
            axis.errorbar([x], [stat["mean"]], yerr=[stat["std"] or 0.0], fmt="D", color=color, capsize=4)
        axis.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        axis.set_xlim(-0.5, len(rows) - 0.4)
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path, dpi=100)


def _paired_arms(paired: dict[str, Any]) -> list[str]:
    """The arms of a table with at least one per-seed difference to the baseline."""
    return [arm for arm, columns in paired.items() if any(stat["n"] for stat in columns.values())]


def has_pairs(paired: dict[str, Any]) -> bool:
    """Whether any arm of a table has a per-seed difference to the baseline (a figure to draw)."""
    return bool(_paired_arms(paired))


def paired_figure_name(prefix: str) -> str:
    """File name of a table's paired-difference figure ("" is the main table)."""
    return f"paired_delta_{prefix}.png" if prefix else "paired_delta.png"


def draw_paired(paired: dict[str, Any], columns: list[list[str]], baseline: str, title: str, path: Path) -> Path | None:
    """One panel per Δ column: every arm's per-seed differences to ``baseline`` (small grey dots under it),
    their mean and 95% interval (t-distribution; red where it excludes 0), and 0 dashed.

    Args:
        paired: ``{arm: {column key: {"values", "mean", "low", "high", "n"}}}`` of a summary table.
        columns: ``[[key, label], ...]`` of the Δ columns.
    """
    arms = _paired_arms(paired)
    if not arms:
        return None
    figure, axes = plt.subplots(
        1, len(columns), figsize=(max(3.4 * len(columns), 7.0), 1.4 + 0.45 * len(arms)), squeeze=False
    )
    for axis, (key, label) in zip(axes[0], columns):
        for y, arm in enumerate(arms):
            stat = paired[arm][key]
            if not stat["n"]:
                continue
            separated = stat["low"] is not None and (stat["low"] > 0 or stat["high"] < 0)
            color = "C3" if separated else "C0"
            axis.plot(stat["values"], [y + 0.22] * stat["n"], "o", color="0.45", markersize=3.5)  # seeds, below
            if stat["low"] is not None:
                axis.plot([stat["low"], stat["high"]], [y, y], color=color, linewidth=2)
            axis.plot([stat["mean"]], [y], "D", color=color, markersize=6)
        axis.axvline(0.0, color="0.3", linestyle="--", linewidth=1)
        axis.set_yticks(range(len(arms)), [f"{_label(arm)} (n={paired[arm][key]['n']})" for arm in arms], fontsize=8)
        axis.set_ylim(len(arms) - 0.5, -0.5)
        axis.set_xlabel(f"Δ {label} (points)", fontsize=9)
        axis.grid(alpha=0.3, axis="x")
    figure.suptitle(f"{title}: difference to {_label(baseline)} at the same seed, mean and 95% interval", fontsize=9)
    return save_figure(figure, path, dpi=100)


def draw_experiment_figures(summary: dict[str, Any], folder: Path) -> list[Path]:
    """Every figure that has data, written under ``folder``."""
    columns = summary["paired_columns"]
    drawn = [
        draw_curves(summary["curves"], folder / "knn_vs_epoch.png", summary.get("curve_reach")),
        draw_fractions(summary["fractions"], folder / "data_fraction.png", summary.get("fraction_baseline")),
        draw_main_table(summary, folder / "main_table.png"),
        draw_paired(
            summary["paired"], columns, summary["baseline"], "Masking strategies", folder / paired_figure_name("")
        ),
    ]
    for prefix, table in summary.get("tables", {}).items():
        path = folder / paired_figure_name(prefix)
        drawn.append(draw_paired(table["paired"], columns, table["baseline"], table["title"], path))
    return [path for path in drawn if path is not None]
