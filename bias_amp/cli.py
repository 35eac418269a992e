"""Shared command-line behaviour: bad input or a full/unwritable disk ends the program with one line."""

from __future__ import annotations

import contextlib
import errno
import sys

from bias_amp.errors import ConfigError

WRITE_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM}


@contextlib.contextmanager
def one_line_errors():
    try:
        yield
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno not in WRITE_ERRORS:
            raise
        print(f"error: cannot write {err.filename}: {err.strerror} (finished generations are kept; "
              "rerun the same command to resume)", file=sys.stderr)
        sys.exit(3)
