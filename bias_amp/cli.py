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


def sweep_argument(argv: list[str] | None = None) -> None:
    """`python -m bias_amp.report SWEEP [SWEEP ...] key=value`: the leading bare arguments (no `=`, no leading
    `-`) become the Hydra override `sweep=SWEEP`, or `sweep=[A,B]` for several (in place, in sys.argv by default)."""
    argv = sys.argv if argv is None else argv
    n = 1
    while n < len(argv) and "=" not in argv[n] and not argv[n].startswith("-"):
        n += 1
    if n > 1:
        argv[1:n] = [f"sweep={argv[1]}" if n == 2 else f"sweep=[{','.join(argv[1:n])}]"]


def compose(config_name: str, overrides=()):
    """conf/<config_name>.yaml composed with Hydra overrides, outside a running app (tests, notebooks)."""
    from pathlib import Path

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))
