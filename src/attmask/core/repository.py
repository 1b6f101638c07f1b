"""Files of a source checkout: the repository holding this package and its ``configs/``.

Light on purpose (pathlib only): the command line lists the presets in its ``--help`` without
importing torch.
"""

from __future__ import annotations

from pathlib import Path

#: The repository holding this package (its ``configs/`` has the presets of a source checkout).
REPOSITORY = Path(__file__).resolve().parents[3]


def find_file(name: str | Path, *folders: Path) -> Path | None:
    """``name`` as given (absolute or relative to the working folder), else under each of
    ``folders`` in turn, else in :data:`REPOSITORY`; None when no such file exists."""
    for candidate in (Path(name), *(folder / name for folder in folders), REPOSITORY / name):
        if candidate.is_file():
            return candidate
    return None


def preset_names(folder: str | Path, prefix: str) -> list[str]:
    """Sorted names ``N`` of the files ``folder/<prefix>N.yaml`` in the working folder and in
    :data:`REPOSITORY` (e.g. ``cpu``, ``cpu_v2`` for ``configs/experiments``, ``masking_``)."""
    names = {
        path.stem.removeprefix(prefix)
        for root in (Path(folder), REPOSITORY / folder)
        for path in root.glob(f"{prefix}*.yaml")
    }
    return sorted(names)


def portable_path(path: str | Path) -> str:
    """``path`` as a results file should record it: relative to :data:`REPOSITORY` when the
    file lies in it (``configs/x.yaml``, the same on every clone), else as given."""
    try:
        return Path(path).resolve().relative_to(REPOSITORY).as_posix()
    except ValueError:  # outside the checkout: the only name that finds it
        return str(path)
