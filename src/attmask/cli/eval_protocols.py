"""Per-protocol arguments of ``attmask eval`` and how they map onto ``attmask.eval.protocols``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from attmask.eval.features import FEATURE_KINDS


def _features(parser: argparse.ArgumentParser, default: str = "cls") -> None:
    parser.add_argument("--features", default=default, choices=FEATURE_KINDS,
                        help=f"feature kind (default {default})")


def _variant(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"--variant takes NAME=FOLDER, got {text!r}")
    return name, folder


# ---------------------------------------------------------------- knn


def _knn_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=int, nargs="+", default=[10, 20, 100, 200], help="neighbour counts")
    parser.add_argument("--temperature", type=float, default=0.07)
    _features(parser)


def _knn(session: Any, args: argparse.Namespace) -> tuple[dict, str]:
    from attmask.eval.protocols import knn_protocol
    return knn_protocol(session, args.k, args.temperature, args.features)


# ---------------------------------------------------------------- few-shot


def _fewshot_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10, 20], help="images per class (nu)")
    parser.add_argument("--repeats", type=int, default=5, help="disjoint subsets per nu")
    parser.add_argument("--seed", type=int, default=0)
    _features(parser)


def _fewshot(session: Any, args: argparse.Namespace) -> tuple[dict, str]:
    from attmask.eval.protocols import fewshot_protocol
    return fewshot_protocol(session, args.shots, args.repeats, args.seed, args.features)


# ---------------------------------------------------------------- retrieval


def _retrieval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8], help="k of Recall@k")
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--no-map", action="store_true", help="skip mean average precision")
    _features(parser)


def _retrieval(session: Any, args: argparse.Namespace) -> tuple[dict, str]:
    from attmask.eval.protocols import retrieval_protocol
    return retrieval_protocol(session, args.k, args.split, args.features, not args.no_map)


# ---------------------------------------------------------------- robustness


def _robustness_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5, 0.7],
                        help="fractions of the most attended patches blacked out")
    parser.add_argument("--attention-checkpoint",
                        help="model whose attention picks the patches (default: the evaluated one)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument("--variant", type=_variant, action="append", default=[], metavar="NAME=FOLDER",
                        help="also report accuracy on this labelled folder (IN-9 style; repeatable)")
    parser.add_argument("--classifier", default="knn", choices=("knn", "linear"),
                        help="k-NN bank or a linear probe (fast mode) fitted on clean training features")
    _probe_args(parser)
    _features(parser)


def _robustness(session: Any, args: argparse.Namespace) -> tuple[dict, str]:
    from attmask.eval.protocols import robustness_protocol
    from attmask.models.checkpoints import load_backbone

    attention = load_backbone(args.attention_checkpoint).model if args.attention_checkpoint else None
    if attention is not None and attention.patch_size != session.backbone.patch_size:
        raise ValueError(f"--attention-checkpoint has patch size {attention.patch_size}, the evaluated "
                         f"model {session.backbone.patch_size}; both must cut the same patch grid")
    linear = _probe_config(args) if args.classifier == "linear" else None
    return robustness_protocol(session, args.ratios, attention, args.features, args.k, args.temperature,
                               dict(args.variant), linear)


# ---------------------------------------------------------------- linear probe


def _probe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=100, help="linear probe epochs")
    parser.add_argument("--lr", type=float, default=0.001, help="base lr per 256 samples (DINO: 0.001)")
    parser.add_argument("--train-batch-size", type=int, default=256, help="classifier batch size")
    parser.add_argument("--seed", type=int, default=0)


def _probe_config(args: argparse.Namespace) -> Any:
    from attmask.eval.linear import LinearProbeConfig
    kind = getattr(args, "probe_features", None)
    return LinearProbeConfig(epochs=args.epochs, batch_size=args.train_batch_size, base_lr=args.lr,
                             feature_kind=kind, num_workers=args.num_workers, seed=args.seed)


def _linear_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", default="fast", choices=("fast", "full"),
                        help="fast: cached centre-crop features; full: crop + flip augmentation every epoch")
    parser.add_argument("--features", dest="probe_features", choices=FEATURE_KINDS,
                        help="feature kind (default: last4 for >= 4 blocks, else cls)")
    _probe_args(parser)


def _linear(session: Any, args: argparse.Namespace) -> tuple[dict, str]:
    from attmask.eval.protocols import linear_protocol
    return linear_protocol(session, _probe_config(args), args.mode)


# ---------------------------------------------------------------- fine-tuning


def _finetune_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3, help="base lr per 256 samples")
    parser.add_argument("--min-lr", type=float, default=1e-6)
    parser.add_argument("--warmup-epochs", type=int, default=5)
    parser.add_argument("--train-batch-size", type=int, default=128)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--layer-decay", type=float, default=0.75, help="layer-wise lr decay")
    parser.add_argument("--drop-path", type=float, default=0.1)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0 = off)")
    parser.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (0 = off)")
    parser.add_argument("--randaug", action="store_true", help="RandAugment(2, 9)")
    parser.add_argument("--pool", default="cls", choices=("cls", "gap"))
    parser.add_argument("--clip-grad", type=float, help="global gradient norm clip")
    parser.add_argument("--seed", type=int, default=0)


def _finetune(session: Any, args: argparse.Namespace) -> tuple[dict, str]:
    from attmask.eval.finetune import FinetuneConfig
    from attmask.eval.protocols import finetune_protocol
    config = FinetuneConfig(
        epochs=args.epochs, batch_size=args.train_batch_size, base_lr=args.lr, min_lr=args.min_lr,
        warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay, layer_decay=args.layer_decay,
        drop_path=args.drop_path, label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix,
        randaug=args.randaug, pool=args.pool, clip_grad=args.clip_grad, num_workers=args.num_workers,
        seed=args.seed)
    return finetune_protocol(session, config)


# ---------------------------------------------------------------- revisited Oxford / Paris


def _revisited_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="roxford5k, rparis6k, ... (default: the one gnd_<dataset>.pkl in --data)")
    parser.add_argument("--max-side", type=int, default=224, help="images shrunk to at most this many pixels a side")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.7071, 0.5], help="feature scales, averaged")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10], help="k of mP@k")


def _revisited(session: Any, args: argparse.Namespace) -> tuple[dict, str]:
    from attmask.eval.revisited_run import revisited_retrieval

    if args.max_side < 1 or any(s <= 0 for s in args.scales) or any(k < 1 for k in args.k):
        raise ValueError("--max-side, --scales and --k must be positive")
    result = revisited_retrieval(session.backbone.eval(), args.data, args.dataset, args.max_side, args.scales,
                                 args.k, session.device)
    maps = " / ".join(f"{result[f'map_{p}']:.2f}" for p in "EMH")
    return result, (f"{result['dataset']}: mAP E / M / H {maps} ({result['num_queries']} queries, "
                    f"{result['num_database']} database images)")


# ---------------------------------------------------------------- DAVIS 2017


def _davis_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=int, default=480, help="shorter frame side in pixels")
    parser.add_argument("--n-last", type=int, default=7, help="previous frames used as context")
    parser.add_argument("--radius", type=int, default=12, help="neighbourhood radius in patches (0 = whole frame)")
    parser.add_argument("--topk", type=int, default=5, help="source patches kept per target patch")
    parser.add_argument("--sequences", nargs="+", help="sequences to run (default: ImageSets/2017/val.txt)")
    parser.add_argument("--save-masks", help="folder for the predicted indexed PNGs")


def _davis(session: Any, args: argparse.Namespace) -> tuple[dict, str]:
    from pathlib import Path

    from attmask.eval.davis import PropagationSettings, evaluate_davis

    if min(args.scale, args.n_last, args.topk) < 1 or args.radius < 0:
        raise ValueError("--scale, --n-last and --topk must be >= 1 and --radius >= 0")
    settings = PropagationSettings(args.scale, args.n_last, args.radius, args.topk)
    result = evaluate_davis(session.backbone, args.data, settings, args.sequences,
                            Path(args.save_masks) if args.save_masks else None)
    return result, (f"DAVIS J&F-Mean {result['J&F-Mean']:.2f} (J {result['J-Mean']:.2f}, F {result['F-Mean']:.2f}) "
                    f"over {len(result['sequences'])} sequences")


#: protocol -> (help, add its arguments, run it on a session)
PROTOCOLS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[Any, argparse.Namespace], tuple[dict, str]]]] = {
    "knn": ("weighted k-NN on frozen features (k = 10, 20, 100, 200; T = 0.07)", _knn_args, _knn),
    "fewshot": ("few-shot k-NN: nu images per class over disjoint subsets", _fewshot_args, _fewshot),
    "linear": ("linear probe on frozen features (DINO protocol; fast or full mode)", _linear_args, _linear),
    "finetune": ("fine-tune the whole ViT with layer-wise lr decay", _finetune_args, _finetune),
    "retrieval": ("Recall@k and mAP of every image against the others", _retrieval_args, _retrieval),
    "robustness": ("k-NN accuracy with the most attended patches blacked out", _robustness_args, _robustness),
    "revisited": ("revisited Oxford / Paris retrieval: mAP and mP@k, Easy / Medium / Hard (--data ROOT with "
                  "gnd_<dataset>.pkl and jpg/)", _revisited_args, _revisited),
    "davis": ("DAVIS 2017 video object segmentation by label propagation: J&F (--data the DAVIS root)",
              _davis_args, _davis),
}
