"""``attmask`` entry point: one thin subcommand per file; errors are one line, not a trace."""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import attmask
from attmask.cli.argument_checks import check_checkpoint_option, check_order
from attmask.core.stop import TrainingStopped

#: subcommand -> (module under attmask.cli, one line for ``attmask --help``). A module is imported
#: only when its subcommand runs, so ``attmask --help`` and a mistyped command never load torch.
SUBCOMMANDS = {
    "pretrain": ("pretrain", "pretrain a ViT (iBOT, DINO, MST, MAE, SimMIM, LUT; AttMask or other masking)"),
    "eval": (
        "evaluate",
        "evaluate a checkpoint: knn, fewshot, linear, finetune, retrieval, robustness, revisited, davis",
    ),
    "export": ("export", "export a backbone: timm safetensors + JSON, a Hugging Face folder, ONNX, mmseg"),
    "visualize": ("visualize", "draw attention maps per head, every strategy's masks, or reconstructions"),
    "report": ("report", "write RUN_DIR/report/index.html: curves, schedules, k-NN, monitors, figures, config"),
    "experiment": ("experiment", "reproducible experiments (masking ablation of AttMask)"),
    "convert": (
        "convert",
        "turn an original DINO/iBOT/AttMask checkpoint, or a sharded (FSDP) one, into a single-file run folder",
    ),
    "launch": ("launch", "submit pretraining to SLURM (submitit): N nodes x G GPUs, requeued on preemption"),
}


def command_module(name: str) -> ModuleType:
    """The ``attmask.cli`` module of subcommand ``name`` (imported now)."""
    return importlib.import_module(f"attmask.cli.{SUBCOMMANDS[name][0]}")


def version_line() -> str:
    """``attmask 0.1.0 (torch 2.5.1, python 3.11.7)``, read from the installed packages' metadata
    (importing torch would take seconds)."""
    from importlib import metadata  # only for --version: importing it costs about 35 ms of start-up

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"attmask {attmask.__version__} (torch {torch_version}, python {python})"


class VersionAction(argparse.Action):
    """``--version``: prints :func:`version_line` and exits; computed only when asked, not each
    time the parser is built (argparse's own ``version`` action takes the text up front)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object, option: str | None = None):
        print(version_line())  # on stdout, as argparse's version action prints
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s own arguments are built (every other subcommand is
    listed with its one line)."""
    parser = argparse.ArgumentParser(
        prog="attmask", description="Attention-guided masked image modeling (AttMask) for Vision Transformers."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action=VersionAction, help="show the versions and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in SUBCOMMANDS.items():
        if name == command:
            command_module(name).add_parser(commands, name)
        else:
            commands.add_parser(name, help=summary)
    return parser


#: Exit code of a command whose output's reader went away (128 + SIGPIPE, as a shell reports it).
SIGPIPE_EXIT = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((item for item in argv if not item.startswith("-")), None)
    parser = build_parser(chosen if chosen in SUBCOMMANDS else None)
    check_order(parser, argv, SUBCOMMANDS)
    check_checkpoint_option(parser, argv, SUBCOMMANDS)
    args = parser.parse_args(argv)
    formatter = warnings.formatwarning
    if not args.debug:  # --debug keeps Python's form (file, line and source line)
        warnings.formatwarning = warning_line(f"attmask {args.command}")
    try:
        code = int(command_module(args.command).run(args) or 0)
        sys.stdout.flush()  # a closed reader shows up here, not at interpreter exit
        return code
    except TrainingStopped as stop:  # asked to stop (SIGTERM); its checkpoint is written
        if os.environ.get("RANK", "0") == "0":  # every process of a torchrun job stopped alike: say it once
            print(f"attmask {args.command}: {stop}", file=sys.stderr)
        return 128 + stop.signum  # what a shell reports for a process ended by that signal
    except (ValueError, OSError, KeyError) as error:
        if isinstance(error, BrokenPipeError) and stdout_reader_gone():
            # the reader of our output went away (`attmask ... | head`): no message, and the exit
            # code a shell gives a command killed by SIGPIPE (the command did not finish its
            # output). Any other broken pipe (a worker, a socket) is a real error, reported below.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return SIGPIPE_EXIT
        if args.debug:
            raise
        print(f"attmask {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatter


#: The installed ``attmask`` package: warnings pointing inside it need no location for a user.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def warning_line(prefix: str) -> Callable[..., str]:
    """A ``warnings.formatwarning`` writing ``PREFIX: warning: MESSAGE`` on one line.

    Python's default form is two lines (``file:line: Category: message`` and the source line that
    warned), which reads like a crash to a CLI user. A warning pointing outside attmask (torch,
    timm, a user's script) keeps its category and location at the end of the line.
    """

    def format_warning(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
    ) -> str:
        text = " ".join(str(message).split())
        path = Path(filename)
        if not path.resolve().is_relative_to(PACKAGE_DIR):
            parts = path.parts
            where = "/".join(parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else path.name
            text += f" ({category.__name__} at {where}:{lineno})"
        return f"{prefix}: warning: {text}\n"

    return format_warning


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end was closed (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no real stdout (pytest)
        return False
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def one_line(error: BaseException) -> str:
    """The error's own message on one line.

    An error raised in a DataLoader worker arrives re-raised as ``Caught X in DataLoader worker
    process N. Original Traceback ...``: only its last line (the original message, without the
    exception's module path) is kept.
    """
    if isinstance(error, OSError) and (known := file_error(error)):
        return known
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        head, _, rest = last.partition(": ")
        text = rest if rest and " " not in head else last
    return " ".join(text.split())


def file_error(error: OSError) -> str | None:
    """What a file-system error means for the path a user passed, and the fix; None for others.

    Python's own text (``[Errno 17] File exists: 'runs/a'``) names neither: ``--out`` naming a file
    where a folder is made is the usual cause.
    """
    path = error.filename
    if path is None:
        return None
    if isinstance(error, FileExistsError):
        if Path(path).is_dir():
            return f"{path} exists already; pass another path or remove it"
        return f"{path} is a file where a folder is needed; pass a folder path or move the file away"
    if isinstance(error, NotADirectoryError):
        return f"{path}: a part of this path is a file, not a folder; pass another path"
    if isinstance(error, IsADirectoryError):
        return f"{path} is a folder where a file is needed; pass a file path"
    if isinstance(error, PermissionError):
        return f"permission denied on {path}; pass a path you may read and write, or change its permissions"
    return None


if __name__ == "__main__":
    sys.exit(main())
