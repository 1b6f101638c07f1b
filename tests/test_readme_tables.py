"""The README's result tables quote the committed results.md files cell for cell.

A README table preceded by ``<!-- table from PATH, section "TITLE" ... -->`` copies some rows
and columns of the table under the ``## ...TITLE...`` heading of PATH (written by the experiment's
``--report-only``). A finished cell that changes results.md without the README fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r'<!-- table from (\S+), section "([^"]+)"')

#: README column name -> results.md column name, where they differ.
RENAMED = {"[CLS] 20-NN": "20-NN", "pairs": "n", "Δ [CLS] 20-NN": "Δ k-NN", "Δ GAP 20-NN": "Δ GAP k-NN"}


def markdown_table(lines: list[str], start: int) -> list[list[str]]:
    """The rows (header first, separator dropped) of the table that begins at ``lines[start]``."""
    rows = []
    for line in lines[start:]:
        if not line.strip().startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [rows[0], *rows[2:]]


def section_table(path: Path, title: str) -> list[list[str]]:
    """The first table under the ``## `` heading of ``path`` that contains ``title``."""
    lines = path.read_text().splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("## ") and title in line)
    start = next(i for i in range(heading + 1, len(lines)) if lines[i].startswith("|"))
    return markdown_table(lines, start)


def column(header: list[str], name: str) -> int:
    """Index of README column ``name`` in a results.md header (Δ columns match by prefix)."""
    wanted = RENAMED.get(name, name)
    if wanted.startswith("Δ"):
        return next(i for i, h in enumerate(header) if h.split(" vs ")[0] == wanted)
    return header.index(wanted)


def quoted_tables() -> list[tuple[int, str, str]]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [(i + 1, *match.groups()) for i, line in enumerate(lines) if (match := MARKER.search(line))]


def test_the_readme_quotes_some_tables() -> None:
    assert len(quoted_tables()) >= 2


@pytest.mark.parametrize(("line", "path", "title"), quoted_tables(), ids=lambda v: str(v))
def test_readme_table_matches_results(line: int, path: str, title: str) -> None:
    readme = markdown_table((ROOT / "README.md").read_text().splitlines(), line)
    source = section_table(ROOT / path, title)
    rows = {row[0]: row for row in source[1:]}
    for row in readme[1:]:
        assert row[0] in rows, f"README line {line}: no row {row[0]!r} in {path}, {title}"
        for name, value in zip(readme[0][1:], row[1:], strict=True):
            expected = rows[row[0]][column(source[0], name)]
            assert value == expected, f"README line {line}, {row[0]}, {name}: {value} but {path} has {expected}"
