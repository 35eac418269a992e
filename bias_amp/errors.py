"""One-line, key-naming errors for bad input, raised before any model loads."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """Bad config value or input data. The message is one line: `key: expected X, got Y`."""

    def __init__(self, key: str, expected: str, got: Any = None):
        self.key, self.expected, self.got = key, expected, got
        msg = f"{key}: expected {expected}" + ("" if got is None else f", got {got!r}")
        super().__init__(msg.replace("\n", " "))


def check(ok: bool, key: str, expected: str, got: Any = None) -> None:
    """Raise ConfigError(key, expected, got) unless ok."""
    if not ok:
        raise ConfigError(key, expected, got)


def check_range(value: Any, key: str, lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False):
    """Check a number lies in [lo, hi] (open ends where asked); returns the value."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(key, kind, value)
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    span = f"{kind} in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        raise ConfigError(key, span, value)
    return value
