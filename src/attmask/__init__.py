"""attmask: attention-guided masked image modeling (AttMask) and the methods around it.

The package is imported in pieces (``attmask.models``, ``attmask.eval``, ...); this file holds
only the version, so ``import attmask`` stays instant."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("attmask")
except PackageNotFoundError:  # run from src/ without installing (torch.hub's hubconf.py does that)
    __version__ = "0+unknown"
