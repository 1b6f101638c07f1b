"""``attmask --help`` and a mistyped command answer without importing torch (the CLI imports a
subcommand's module only when that subcommand runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from attmask.cli.main import SUBCOMMANDS, build_parser, command_module
from tests.conftest import REPO_ROOT

PROBE = """
import sys
from attmask.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("TORCH" if "torch" in sys.modules else "NO-TORCH")
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["pretrian"], [], ["experiment", "masking", "--help"]])
def test_help_and_argument_errors_do_not_import_torch(argv) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": ""},
    )
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH", done.stdout + done.stderr
    if argv == ["--help"]:
        assert all(name in done.stdout for name in SUBCOMMANDS)
    if argv == ["--version"]:  # the installed versions, from metadata
        import importlib.metadata

        import attmask

        torch_version = importlib.metadata.version("torch")
        assert attmask.__version__ == importlib.metadata.version("attmask")
        assert done.stdout.startswith(f"attmask {attmask.__version__} (torch {torch_version}, python 3."), done.stdout
    if argv[:1] == ["experiment"]:  # the presets shipped in configs/experiments/, read from there
        help_text = " ".join(done.stdout.split())
        for path in (REPO_ROOT / "configs" / "experiments").glob("masking_*.yaml"):
            assert path.stem.removeprefix("masking_") in help_text


def test_every_subcommand_builds_its_full_parser() -> None:
    for name in SUBCOMMANDS:
        parser = build_parser(name)
        assert hasattr(command_module(name), "run")
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
