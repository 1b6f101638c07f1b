"""On-disk cache of extracted features, keyed by checkpoint, data and options.

The key holds the checkpoint's resolved path, size and modification time (a retrained file at
the same path misses the cache), the data set, split, subset, image size, feature kind and any
other option the caller adds. Entries are written atomically and store their key, which is
compared on reading, so a hash collision or a stale file is recomputed instead of trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attmask.core.checkpoint import save_atomic


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns"}`` of a file, for cache keys."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_path(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    """``cache_dir/features-<sha256 of the key's JSON, 20 hex digits>.pt``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_dir) / f"features-{digest[:20]}.pt"


def cached_features(
    cache_dir: str | Path | None, key: dict[str, Any], compute: Callable[[], tuple[Tensor, Tensor]]
) -> tuple[Tensor, Tensor, bool]:
    """Features and labels from the cache, or from ``compute()`` (then stored).

    Args:
        cache_dir: folder of the cache; None disables caching.
        key: JSON-serialisable description of everything the features depend on.
        compute: returns ``(features (M, F), labels (M,))``.

    Returns:
        ``(features, labels, hit)``; ``hit`` is True when read from the cache.
    """
    if cache_dir is None:
        return (*compute(), False)
    path = cache_path(cache_dir, key)
    canonical = json.loads(json.dumps(key, sort_keys=True, default=str))
    if path.is_file():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("key") == canonical:
                return entry["features"], entry["labels"], True
        except Exception:  # a torn or foreign file: recompute and overwrite
            pass
    features, labels = compute()
    save_atomic({"key": canonical, "features": features, "labels": labels}, path)
    return features, labels, False
