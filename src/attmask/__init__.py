"""attmask: attention-guided masked image modeling (AttMask) and the methods around it.

The package is imported in pieces (``attmask.models``, ``attmask.eval``, ...); this file holds
only the version, read on first use: ``importlib.metadata`` alone takes about 35 ms to import,
more than the whole start-up of ``attmask --help``."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``attmask.__version__``: the installed distribution's version (PEP 562, computed once)."""
    if name != "__version__":
        raise AttributeError(f"module 'attmask' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version  # here, not at import: start-up time

    try:
        found = version("attmask")
    except PackageNotFoundError:  # run from src/ without installing (torch.hub's hubconf.py does that)
        found = "0+unknown"
    globals()["__version__"] = found
    return found
