"""Instrument-free collapse measures of a text (no model involved, deterministic, cheap): lexical
diversity and repetition on lower-cased words (runs of letters/digits, or single other symbols).
  distinct_1, distinct_2    distinct n-grams / all n-grams (Li et al. 2016); 1 = no n-gram repeats
  repeated_4gram_share      share of the 4-grams that already occurred earlier in the text (1 - distinct-4)
  compression_ratio         UTF-8 bytes / zlib-compressed bytes (level 9); repetitive text compresses more
  copied_8gram_share        share of the 8-grams found verbatim in the article the text continues (its prompts'
                            source; NaN when none is given): copying the prompt, or reproducing training text
A text with fewer words than an n-gram has NaN for it; an empty text NaN everywhere."""

from __future__ import annotations

import math
import re
import zlib

import numpy as np
import pandas as pd

COLUMNS = ["distinct_1", "distinct_2", "repeated_4gram_share", "compression_ratio", "copied_8gram_share"]
SOURCE_TEMPLATE = "{title}\n{body}"   # the real article a continuation is compared against (`Article.text`)
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    return _WORD.findall((text or "").lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct(tokens: list[str], n: int) -> float:
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else math.nan


def copied_share(text: str, source: str, n: int = 8) -> float:
    """Share of the text's word n-grams (repeats counted) that occur verbatim in `source`: for a synthetic
    article and the real one it continues, what is copied from the prompts or reproduced from training."""
    grams, ref = ngrams(words(text), n), set(ngrams(words(source), n))
    return sum(g in ref for g in grams) / len(grams) if grams else math.nan


def compression_ratio(text: str) -> float:
    raw = (text or "").encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 9)) if raw.strip() else math.nan


def measures(text: str, source: str | None = None) -> dict[str, float]:
    tokens = words(text)
    return {"distinct_1": distinct(tokens, 1), "distinct_2": distinct(tokens, 2),
            "repeated_4gram_share": 1 - distinct(tokens, 4), "compression_ratio": compression_ratio(text),
            "copied_8gram_share": math.nan if source is None else copied_share(text, source)}


def table(texts: list[str], sources: list[str] | None = None) -> pd.DataFrame:
    """One row of COLUMNS per text; `sources[i]` is the article texts[i] continues (None: no copied share)."""
    sources = [None] * len(texts) if sources is None else sources
    return pd.DataFrame([measures(t, s) for t, s in zip(texts, sources, strict=True)], columns=COLUMNS, dtype=float)


def summary(scores: pd.DataFrame) -> dict[str, float]:
    """A version's values: the mean over its articles (NaNs skipped; all NaN or absent -> NaN)."""
    out = {}
    for c in COLUMNS:
        x = pd.to_numeric(scores[c], errors="coerce").to_numpy(float) if c in scores else np.array([])
        out[c] = float(np.nanmean(x)) if np.isfinite(x).any() else math.nan
    return out
