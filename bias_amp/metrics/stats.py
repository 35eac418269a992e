"""Aggregates over articles: label shares and means with t-based confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from bias_amp.layout import LEANINGS


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean, as scipy.stats.t.interval with sem.
    NaNs are dropped; one value gives a zero-width interval; none gives NaNs."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (float("nan"),) * 3
    m = float(x.mean())
    if x.size == 1:
        return m, m, m
    sem = float(x.std(ddof=1) / np.sqrt(x.size))
    if sem == 0.0:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, df=x.size - 1) * sem)
    return m, m - half, m + half


def shares(labels: Sequence[str], classes: Sequence[str] = LEANINGS) -> dict[str, float]:
    """Share of each class among `labels` (0..1), in `classes` order."""
    labels = list(labels)
    n = len(labels)
    return {c: (sum(lab == c for lab in labels) / n if n else float("nan")) for c in classes}
