"""Parsing user-given choices into enums with a one-line error."""

from __future__ import annotations

import enum
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)


def parse_enum(enum_cls: type[E], value, what: str) -> E:
  """`enum_cls(value)`, or ValueError "unknown <what> <value>; valid: ..."."""
  if isinstance(value, enum_cls):
    return value
  try:
    return enum_cls(value)
  except ValueError:
    valid = ", ".join(str(member.value) for member in enum_cls)
    raise ValueError(f"unknown {what} {value!r}; valid: {valid}") from None
