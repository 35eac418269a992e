"""Newey-West regressions: bias_amp.hac.ols_hac (vectorised) vs a statsmodels loop, same data, same run.

The GPT-2 workload: 36,864 simple regressions (9,216 neurons x 4 relationships) of 60 observations
(6 setups x 10 within-setup differences), maxlags=1. The statsmodels loop is timed on a subset of columns
(--subset, default 1,000) and extrapolated linearly to all 36,864; the subset's results are checked equal.

    nice .venv/bin/python benchmarks/bench_hac.py [--subset 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import statsmodels.api as sm

from bias_amp.hac import ols_hac

N_OBS, N_REG, MAXLAGS = 60, 36_864, 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subset", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    y = rng.normal(size=N_OBS)
    X = rng.normal(size=(N_OBS, N_REG))

    vec = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = ols_hac(y, X, MAXLAGS)
        vec.append(time.perf_counter() - t0)

    loop = []   # seconds per regression, median over repeats of the subset loop
    for _ in range(max(1, args.repeats // 2)):
        t0 = time.perf_counter()
        fits = [sm.OLS(y, sm.add_constant(X[:, j])).fit(cov_type="HAC", cov_kwds={"maxlags": MAXLAGS})
                for j in range(args.subset)]
        loop.append((time.perf_counter() - t0) / args.subset)
    for j, f in enumerate(fits):
        np.testing.assert_allclose([res.beta[j], res.se[j], res.p[j]], [f.params[1], f.bse[1], f.pvalues[1]],
                                   rtol=1e-8)

    v, per = statistics.median(vec), statistics.median(loop)
    full = per * N_REG
    print(f"workload: {N_REG:,} regressions x {N_OBS} observations, Newey-West maxlags={MAXLAGS}")
    print(f"vectorised ols_hac: median {v * 1e3:.1f} ms over {args.repeats} runs")
    how = "measured on all" if args.subset >= N_REG else "extrapolated to"
    print(f"statsmodels loop:   median {per * 1e3:.3f} ms/regression on {args.subset:,} regressions "
          f"-> {full:.1f} s {how} {N_REG:,}")
    print(f"speed-up: {full / v:.0f}x (goal >= 30x); subset results equal to rtol 1e-8")


if __name__ == "__main__":
    main()
