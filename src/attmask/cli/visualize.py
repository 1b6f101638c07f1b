"""``attmask visualize attention|masks|reconstruction``: what the teacher looks at, what the
student is hidden, what a pixel method makes of the hidden patches.

For attention and masks the model is a checkpoint (any layout ``attmask eval`` accepts; teacher
by default) or, without ``--checkpoint``, a randomly initialised ViT, which every figure title
then says. A reconstruction needs the whole method: a run folder of a pixel method (MAE).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from attmask.models import VIT_ARCHITECTURES


def _image_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", nargs="+", help="image files")
    source.add_argument(
        "--data",
        help="draw test images of a data set instead (fashion-mnist, digits, folder; default: the data "
        "the checkpoint was pretrained on)",
    )
    parser.add_argument("--data-dir", help="folder holding a built-in data set's files")
    parser.add_argument("--num-images", type=int, default=4, help="with --data: images drawn, one per class")
    parser.add_argument("--out", required=True, help=out_help)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="checkpoint file or run folder (default: random init)")
    parser.add_argument(
        "--student",
        action="store_true",
        help="use the student instead of the evaluated backbone (the teacher for iBOT, DINO, MST)",
    )
    parser.add_argument("--num-heads", type=int, help="attention heads, if the checkpoint cannot tell")
    parser.add_argument(
        "--arch",
        default="vit_small",
        choices=sorted(VIT_ARCHITECTURES),
        help="random-init architecture (without --checkpoint)",
    )
    parser.add_argument("--patch-size", type=int, default=16, help="random-init patch size")
    parser.add_argument("--img-size", type=int, help="side of the centre crop (default: the model's, 224 random)")
    _image_arguments(parser, "output folder (one PNG per image)")
    parser.add_argument("--block", type=int, default=-1, help="block whose attention is drawn (-1 = last)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random init and random masks")


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register ``visualize`` with its ``attention``, ``masks`` and ``reconstruction`` figures."""
    parser = commands.add_parser(name, help="draw attention maps per head, every strategy's masks, or reconstructions")
    figures = parser.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    attention = figures.add_parser(
        "attention", help="mean [CLS] attention, per-head maps and thresholded heads (Fig. A1)"
    )
    _model_arguments(attention)
    attention.add_argument(
        "--mass",
        type=float,
        default=0.6,
        help="each head's panel keeps the patches holding this share of its attention",
    )
    masks = figures.add_parser(
        "masks", help="block-wise / random / AttMask-High / Hint / Low masks by ratio (Fig. 1, A2)"
    )
    _model_arguments(masks)
    masks.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    masks.add_argument("--show-ratio", type=float, default=0.03, help="AttMask-Hint ratio")
    masks.add_argument("--show-max", type=float, default=0.1, help="AttMask-Hint s_max")
    reconstruction = figures.add_parser(
        "reconstruction", help="original, masked input and reconstruction of each image (MAE Fig. 2)"
    )
    reconstruction.add_argument("--checkpoint", required=True, help="run folder or checkpoint of a pixel method (mae)")
    _image_arguments(reconstruction, "output folder (reconstruction.png, one row per image)")
    reconstruction.add_argument("--seed", type=int, default=0, help="seed of the masks")


def _model(args: argparse.Namespace) -> tuple[torch.nn.Module, int, str]:
    """The ViT, the crop size and a label for figure titles."""
    from attmask.models import build_vit
    from attmask.models.checkpoints import load_backbone

    if args.checkpoint:
        loaded = load_backbone(args.checkpoint, "student" if args.student else None, args.num_heads)
        source = loaded.path.parent.name if loaded.path.name == "checkpoint.pth" else loaded.path.name
        label = f"{loaded.which or 'backbone'} of {source}"  # the run folder's name, not a full path
        return loaded.model, args.img_size or int(loaded.kwargs["img_size"]), label
    torch.manual_seed(args.seed)
    size = args.img_size or 224
    model = build_vit(args.arch, img_size=size, patch_size=args.patch_size).eval()
    return model, size, f"{args.arch}/{args.patch_size}, RANDOMLY INITIALISED (attention is meaningless)"


def _data(args: argparse.Namespace) -> tuple[str, str | None]:
    """``(source, data_dir)`` of the test images to draw: ``--data``, else the checkpoint's
    pretraining data (said on stderr)."""
    from attmask.models.checkpoints import pretraining_config, pretraining_data

    if args.data:
        return args.data, args.data_dir
    if not args.checkpoint:
        raise ValueError("pass --images or --data: a randomly initialised ViT was pretrained on nothing")
    pretrained_on = pretraining_data(pretraining_config(args.checkpoint))
    if pretrained_on is None:
        raise ValueError(f"pass --images or --data: {args.checkpoint} does not say what it was pretrained on")
    source, data_dir = pretrained_on
    print(
        f"drawing test images of {source} (the checkpoint's pretraining data); --data or --images choose others",
        file=sys.stderr,
    )
    return source, args.data_dir if args.data_dir is not None else data_dir


def _images(args: argparse.Namespace) -> list:
    """``(name, RGB image)`` pairs of ``--images``, or of ``--data`` / the checkpoint's pretraining
    data (a bad file fails before any work)."""
    from attmask.data import load_image
    from attmask.viz.figures import sample_images

    if args.images:
        return [(Path(p).stem, load_image(p)) for p in args.images]
    if args.num_images < 1:
        raise ValueError(f"--num-images must be >= 1, got {args.num_images}")
    source, data_dir = _data(args)
    return sample_images(source, args.num_images, data_dir)


def _reconstruction(args: argparse.Namespace) -> int:
    """One figure, one row per image: original, masked input, reconstruction."""
    from attmask.runs.figures import run_reconstruction

    images = _images(args)
    escaped = str(args.checkpoint).replace("{", "{{").replace("}", "}}")
    title = f"{{method}} of {escaped}, mask seed {args.seed}"
    path = run_reconstruction(
        args.checkpoint, images, Path(args.out) / "reconstruction.png", title, args.seed, required=True
    )
    print(f"wrote {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Draw the chosen figure for every image."""
    from attmask.viz.figures import draw_figures

    if args.figure == "reconstruction":
        return _reconstruction(args)
    if args.figure == "masks" and not all(0.0 <= r <= 1.0 for r in args.ratios):
        raise ValueError(f"--ratios must lie in [0, 1], got {args.ratios}")
    images = _images(args)
    model, size, label = _model(args)
    options = (
        {"mass": args.mass}
        if args.figure == "attention"
        else {"ratios": args.ratios, "show_ratio": args.show_ratio, "show_max": args.show_max}
    )
    for path in draw_figures(
        model, images, size, args.out, label, (args.figure,), block=args.block, seed=args.seed, **options
    ):
        print(f"wrote {path}")
    return 0
