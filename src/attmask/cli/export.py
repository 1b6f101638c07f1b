"""``attmask export``: write a checkpoint's backbone as timm-layout safetensors plus JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

#: ``--out`` suffix -> the format it names, when ``--format`` is not given.
FORMAT_OF_SUFFIX = {".safetensors": "timm", ".onnx": "onnx"}


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="export a backbone to .safetensors (timm key layout) with a JSON of its config",
        description=(
            "Write the teacher (or student) backbone of any supported checkpoint as a "
            ".safetensors file in timm's key layout, and FILE.json naming the timm model "
            "and arguments: timm.create_model(info['timm_model'], **info['timm_kwargs'])."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or pretraining run folder")
    parser.add_argument(
        "--out",
        required=True,
        help="destination: FILE.safetensors, FILE.onnx, or with --format a FOLDER (hf) or FILE.pth (mmseg)",
    )
    parser.add_argument(
        "--student",
        action="store_true",
        help="export the student instead of the evaluated backbone (the teacher for iBOT, DINO, MST)",
    )
    parser.add_argument("--num-heads", type=int, help="attention heads, if the checkpoint cannot tell")
    parser.add_argument(
        "--format",
        choices=("timm", "hf", "onnx", "mmseg"),
        help="default: from --out's suffix (.safetensors: timm, .onnx: onnx). "
        "timm: FILE.safetensors + FILE.json; hf: a FOLDER (config.json + "
        "model.safetensors) that timm.create_model('local-dir:FOLDER' or 'hf-hub:...') loads; "
        "onnx: FILE.onnx with a dynamic batch, checked against PyTorch with onnxruntime; "
        "mmseg: FILE.pth in mmsegmentation's VisionTransformer key layout + FILE.py config snippet",
    )
    parser.add_argument(
        "--img-size",
        type=int,
        help="mmseg: the fine-tuning crop size; the position table is "
        "resampled to its grid (default: the backbone's own size)",
    )


def export_format(out: str, chosen: str | None) -> str:
    """``--format``, or the format ``out``'s suffix names.

    Raises:
        ValueError: no ``--format`` and a suffix that names none (one line with the choices).
    """
    if chosen is not None:
        return chosen
    suffix = Path(out).suffix.lower()
    if suffix in FORMAT_OF_SUFFIX:
        return FORMAT_OF_SUFFIX[suffix]
    hint = "--format mmseg for mmsegmentation" if suffix == ".pth" else "--format hf for a Hugging Face folder"
    raise ValueError(f"--out {out}: name a FILE.safetensors (timm) or FILE.onnx, or pass {hint}")


def run(args: argparse.Namespace) -> int:
    """Load, export, print where the files went."""
    chosen = export_format(args.out, args.format)  # before the checkpoint is read
    from attmask.models.checkpoints import load_backbone
    from attmask.models.export import export_backbone

    loaded = load_backbone(args.checkpoint, "student" if args.student else None, args.num_heads)
    source = {"checkpoint": str(loaded.path), "layout": loaded.layout, "which": loaded.which}
    kwargs = loaded.kwargs
    if chosen == "hf":
        from attmask.models.export_hf import export_hf

        folder = export_hf(loaded.model, kwargs, args.out)
        load = f"timm.create_model('local-dir:{folder}', pretrained=True)"
        print(f"exported {loaded.which or 'backbone'} to {folder}: {load}")
        return 0
    if chosen == "onnx":
        from attmask.models.export_onnx import export_onnx

        check = export_onnx(loaded.model, args.out, args.img_size or int(kwargs["img_size"]))
        print(
            f"exported {loaded.which or 'backbone'} to {check.path} (inputs (batch, {check.channels}, {check.size}, "
            f"{check.size}); onnxruntime vs PyTorch max abs difference {check.max_abs_diff:.2e})"
        )
        return 0
    if chosen == "mmseg":
        from attmask.models.export_dense import export_mmseg

        weights, sidecar = export_mmseg(loaded.model, kwargs, args.out, args.img_size or int(kwargs["img_size"]))
        print(f"exported {loaded.which or 'backbone'} for mmsegmentation to {weights} (config: {sidecar})")
        return 0
    weights, sidecar = export_backbone(loaded.model, kwargs, args.out, source)
    print(
        f"exported {loaded.which or 'backbone'} (ViT width {kwargs['embed_dim']}, depth {kwargs['depth']}, "
        f"patch {kwargs['patch_size']}, {kwargs['img_size']} px) to {weights} and {sidecar}"
    )
    return 0
