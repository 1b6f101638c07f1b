"""Mistakes in the order or the form of a command line that argparse reports in terms that name
neither the mistake nor the fix: each is one line in argparse's form, with the command as it
should have been typed."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Collection
from pathlib import Path


def subcommand_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    """``parser``'s subcommands (names -> parsers in ``.choices``, their word in ``.metavar``)."""
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _command(
    parser: argparse.ArgumentParser, argv: list[str], commands: Collection[str]
) -> tuple[str, argparse._SubParsersAction] | None:
    """The command ``argv`` names (its first bare word) and the top-level subcommands action that
    holds its parser; None when the first bare word is no command."""
    command = next((item for item in argv if not item.startswith("-")), None)
    top = subcommand_action(parser)
    if command not in commands or top is None or command not in top.choices:
        return None
    return command, top


def check_order(parser: argparse.ArgumentParser, argv: list[str], commands: Collection[str]) -> None:
    """Exit with one line when an option comes before a command's second word
    (``attmask eval --checkpoint C knn``): argparse would call the option's value an invalid
    protocol, naming neither the mistake nor the fix.

    Raises:
        SystemExit: 2, after the command's usage and ``attmask CMD: error: ...`` (argparse's form).
    """
    found = _command(parser, argv, commands)
    if found is None:
        return
    command, top = found
    inner = subcommand_action(top.choices[command])
    rest = argv[argv.index(command) + 1 :]
    if inner is None or not rest or not rest[0].startswith("-") or rest[0] in ("-h", "--help"):
        return
    kind = str(inner.metavar).lower()
    word = next((item for item in rest if item in inner.choices), None)
    if word is None:
        fix = f"name the {kind} first ({', '.join(inner.choices)}), then its options"
    else:
        moved = [word, *rest[: rest.index(word)], *rest[rest.index(word) + 1 :]]
        fix = f"the {kind} comes first, then its options: {shlex.join(['attmask', command, *moved])}"
    top.choices[command].error(fix)


def _leaf(
    parser: argparse.ArgumentParser, argv: list[str], commands: Collection[str]
) -> tuple[argparse.ArgumentParser, int] | None:
    """The parser of the command (and of its second word, ``eval knn``) and the index in ``argv``
    after those words; None when the command line names no command."""
    found = _command(parser, argv, commands)
    if found is None:
        return None
    command, top = found
    leaf, end = top.choices[command], argv.index(command) + 1
    inner = subcommand_action(leaf)
    if inner is not None:
        if end >= len(argv) or argv[end] not in inner.choices:
            return None
        leaf, end = inner.choices[argv[end]], end + 1
    return leaf, end


def _bare_words(leaf: argparse.ArgumentParser, rest: list[str]) -> list[str] | None:
    """The words of ``rest`` that are neither options nor their values; None when an option of
    several values makes that unclear."""
    bare, expects = [], 0
    for item in rest:
        if expects:
            expects -= 1
        elif item.startswith("-"):
            action = leaf._option_string_actions.get(item.split("=")[0])
            if action is not None and action.nargs not in (None, 0, 1):
                return None
            expects = int(action is not None and action.nargs != 0 and "=" not in item)
        else:
            bare.append(item)
    return bare


def check_checkpoint_option(parser: argparse.ArgumentParser, argv: list[str], commands: Collection[str]) -> None:
    """Exit with one line when a command whose checkpoint is the option ``--checkpoint`` is given
    it as a bare word (``attmask export RUN --out x``, as ``attmask report RUN`` takes it):
    argparse would report ``--checkpoint`` missing and the path as unrecognized.

    Raises:
        SystemExit: 2, after the command's usage and its error line.
    """
    found = _leaf(parser, argv, commands)
    if found is None:
        return
    leaf, end = found
    positional = [a for a in leaf._actions if not a.option_strings]
    given = any(item == "--checkpoint" or item.startswith("--checkpoint=") for item in argv)
    if "--checkpoint" not in leaf._option_string_actions or given or positional:
        return
    bare = _bare_words(leaf, argv[end:])
    if bare is None or len(bare) != 1 or not Path(bare[0]).exists():
        return
    rest = argv[end:]
    rest.remove(bare[0])
    words = ["attmask", *(item for item in argv[:end] if item != "--debug"), "--checkpoint", bare[0], *rest]
    leaf.error(f"the checkpoint is an option: {shlex.join(words)}")
