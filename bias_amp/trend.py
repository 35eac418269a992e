"""Trend of a measure over generations, per setup (#18): does the right share (or quality) drift as the
loop goes on? OLS of y on the generation (0, 1, ...; the baseline is not a generation), every seed of a setup
pooled as its own time series, Newey-West standard errors within each seed (`hac.ols_hac`: Bartlett kernel,
`maxlags` lags, the n/(n-2) small-sample correction, t with n-2 degrees of freedom). The consecutive versions of
one run share their model's history, so their errors are autocorrelated; plain OLS SEs would be too small.
Newey-West itself is anti-conservative on series this short: `calibration` measures how often the nominal 5%
test rejects on AR(1) nulls of the table's own shape (seeds x generations), and the markdown states it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bias_amp.hac import ols_hac

MEASURES = {"share_right": "right share", "quality_mean": "quality index"}
MAXLAGS = 2          # floor(4 (n/100)^(2/9)) for n = 11 generations (Newey & West 1994)


def trend(metrics: pd.DataFrame, measures=tuple(MEASURES), maxlags: int = MAXLAGS,
          level: float = 0.95, reps: int = 400) -> pd.DataFrame:
    """One row per setup x measure: n_seeds, n (points), slope per generation with its CI and p, and the
    change from the first to the last generation (means over seeds); phi, the residuals' lag-1 autocorrelation
    (bias-corrected), and p_ar1, the p-value of the same t against AR(1) nulls with that phi (parametric bootstrap:
    closer to calibrated than the nominal p on short persistent series)."""
    m = metrics[metrics["generation"] >= 0]
    m = m.assign(seed=m["seed"].fillna(0) if "seed" in m else 0).sort_values(["setup", "seed", "generation"])
    rows = []
    for setup, runs in m.groupby("setup", sort=False):
        for measure in measures:
            rows.append(_row(setup, measure, runs, maxlags, level, reps))
    return pd.DataFrame(rows)


def _row(setup: str, measure: str, runs: pd.DataFrame, maxlags: int, level: float, reps: int) -> dict:
    g = runs.dropna(subset=[measure]) if measure in runs else runs.iloc[:0]
    row = {"setup": setup, "measure": measure, "n_seeds": int(g["seed"].nunique()), "n": len(g)}
    if g["generation"].nunique() >= 3:
        seeds = g["seed"].to_numpy()
        fit = _fit(g[measure], g["generation"], seeds, maxlags)
        half = stats.t(df=fit.n - 2).ppf(0.5 + level / 2) * fit.se[0]
        by_gen = g.groupby("generation")[measure].mean()
        resid = g[measure].to_numpy() - fit.alpha[0] - fit.beta[0] * g["generation"].to_numpy()
        phi = lag1(resid, seeds)
        t_null = null_t(row["n_seeds"], len(g) // row["n_seeds"], phi, reps, maxlags)
        row.update(first=by_gen.iat[0], last=by_gen.iat[-1], change=by_gen.iat[-1] - by_gen.iat[0],
                   slope=fit.beta[0], slope_ci_low=fit.beta[0] - half, slope_ci_high=fit.beta[0] + half,
                   p=fit.p[0], phi=phi, p_ar1=float((1 + np.sum(t_null >= abs(fit.t[0]))) / (1 + reps)),
                   generations=f"{int(by_gen.index[0])}-{int(by_gen.index[-1])}")
    return row


def _fit(y, gen, seeds, maxlags: int):
    return ols_hac(y, gen, maxlags, groups=seeds, use_correction=True, use_t=True)


def _ar1(rng, reps: int, n_seeds: int, generations: int, phi: float) -> np.ndarray:
    """(reps, n_seeds, generations) stationary AR(1) series with unit innovations."""
    e = np.empty((reps, n_seeds, generations))
    e[..., 0] = rng.normal(0.0, 1.0 / np.sqrt(1.0 - phi ** 2), (reps, n_seeds))
    for t in range(1, generations):
        e[..., t] = phi * e[..., t - 1] + rng.normal(0.0, 1.0, (reps, n_seeds))
    return e


def null_t(n_seeds: int, generations: int, phi: float, reps: int = 400, maxlags: int = MAXLAGS,
           seed: int = 0) -> np.ndarray:
    """|t| of the trend test on `reps` AR(1) nulls (no trend) of the given shape."""
    gen = np.tile(np.arange(generations), n_seeds)
    seeds = np.repeat(np.arange(n_seeds), generations)
    e = _ar1(np.random.default_rng(seed), reps, n_seeds, generations, phi)
    return np.abs([_fit(y.ravel(), gen, seeds, maxlags).t[0] for y in e])


def lag1(resid: np.ndarray, seeds: np.ndarray) -> float:
    """Pooled lag-1 autocorrelation of per-seed residuals, Kendall's small-sample bias added back, in [0, 0.95]."""
    series = [resid[seeds == s] - resid[seeds == s].mean() for s in np.unique(seeds)]
    num = sum(float(r[1:] @ r[:-1]) for r in series)
    den = sum(float(r @ r) for r in series)
    phi = num / den if den > 0 else 0.0
    return float(np.clip(phi + (1 + 3 * phi) / min(len(r) for r in series), 0.0, 0.95))


def calibration(n_seeds: int, generations: int, phis=(0.0, 0.5, 0.8), reps: int = 400, maxlags: int = MAXLAGS,
                alpha: float = 0.05) -> dict[float, float]:
    """Rejection rate of the nominal `alpha` test on AR(1) nulls of the shape, per phi."""
    crit = stats.t(df=n_seeds * generations - 2).ppf(1 - alpha / 2)
    return {phi: float(np.mean(null_t(n_seeds, generations, phi, reps, maxlags) > crit)) for phi in phis}


def markdown(table: pd.DataFrame) -> str:
    """The trend table: slopes per generation in points (shares) or index units (quality)."""
    lines = [f"Trend over generations per setup: OLS on the generation, seeds pooled, Newey-West SEs within each "
             f"seed ({MAXLAGS} lags, t with n-2 df); slope per generation with its 95% CI, p two-sided (nominal). "
             "phi: the residuals' lag-1 autocorrelation (bias-corrected); p (AR(1)): the same t against "
             "simulated AR(1) nulls with that phi — the one to read. Shares in percentage points.", "",
             "| setup | measure | seeds | generations | first | last | change | slope / generation [95% CI] | p | phi | p (AR(1)) |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in table.itertuples():
        k = 100.0 if r.measure.startswith("share_") else 1.0
        d = 1 if k == 100.0 else 3
        if pd.isna(getattr(r, "slope", np.nan)):
            lines.append(f"| {r.setup} | {MEASURES.get(r.measure, r.measure)} | {r.n_seeds} | n/a | | | | "
                         "fewer than 3 generations | | | |")
            continue
        lines.append(f"| {r.setup} | {MEASURES.get(r.measure, r.measure)} | {r.n_seeds} | {r.generations} | "
                     f"{k * r.first:.{d}f} | {k * r.last:.{d}f} | {k * r.change:+.{d}f} | "
                     f"{k * r.slope:+.{d + 1}f} [{k * r.slope_ci_low:+.{d + 1}f}, {k * r.slope_ci_high:+.{d + 1}f}] | "
                     f"{r.p:.3g} | {r.phi:.2f} | {r.p_ar1:.3g} |")
    shapes = sorted({(int(r.n_seeds), int(r.n) // int(r.n_seeds)) for r in table.itertuples()
                     if not pd.isna(getattr(r, "slope", np.nan))})
    if shapes:
        lines += ["", "Calibration (`bias_amp.trend.calibration`): how often the nominal 5% test rejects on AR(1) "
                  "nulls of each shape — above 5% it is anti-conservative; read p near 0.05 as weak.", ""]
        for n_seeds, gens in shapes:
            rates = ", ".join(f"{100 * v:.0f}% at phi {k:g}" for k, v in calibration(n_seeds, gens).items())
            lines.append(f"- {n_seeds} seed(s) x {gens} generations: {rates}")
    return "\n".join(lines) + "\n"
