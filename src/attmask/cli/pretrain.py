"""``attmask pretrain``: self-supervised pretraining from a YAML preset plus overrides."""

from __future__ import annotations

import argparse
import dataclasses
import os
import textwrap
import typing
from contextlib import nullcontext

from attmask.cli.options import add_set_option, field_docs
from attmask.config import FIDELITIES, Config, load_config
from attmask.config_checks import RULES
from attmask.data.augment import MULTICROP_PRESETS
from attmask.engine.data import AUGMENT_ON
from attmask.engine.parallel import PARALLEL_MODES
from attmask.engine.precision import PRECISIONS
from attmask.masking.registry import STRATEGIES
from attmask.methods import METHODS
from attmask.models import VIT_ARCHITECTURES

#: The accepted values of the keys that name a choice (from the registries that check them).
CHOICES: dict[str, tuple[str, ...]] = {
    "model.arch": tuple(VIT_ARCHITECTURES),
    "model.pos_embed_init": ("normal", "sincos"),
    "masking.strategy": STRATEGIES,
    "data.crops": tuple(MULTICROP_PRESETS),
    "data.augment_on": AUGMENT_ON,
    "train.method": tuple(METHODS),
    "train.precision": PRECISIONS,
    "train.fidelity": FIDELITIES,
    "train.parallel": PARALLEL_MODES,
    "train.device": ("auto", "cpu", "cuda", "cuda:N"),
}
_RANGES = {key: words for key, _, words in RULES}


def _accepted(key: str) -> str:
    if key in CHOICES:
        return "one of " + ", ".join(CHOICES[key])
    return _RANGES.get(key, "")


def _config_reference(cls: type = Config, prefix: str = "") -> list[str]:
    """Per config key: ``section.key type default``, then its description (from the dataclass's
    ``Attributes:``) and its accepted values or range."""
    lines = []
    defaults = cls()
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for item in dataclasses.fields(cls):
        key = f"{prefix}{item.name}"
        value = getattr(defaults, item.name)
        if dataclasses.is_dataclass(value):
            lines.extend(_config_reference(type(value), f"{key}."))
        else:
            hint = hints[item.name]
            kind = getattr(hint, "__name__", None) if isinstance(hint, type) else None
            kind = kind or str(hint).replace("typing.", "")
            lines.append(f"  {key:38s} {kind:28s} default: {value!r}")
            described = docs.get(item.name, "").replace("``", "")
            described = "" if key in CHOICES and described.startswith("one of") else described
            notes = [text.rstrip(".") for text in (described, _accepted(key)) if text]
            lines.extend(f"      {text}" for text in textwrap.wrap("; ".join(notes), 96))
    return lines


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="pretrain a ViT (iBOT, DINO, MST, MAE, SimMIM, LUT; AttMask or other masking)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Pretrain a Vision Transformer with self-distillation and/or masked image modeling.\n"
            "train.method picks the method: ibot, dino, mst (multi-crop self-distillation),\n"
            "mae, simmim, lut, lut_simmim (pixel reconstruction); masking.strategy picks what\n"
            "is hidden.\n"
            "A run folder holds config.yaml, log.jsonl and checkpoint.pth (checkpoint.dcp/, sharded,\n"
            "with train.parallel=fsdp); running the same command again resumes from the checkpoint.\n"
            "Multi-GPU: torchrun --nproc_per_node N -m attmask.cli.main pretrain ...; SLURM:\n"
            "attmask launch slurm ... -- pretrain ..."
        ),
        epilog="config keys (set with --set key=value):\n" + "\n".join(_config_reference()),
    )
    parser.add_argument("--config", help="YAML preset, e.g. configs/fashion_mnist_ibot_attmask_tiny.yaml")
    parser.add_argument("--data", help="data set: fashion-mnist, digits, or an image folder (sets data.source)")
    parser.add_argument("--data-dir", help="folder holding a built-in data set's files (sets data.data_dir)")
    parser.add_argument(
        "--out", help="run folder (created; resumed when it has a checkpoint); required unless --data-bench"
    )
    add_set_option(parser, "config key", "optim.lr=1e-3")
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a run even though settings that change training (lr, seed, masking, batch "
        "size, schedules, ...) differ from its checkpoint's; the change is logged and "
        "config.yaml rewritten (without this flag such a resume is refused)",
    )
    parser.add_argument(
        "--data-bench",
        action="store_true",
        help="measure images/s of the pretraining data loader alone (same data, the method's "
        "augmentation, workers and batch size; no model) and exit without training",
    )
    parser.add_argument(
        "--data-bench-batches", type=int, default=50, metavar="N", help="batches the data bench draws (default 50)"
    )


def _data_bench(config: Config, batches: int) -> int:
    """Time the pretraining data loader and print one line."""
    from attmask.runs.data_bench import describe, measure_pretraining_loader

    print(describe(measure_pretraining_loader(config, batches)))
    return 0


def run(args: argparse.Namespace) -> int:
    """Resolve the config, then data-bench the loader or build the trainer, train, print the summary."""
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.source={args.data}")
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    config = load_config(args.config, overrides)
    if args.data_bench:
        return _data_bench(config, args.data_bench_batches)
    if args.out is None:
        raise ValueError("--out is required (the run folder), except with --data-bench")
    from attmask.core.distributed import shutdown
    from attmask.core.lock import folder_lock
    from attmask.engine.data import check_patch_fit, crop_config
    from attmask.engine.trainer import Trainer
    from attmask.methods.build import check_heads
    from attmask.runs.monitors import build_monitors

    check_heads(config)  # these two before the run folder is made
    check_patch_fit(crop_config(config.data), config.model.patch_size, config.train.method)

    # rank 0 alone holds the lock: the other ranks of this job write into the same folder
    lock = folder_lock(args.out, "attmask pretrain") if int(os.environ.get("RANK", "0")) == 0 else nullcontext()
    try:
        with lock:
            trainer = Trainer(
                config,
                args.out,
                allow_config_change=args.allow_config_change,
                callbacks=build_monitors(config, args.out),
            )
            done_before = trainer.progress.epoch >= config.optim.epochs
            summary = trainer.fit()
    finally:
        shutdown()
    if trainer.ctx.is_main:
        minutes = trainer.progress.train_seconds / 60
        if done_before:
            print(
                f"{args.out} had finished already: nothing trained (a larger optim.epochs, with "
                "--allow-config-change, trains on)"
            )
        print(f"finished {config.optim.epochs} epochs in {args.out} ({minutes:.1f} min of training)")
        print("\n".join(summary_lines(summary, config.train.knn_k)))
    return 0


#: Rows of the final k-NN table: label and the key infix of the logged accuracies.
_SUMMARY_ROWS = (("pretrained", "knn"), ("raw pixels", "knn_pixels"), ("random init", "knn_random_init"))


def summary_lines(summary: dict, k: int) -> list[str]:
    """The final k-NN table: one line per backbone (pretrained, raw pixels, random init), top-1 of
    [CLS] and, where logged, of the mean patch token (GAP) and [CLS]+GAP."""
    if "knn_top1" not in summary and "knn_pixels_top1" not in summary:
        return []
    split = summary.get("knn_split", "test")
    lines = [f"weighted {k}-NN top-1 on the {split} split:  [CLS]    GAP   [CLS]+GAP"]
    for label, prefix in _SUMMARY_ROWS:
        if f"{prefix}_top1" not in summary:
            continue
        cells = [summary.get(f"{prefix}{infix}_top1") for infix in ("", "_gap", "_clsgap")]
        shown = "  ".join(f"{value:6.2f}%" if value is not None else "      -" for value in cells)
        lines.append(f"  {label:12s} {shown}")
    return lines
