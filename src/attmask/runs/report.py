"""``attmask report RUN_DIR``: a self-contained HTML page (and its PNGs) for a pretraining run.

Loss curves, schedules, k-NN accuracy over epochs, collapse monitors, attention and mask
figures of a few fixed images from the run's checkpoint, and the resolved config. Images are
embedded as base64, so the page can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import yaml

from attmask.engine.logging import read_log
from attmask.models.checkpoints import load_backbone
from attmask.runs.figures import run_reconstruction
from attmask.viz.curves import KNN_LEVELS, plot_knn, plot_panels
from attmask.viz.figures import draw_figures, sample_images

PANELS = {
    "losses.png": [("loss", ["loss"])],  # plus every other loss_* key of the run
    "schedules.png": [
        ("learning rate", ["lr"]),
        ("weight decay", ["weight_decay"]),
        ("teacher momentum", ["momentum"]),
        ("teacher temperature", ["teacher_temp"]),
    ],
    "monitors.png": [
        ("teacher entropy (nats): per image, of the batch mean", ["teacher_entropy", "teacher_batch_entropy"]),
        ("KL(teacher || centre)", ["teacher_kl_centre"]),
        ("feature std across the batch", ["feature_std"]),
        ("mask fraction", ["mask_fraction"]),
    ],
}
#: A sentence under each figure saying what it shows.
CAPTIONS = {
    "schedules": "Per-step schedules: the learning rate actually used (lr x global batch / 256), weight decay, "
    "EMA momentum of the teacher and the teacher temperature.",
    "monitors": "Collapse monitors: a teacher entropy near log K (uniform targets) or a batch entropy near 0 "
    "(one prototype for every image) means collapse; the mask fraction is the share of hidden patches.",
    "figures": "The evaluated backbone's last-block [CLS] attention on fixed images, and the masks each "
    "strategy draws from it.",
}

#: What each logged loss term is, for the losses caption (a term not listed is named by its key).
LOSS_TERMS = {
    "loss_cls": "the [CLS] term L_[CLS]",
    "loss_patch": "the masked-patch term L_MIM",
    "loss_mae": "the pixel loss on hidden patches (MAE)",
    "loss_simmim": "the pixel loss on hidden patches (SimMIM)",
    "loss_bc": "LUT's broader-context term L_BC",
}


def losses_caption(records: list[dict]) -> str:
    """Names the curves the losses figure draws: the total, then each term the run logged
    (none for DINO, [CLS] and MIM terms for iBOT, ...)."""
    terms = [LOSS_TERMS.get(key, key) for key in _loss_keys(records)[1:]]
    return "Training loss at every logged step: the total" + (f", {', '.join(terms)}." if terms else ".")


def knn_caption(records: list[dict]) -> str:
    """Names the reference lines only when the run logged them (``train.knn_baseline``)."""
    lines = [f"{what} ({style})" for _, key, style, what in KNN_LEVELS if any(key in r for r in records)]
    text = (
        "Weighted k-NN top-1 of the evaluated backbone's features on the monitor's bank and queries, "
        "against training images seen"
    )
    return text + (f"; grey lines: {' and '.join(lines)}." if lines else ".")


def _embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}"></figure>'


def _loss_keys(records: list[dict]) -> list[str]:
    """``loss`` first, then every ``loss_*`` term the method logged (iBOT: cls, patch; MAE ...)."""
    terms = sorted({key for record in records for key in record if key.startswith("loss_")})
    return ["loss", *terms]


def _figures(run_dir: Path, out: Path, num_images: int) -> tuple[str, list[Path]]:
    """Attention and mask figures of the run's evaluated backbone on fixed images of its data set,
    and the reconstruction figure of pixel methods; returns the backbone's name and the paths."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    data = config.get("data", {})
    loaded = load_backbone(run_dir)
    name = "teacher" if loaded.which == "teacher" else "encoder"
    images = sample_images(data.get("source", "fashion-mnist"), num_images, data.get("data_dir"))
    paths = draw_figures(
        loaded.model, images, int(loaded.kwargs["img_size"]), out / "figures", f"{name} of {run_dir.name}"
    )
    reconstruction = run_reconstruction(run_dir, images, out / "figures" / "reconstruction.png")
    return name, paths + ([reconstruction] if reconstruction else [])


def _figure_section(run_dir: Path, out: Path, num_images: int) -> tuple[str, str]:
    """The evaluated backbone's name (``teacher``, ``encoder``) and the HTML of its figures."""
    which, drawn = _figures(run_dir, out, num_images)
    section = f"<h2>attention and masks ({which})</h2><p>{html.escape(CAPTIONS['figures'])}</p>"
    return which, section + "".join(_embed(p) for p in drawn)


def _summary(records: list[dict]) -> str:
    steps = [r for r in records if "loss" in r and "step" in r]
    epochs = [r for r in records if r.get("epoch_done")]
    last_step = max((r["step"] for r in steps), default=0)
    parts = [f"{last_step} optimizer steps ({len(steps)} logged)", f"{len(epochs)} finished epochs"]
    timed = [r for r in records if isinstance(r.get("train_seconds"), (int, float)) and r.get("images_seen")]
    if timed:
        seconds, images = timed[-1]["train_seconds"], timed[-1]["images_seen"]
        parts.append(
            f"{seconds / 60:.1f} min of training, {images:,} images seen ({images / max(seconds, 1e-9):.0f}/s)"
        )
    knn = [r for r in records if "knn_top1" in r]
    if knn:
        parts.append(f"last weighted k-NN top-1 {knn[-1]['knn_top1']:.2f}%")
    for key, label in (("knn_random_init_top1", "random init"), ("knn_pixels_top1", "raw pixels")):
        baseline = [r for r in records if key in r]
        if baseline:
            parts.append(f"{label} {baseline[-1][key]:.2f}%")
    return ", ".join(parts) + _software(records)


def _software(records: list[dict]) -> str:
    """``. Ran on ...`` from the processes' start records: each distinct (versions, commit,
    device, processes), oldest first (a run resumed elsewhere names both)."""
    seen: list[str] = []
    for record in (r for r in records if r.get("process_start")):
        versions, processes = record.get("versions", {}), record.get("world_size", 1)
        text = (
            f"attmask {versions.get('attmask', '?')}, torch {versions.get('torch', '?')} (commit "
            f"{record.get('commit', '?')}), {processes} process{'es' if processes > 1 else ''} "
            f"on {record.get('device', '?')}"
        )
        if text not in seen:
            seen.append(text)
    return f". Ran with {'; then '.join(seen)}." if seen else ""


def build_report(run_dir: str | Path, num_images: int = 4, figures: bool = True) -> Path:
    """Write ``run_dir/report/index.html`` with its PNGs next to it; returns the HTML path.

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``log.jsonl``.
    """
    run_dir = Path(run_dir)
    records = read_log(run_dir)
    if not records:
        raise FileNotFoundError(f"{run_dir} has no log.jsonl; pass a pretraining run folder")
    out = run_dir / "report"
    sections = [f"<h1>Pretraining run {html.escape(str(run_dir))}</h1><p>{html.escape(_summary(records))}</p>"]
    panels_by_file = dict(PANELS, **{"losses.png": [("loss", _loss_keys(records))]})
    captions = dict(CAPTIONS, losses=losses_caption(records), knn=knn_caption(records))
    for name, panels in panels_by_file.items():
        path = plot_panels(records, panels, out / name)
        if path is not None:
            sections.append(f"<h2>{name[:-4]}</h2>{_embed(path)}<p>{html.escape(captions[name[:-4]])}</p>")
    drawn = figures and (run_dir / "checkpoint.pth").is_file() and (run_dir / "config.yaml").is_file()
    which, figure_section = _figure_section(run_dir, out, num_images) if drawn else (None, "")
    logged = next((r["knn_backbone"] for r in reversed(records) if "knn_backbone" in r), None)
    knn = plot_knn(records, out / "knn.png", backbone=which or logged)  # the checkpoint's, else the log's
    if knn is not None:
        sections.append(f"<h2>k-NN accuracy</h2>{_embed(knn)}<p>{html.escape(captions['knn'])}</p>")
    sections += [figure_section] if figure_section else []
    if (run_dir / "config.yaml").is_file():
        sections.append(f"<h2>config</h2><pre>{html.escape((run_dir / 'config.yaml').read_text())}</pre>")
    last = next((r for r in reversed(records) if "loss" in r), {})
    sections.append(f"<h2>last step</h2><pre>{html.escape(json.dumps(last, indent=1))}</pre>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>attmask run report</title>"
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}img{max-width:100%}"
        "pre{background:#f4f4f4;padding:8px;overflow:auto}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
    (out / "index.html").write_text(page)
    return out / "index.html"
