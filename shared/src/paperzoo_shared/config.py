"""Typed experiment configs: dataclasses loaded from YAML, with ``base:`` inheritance and dotted overrides.

A config file is a YAML mapping whose keys mirror a (possibly nested) dataclass. A file may start from
one or more other files through ``base: other.yaml`` (or a list, merged left to right, then this file on
top); paths are relative to the file that names them. Command-line overrides use dotted keys
(``--set train.lr=1e-4``) and YAML value syntax.

Every value is checked against the dataclass field's type annotation. An unknown key or a value of the
wrong type is a :class:`ConfigError` that names the key and the file (or override) it came from, so a
typo never silently falls back to a default.

    @dataclass
    class Train:
        lr: float = 1e-3
        steps: int = 100

    @dataclass
    class Experiment:
        train: Train = field(default_factory=Train)

    cfg = load_config(Experiment, "configs/mini.yaml", overrides=["train.lr=1e-4"])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

BASE_KEY = "base"


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names the key and where it came from."""


def read_yaml_with_bases(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Reads a YAML config, resolving ``base:`` recursively.

    Returns the merged mapping and, for every dotted key, the file that set it (for error messages).
    """
    return _read_with_bases(Path(path).resolve(), chain=())


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"config inheritance cycle: {cycle}")
    if not path.is_file():
        named_by = f" (named as base by {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{named_by}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a YAML mapping, got {type(data).__name__}")

    bases = data.pop(BASE_KEY, None)
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for base in bases or []:
        base_data, base_sources = _read_with_bases((path.parent / base).resolve(), (*chain, path))
        merged = deep_merge(merged, base_data)
        sources.update(base_sources)
    merged = deep_merge(merged, data)
    sources.update({key: str(path) for key in _dotted_keys(data)})
    return merged, sources


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merges ``top`` into ``base``: nested mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dotted_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, dotted + "."))
    return keys


def parse_override(override: str) -> tuple[str, Any]:
    """Parses ``a.b.c=value`` (value in YAML syntax) into the dotted key and the value."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {error}") from error
    return key, value


def apply_overrides(
    data: dict[str, Any], sources: dict[str, str], overrides: Sequence[str]
) -> dict[str, Any]:
    """Sets each dotted override in the raw mapping, recording ``--set`` as its source."""
    data = dict(data)
    for override in overrides:
        key, value = parse_override(override)
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, Mapping) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
        nested = _dotted_keys(value) if isinstance(value, Mapping) else []
        for dotted in [key, *(f"{key}.{k}" for k in nested)]:
            sources[dotted] = f"--set {override}"
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Builds the dataclass ``cls`` from a YAML file (with bases) and dotted overrides.

    Fields the file does not set keep their dataclass defaults; a field without a default must be set.
    """
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        data, sources = read_yaml_with_bases(path)
    data = apply_overrides(data, sources, overrides)
    return from_dict(cls, data, sources=sources)


def from_dict(cls: type[T], data: Mapping[str, Any], *, sources: Mapping[str, str] | None = None) -> T:
    """Builds the dataclass ``cls`` from a mapping, checking every key and type."""
    return _build_dataclass(cls, data, prefix="", sources=sources or {})


def _where(sources: Mapping[str, str], dotted: str) -> str:
    # The most specific source that set this key or one of its parents.
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        source = sources.get(".".join(parts[:end]))
        if source:
            return f" (from {source})"
    return ""


def _build_dataclass(cls: type, data: Any, prefix: str, sources: Mapping[str, str]) -> Any:
    label = prefix.rstrip(".") or "<root>"
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config key '{label}' must be a mapping for {cls.__name__}, "
            f"got {type(data).__name__}{_where(sources, label)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = get_type_hints(cls)
    unknown = [key for key in data if key not in fields]
    if unknown:
        dotted = f"{prefix}{unknown[0]}"
        raise ConfigError(
            f"unknown config key '{dotted}'{_where(sources, dotted)}; "
            f"valid keys of {cls.__name__} are: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, field in fields.items():
        dotted = f"{prefix}{name}"
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], dotted, sources)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config key '{dotted}' is required by {cls.__name__} but was not set")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"invalid {cls.__name__} at '{label}'{_where(sources, label)}: {error}") from error


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(annotation: Any, value: Any, dotted: str, sources: Mapping[str, str]) -> Any:
    """Checks ``value`` against ``annotation``, converting only lossless cases (int -> float, list -> tuple)."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(
            f"config key '{dotted}' expects {expected}, got {value!r} "
            f"({type(value).__name__}){_where(sources, dotted)}"
        )

    if annotation is Any:
        return value
    origin = get_origin(annotation)
    args = get_args(annotation)

    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, dotted, sources)
            except ConfigError:
                continue
        raise fail(" or ".join(_type_name(a) for a in args))
    if origin is Literal:
        if value in args:
            return value
        raise fail("one of " + ", ".join(repr(a) for a in args))
    if dataclasses.is_dataclass(annotation):
        return _build_dataclass(annotation, value, f"{dotted}.", sources)
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_type_name(annotation)})")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise fail(f"a list of exactly {len(args)} items")
            return tuple(
                _coerce(a, v, f"{dotted}[{i}]", sources) for i, (a, v) in enumerate(zip(args, value))
            )
        item_type = args[0] if args else Any
        items = [_coerce(item_type, v, f"{dotted}[{i}]", sources) for i, v in enumerate(value)]
        return list(items) if origin is list or annotation is list else tuple(items)
    if origin in (dict, Mapping, typing.Mapping) or annotation is dict:
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        key_type, value_type = args if args else (Any, Any)
        return {
            _coerce(key_type, k, f"{dotted}.{k}", sources): _coerce(value_type, v, f"{dotted}.{k}", sources)
            for k, v in value.items()
        }
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise fail("a boolean (true/false)")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail("an integer")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise fail("a number")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise fail("a string")
    if annotation is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise fail("a path string")
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise fail(_type_name(annotation))


def to_dict(config: Any) -> Any:
    """Turns a config dataclass (nested) into plain YAML/JSON-friendly data."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {str(k): to_dict(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    return config


def config_hash(config: Any) -> str:
    """A short, stable hash of a config (dataclass or mapping), for results files and caches."""
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dump_config(config: Any, path: str | Path) -> None:
    """Writes a config as YAML (the resolved values, no ``base:``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
