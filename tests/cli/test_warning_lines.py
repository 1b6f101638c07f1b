"""Warnings reach a CLI user as one line each (``attmask CMD: warning: ...``), not Python's two-line
``file:line: Category:`` form with the source line; ``--debug`` keeps Python's form."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from attmask.cli.main import main
from tests.conftest import REPO_ROOT

#: Runs a subcommand ``probe`` whose run() warns from inside attmask, from torch and from a script.
PROBE = """
import sys, types, warnings
import attmask.cli.main as cli
probe = types.ModuleType("attmask.cli.probe")
probe.add_parser = lambda commands, name: commands.add_parser(name)
def run(args):
    warnings.warn_explicit("k=20 exceeds\\n  the 5 training samples", UserWarning, cli.__file__, 7)
    warnings.warn_explicit("old API", DeprecationWarning, "/x/site-packages/torch/nn/modules/module.py", 9)
    warnings.warn("from a script")
    return 0
probe.run = run
sys.modules["attmask.cli.probe"] = probe
cli.SUBCOMMANDS["probe"] = ("probe", "warns three times")
sys.exit(cli.main(sys.argv[1:]))
"""


def _stderr(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", PROBE, *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": ""},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_each_warning_is_one_line_naming_the_command() -> None:
    assert _stderr("probe") == [
        "attmask probe: warning: k=20 exceeds the 5 training samples",
        "attmask probe: warning: old API (DeprecationWarning at torch/nn/modules/module.py:9)",
        "attmask probe: warning: from a script (UserWarning at <string>:9)",
    ]


def test_debug_keeps_pythons_form() -> None:
    lines = _stderr("--debug", "probe")
    assert lines[0].endswith("main.py:7: UserWarning: k=20 exceeds"), lines
    assert not any(line.startswith("attmask probe: warning:") for line in lines)


@pytest.mark.parametrize("failing", [False, True])
def test_the_form_is_restored_when_main_returns(failing, tmp_path, capsys) -> None:
    """main() used in-process (a notebook, a test) leaves the warnings module as it found it."""
    before = warnings.formatwarning
    status = ["experiment", "masking", "--preset", "cpu_v2", "--out", str(tmp_path / "ablation"), "--status"]
    code = main(["report", str(tmp_path / "no-such-run")] if failing else status)
    assert (code != 0) == failing, capsys.readouterr().err
    assert warnings.formatwarning is before
