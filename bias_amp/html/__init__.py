"""The report people open in a browser: `build(sweeps, out, paper=None)` writes OUT/index.html."""

from bias_amp.html.page import build

__all__ = ["build"]
