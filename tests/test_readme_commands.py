"""Every command line in the README's code blocks is one the CLI accepts: its options exist, in
that order, and its ``--set`` keys and values load (pretraining and evaluation settings). A flag
renamed in the code and not in the README fails here, not in a reader's shell."""

from __future__ import annotations

import re
import shlex

import pytest

from attmask.cli.main import SUBCOMMANDS, build_parser, check_order
from attmask.config import load_config
from attmask.eval.config import load_eval_config
from tests.conftest import REPO_ROOT

FENCE = re.compile(r"^ *```\w*\n(.*?)^ *```", re.MULTILINE | re.DOTALL)


def _words(line: str) -> list[str] | None:
    """The attmask arguments of one shell line (after ``attmask`` or ``-m attmask.cli.main``),
    optional parts written ``[--flag value]`` included; None when the line runs no attmask."""
    if not re.search(r"(^|[\s/])attmask(\s|$)|-m attmask\.cli\.main", line):
        return None
    words = shlex.split(line, comments=True)
    for start, word in enumerate(words):
        if word == "attmask" or word.endswith("/attmask"):
            words = words[start + 1 :]
            break
        if word == "attmask.cli.main" and start and words[start - 1] == "-m":
            words = words[start + 1 :]
            break
    else:
        return None
    plain, optional = [], False
    for word in words:
        if word.startswith("[-"):
            word, optional = word[1:], True
        if optional and word.endswith("]"):
            word, optional = word[:-1], False
        plain.append(word)
    return [word for word in plain if word != "&"]


def readme_commands() -> list[tuple[int, list[str]]]:
    """``(line number, arguments)`` of every attmask command in a fenced block."""
    text = (REPO_ROOT / "README.md").read_text()
    found = []
    for block in FENCE.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        joined = block.group(1).replace("\\\n", " \n")  # a continued command, kept on its first line
        for offset, line in enumerate(re.sub(r" \n\s*", " ", joined).splitlines()):
            words = _words(line)
            if words:
                found.append((first + offset, words))
    return found


COMMANDS = readme_commands()


def test_the_readme_shows_every_subcommand() -> None:
    assert {words[0] for _, words in COMMANDS} == set(SUBCOMMANDS)
    assert len(COMMANDS) >= 30


def _check_settings(args) -> None:
    """The ``--set`` overrides load with the command's config (a preset of the repository; a
    placeholder like ``...`` stands for the reader's own and is not read)."""
    config = getattr(args, "config", None)
    path = REPO_ROOT / config if config and (REPO_ROOT / config).is_file() else None
    if args.command == "pretrain":
        load_config(path, args.overrides)
    elif args.command == "eval":
        load_eval_config(path, args.overrides)


@pytest.mark.parametrize(("line", "words"), COMMANDS, ids=[f"README:{line}" for line, _ in COMMANDS])
def test_a_readme_command_parses(line: int, words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    if "--help" in words:
        with pytest.raises(SystemExit) as exit_:
            build_parser(words[0]).parse_args(words)
        assert exit_.value.code == 0
        return
    inner = words[words.index("--") + 1 :] if words[0] == "launch" and "--" in words else None
    outer = words[: words.index("--")] if inner else words
    parser = build_parser(words[0])
    check_order(parser, outer, SUBCOMMANDS)
    args, rest = parser.parse_known_args(outer)
    assert not rest, f"README line {line}: unknown arguments {rest}"
    _check_settings(args)
    if inner:  # what launch submits is a pretraining command line of its own
        inner_args = build_parser(inner[0]).parse_args(inner)
        _check_settings(inner_args)
