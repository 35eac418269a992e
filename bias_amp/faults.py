"""Fault injection for the crash-safety tests: with BIAS_AMP_KILL_AT=<version>:<stage> (e.g.
`gen_01:synthesis`) the process SIGKILLs itself at that point, like a pre-empted job."""

from __future__ import annotations

import os
import signal


def point(version: str, stage: str) -> None:
    if os.environ.get("BIAS_AMP_KILL_AT") == f"{version}:{stage}":
        os.kill(os.getpid(), signal.SIGKILL)
