"""``attmask visualize attention|masks|reconstruction`` end to end on real images and runs, and its
error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from attmask.cli.main import main
from attmask.engine.trainer import Trainer
from attmask.models import VisionTransformer
from tests.engine.tiny import TINY_MAE, tiny_config

skimage = pytest.importorskip("skimage", reason="scikit-image provides the real photos")
PHOTO = Path(skimage.__file__).parent / "data" / "chelsea.png"


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as figure:
        return figure.size


def test_masks_figure_on_a_real_photo_random_init(tmp_path, capsys) -> None:
    code = main(
        [
            "visualize",
            "masks",
            "--images",
            str(PHOTO),
            "--out",
            str(tmp_path),
            "--arch",
            "vit_tiny",
            "--img-size",
            "112",
            "--ratios",
            "0.1",
            "0.3",
            "0.5",
        ]
    )
    assert code == 0 and "wrote" in capsys.readouterr().out
    width, height = _size(tmp_path / "chelsea_masks.png")
    assert width > 1000 and height > 500


def test_attention_figure_from_a_checkpoint_and_data_set(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, embed_dim=64, depth=2, num_heads=4)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "c.pth")
    code = main(
        [
            "visualize",
            "attention",
            "--checkpoint",
            str(tmp_path / "c.pth"),
            "--num-heads",
            "4",
            "--data",
            "digits",
            "--num-images",
            "3",
            "--out",
            str(tmp_path / "figs"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and out.count("wrote") == 3
    files = sorted((tmp_path / "figs").glob("*_attention.png"))
    assert [f.name for f in files] == [
        "digits_0_0_attention.png",
        "digits_15_1_attention.png",
        "digits_6_2_attention.png",
    ]  # first test image of classes 0, 1, 2
    width, height = _size(files[0])
    assert width > 4 * height > 0  # image, mean, thresholded, 4 heads in one row


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--images", "missing.png"], "image not found: missing.png"),
        (["--images", "CORRUPT"], "cannot read image"),
        (["--images", str(PHOTO), "--ratios", "1.5"], "--ratios must lie in [0, 1]"),
        (["--images", str(PHOTO), "--img-size", "100"], "must be divisible by patch_size"),
        (["--images", str(PHOTO), "--checkpoint", "nothing.pth"], "checkpoint not found"),
        (["--data", "digits", "--num-images", "0"], "--num-images must be >= 1"),
        ([], "pass --images or --data: a randomly initialised ViT was pretrained on nothing"),
        (["--checkpoint", "PLAIN"], "pass --images or --data: PLAIN does not say what it was pretrained on"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, arguments, message) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    plain = tmp_path / "plain.pth"
    torch.save(VisionTransformer(img_size=16, patch_size=4, embed_dim=64, depth=1, num_heads=4).state_dict(), plain)
    arguments = [{"CORRUPT": str(corrupt), "PLAIN": str(plain)}.get(a, a) for a in arguments]
    code = main(["visualize", "masks", *arguments, "--out", str(tmp_path / "x"), "--arch", "vit_tiny"])
    error = capsys.readouterr().err.strip().replace(str(plain), "PLAIN")
    assert code == 2
    assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "x").exists()


def test_reconstruction_figure_of_a_mae_run(tmp_path, capsys) -> None:
    Trainer(tiny_config(*TINY_MAE, "optim.epochs=1"), tmp_path / "run").fit()
    code = main(
        [
            "visualize",
            "reconstruction",
            "--checkpoint",
            str(tmp_path / "run"),
            "--data",
            "digits",
            "--num-images",
            "4",
            "--out",
            str(tmp_path / "figs"),
            "--seed",
            "3",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'figs' / 'reconstruction.png'}"
    assert _size(tmp_path / "figs" / "reconstruction.png") == (600, 860)  # 3 columns x 4 images of 200 px + title
    arguments = ["--checkpoint", str(tmp_path / "run"), "--num-images", "4", "--out", str(tmp_path / "own")]
    assert main(["visualize", "reconstruction", *arguments, "--seed", "3"]) == 0  # no --data: the run's (digits)
    err = capsys.readouterr().err.strip()
    assert err == "drawing test images of digits (the checkpoint's pretraining data); --data or --images choose others"
    assert (tmp_path / "own" / "reconstruction.png").read_bytes() == (
        tmp_path / "figs" / "reconstruction.png"
    ).read_bytes()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("ibot", "iBOT does not reconstruct pixels; use mae, simmim, mst or lut"),
        (
            "plain",
            "is not an attmask pretraining checkpoint; reconstruction figures need a run folder of mae/simmim/mst/lut",
        ),
        ("missing", "checkpoint not found"),
    ],
)
def test_reconstruction_of_other_checkpoints_is_one_line(tmp_path, capsys, kind, message) -> None:
    checkpoint = tmp_path / "run"
    if kind == "ibot":
        Trainer(tiny_config("optim.epochs=1", "train.max_steps_per_epoch=1"), checkpoint).fit()
    elif kind == "plain":
        checkpoint = tmp_path / "plain.pth"
        model = VisionTransformer(img_size=16, patch_size=4, embed_dim=64, depth=1, num_heads=4)
        torch.save(model.state_dict(), checkpoint)
    code = main(
        [
            "visualize",
            "reconstruction",
            "--checkpoint",
            str(checkpoint),
            "--data",
            "digits",
            "--num-images",
            "2",
            "--out",
            str(tmp_path / "figs"),
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "figs").exists()


def test_attention_figure_title_names_the_run_and_the_last_block(tmp_path, monkeypatch) -> None:
    import attmask.viz.figures as render  # draw_figures calls the renderer it imported

    Trainer(tiny_config("optim.epochs=1"), tmp_path / "my_run").fit()
    titles = []
    original = render.render_attention

    def spy(image, attention, patch_size, title, path, mass=0.6):
        titles.append(title)
        return original(image, attention, patch_size, title, path, mass)

    monkeypatch.setattr(render, "render_attention", spy)
    assert (
        main(
            [
                "visualize",
                "attention",
                "--checkpoint",
                str(tmp_path / "my_run"),
                "--data",
                "digits",
                "--num-images",
                "1",
                "--out",
                str(tmp_path / "figures"),
            ]
        )
        == 0
    )
    assert titles and "teacher of my_run, last block" in titles[0] and str(tmp_path) not in titles[0]
