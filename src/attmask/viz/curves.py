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


def plot_panels(records: Sequence[dict[str, Any]], panels: Sequence[tuple[str, Sequence[str]]],
                path: str | Path, x: str = "step") -> Path | None:
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
