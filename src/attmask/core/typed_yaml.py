"""Typed YAML for dataclass configs: coercion of YAML values to declared field types, nested
dataclasses from mappings, ``a.b=c`` overrides. Every unknown key or bad value is one
:class:`ConfigError` naming the key and the accepted values."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad config file, key or value (one line, names the key and the fix)."""


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce_scalar(value: Any, hint: type, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif hint is int and not isinstance(value, bool):
        if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if number != number or number in (float("inf"), float("-inf")):
                raise ConfigError(f"config key {key} must be a finite number, got {value!r}")
            return number
    elif hint is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"config key {key} expects {_type_name(hint)}, got {value!r}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML value to the field's declared type, or raise ``ConfigError``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in options:
                return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"config key {key} got {value!r}")
    if origin is list:
        items = value if isinstance(value, (list, tuple)) else [value]
        (arg,) = typing.get_args(hint)
        return [_coerce(item, arg, key) for item in items]
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value, value]
        args = typing.get_args(hint)
        if len(items) != len(args):
            raise ConfigError(f"config key {key} expects {len(args)} values, got {value!r}")
        return tuple(_coerce(item, arg, key) for item, arg in zip(items, args))
    return _coerce_scalar(value, hint, key)


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key of dataclass ``cls`` as ``section.key`` (``optim.epochs``, ...)."""
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        hint = hints[field.name]
        keys += dotted_keys(hint, f"{key}.") if dataclasses.is_dataclass(hint) else [key]
    return keys


def closest_key(key: str, keys: list[str], aliases: dict[str, str] | None = None) -> str | None:
    """The key that ``key`` most likely meant: its entry in ``aliases`` (another program's name,
    e.g. ``batch_size_per_gpu``), a close spelling in its own section (``knn.ks`` for ``knn.k``),
    the same name in another section (``optim.epochs`` for ``train.epochs``), else the closest
    spelling of the whole key or of its last name."""
    section, _, leaf = key.rpartition(".")
    if leaf in (aliases or {}):
        return (aliases or {})[leaf]
    leaves = {k: k.rpartition(".")[2] for k in keys}
    siblings = [name for k, name in leaves.items() if section and k.rpartition(".")[0] == section]
    near = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if near:
        return f"{section}.{near[0]}"
    same_name = [k for k, name in leaves.items() if name == leaf]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.8)
    if same_name or close:
        return (same_name or close)[0]
    near = difflib.get_close_matches(leaf, list(leaves.values()), n=1, cutoff=0.8)
    return next((k for k, name in leaves.items() if near and name == near[0]), None)


def _unknown_key(cls: type, prefix: str, name: str, root: type) -> ConfigError:
    key = f"{prefix}.{name}" if prefix else name
    guess = closest_key(key, dotted_keys(root), getattr(root, "KEY_ALIASES", None))
    names = ", ".join(f.name for f in dataclasses.fields(cls))
    return ConfigError(
        f"unknown config key {key}{f' (did you mean {guess}?)' if guess else ''}; "
        f"valid keys{' under ' + prefix if prefix else ''}: {names}"
    )


def from_dict(cls: type, values: dict[str, Any], prefix: str = "", root: type | None = None) -> Any:
    """Build dataclass ``cls`` from a (nested) mapping, checking every key and type.

    ``root`` is the outermost config class (default ``cls``): an unknown key is reported with
    the key of ``root`` it most likely meant, looked up first in ``root.KEY_ALIASES`` (a
    ``ClassVar`` mapping other programs' names to keys) when it has one.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix or 'root'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise _unknown_key(cls, prefix, unknown[0], root or cls)
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, key, root or cls)
        else:
            kwargs[name] = _coerce(value, hint, key)
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _copy_mappings(value: Any) -> Any:
    return {k: _copy_mappings(v) for k, v in value.items()} if isinstance(value, dict) else value


def drop_removed(values: dict[str, Any], removed: dict[str, str]) -> dict[str, Any]:
    """A copy of the nested mapping ``values`` without the dotted keys of ``removed``.

    A removed key at its old default (false or null) is dropped silently, so files written
    before its removal still load; set, it is one :class:`ConfigError` naming the key and
    ``removed[key]``, where its feature went.
    """
    values = _copy_mappings(values)  # the caller's mapping stays intact
    for dotted, where in removed.items():
        *sections, key = dotted.split(".")
        node: Any = values
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if not isinstance(node, dict) or key not in node:
            continue
        if str(node.pop(key)).strip().lower() not in ("false", "no", "0", "none", "null"):
            raise ConfigError(f"config key {dotted} was removed: {where}")
    return values


def to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML-able dict of a config (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: nested config sections as dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=c`` into ``(["a", "b"], value)``, the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. optim.lr=1e-3")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"override {text!r}: the value is not valid YAML ({first}); quote it or "
            "write a number, true/false, [a, b] or a plain word"
        ) from None
    return key.strip().split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of nested ``values`` with every ``a.b=c`` override applied."""
    merged = yaml.safe_load(yaml.safe_dump(values)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    return merged


def read_yaml(path: str | Path, kind: str, presets: str) -> dict[str, Any]:
    """The mapping in YAML file ``path`` (empty file: ``{}``).

    Raises:
        ConfigError: missing file (naming ``presets``, where the presets live) or invalid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} not found: {path}; see {presets} for the presets")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{kind} {path} is not valid YAML: {error}".replace("\n", " ")) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{kind} {path} is not a text file; pass a YAML file") from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"{kind} {path} must hold a mapping of sections (e.g. 'optim: {{lr: 1e-3}}'), not a {type(values).__name__}"
        )
    return values
