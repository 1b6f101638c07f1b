"""The protocols of ``attmask eval``: what each one runs, the path arguments it takes, and its
shorthand flags (each one a ``--set`` of config keys; the settings themselves live in
:class:`attmask.eval.config.EvalConfig`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attmask.eval.config import EvalConfig
from attmask.eval.protocols import (
    ProtocolResult,
    davis_protocol,
    fewshot_protocol,
    finetune_protocol,
    knn_protocol,
    linear_protocol,
    retrieval_protocol,
    revisited_protocol,
    robustness_protocol,
)
from attmask.eval.session import EvalSession
from attmask.models.checkpoints import load_backbone


@dataclass(frozen=True)
class Alias:
    """A shorthand flag: ``flag VALUE`` means ``--set key=VALUE`` for each of ``keys``.

    Attributes:
        flag: the option, e.g. ``--k``.
        keys: the config keys it sets.
        many: it takes one or more values (a list key): ``--k 1 5`` sets ``key=[1, 5]``.
        constant: it takes no value and sets this one (``--no-progress``: ``false``).
    """

    flag: str
    keys: tuple[str, ...]
    many: bool = False
    constant: str | None = None

    @property
    def dest(self) -> str:
        """Its attribute in the parsed arguments."""
        return "alias_" + self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Register the flag (hidden from the option list; ``--help`` lists the shorthands in its epilog)."""
        if self.constant is not None:
            parser.add_argument(
                self.flag, dest=self.dest, action="store_const", const=self.constant, help=argparse.SUPPRESS
            )
        else:
            parser.add_argument(
                self.flag, dest=self.dest, nargs="+" if self.many else None, metavar="VALUE", help=argparse.SUPPRESS
            )

    def overrides(self, args: argparse.Namespace) -> list[str]:
        """The ``key=value`` overrides the flag stands for ([] when it was not given)."""
        value = getattr(args, self.dest, None)
        if value is None:
            return []
        text = f"[{', '.join(value)}]" if self.many else value
        return [f"{key}={text}" for key in self.keys]

    def describe(self) -> str:
        """``--k = knn.ks``."""
        value = f"={self.constant}" if self.constant is not None else ""
        return f"{self.flag} = {' + '.join(key + value for key in self.keys)}"


def _alias(flag: str, *keys: str, many: bool = False, constant: str | None = None) -> Alias:
    return Alias(flag, keys, many, constant)


#: Shorthands of every protocol.
COMMON_ALIASES = (
    _alias("--student", "session.student", constant="true"),
    _alias("--num-heads", "session.num_heads"),
    _alias("--img-size", "data.img_size"),
    _alias("--batch-size", "data.batch_size"),
    _alias("--num-workers", "data.num_workers"),
    _alias("--device", "session.device"),
    _alias("--no-progress", "session.progress", constant="false"),
)


def _probe_aliases(section: str) -> tuple[Alias, ...]:
    """Shorthands of a trained classifier's section (linear probe or fine-tuning)."""
    return (
        _alias("--epochs", f"{section}.epochs"),
        _alias("--lr", f"{section}.base_lr"),
        _alias("--train-batch-size", f"{section}.batch_size"),
        _alias("--seed", f"{section}.seed"),
        _alias("--num-workers", "data.num_workers", f"{section}.num_workers"),
    )


def _variant(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"--variant takes NAME=FOLDER, got {text!r}")
    return name, folder


def _robustness_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attention-checkpoint", help="model whose attention picks the patches (default: the evaluated one)"
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="also report accuracy on this labelled folder (IN-9 style; repeatable)",
    )


def _robustness(session: EvalSession, config: EvalConfig, args: argparse.Namespace) -> ProtocolResult:
    attention = load_backbone(args.attention_checkpoint).model if args.attention_checkpoint else None
    if attention is not None and attention.patch_size != session.backbone.patch_size:
        raise ValueError(
            f"--attention-checkpoint has patch size {attention.patch_size}, the evaluated "
            f"model {session.backbone.patch_size}; both must cut the same patch grid"
        )
    return robustness_protocol(session, config.robustness, config.linear, attention, dict(args.variant))


def _davis_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--save-masks", help="folder for the predicted indexed PNGs")


def _davis(session: EvalSession, config: EvalConfig, args: argparse.Namespace) -> ProtocolResult:
    return davis_protocol(session, config.davis, Path(args.save_masks) if args.save_masks else None)


Runner = Callable[[EvalSession, EvalConfig, argparse.Namespace], ProtocolResult]


@dataclass(frozen=True)
class Protocol:
    """One ``attmask eval`` protocol.

    Attributes:
        help: one line for ``--help``.
        run: runs it on a session with the resolved config and the parsed (path) arguments.
        aliases: its shorthand flags besides :data:`COMMON_ALIASES` (a flag of both: this one).
        paths: registers its path arguments, if any.
        data_root: what ``--data`` must name when the protocol reads a benchmark's own folder
            rather than labelled images (then it has no default); None for the others.
    """

    help: str
    run: Runner
    aliases: tuple[Alias, ...] = ()
    paths: Callable[[argparse.ArgumentParser], None] | None = None
    data_root: str | None = None

    def all_aliases(self) -> list[Alias]:
        """Its shorthands and the common ones it does not redefine."""
        own = {alias.flag for alias in self.aliases}
        return [*self.aliases, *(alias for alias in COMMON_ALIASES if alias.flag not in own)]


PROTOCOLS: dict[str, Protocol] = {
    "knn": Protocol(
        "weighted k-NN on frozen features (k = 10, 20, 100, 200; T = 0.07)",
        lambda session, config, _: knn_protocol(session, config.knn),
        (
            _alias("--k", "knn.ks", many=True),
            _alias("--temperature", "knn.temperature"),
            _alias("--features", "knn.features"),
        ),
    ),
    "fewshot": Protocol(
        "few-shot k-NN: nu images per class over disjoint subsets",
        lambda session, config, _: fewshot_protocol(session, config.fewshot),
        (
            _alias("--shots", "fewshot.shots", many=True),
            _alias("--repeats", "fewshot.repeats"),
            _alias("--seed", "fewshot.seed"),
            _alias("--features", "fewshot.features"),
        ),
    ),
    "linear": Protocol(
        "linear probe on frozen features (DINO protocol; fast or full mode)",
        lambda session, config, _: linear_protocol(session, config.linear),
        (_alias("--mode", "linear.mode"), _alias("--features", "linear.feature_kind"), *_probe_aliases("linear")),
    ),
    "finetune": Protocol(
        "fine-tune the whole ViT with layer-wise lr decay",
        lambda session, config, _: finetune_protocol(session, config.finetune),
        (
            *_probe_aliases("finetune"),
            *(
                _alias(f"--{key.replace('_', '-')}", f"finetune.{key}")
                for key in (
                    "min_lr",
                    "warmup_epochs",
                    "weight_decay",
                    "layer_decay",
                    "drop_path",
                    "label_smoothing",
                    "mixup",
                    "cutmix",
                    "pool",
                    "clip_grad",
                )
            ),
            _alias("--randaug", "finetune.randaug", constant="true"),
        ),
    ),
    "retrieval": Protocol(
        "Recall@k and mAP of every image against the others",
        lambda session, config, _: retrieval_protocol(session, config.retrieval),
        (
            _alias("--k", "retrieval.ks", many=True),
            _alias("--split", "retrieval.split"),
            _alias("--no-map", "retrieval.map", constant="false"),
            _alias("--features", "retrieval.features"),
        ),
    ),
    "robustness": Protocol(
        "k-NN accuracy with the most attended patches blacked out",
        _robustness,
        (
            _alias("--ratios", "robustness.ratios", many=True),
            _alias("--k", "robustness.k"),
            _alias("--temperature", "robustness.temperature"),
            _alias("--classifier", "robustness.classifier"),
            _alias("--features", "robustness.features"),
            *_probe_aliases("linear"),
        ),
        _robustness_paths,
    ),
    "revisited": Protocol(
        "revisited Oxford / Paris retrieval: mAP and mP@k, Easy / Medium / Hard (--data ROOT with "
        "gnd_<dataset>.pkl and jpg/)",
        lambda session, config, _: revisited_protocol(session, config.revisited),
        (
            _alias("--dataset", "revisited.dataset"),
            _alias("--max-side", "revisited.max_side"),
            _alias("--scales", "revisited.scales", many=True),
            _alias("--k", "revisited.ks", many=True),
        ),
        data_root="the folder holding gnd_<dataset>.pkl and jpg/ (e.g. /data/datasets/roxford5k)",
    ),
    "davis": Protocol(
        "DAVIS 2017 video object segmentation by label propagation: J&F (--data the DAVIS root)",
        _davis,
        (
            *(_alias(f"--{key.replace('_', '-')}", f"davis.{key}") for key in ("scale", "n_last", "radius", "topk")),
            _alias("--sequences", "davis.sequences", many=True),
        ),
        _davis_paths,
        data_root="the DAVIS 2017 root (JPEGImages/480p, Annotations/480p, ImageSets/2017/val.txt)",
    ),
}
