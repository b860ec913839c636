"""Checked settings: dataclass fields that carry help text and the values they allow.

Shared by the run configs (latro/config.py) and the options each reward declares beside itself
(e.g. `CoVoOptions` in latro/rewards/covo.py), so both are checked the same way.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import field

from latro.errors import SettingError


def setting(default, help: str, **kw):
    """A field with help text and the values it allows: `choices`, bounds `min` / `max`
    (inclusive) and `gt` / `lt` (exclusive), `allow_empty` for a string that may be ''."""
    if callable(default):  # a factory, for mutable defaults
        return field(default_factory=default, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


_BOUNDS = {"min": (operator.ge, ">="), "gt": (operator.gt, ">"), "max": (operator.le, "<="), "lt": (operator.lt, "<")}
_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a non-empty string",
          "list": "a list of non-empty strings"}


def _kind(f: dataclasses.Field) -> tuple[str, bool]:
    """('int' | 'float' | 'bool' | 'str' | 'list', whether None is allowed) from the annotation."""
    parts = [p.strip() for p in str(f.type).split("|")]
    return parts[0].split("[")[0], "None" in parts


def _convert(kind: str, value, allow_empty: bool):
    """`value` as `kind`, converted only where nothing is lost (1e3 -> 1000, 2 -> 2.0); else None."""
    if isinstance(value, bool):
        return value if kind == "bool" else None
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)  # YAML reads 1e3 as a float
    if kind == "int":
        return value if isinstance(value, int) else None
    if kind == "float":
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    if kind == "str":
        return value if isinstance(value, str) and (value or allow_empty) else None
    if kind == "list":
        return list(value) if isinstance(value, list) and all(isinstance(x, str) and x for x in value) else None
    return None


def allowed(f: dataclasses.Field) -> str:
    """What field `f` allows, in words: "an integer >= 1", "one of vector, linear", ..."""
    kind, optional = _kind(f)
    meta = f.metadata
    if "choices" in meta:
        text = "one of " + ", ".join(meta["choices"])
    else:
        text = "a string" if meta.get("allow_empty") else _KINDS[kind]
        text += " and".join(f" {sign} {meta[key]}" for key, (_, sign) in _BOUNDS.items() if key in meta)
    return text + (" or null" if optional else "")


def check_setting(f: dataclasses.Field, value):
    """`value` for field `f` (converted as `_convert` does), or SettingError naming the field, the
    value and what the field allows."""
    kind, optional = _kind(f)
    if value is None and optional:
        return None
    converted = _convert(kind, value, f.metadata.get("allow_empty", False))
    ok = converted is not None and all(test(converted, f.metadata[key]) for key, (test, _) in _BOUNDS.items()
                                       if key in f.metadata)
    if not ok or ("choices" in f.metadata and converted not in f.metadata["choices"]):
        raise SettingError(f.name, f"got {value!r}, expected {allowed(f)}")
    return converted


class Checked:
    """Base of the config dataclasses: every field is type- and range-checked when one is built."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_setting(f, getattr(self, f.name)))
