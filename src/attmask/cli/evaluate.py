"""``attmask eval <protocol>``: evaluate a checkpoint on a labelled data set.

Settings come from the typed evaluation config (:class:`attmask.eval.config.EvalConfig`): an
optional ``--config FILE.yaml`` plus repeatable ``--set section.key=value``, checked as
pretraining's config is. The command line itself holds only paths (checkpoint, data, output, ...),
the protocol, and shorthand flags that stand for ``--set`` (``--k 20`` = ``--set knn.ks=[20]``).
Every protocol writes a JSON result (default ``<checkpoint folder>/eval/<protocol>.json``), the
resolved config beside it (``<protocol>.config.yaml``, readable by ``--config``), and prints one
summary line. Protocols live in :mod:`attmask.cli.eval_protocols`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import textwrap
import time
import typing
from pathlib import Path
from typing import Any

from attmask.cli import eval_protocols
from attmask.cli.options import add_set_option, field_docs
from attmask.core.distributed import init_distributed, shutdown
from attmask.core.environment import environment
from attmask.core.files import write_atomic
from attmask.eval.config import EvalConfig, load_eval_config, save_eval_config, sections_of
from attmask.eval.config_checks import CHOICES, RULES
from attmask.eval.session import EvalSession
from attmask.models.checkpoints import load_backbone, pretraining_data

_RANGES = {key: words for key, _, words in RULES}


def parse_subset(text: str) -> float | int:
    """``"0.2"`` -> 0.2 (fraction), ``"10"`` -> 10 (images per class)."""
    try:
        return int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--subset takes a fraction or a count, got {text!r}") from None


def _docs(cls: type) -> dict[str, str]:
    """Key descriptions of a config section, inherited ones included."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base))
    return docs


def key_reference(sections: typing.Sequence[str]) -> list[str]:
    """Per key of ``sections``: ``section.key type default``, then its description and its accepted
    values or range (the layout of ``attmask pretrain --help``)."""
    lines, defaults = [], EvalConfig()
    for name in sections:
        section = getattr(defaults, name)
        hints, docs = typing.get_type_hints(type(section)), _docs(type(section))
        for item in dataclasses.fields(section):
            key, hint = f"{name}.{item.name}", hints[item.name]
            kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            lines.append(f"  {key:30s} {kind:24s} default: {getattr(section, item.name)!r}")
            accepted = "one of " + ", ".join(CHOICES[key]) if key in CHOICES else _RANGES.get(key, "")
            described = re.sub(r":\w+:`([^`]*)`", r"\1", docs.get(item.name, "")).replace("``", "")
            notes = [text.rstrip(".") for text in (described, accepted) if text]
            lines.extend(f"      {text}" for text in textwrap.wrap("; ".join(notes), 96))
    return lines


def _epilog(protocol: str) -> str:
    shorthands = [alias.describe() for alias in eval_protocols.PROTOCOLS[protocol].all_aliases()]
    shorthands.append("--subset X = data.subset (a fraction) or data.per_class (a count)")
    wrapped = textwrap.wrap(
        ", ".join(text.replace(" ", "\0") for text in shorthands),
        100,
        initial_indent="  ",
        subsequent_indent="  ",
        break_on_hyphens=False,
    )
    return "\n".join(
        [
            "config keys (set in --config FILE.yaml or with --set key=value):",
            *key_reference(sections_of(protocol)),
            "",
            "shorthand flags (each sets config keys; applied after --set):",
            *(line.replace("\0", " ") for line in wrapped),
        ]
    )


def _common(parser: argparse.ArgumentParser) -> None:
    """Paths and configuration, shared by every protocol."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint file or run folder (attmask, DINO/iBOT/AttMask, timm, .safetensors)",
    )
    parser.add_argument(
        "--data",
        help="fashion-mnist, digits, or a labelled folder (sets data.source; default: the data the "
        "checkpoint was pretrained on, or fashion-mnist when it does not say); revisited and davis: "
        "the benchmark's root, required",
    )
    parser.add_argument("--data-dir", help="folder holding a built-in data set's files (sets data.data_dir)")
    parser.add_argument("--test-data", help="separate labelled folder for the test split (sets data.test_source)")
    parser.add_argument("--cache-dir", help="cache extracted features here (keyed by checkpoint, data, options)")
    parser.add_argument(
        "--out",
        help="result JSON (default: <checkpoint folder>/eval/<protocol>.json); the "
        "resolved config goes beside it as <name>.config.yaml",
    )
    parser.add_argument(
        "--config",
        help="evaluation config YAML (sections as listed below), e.g. "
        "configs/eval/quick.yaml or a <name>.config.yaml written by an earlier run",
    )
    add_set_option(parser, "config key", "knn.ks=[20]")
    parser.add_argument("--subset", type=parse_subset, help=argparse.SUPPRESS)


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    """Register ``eval`` and its protocol subcommands."""
    parser = commands.add_parser(
        name,
        help="evaluate a checkpoint: knn, fewshot, linear, finetune, retrieval, robustness",
        description="Evaluate a pretrained ViT with the protocols of the AttMask paper. Settings: "
        "--config FILE.yaml and --set section.key=value (attmask eval PROTOCOL --help lists the keys).",
    )
    protocols = parser.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    for protocol, spec in eval_protocols.PROTOCOLS.items():
        sub = protocols.add_parser(
            protocol,
            help=spec.help,
            description=spec.help,
            epilog=_epilog(protocol),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(sub)
        if spec.paths is not None:
            spec.paths(sub)
        for alias in spec.all_aliases():
            alias.add_to(sub)


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides that the path flags and the shorthand flags stand for."""
    overrides = [
        f"{key}={json.dumps(getattr(args, dest))}"
        for dest, key in (("data", "data.source"), ("data_dir", "data.data_dir"), ("test_data", "data.test_source"))
        if getattr(args, dest) is not None
    ]
    if args.subset is not None:
        counted = isinstance(args.subset, int)
        overrides += [
            f"data.per_class={args.subset if counted else 'null'}",
            f"data.subset={'null' if counted else args.subset}",
        ]
    for alias in eval_protocols.PROTOCOLS[args.protocol].all_aliases():
        overrides += alias.overrides(args)
    return overrides


def resolve_config(args: argparse.Namespace) -> EvalConfig:
    """The evaluation config: ``--config``, then ``--set``, then the flags."""
    return load_eval_config(args.config, [*args.overrides, *flag_overrides(args)])


def _default_out(args: argparse.Namespace) -> Path:
    checkpoint = Path(args.checkpoint)
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return folder / "eval" / f"{args.protocol}.json"


def config_path(out: Path) -> Path:
    """Where the resolved config of result ``out`` goes: ``<stem>.config.yaml`` beside it."""
    return out.with_name(f"{out.stem}.config.yaml")


def _write(result: dict[str, Any], out: Path) -> None:
    text = (json.dumps(result, indent=2, default=str) + "\n").encode()
    write_atomic(out, lambda stream: stream.write(text))


def data_note(session: EvalSession) -> str:
    """The line that says which data an evaluation without ``--data`` runs on, and why."""
    pretrained_on = pretraining_data(session.loaded.config)
    why = "the checkpoint's pretraining data" if pretrained_on else "the default; the checkpoint does not say"
    return f"evaluating on {session.data.source} ({why}); --data chooses other images"


def run(args: argparse.Namespace) -> int:
    """Resolve the config, load the backbone, run the protocol, write the JSON and the config, print
    the summary (rank 0)."""
    config = resolve_config(args)
    root = eval_protocols.PROTOCOLS[args.protocol].data_root
    if root is not None and config.data.source is None:  # no default: the pretraining data is not a benchmark root
        raise ValueError(f"eval {args.protocol} needs --data: {root}")
    start = time.perf_counter()
    loaded = load_backbone(args.checkpoint, "student" if config.session.student else None, config.session.num_heads)
    ctx = init_distributed(config.session.device)
    try:
        session = EvalSession(
            loaded,
            config.data,
            ctx.device,
            Path(args.cache_dir) if args.cache_dir else None,
            progress=config.session.progress and ctx.is_main,
        )
        if config.data.source is None and ctx.is_main:
            print(data_note(session), file=sys.stderr)
        config = dataclasses.replace(config, data=session.data)  # the resolved source goes into the config file
        outcome = eval_protocols.PROTOCOLS[args.protocol].run(session, config, args)
    finally:
        shutdown()
    if ctx.is_main:
        result = {
            **outcome.record,
            "session": session.describe(),
            "seconds": time.perf_counter() - start,
            **environment(ctx.device),  # date, commit, device (processor or GPU), versions
            "world_size": ctx.world_size,
        }
        out = Path(args.out) if args.out else _default_out(args)
        _write(result, out)
        save_eval_config(config, config_path(out), sections_of(args.protocol))
        print(f"{outcome.summary}  -> {out}")
    return 0
