"""Aggregates over articles: label shares with bootstrap confidence intervals, means with t-based ones;
agreement of predicted and true classes (confusion, macro-F1)."""

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


def share_cis(labels: Sequence[str], classes: Sequence[str] = LEANINGS, *, level: float = 0.95,
              n_boot: int = 2000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap interval of each class's share among `labels` (articles resampled with
    replacement). The class counts of one resample are Multinomial(n, observed shares), so each resample is
    drawn as such: exact, O(n_boot * classes). Seeded: the same labels give the same interval. None: NaNs."""
    labels = list(labels)
    if not labels:
        return {c: (float("nan"), float("nan")) for c in classes}
    p = np.array([sum(lab == c for lab in labels) for c in classes], dtype=float) / len(labels)
    boot = np.random.default_rng(seed).multinomial(len(labels), p, size=n_boot) / len(labels)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {c: (float(lo[k]), float(hi[k])) for k, c in enumerate(classes)}


def confusion(y_true, y_pred, n: int, weights=None) -> np.ndarray:
    """Counts [true, predicted]; with `weights`, the sums of the examples' weights."""
    cm = np.zeros((n, n), dtype=int if weights is None else float)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1 if weights is None else np.asarray(weights))
    return cm


def macro_f1(y_true, y_pred, n: int, weights=None) -> float:
    """Unweighted mean over classes of F1 (a class absent from both truth and prediction counts as 0);
    `weights` weigh the examples (e.g. 1 / articles of its outlet: every outlet counts the same)."""
    cm = confusion(y_true, y_pred, n, weights)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))
