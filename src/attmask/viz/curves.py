"""Training curves of a run log (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attmask.viz.render import plt, save_figure


def series(records: Sequence[dict[str, Any]], key: str, x: str = "step") -> tuple[list[float], list[float]]:
    """``(x values, y values)`` of the records holding a finite number under ``key``.

    A resumed run re-logs the steps it replays; the last value of every ``x`` wins.
    """
    points: dict[float, float] = {}
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and x in record:
            points[float(record[x])] = float(value)
    ordered = sorted(points.items())
    return [p[0] for p in ordered], [p[1] for p in ordered]


def plot_panels(
    records: Sequence[dict[str, Any]], panels: Sequence[tuple[str, Sequence[str]]], path: str | Path, x: str = "step"
) -> Path | None:
    """One subplot per ``(title, keys)`` panel, one line per key; panels without data are skipped.

    Returns:
        The written PNG, or None when no panel has data.
    """
    filled = [(title, [(key, series(records, key, x)) for key in keys]) for title, keys in panels]
    filled = [(title, [(k, s) for k, s in lines if s[0]]) for title, lines in filled]
    filled = [(title, lines) for title, lines in filled if lines]
    if not filled:
        return None
    figure, axes = plt.subplots(1, len(filled), figsize=(4.2 * len(filled), 3.2), squeeze=False)
    for axis, (title, lines) in zip(axes[0], filled):
        for key, (xs, ys) in lines:
            axis.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, markersize=3)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel(x)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return save_figure(figure, path, dpi=100)


#: The k-NN curves (feature: log key).
KNN_CURVES = {"[CLS]": "knn_top1", "GAP": "knn_gap_top1", "[CLS]+GAP": "knn_clsgap_top1"}
#: The levels drawn as grey horizontal lines: (legend label, log key, line style, what the line is).
KNN_LEVELS = (
    ("random init [CLS]", "knn_random_init_top1", "dashed", "the same architecture at random initialisation"),
    ("raw pixels", "knn_pixels_top1", "dotted", "the raw pixels"),
)


def plot_knn(records: Sequence[dict[str, Any]], path: str | Path, backbone: str | None = None) -> Path | None:
    """Weighted k-NN top-1 against images seen (thousands), with the random-init and raw-pixel
    levels of the same bank and queries as dashed lines; None when the run logged no k-NN.
    ``backbone`` (``teacher``, ``encoder``) prefixes the curves' labels when it is known."""
    curves = {
        f"{backbone} {feature}" if backbone else feature: series(records, key, "images_seen")
        for feature, key in KNN_CURVES.items()
    }
    curves = {label: points for label, points in curves.items() if points[0]}
    if not curves:
        return None
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    for label, (xs, ys) in curves.items():
        axis.plot([x / 1000 for x in xs], ys, marker="o", markersize=4, label=label)
    for label, key, style, _ in KNN_LEVELS:
        values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
        if values:
            axis.axhline(values[-1], linestyle=style, color="grey", label=f"{label} {values[-1]:.2f}%")
    axis.set(xlabel="images seen (thousands)", ylabel="weighted k-NN top-1 (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path, dpi=100)
