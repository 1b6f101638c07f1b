"""``results.md`` of the masking ablation: set-up, the tables (mean +- std over seeds, paired
differences with 95% intervals), the k-NN curves with the Fig. 4 speed-up, the data sweep."""

from __future__ import annotations

from typing import Any

from attmask.experiments.config import ARMS
from attmask.experiments.figures import has_pairs, paired_figure_name
from attmask.experiments.run_log import duration_text

#: Titles of the rows that are not arms.
REFERENCE_ROWS = {"pixels": "Raw pixels (no network)", "random_init": "Random init (no pretraining)"}


def _cell_text(value: dict[str, Any], signed: bool = False) -> str:
    if value["n"] == 0:
        return "-"
    text = f"{value['mean']:+.2f}" if signed else f"{value['mean']:.2f}"
    return f"{text} ± {value['std']:.2f}" if value["n"] > 1 else text


def delta_text(value: dict[str, Any]) -> str:
    """A paired difference: ``+1.50 [-0.20, +3.20]`` (mean and 95% interval), bold when the
    interval excludes 0; the mean alone for one seed."""
    if value["n"] == 0:
        return "-"
    if value.get("low") is None:
        return f"{value['mean']:+.2f} (n=1)"
    text = f"{value['mean']:+.2f} [{value['low']:+.2f}, {value['high']:+.2f}]"
    return f"**{text}**" if value["low"] > 0 or value["high"] < 0 else text


def label(arm: str) -> str:
    """Row title of an arm (or of the random-init or raw-pixel row)."""
    return REFERENCE_ROWS[arm] if arm in REFERENCE_ROWS else ARMS[arm][0]


def table_markdown(summary: dict[str, Any], rows: dict[str, Any], paired: dict[str, Any], baseline: str) -> list[str]:
    """One table as markdown lines: metric columns, then a paired-difference column per
    :func:`~attmask.experiments.summary.paired_columns` entry when a baseline is set."""
    columns = summary["columns"]
    deltas = summary["paired_columns"] if paired else []
    titles = [title for _, title in columns] + [f"Δ {title} vs {label(baseline)}" for _, title in deltas]
    lines = ["| Masking | n | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(titles)]
    for arm, row in rows.items():
        cells = [_cell_text(row[key]) for key, _ in columns]
        delta = paired.get(arm)
        cells += [delta_text(delta[key]) if delta else "-" for key, _ in deltas]
        lines.append(f"| {label(arm)} | {row[columns[0][0]]['n']} | " + " | ".join(cells) + " |")
    return lines


def main_table_markdown(summary: dict[str, Any]) -> list[str]:
    """The Table 1 analogue as markdown lines."""
    return table_markdown(summary, summary["main_table"], summary["paired"], summary["baseline"])


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
        lines.append(f"| {label(arm)} | " + " | ".join(_cell_text(row[f][key]) for f in fractions) + " |")
    baseline = summary.get("fraction_baseline", {}).get(key)
    if baseline and baseline["n"]:
        lines.append(f"| Random init (no pretraining) | {_cell_text(baseline)} (any size) |" + " |" * (len(heads) - 1))
    return lines


def reach_text(found: dict[str, Any]) -> str:
    """One sentence per arm: the epoch at which it first reaches the reference's final k-NN."""
    if not found:
        return ""
    sentences = []
    for arm, epoch in found["epochs"].items():
        where = f"at epoch {epoch:g}" if epoch is not None else "at no epoch"
        sentences.append(
            f"{label(arm)} reaches {label(found['reference'])}'s final k-NN ({found['final']:.2f}% after "
            f"{found['final_epoch']:g} epochs) {where}."
        )
    return " ".join(sentences)


def stalled_text(seconds: float) -> str:
    """`` (of which 1 h 20 min stalled: ...)`` when the cells' logs show stalls, else ``""``."""
    if seconds < 60:
        return ""
    return f" (of which {duration_text(seconds)} stalled: paused, or starved by other work on the cores)"


def data_text(subset: float | int | None, images: int | None) -> str:
    """``the whole training set (60000 images)`` or ``data.subset 0.1 (6000 images)``."""
    data = "the whole training set" if subset is None else f"data.subset {subset}"
    return f"{data} ({images} images)" if images else data


def progress_text(progress: dict[str, Any]) -> list[str]:
    """A partial run's state: how many cells are done and which are left (empty when all are)."""
    if not progress.get("left"):
        return []
    left = ", ".join(f"`{name}`" for name in progress["left"])
    failed = [f"**Failed in this run:** `{name}`: {error}" for name, error in progress.get("failed", {}).items()]
    return [
        f"**Partial results: {progress['done']} of {progress['total']} cells finished.** Left: {left}. "
        f"Expected pretraining time left: {progress['time_left']}. Running the same command again continues the "
        "run (a failed cell from its last checkpoint); `--status` lists what is left.",
        "",
        *[line for message in failed for line in (message, "")],
    ]


def _header(summary: dict[str, Any]) -> list[str]:
    env, shared, experiment = summary["environment"], summary["pretrain_shared"], summary["experiment"]
    evaluation = experiment["eval"]
    per_class = evaluation["train_per_class"] or "all"
    kinds = ", ".join(evaluation.get("features", ["cls"]))
    return [
        "# Masking ablation: AttMask Table 1, Table 2, Table 3 and Fig. 4 at small scale",
        "",
        f"Measured on {', '.join(summary['devices']) or env['device']} with torch {env['versions']['torch']}, "
        f"timm {env['versions']['timm']}; commit {', '.join(summary['commits']) or env['commit']}; {env['date']}; "
        f"compute {duration_text(summary['compute_seconds'])}{stalled_text(summary.get('stalled_seconds', 0.0))}.",
        "",
        f"Pretraining: iBOT, {shared['arch']} (depth {shared['depth']}, patch {shared['patch_size']}) on "
        f"{shared['source']}, {data_text(shared['subset'], summary['main_images'])}, "
        f"{shared['epochs']} epochs, preset `{summary['pretrain_preset_name']}` with overrides "
        f"{experiment['pretrain']['overrides'] or 'none'}. Arms differ only in the masking strategy and "
        f"ratio; seeds {experiment['seeds']} (a seed fixes the initial weights and the data order, "
        "shared by every arm).",
        "",
        f"Evaluation of the teacher's frozen features ({kinds}; the first is the headline): weighted "
        f"{evaluation['knn_k']}-NN (T = {evaluation['temperature']}) with a bank of {per_class} train images "
        f"per class and the whole test split as queries; few-shot k-NN with nu images per class (mean over "
        f"{evaluation['fewshot_repeats']} disjoint subsets, k = 1 for nu = 1); linear probe "
        f"({evaluation['linear_epochs']} epochs, SGD, standardised features). Top-1 in %, mean ± sample "
        "std over seeds. Δ columns: per-seed (paired) differences to the baseline arm, mean and 95% "
        "interval of the mean (t-distribution, n - 1 degrees of freedom); bold when the interval excludes 0.",
        *(
            [
                "Raw pixels: the same evaluation on the images themselves (centre crop, normalised, "
                "flattened), no network; a feature below that row is worth less than its input."
            ]
            if summary.get("pixels")
            else []
        ),
        "",
    ]


def _paired_figure_markdown(paired: dict[str, Any], prefix: str) -> list[str]:
    """The link to a table's paired-difference figure, when it has one."""
    if not has_pairs(paired):
        return []
    return [f"![paired differences](figures/{paired_figure_name(prefix)})", ""]


def _extra_tables_markdown(summary: dict[str, Any]) -> list[str]:
    """One section per extra table (DINO, fine grid): its overrides, seeds, rows and Δ figure."""
    lines: list[str] = []
    for prefix, table in summary.get("tables", {}).items():
        lines += [
            f"## {table['title']}",
            "",
            f"Overrides of this table: {', '.join(f'`{o}`' for o in table['overrides']) or 'none'}; "
            f"seeds {table['seeds']}.",
            "",
            *table_markdown(summary, table["rows"], table["paired"], table["baseline"]),
            "",
            *_paired_figure_markdown(table["paired"], prefix),
        ]
    return lines


def _curves_markdown(summary: dict[str, Any]) -> list[str]:
    """The Fig. 4 analogue: k-NN after every epoch and where the reach line is met."""
    if not summary["curves"]:
        return []
    return [
        "## k-NN during pretraining (Fig. 4 analogue)",
        "",
        "Online weighted k-NN of the teacher after every epoch (epoch 0: random init), mean ± std over seeds.",
        *([f"{reach_text(summary['curve_reach'])}"] if summary.get("curve_reach") else []),
        "",
        "![k-NN vs epoch](figures/knn_vs_epoch.png)",
        "",
    ]


def _fractions_markdown(summary: dict[str, Any]) -> list[str]:
    """The Table 2 analogue: k-NN and linear probe by fraction of the training set."""
    if not summary["fractions"]:
        return []
    experiment = summary["experiment"]
    return [
        "## Training-set size (Table 2 analogue)",
        "",
        "Fraction of each class of the training set, same number of epochs (fewer steps on less "
        f"data); seeds {experiment['seeds'][: experiment['fraction_seeds']]}.",
        "",
        f"{experiment['eval']['knn_k']}-NN top-1:",
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


def write_markdown(summary: dict[str, Any]) -> str:
    """``results.md``: set-up, the main table, extra tables, the curves and the data sweep."""
    notes = summary.get("notes", [])
    lines = [
        *_header(summary),
        *progress_text(summary.get("progress", {})),
        "## Masking strategies (Table 1 analogue)",
        "",
        *main_table_markdown(summary),
        "",
        *_paired_figure_markdown(summary["paired"], ""),
        *[f"Note: {note}" for note in notes],
        *([""] if notes else []),
        *_extra_tables_markdown(summary),
        *_curves_markdown(summary),
        *_fractions_markdown(summary),
    ]
    return "\n".join(lines)
