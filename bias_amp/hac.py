"""Closed-form simple OLS with Newey-West (HAC, Bartlett kernel) standard errors, for many neurons at once.

Each column j of X is its own regression y = alpha + beta * X[:, j] (App. K), all solved together with
numpy. The numbers equal statsmodels' `OLS(y, add_constant(x)).fit(cov_type="HAC",
cov_kwds={"maxlags": L})`, whose defaults are: no small-sample correction (`use_correction=False`) and
normal p-values (`use_t=False`). Both can be switched on here, as in statsmodels.

Panel data (several setups stacked, each ordered by generation): `within_diff` takes first differences
inside each setup only. The HAC covariance is then by default computed on the stacked differenced series
(`groups=None`): the simplest faithful reading of App. K, i.e. what statsmodels does when given the stacked
series; lag products that straddle two setups are included. Passing `groups` drops those straddling
products (each setup's autocovariances only): statsmodels' `cov_type="hac-panel"` with
`use_correction=False`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class OLSResult:
    """Per-regression arrays, shape (k,): slope, intercept, HAC standard errors, t = beta/se, p, Pearson r."""

    beta: np.ndarray
    alpha: np.ndarray
    se: np.ndarray
    se_alpha: np.ndarray
    t: np.ndarray
    p: np.ndarray
    r: np.ndarray
    n: int


def bartlett(maxlags: int) -> np.ndarray:
    """Bartlett kernel weights for lags 0..maxlags (as statsmodels' weights_bartlett)."""
    return 1.0 - np.arange(maxlags + 1) / (maxlags + 1.0)


def hac_meat(z: np.ndarray, maxlags: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Newey-West long-run variance of each column of z (n, k): sum_t z_t^2 + 2 sum_l w_l sum_t z_t z_{t-l}.
    With `groups`, only products of rows in the same group count."""
    w = bartlett(maxlags)
    s = np.einsum("ij,ij->j", z, z)
    for lag in range(1, min(maxlags, len(z) - 1) + 1):
        prod = z[lag:] * z[:-lag]
        if groups is not None:
            prod = prod[groups[lag:] == groups[:-lag]]
        s += 2.0 * w[lag] * prod.sum(axis=0)
    return s


def ols_hac(y, X, maxlags: int = 0, *, groups=None, use_correction: bool = False,
            use_t: bool = False) -> OLSResult:
    """Regress y (n,) on each column of X (n, k) separately, with an intercept.
    Constant columns (no variation) give NaN slope, SE, t, p and r."""
    y = np.asarray(y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    n = len(y)
    if X.shape[0] != n or y.ndim != 1:
        raise ValueError(f"y must be (n,) and X (n, k); got {y.shape} and {X.shape}")
    if n < 3:
        raise ValueError(f"need at least 3 observations, got {n}")
    if not (isinstance(maxlags, (int, np.integer)) and maxlags >= 0):
        raise ValueError(f"maxlags must be a non-negative integer, got {maxlags!r}")
    groups = None if groups is None else np.asarray(groups)
    xbar = X.mean(axis=0)
    xc = X - xbar
    yc = y - y.mean()
    sxx = np.einsum("ij,ij->j", xc, xc)
    syy = float(yc @ yc)
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx_safe = np.where(sxx > 0, sxx, np.nan)
        beta = (yc @ xc) / sxx_safe
        alpha = y.mean() - beta * xbar
        u = yc[:, None] - xc * beta                     # residuals
        infl_b = xc / sxx_safe                          # d beta / d y_t
        infl_a = 1.0 / n - xbar * infl_b                # d alpha / d y_t
        scale = n / (n - 2.0) if use_correction else 1.0
        se = np.sqrt(scale * hac_meat(infl_b * u, maxlags, groups))
        se_alpha = np.sqrt(scale * hac_meat(infl_a * u, maxlags, groups))
        t = beta / se
        r = (yc @ xc) / np.sqrt(sxx_safe * syy) if syy > 0 else np.full_like(beta, np.nan)
    dist = stats.t(df=n - 2) if use_t else stats.norm
    p = 2.0 * dist.sf(np.abs(t))
    return OLSResult(beta=beta, alpha=alpha, se=se, se_alpha=se_alpha, t=t, p=p, r=r, n=n)


def within_diff(values: np.ndarray, groups, order) -> tuple[np.ndarray, np.ndarray]:
    """First differences of the rows of `values` within each group, rows ordered by `order` (generation).
    Only consecutive orders (g - (g-1)) are differenced, so a missing generation leaves a gap rather than a
    two-step difference. Returns (differences, group of each difference), stacked group by group."""
    values = np.asarray(values)
    groups = np.asarray(groups)
    order = np.asarray(order)
    idx = np.lexsort((order, groups))                   # by group, then order
    g, o = groups[idx], order[idx]
    keep = (g[1:] == g[:-1]) & (o[1:] - o[:-1] == 1)
    rows = idx[1:][keep]
    prev = idx[:-1][keep]
    return values[rows] - values[prev], g[1:][keep]
