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
    try:
        return _decoder(tp)(value)
    except DecodeError as exc:
        if not path:
            raise
        raise DecodeError(path + exc.path, exc.reason) from None


# Each type's decoder is built once from its hints (a viewer decodes every frame of an
# agent's stream: walking the hints per value cost it more than drawing). Decoders raise
# DecodeError with a path relative to their value; each container prefixes its step on
# the way out, so no path string is built unless something fails.
Decoder = Callable[[Any], Any]


@cache
def _decoder(tp: Any) -> Decoder:
    if tp is Any:
        return _identity
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _union(tp)
    if origin is Literal:
        return _literal(tp)
    if origin is tuple:
        return _tuple(tp)
    if origin is list:
        return _list(tp)
    if origin is dict:
        return _dict(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    return _scalar(tp)


def _identity(value: Any) -> Any:
    return value


def _union(tp: Any) -> Decoder:
    args = get_args(tp)
    nullable = type(None) in args
    variants = [_decoder(a) for a in args if a is not type(None)]

    def decode(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise DecodeError("", "null where a value is required")
        errors = []
        for variant in variants:
            try:
                return variant(value)
            except DecodeError as exc:
                errors.append(exc.reason)
        raise DecodeError("", "; ".join(errors) or "no variant fits")

    return decode


def _literal(tp: Any) -> Decoder:
    allowed = get_args(tp)

    def decode(value: Any) -> Any:
        if value not in allowed:
            raise DecodeError("", f"{value!r} is not one of {allowed!r}")
        return value

    return decode


def _items(item: Decoder, value: list[Any]) -> list[Any]:
    try:
        return [item(v) for v in value]
    except DecodeError:
        for i, v in enumerate(value):  # again, one by one, to say which
            try:
                item(v)
            except DecodeError as exc:
                raise DecodeError(f"[{i}]{exc.path}", exc.reason) from None
        raise


def _tuple(tp: Any) -> Decoder:
    args = get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        item = _decoder(args[0])

        def decode_all(value: Any) -> tuple[Any, ...]:
            _expect(list, value, "a list")
            return tuple(_items(item, value))

        return decode_all
    fixed = [_decoder(a) for a in args]

    def decode(value: Any) -> tuple[Any, ...]:
        _expect(list, value, "a list")
        if len(fixed) != len(value):
            raise DecodeError("", f"expected {len(fixed)} items, got {len(value)}")
        out = []
        for i, (d, v) in enumerate(zip(fixed, value, strict=True)):
            try:
                out.append(d(v))
            except DecodeError as exc:
                raise DecodeError(f"[{i}]{exc.path}", exc.reason) from None
        return tuple(out)

    return decode


def _list(tp: Any) -> Decoder:
    (arg,) = get_args(tp)
    item = _decoder(arg)

    def decode(value: Any) -> list[Any]:
        _expect(list, value, "a list")
        return _items(item, value)

    return decode


def _dict(tp: Any) -> Decoder:
    _, varg = get_args(tp)
    item = _decoder(varg)

    def decode(value: Any) -> dict[str, Any]:
        _expect(dict, value, "an object")
        out = {}
        for k, v in value.items():
            try:
                out[k] = item(v)
            except DecodeError as exc:
                raise DecodeError(f".{k}{exc.path}", exc.reason) from None
        return out

    return decode


def _expect(kind: type, value: Any, what: str) -> None:
    if not isinstance(value, kind):
        raise DecodeError("", f"expected {what}, got {type(value).__name__}")


def _dataclass(tp: type) -> Decoder:
    # Fields are resolved at the first value, not here: a dataclass may hold itself. Two
    # threads decoding it first at once both resolve them; the first kept is the one used.
    resolved: list[tuple[tuple[str, Decoder, bool], ...]] = []

    def decode(value: Any) -> Any:
        if not isinstance(value, dict):
            raise DecodeError("", f"expected an object for {tp.__name__}, got {type(value).__name__}")
        if not resolved:
            hints = _hints(tp)
            resolved.append(
                tuple(
                    (
                        f.name,
                        _decoder(hints[f.name]),
                        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                    )
                    for f in dataclasses.fields(tp)
                )
            )
        kwargs = {}
        for name, field_decoder, required in resolved[0]:
            if name in value:
                try:
                    kwargs[name] = field_decoder(value[name])
                except DecodeError as exc:
                    raise DecodeError(f".{name}{exc.path}", exc.reason) from None
            elif required:
                raise DecodeError(f".{name}", "missing")
        return tp(**kwargs)

    return decode


def _enum(tp: type[enum.Enum]) -> Decoder:
    def decode(value: Any) -> Any:
        try:
            return tp(value)
        except ValueError:
            raise DecodeError("", f"{value!r} is not a {tp.__name__}") from None

    return decode


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError("", f"expected a number, got {type(value).__name__}")
    return float(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError("", f"expected an integer, got {type(value).__name__}")
    return value


def _none(value: Any) -> None:
    if value is not None:
        raise DecodeError("", "expected null")


def _scalar(tp: Any) -> Decoder:
    if tp is float:
        return _float
    if tp is int:
        return _int
    if tp is type(None):
        return _none
    if tp in (str, bool):

        def decode(value: Any) -> Any:
            _expect(tp, value, tp.__name__)
            return value

        return decode

    def cannot(value: Any) -> Any:
        raise DecodeError("", f"cannot decode type {tp!r}")

    return cannot
