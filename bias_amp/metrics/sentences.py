"""Sentence splitting for the quality index: survives abbreviations (Mr., U.S., Jan.), initials, quotes,
decimals (3.5) and missing spaces after a period ("end.Next"). Newlines are hard boundaries."""

from __future__ import annotations

import re

# Titles precede a name: never a sentence end.
TITLES = frozenset("""
mr mrs ms dr prof sr jr st gen sen rep gov lt col sgt capt cmdr adm maj pres rev hon supt det insp
""".split())
# Other abbreviations end a sentence only before a typical sentence starter ("... in Feb. The ...").
ABBREVIATIONS = frozenset("""
jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri sat sun
inc co corp ltd llc dept univ assn bros vs etc approx est ave blvd rd mt ft ed e.g i.e a.m p.m
""".split())
# Abbreviations only before a number ("No. 5"); elsewhere "No." ends a sentence.
NUMBER_ABBREVIATIONS = frozenset("no nos vol fig figs op pp".split())
# After an initial, a dotted acronym ("J.", "U.S.") or an abbreviation, a sentence starts only with these.
STARTERS = frozenset("""
the a an he she it they we i you his her its their our this that these those there but and so yet
in on at for if when while after before as since although however meanwhile still then now
""".split())

_MISSING_SPACE = re.compile(r"(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])")
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_INITIALS = re.compile(r"^(?:[A-Za-z]\.)*[A-Za-z]$")


def _is_break(before: str, after: str, punct: str) -> bool:
    if not punct.startswith(".") or punct.startswith(".."):
        return True  # ! ? … and ellipses always end a sentence
    word = before.rsplit(None, 1)[-1] if before.strip() else ""
    word = word.lstrip("\"'“‘([").lower()
    nxt = after.split(None, 1)[0].strip("\"'“‘([,.;:") if after.strip() else ""
    if word in NUMBER_ABBREVIATIONS:
        return not nxt[:1].isdigit()
    if word in TITLES:
        return False
    if _INITIALS.match(word) or word in ABBREVIATIONS:
        return nxt.lower() in STARTERS
    return True


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, stripped, empty ones dropped."""
    out: list[str] = []
    for para in re.split(r"\s*\n\s*", text or ""):
        para = _MISSING_SPACE.sub(" ", para.strip())
        start = 0
        for m in _BOUNDARY.finditer(para):
            punct_end = m.start() + len(m.group().rstrip())
            if _is_break(para[start:m.start()], para[m.end():], m.group().strip()):
                out.append(para[start:punct_end].strip())
                start = m.end()
        out.append(para[start:].strip())
    return [s for s in out if s]
