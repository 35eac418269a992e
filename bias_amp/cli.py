"""Shared command-line behaviour: bad input ends the program with one line, no traceback."""

from __future__ import annotations

import contextlib
import sys

from bias_amp.errors import ConfigError


@contextlib.contextmanager
def one_line_errors():
    try:
        yield
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
