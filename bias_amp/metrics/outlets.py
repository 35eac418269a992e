"""Outlet names in article text (bylines, "(CNN) —", "Fox News reported"): the name variants of an AllSides
source, masking them (training and scoring of an outlet-masked classifier: `outlets.json` beside the model
lists the names) and swapping them for an outlet of the other side (the shortcut measurement)."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "the outlet"
MASK_FILE = "outlets.json"


def variants(source: str) -> set[str]:
    """'CNN (Web News)' -> {'CNN (Web News)', 'CNN'}; 'New York Times - News' -> {..., 'New York Times'};
    'NPR Online News' -> {..., 'NPR'}. Names shorter than 3 characters are left out (too ambiguous)."""
    base = re.sub(r"\s*\(.*?\)\s*$", "", source.strip())
    base = re.sub(r"\s+(-\s+(News|Opinion)|Online News)$", "", base)
    out = {source.strip(), base}
    return {v for v in out if len(v) >= 3}


def pattern(names: Iterable[str]) -> re.Pattern | None:
    """One case-sensitive, word-bounded regex of all names (longest first); None when there are none."""
    names = sorted({n for n in names if n}, key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)")


def mask(texts: list[str], names: Iterable[str], token: str = MASK) -> list[str]:
    """Every listed outlet name replaced by `token`."""
    pat = pattern(names)
    return list(texts) if pat is None else [pat.sub(token, t) for t in texts]


def swap(text: str, source: str, other: str) -> str:
    """The article's own outlet names replaced by `other` (an outlet of the other side)."""
    pat = pattern(variants(source))
    return text if pat is None else pat.sub(other, text)


def all_names(sources: Iterable[str]) -> list[str]:
    return sorted({v for s in set(sources) for v in variants(s)})
