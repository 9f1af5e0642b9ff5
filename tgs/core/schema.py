"""One way to declare and check a typed field, for `Config` and the run records alike.

A field's type is its annotation (`int`, `float | None`, `list[int]`, `dict[str, Any]`, a nested
record); `setting(default, ...)` adds what the annotation cannot say: a range (`ge`, `gt`, `le`,
`lt`), the values allowed (`choices`), a key group, the JSON key when it is not the attribute's
name, and a one-line `doc`. `check_fields(obj)` (each checked class calls it from
`__post_init__`) checks every field against its declaration, takes an int for a float (as
1.0), builds a nested record from its dict, and raises the class's ERROR naming the field, what
it should be and what it got.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, ClassVar

from tgs.core.errors import TGSError

_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    *,
    factory: Any = _MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    group: str | None = None,
    key: str | None = None,
    keep_none: bool = False,
    doc: str = "",
) -> Any:
    """A checked field: its default (or `factory`), range, allowed values, group, JSON `key`
    (default: the attribute name), `keep_none` (JSON: write null rather than leave the key out)
    and a one-line `doc`."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "group": group}
    meta.update(key=key, keep_none=keep_none, doc=doc)
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


class Checked:
    """Base of a dataclass whose fields `check_fields` checks when it is made. `LABEL` names a
    field in messages ({key}: its JSON key or name); ERROR is what a bad value raises."""

    ERROR: ClassVar[type[TGSError]] = TGSError
    LABEL: ClassVar[str] = "field {key!r}"

    def __post_init__(self) -> None:
        check_fields(self)


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass's fields (strings evaluated once)."""
    return typing.get_type_hints(cls)


def json_key(f: dataclasses.Field) -> str:
    """The field's key in a file (its `key`, else its name)."""
    return f.metadata.get("key") or f.name


def check_fields(obj: Checked) -> None:
    """Check and convert every field of `obj` in place (frozen dataclasses too)."""
    cls = type(obj)
    hints = type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "extra":
            continue
        label = cls.LABEL.format(key=json_key(f), name=f.name)
        value = convert(hints[f.name], getattr(obj, f.name), label, cls.ERROR)
        check_range(f, value, label, cls.ERROR)
        object.__setattr__(obj, f.name, value)


def check_range(f: dataclasses.Field, value: Any, label: str, error: type[TGSError]) -> None:
    """The field's `choices` and its bounds (None passes: the type allowed it)."""
    m = f.metadata
    if value is None:
        return
    if m.get("choices") is not None and value not in m["choices"]:
        valid = ", ".join(map(str, m["choices"]))
        raise error(f"unknown {f.name} {value!r} (valid: {valid})")
    for bound, ok in (
        ("ge", lambda v, b: v >= b),
        ("gt", lambda v, b: v > b),
        ("le", lambda v, b: v <= b),
        ("lt", lambda v, b: v < b),
    ):
        b = m.get(bound)
        if b is not None and not ok(value, b):
            sign = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[bound]
            raise error(f"{label} must be {sign} {b:g}, got {value!r}")


def convert(hint: Any, value: Any, label: str, error: type[TGSError]) -> Any:
    """`value` as the annotation `hint` wants it, else `error` saying what was expected."""
    ok, out = _as(hint, value)
    if not ok:
        raise error(f"{label} should be {describe(hint)}, got {value!r}")
    return out


def _is_record(hint: Any) -> bool:
    return isinstance(hint, type) and hasattr(hint, "from_dict")


def _as(hint: Any, value: Any) -> tuple[bool, Any]:
    """(True, value converted to `hint`) when it is one, else (False, None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if hint is type(None):
        return value is None, None
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, out = _as(arg, value)
            if ok:
                return True, out
        return False, None
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number, float(value) if number else None
    if hint is str:
        return isinstance(value, str), value
    if origin is list:
        if not isinstance(value, list):
            return False, None
        items = [_as(args[0] if args else Any, v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if hint is dict or origin is dict:
        values = args[1] if args else Any
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return False, None
        items = {k: _as(values, v) for k, v in value.items()}
        return all(ok for ok, _ in items.values()), {k: v for k, (_, v) in items.items()}
    if _is_record(hint):
        if isinstance(value, hint):
            return True, value
        if isinstance(value, dict):
            return True, hint.from_dict(value)  # its own fields raise with their names
        return False, None
    raise TypeError(f"no check for the annotation {hint!r}")


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def describe(hint: Any) -> str:
    """An annotation in words: `list[int] | None` -> 'a list of integers or null'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if hint is type(None):
        return "null"
    if origin is list:
        item = args[0] if args else Any
        return f"a list of {_PLURAL.get(item, 'objects')}"
    if hint is dict or origin is dict:
        return "a mapping"
    if _is_record(hint):
        return "an object"
    return _WORDS.get(hint, "anything")


def type_name(hint: Any) -> str:
    """An annotation as code spells it (`list[int] | None`), for the docs."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if hint is type(None):
        return "None"
    if hint is Any:
        return "Any"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return getattr(hint, "__name__", str(hint))
