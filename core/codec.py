"""Typed dataclasses <-> JSON-ready dicts.

Snapshots are plain frozen dataclasses; this module turns them into JSON values and
back using their type hints, so record/replay and the headless mode share one format
without a schema to keep in step by hand.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin


class DecodeError(ValueError):
    """A JSON value does not fit the type it is read as; `path` says where."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or '<root>'}: {reason}")
        self.path = path
        self.reason = reason


def to_jsonable(value: Any) -> Any:
    """Dataclasses become dicts, tuples lists, enums their value; NaN/Inf become None.

    JSON has no NaN: a missing number is `None` everywhere in ebpftop, never zero.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_jsonable(tp: Any, value: Any, path: str = "") -> Any:
    """Rebuild a value of type `tp` from what `to_jsonable` produced."""
    if tp is Any:
        return value
    generic = _GENERICS.get(get_origin(tp))
    if generic is not None:
        return generic(tp, value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise DecodeError(path, f"{value!r} is not a {tp.__name__}") from None
    return _scalar(tp, value, path)


def _union(tp: Any, value: Any, path: str) -> Any:
    args = get_args(tp)
    if value is None:
        if type(None) in args:
            return None
        raise DecodeError(path, "null where a value is required")
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return from_jsonable(arg, value, path)
        except DecodeError as exc:
            errors.append(exc.reason)
    raise DecodeError(path, "; ".join(errors) or "no variant fits")


def _literal(tp: Any, value: Any, path: str) -> Any:
    if value not in get_args(tp):
        raise DecodeError(path, f"{value!r} is not one of {get_args(tp)!r}")
    return value


def _tuple(tp: Any, value: Any, path: str) -> tuple[Any, ...]:
    args = get_args(tp)
    _expect(list, value, path, "a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(from_jsonable(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise DecodeError(path, f"expected {len(args)} items, got {len(value)}")
    return tuple(
        from_jsonable(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
    )


def _list(tp: Any, value: Any, path: str) -> list[Any]:
    (arg,) = get_args(tp)
    _expect(list, value, path, "a list")
    return [from_jsonable(arg, v, f"{path}[{i}]") for i, v in enumerate(value)]


def _dict(tp: Any, value: Any, path: str) -> dict[str, Any]:
    _, varg = get_args(tp)
    _expect(dict, value, path, "an object")
    return {k: from_jsonable(varg, v, f"{path}.{k}") for k, v in value.items()}


def _expect(kind: type, value: Any, path: str, what: str) -> None:
    if not isinstance(value, kind):
        raise DecodeError(path, f"expected {what}, got {type(value).__name__}")


_GENERICS: dict[Any, Callable[[Any, Any, str], Any]] = {
    Union: _union,
    types.UnionType: _union,
    Literal: _literal,
    tuple: _tuple,
    list: _list,
    dict: _dict,
}


def _dataclass(tp: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise DecodeError(path, f"expected an object for {tp.__name__}, got {type(value).__name__}")
    hints = _hints(tp)
    kwargs = {}
    for f in dataclasses.fields(tp):
        if f.name in value:
            kwargs[f.name] = from_jsonable(hints[f.name], value[f.name], f"{path}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise DecodeError(f"{path}.{f.name}", "missing")
    return tp(**kwargs)


def _scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(path, f"expected a number, got {type(value).__name__}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(path, f"expected an integer, got {type(value).__name__}")
        return value
    if tp in (str, bool):
        _expect(tp, value, path, tp.__name__)
        return value
    if tp is type(None):
        if value is not None:
            raise DecodeError(path, "expected null")
        return None
    raise DecodeError(path, f"cannot decode type {tp!r}")
