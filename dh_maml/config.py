"""Typed, validated configuration built from plain mappings: the machinery under ``spec`` and the env
families' options. It imports nothing of the project, so every layer can use it.

Every error names the key path, the offending value and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import yaml


class SpecError(ValueError):
    """A spec could not be read or failed validation; ``str()`` is the user-facing text."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        text = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid spec{where}:\n{text}")


def bounds(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def one_of(*values: str) -> dict:
    return {"choices": values}


def matching(pattern: str, described: str) -> dict:
    return {"pattern": pattern, "described": described}


class _SpecLoader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where ``1e-3`` (no dot) is a string; users write it as a number, as YAML 1.2 does."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, with exponents written without a dot read as numbers."""
    return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader: builds plain data only


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _convert(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Return ``value`` checked against annotation ``tp``; record a problem and return None if it does not fit."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], path, problems)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a mapping of keys, got {value!r}")
            return None
        return build_dataclass(tp, value, path, problems)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected {_describe(tp)}, got {value!r}")
            return None
        return [_convert(v, item_tp, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a mapping, got {value!r}")
            return None
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                problems.append(f"{path}: expected a finite number, got {value!r}")
                return None
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    problems.append(f"{path}: expected {_describe(tp)}, got {value!r}")
    return None


def _check_range(value: Any, meta: Mapping[str, Any], path: str, problems: list[str]) -> None:
    """A list's items are each checked against the field's bounds or choices."""
    if value is None:
        return
    if isinstance(value, list):
        if not value and meta:
            problems.append(f"{path}: expected a non-empty list, got []")
        for i, item in enumerate(value):
            _check_range(item, meta, f"{path}[{i}]", problems)
        return
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        problems.append(f"{path}: expected {meta['described']}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        problems.append(f"{path}: expected one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        bound = f"> {lo}" if meta.get("lo_open") else f">= {lo}"
        problems.append(f"{path}: expected a value {bound}, got {value!r}")
    if hi is not None and value > hi:
        problems.append(f"{path}: expected a value <= {hi}, got {value!r}")


def unknown_key_message(path: str, key: str, valid: Iterable[str], what: str = "key") -> str:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        hint = f"did you mean '{close[0]}'?"
    else:
        hint = f"valid {what}s: {', '.join(valid)}" if valid else f"this takes no {what}s"
    return f"{path}: unknown {what} '{key}' ({hint})"


def build_dataclass(cls: type, data: Mapping[str, Any], path: str, problems: list[str]) -> Any:
    """Build ``cls`` from ``data`` on top of its defaults, appending every problem found."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(unknown_key_message(path or "spec", str(key), fields))
            continue
        converted = _convert(value, hints[key], key_path, problems)
        if converted is None and value is not None:
            continue
        _check_range(converted, fields[key].metadata, key_path, problems)
        kwargs[key] = converted
    return cls(**kwargs)
