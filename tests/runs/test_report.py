"""``attmask report``: curves, figures and config of a real (tiny) run in one HTML page."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from PIL import Image

from attmask.cli.main import main
from attmask.engine.logging import read_log
from attmask.viz.curves import plot_panels, series
from attmask.viz.figures import sample_images
from tests.engine.tiny import TINY_MAE, monitored_trainer, tiny_config


def test_series_keeps_the_last_value_of_replayed_steps() -> None:
    records = [
        {"step": 1, "loss": 3.0},
        {"step": 2, "loss": 2.0},
        {"step": 2, "loss": 1.5},
        {"step": 3, "loss": "nan"},
        {"epoch": 0, "knn_top1": 50.0},
    ]
    assert series(records, "loss") == ([1.0, 2.0], [3.0, 1.5])
    assert series(records, "knn_top1", x="epoch") == ([0.0], [50.0])


def test_plot_panels_skips_empty_panels(tmp_path: Path) -> None:
    assert plot_panels([{"step": 1}], [("loss", ["loss"])], tmp_path / "x.png") is None
    path = plot_panels(
        [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}], [("loss", ["loss"]), ("lr", ["lr"])], tmp_path / "y.png"
    )
    with Image.open(path) as image:
        assert image.size[0] < 500  # one panel only


def test_sample_images_one_per_class_and_safe_names() -> None:
    images = sample_images("digits", 12)
    names = [name for name, _ in images]
    assert len(images) == 12 and len(set(names)) == 12
    assert [n.split("_")[-1] for n in names[:10]] == [str(c) for c in range(10)]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", n) for n in names)
    with pytest.raises(ValueError, match="must be >= 1"):
        sample_images("digits", 0)


def test_report_of_a_real_run(tmp_path: Path, capsys, monkeypatch) -> None:
    run = tmp_path / "run"
    monitored_trainer(
        tiny_config(
            "train.knn_every_epochs=1",
            "train.knn_baseline=true",
            "train.knn_train_samples=200",
            "train.knn_test_samples=100",
        ),
        run,
    ).fit()
    import attmask.viz.curves as curves

    knn_calls: list[str | None] = []

    def plot_knn(records, path, backbone=None):
        knn_calls.append(backbone)
        return curves.plot_knn(records, path, backbone)

    monkeypatch.setattr("attmask.runs.report.plot_knn", plot_knn)
    assert main(["report", str(run), "--num-images", "2"]) == 0
    assert knn_calls == ["teacher"]  # the k-NN legend names the backbone the figures were drawn from
    page = (run / "report" / "index.html").read_text()
    assert capsys.readouterr().out.startswith("wrote")
    for title in ("losses", "schedules", "monitors", "k-NN accuracy", "attention and masks (teacher)", "config"):
        assert f"<h2>{title}</h2>" in page
    assert page.count("data:image/png;base64,") == 4 + 2 * 2  # 4 curve figures, 2 images x 2 figures
    assert "random init" in page and "finished epochs" in page
    assert f"<h1>Pretraining run {run}</h1>" in page  # the folder as given, not "Run run"
    assert "4 optimizer steps (" in page and "min of training" in page and "images seen" in page
    started = [r for r in read_log(run) if r.get("process_start")]
    assert len(started) == 1 and started[0]["step"] == 0 and started[0]["world_size"] == 1
    assert set(started[0]["versions"]) == {"attmask", "torch", "timm", "python"} and started[0]["commit"]
    assert f"Ran with attmask {started[0]['versions']['attmask']}, torch " in page
    assert f"1 process on {html.escape(started[0]['device'])}.</p>" in page
    from attmask.runs.report import CAPTIONS

    assert all(html.escape(caption) in page for caption in CAPTIONS.values())  # a sentence under every figure
    assert html.escape("the total, the [CLS] term L_[CLS], the masked-patch term L_MIM.") in page  # iBOT's terms
    assert "grey lines: the same architecture at random initialisation (dashed) and the raw pixels (dotted)" in page
    for name in ("losses.png", "schedules.png", "monitors.png", "knn.png"):
        with Image.open(run / "report" / name) as image:
            assert image.size[0] >= 400 and image.size[1] >= 300
    assert len(list((run / "report" / "figures").glob("*.png"))) == 4
    assert [r["knn_backbone"] for r in read_log(run) if "knn_top1" in r] == ["teacher", "teacher"]
    assert main(["report", str(run), "--no-figures"]) == 0
    assert knn_calls[-1] == "teacher", "without figures: the backbone the monitor logged"


def test_report_of_a_pixel_method_shows_its_loss_terms_encoder_and_reconstructions(tmp_path: Path) -> None:
    run = tmp_path / "lut"
    monitored_trainer(
        tiny_config(*TINY_MAE, "train.method=lut", "lut.hidden_dim=32", "lut.out_dim=16", "optim.epochs=1"), run
    ).fit()
    assert main(["report", str(run), "--num-images", "2"]) == 0
    page = (run / "report" / "index.html").read_text()
    assert "<h2>attention and masks (encoder)</h2>" in page
    assert (run / "report" / "figures" / "reconstruction.png").is_file()
    assert page.count("data:image/png;base64,") == 3 + 2 * 2 + 1  # no k-NN panel; + reconstructions
    from attmask.runs.report import _loss_keys

    assert _loss_keys(read_log(run)) == ["loss", "loss_bc", "loss_mae"]
    assert "the total, LUT&#x27;s broader-context term L_BC, the pixel loss on hidden patches (MAE)." in page


def test_knn_legend_names_the_evaluated_backbone_only_when_known(tmp_path: Path, monkeypatch) -> None:
    """An MAE run's monitor evaluates its encoder: the legend said "teacher [CLS]" for every run."""
    import attmask.viz.curves as curves

    legends: list[list[str]] = []
    save = curves.save_figure

    def keep_labels(figure, path, dpi=110):
        legends.append(figure.axes[0].get_legend_handles_labels()[1])
        return save(figure, path, dpi)

    monkeypatch.setattr(curves, "save_figure", keep_labels)
    records = [{"epoch": 0, "images_seen": 640, "knn_top1": 60.0, "knn_gap_top1": 61.0, "knn_pixels_top1": 70.0}]
    curves.plot_knn(records, tmp_path / "a.png", backbone="encoder")
    curves.plot_knn(records, tmp_path / "b.png")
    assert legends == [["encoder [CLS]", "encoder GAP", "raw pixels 70.00%"], ["[CLS]", "GAP", "raw pixels 70.00%"]]


def test_captions_name_only_what_the_figures_draw() -> None:
    """A DINO run logs no loss term and a run without ``train.knn_baseline`` no reference line:
    the captions do not describe curves that are not there (they named iBOT's terms for every run)."""
    from attmask.runs.report import knn_caption, losses_caption

    dino = [{"step": 1, "loss": 2.0}, {"epoch": 0, "knn_top1": 70.0}]
    assert losses_caption(dino) == "Training loss at every logged step: the total."
    assert "grey" not in knn_caption(dino)
    assert losses_caption([{"step": 1, "loss": 2.0, "loss_new": 1.0}]).endswith("the total, loss_new.")
    pixels_only = [*dino, {"epoch": 0, "knn_pixels_top1": 80.0}]
    assert knn_caption(pixels_only).endswith("; grey lines: the raw pixels (dotted).")


def test_report_without_a_log_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "has no log.jsonl" in error and len(error.splitlines()) == 1


def test_trainer_draws_figures_of_fixed_images(tmp_path: Path) -> None:
    monitored_trainer(tiny_config("train.figures_every_epochs=1", "train.figure_images=2"), tmp_path).fit()
    for epoch in ("epoch_0001", "epoch_0002"):
        names = sorted(p.name for p in (tmp_path / "figures" / epoch).glob("*.png"))
        assert names == [
            "digits_0_0_attention.png",
            "digits_0_0_masks.png",
            "digits_15_1_attention.png",
            "digits_15_1_masks.png",
        ]
