"""The machinery every config section shares: strict construction from a mapping, type checks, range checks.

A section is a frozen dataclass deriving from `Section`; `Section.from_mapping` refuses unknown keys and values of
the wrong type, naming the key, then calls the section's `_validate` for its range checks (written with
`require`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

#: Which weights of a model a stage uses: the raw optimiser weights or their exponential moving average.
Weights = Literal["raw", "ema"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Return `value` coerced to `hint` (lists become tuples) or raise ConfigError naming `key`."""
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{key}: {value!r} is not one of {list(get_args(hint))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(key, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_hint, *_rest) = get_args(hint)
        return tuple(_check_type(f"{key}[{i}]", v, item_hint) for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a programming error, not user input


@dataclass(frozen=True)
class Section:
    """Base of every config section: strict construction from a mapping, range checks in `_validate`."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, prefix: str = "") -> typing.Self:
        """Build the section from `raw`, refusing unknown keys and wrong types (errors name the key)."""
        raw = dict(raw or {})
        prefix = prefix or cls.SECTION  # type: ignore[attr-defined]
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"{prefix}: unknown key(s) {unknown}; known: {sorted(names)}")
        hints = get_type_hints(cls)
        values = {k: _check_type(f"{prefix}.{k}", v, hints[k]) for k, v in raw.items()}
        obj = cls(**values)
        obj._validate(prefix)
        return obj

    def _validate(self, prefix: str) -> None:
        """Range checks; subclasses raise ConfigError naming the key."""

    #: Keys left out of `to_dict` while at their default: a key added to a section after configs were written
    #: (and named by their digest) is listed here, so that those configs keep their digest and a run its results.
    _OMITTED_AT_DEFAULT: typing.ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-YAML form (tuples become lists), without the keys of `_OMITTED_AT_DEFAULT` at their default."""
        out = plain(asdict(self))
        for f in fields(self):
            if f.name in self._OMITTED_AT_DEFAULT and out[f.name] == f.default:
                del out[f.name]
        return out


def plain(obj: Any) -> Any:
    """`obj` with every tuple turned into a list, recursively: the form YAML and JSON write."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def require(cond: bool, key: str, message: str) -> None:
    """Raise ConfigError("<key>: <message>") unless `cond` holds."""
    if not cond:
        raise ConfigError(f"{key}: {message}")
