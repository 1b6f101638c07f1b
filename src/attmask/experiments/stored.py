"""Stored cell results: a result file holds the settings it was computed with, and is read back
only under the same settings (up to where and how the cell ran)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from attmask.config import Config, ConfigError, to_dict
from attmask.core.files import write_atomic
from attmask.core.typed_yaml import flatten
from attmask.engine.resume import MACHINE_KEYS
from attmask.experiments.config import EvalSpec


def settings_key(config: Config, spec: EvalSpec) -> dict[str, Any]:
    """Everything a cell's result depends on: the pretraining config and the eval settings.

    ``eval.features`` is left out while it is the default ``[cls]``, so results stored before
    that setting existed (the first CPU run) stay valid.
    """
    evaluation = asdict(spec)
    if evaluation["features"] == ["cls"]:
        del evaluation["features"]
    return {**to_dict(config), "eval": evaluation}


#: Settings a stored cell may differ in and still be read: where and how it ran (threads, loader
#: workers, device, data folder, logging, checkpoint frequency), not what it trained or measured.
#: So an experiment can move to another machine, or run two ``--cells`` selections side by side
#: on one thread each, without recomputing what is done.
MACHINE_SETTINGS = MACHINE_KEYS | {"eval.num_workers"}


def result_changes(previous: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """Dotted keys (sorted) whose values differ between two settings dicts, a key missing on one
    side included, apart from :data:`MACHINE_SETTINGS`."""
    old, new = flatten(previous), flatten(settings)
    return sorted(k for k in set(old) | set(new) if k not in MACHINE_SETTINGS and old.get(k, ...) != new.get(k, ...))


def cached_result(
    path: Path, settings: dict[str, Any], compute: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """``(result, computed)``: the stored result at ``path`` if it was made with ``settings`` (up to
    :data:`MACHINE_SETTINGS`), else ``compute()`` written there atomically together with the settings.

    Raises:
        ConfigError: ``path`` holds a result of other settings.
    """
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            raise ConfigError(f"{path} is not valid JSON; delete it to recompute that cell") from None
        changed = result_changes(stored.get("settings", {}), settings)
        if changed:
            raise ConfigError(
                f"{path} was computed with other settings (changed: {', '.join(changed)}); "
                "use a new --out folder or delete that file to recompute it"
            )
        return stored, False
    result = {**compute(), "settings": settings}
    write_atomic(path, lambda stream: stream.write(json.dumps(result, indent=1).encode()))
    return result, True
