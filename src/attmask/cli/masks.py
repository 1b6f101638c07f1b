"""``attmask masks``: a ViT's [CLS] attention and every strategy's masks on one image."""

from __future__ import annotations

import argparse

import torch

from attmask.data import image_to_tensor, load_image
from attmask.masking import scores_from_cls_attention
from attmask.models import VIT_ARCHITECTURES, build_vit
from attmask.viz.masks import strategy_masks


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="draw the attention map and the masks of all strategies for an image",
        description=(
            "Draw, for one image, the mean [CLS] attention of a ViT's chosen block and the masks "
            "of block-wise, random, AttMask-High, AttMask-Hint and AttMask-Low masking at each "
            "ratio (AttMask paper, Fig. 1 / A2 layout)."
        ),
    )
    parser.add_argument("--image", required=True, help="path of the image to draw")
    parser.add_argument("--out", required=True, help="output PNG file")
    parser.add_argument("--arch", default="vit_small", choices=sorted(VIT_ARCHITECTURES))
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224, help="side of the centre crop")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    parser.add_argument("--show-ratio", type=float, default=0.03, help="AttMask-Hint ratio")
    parser.add_argument("--show-max", type=float, default=0.1, help="AttMask-Hint s_max")
    parser.add_argument("--block", type=int, default=-1, help="block whose attention is used")
    parser.add_argument("--seed", type=int, default=0, help="seed of model init and masks")


def run(args: argparse.Namespace) -> int:
    """Build a randomly initialised ViT, compute attention and masks, write the figure."""
    from attmask.viz.render import render_mask_grid

    for ratio in args.ratios:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"--ratios must lie in [0, 1], got {ratio}")
    image = load_image(args.image)
    torch.manual_seed(args.seed)
    model = build_vit(args.arch, img_size=args.img_size, patch_size=args.patch_size).eval()
    inputs, pixels = image_to_tensor(image, args.img_size)
    with torch.no_grad():
        output = model(inputs[None], return_cls_attention=True, attention_block=args.block)
    scores = scores_from_cls_attention(output.cls_attention)[0]
    generator = torch.Generator().manual_seed(args.seed)
    masks = strategy_masks(
        scores, model.grid_size, args.ratios, generator, args.show_ratio, args.show_max
    )
    title = (
        f"{args.arch}/{args.patch_size}, RANDOMLY INITIALISED: its attention is meaningless "
        "(no trained checkpoint can be passed yet)"
    )
    path = render_mask_grid(
        pixels.permute(1, 2, 0).numpy(), scores, masks, args.ratios, args.patch_size, title, args.out
    )
    print(f"wrote {path}")
    return 0
