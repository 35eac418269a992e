"""Null calibration of the neuron analysis (#18 point 6): how often `analyze`'s tests call a null neuron
significant on panels of the study's shape.

A null panel: each run (setup x seed) is a series over its generations; the target y and every neuron x are
independent stationary AR(1) series with coefficient phi (unit variance; phi = 1 is a random walk), so every
rejection is false. The same draws go through `analyze.fit` in each mode (levels: y = a + b x, the authors'
regression; diff: first differences within each run, ours) and each inference (statsmodels' HAC defaults:
normal p, no small-sample scaling, the authors' p-values; small-sample: t(n-2) and n/(n-2)). Reported per
(phi, mode, inference): the false-positive rate at alpha (per test) and the Bonferroni hits among `tests`
null tests at alpha / tests (a calibrated test expects alpha, i.e. <= 0.05 of a hit, in total).

    python -m bias_amp.calibrate --runs 20 --generations 11 --tests 69120 --out studies/calibration
    python -m bias_amp.analyze SWEEP calibrate=true      # the sweep's own shape and autocorrelation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bias_amp import cli
from bias_amp.errors import check, check_range
from bias_amp.io import write_csv, write_text

INFERENCE = {"statsmodels": (False, False), "small-sample": (True, True)}   # name: (use_correction, use_t)
MODES = ("levels", "diff")


def ar1(rng: np.random.Generator, n_runs: int, n_gen: int, k: int, phi: float) -> np.ndarray:
    """(n_runs, n_gen, k) stationary AR(1) series of unit variance (phi = 1: a random walk from N(0, 1))."""
    e = rng.standard_normal((n_runs, n_gen, k))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    scale = np.sqrt(1.0 - phi ** 2) if phi < 1 else 1.0
    for t in range(1, n_gen):
        x[:, t] = phi * x[:, t - 1] + scale * e[:, t]
    return x


def lag1(values: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Per column of values (rows ordered by generation within each unit), the pooled lag-1 autocorrelation
    of the within-unit demeaned series (biased towards 0 by about -1/generations on short series)."""
    num = den = 0.0
    for u in dict.fromkeys(unit):
        v = values[unit == u]
        v = v - v.mean(axis=0)
        num = num + np.einsum("ij,ij->j", v[1:], v[:-1])
        den = den + np.einsum("ij,ij->j", v, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def calibrate(n_runs: int, n_gen, tests: int, phis, *, alpha: float = 0.05, maxlags: int = 1,
              hac: str = "stacked", chunk: int = 128, seed: int = 0) -> pd.DataFrame:
    """One row per (phi, mode, inference) over `tests` null neurons; `chunk` neurons share one target draw.
    `n_gen`: versions per run, one number or one per run (a study still running has unequal runs)."""
    from bias_amp.analyze import fit

    check_range(n_runs, "calibrate.runs", 1, integer=True)
    lengths = [n_gen] * n_runs if isinstance(n_gen, (int, np.integer)) else [int(g) for g in n_gen]
    check(len(lengths) == n_runs, "calibrate.generations", f"one number or {n_runs} numbers", n_gen)
    for g in lengths:
        check_range(g, "calibrate.generations", 3, integer=True)
    check_range(tests, "calibrate.tests", 1, integer=True)
    check(bool(phis) and all(isinstance(p, (int, float)) and 0 <= p <= 1 for p in phis), "calibrate.phis",
          "AR(1) coefficients in [0, 1]", list(phis))
    n_max = max(lengths)
    rows_kept = (np.arange(n_max)[None, :] < np.array(lengths)[:, None]).reshape(-1)    # run-major, by generation
    unit = np.repeat(np.arange(n_runs), n_max)[rows_kept]
    gen = np.tile(np.arange(n_max), n_runs)[rows_kept]
    shown = lengths[0] if len(set(lengths)) == 1 else f"{min(lengths)}-{n_max}"
    threshold = alpha / tests
    rows = []
    for phi in phis:
        rng = np.random.default_rng([seed, round(float(phi) * 1e6)])
        p = {(m, i): [] for m in MODES for i in INFERENCE}
        for start in range(0, tests, chunk):
            k = min(chunk, tests - start)
            y = ar1(rng, n_runs, n_max, 1, phi).reshape(-1)[rows_kept]
            X = ar1(rng, n_runs, n_max, k, phi).reshape(-1, k)[rows_kept]
            for mode in MODES:
                for name, (use_correction, use_t) in INFERENCE.items():
                    p[mode, name].append(fit(y, X, unit, gen, mode, maxlags, hac, use_correction, use_t).p)
        for (mode, name), ps in p.items():
            ps = np.concatenate(ps)
            rows.append({"phi": float(phi), "mode": mode, "inference": name, "runs": n_runs, "generations": shown,
                         "maxlags": maxlags, "hac": hac, "tests": tests, "fpr": float(np.mean(ps < alpha)),
                         "bonferroni_hits": int(np.sum(ps < threshold)), "nominal_hits": alpha})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, alpha: float, note: str = "") -> str:
    """calibration.md: the table, then the authors' setting beside ours at each phi."""
    t = table.iloc[0]
    head = (f"# Neuron-test calibration on null panels\n\n{int(t.runs)} runs x {t.generations} generations, "
            f"{int(t.tests)} null tests per row (independent AR(1) target and neurons), Newey-West maxlags="
            f"{int(t.maxlags)}, HAC {t.hac}. fpr: share of p < {alpha}; bonferroni_hits: p < {alpha} / tests "
            f"(a calibrated test: about {alpha} hits in total).{note}\n\n")
    cols = ["phi", "mode", "inference", "fpr", "bonferroni_hits"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += [f"| {r.phi:.2f} | {r.mode} | {r.inference} | {r.fpr:.3f} | {r.bonferroni_hits} |"
              for r in table.itertuples()]
    pick = table.set_index(["phi", "mode", "inference"])
    side = [f"- phi={phi:.2f}: paper-style (levels, statsmodels defaults) fpr "
            f"{pick.loc[(phi, 'levels', 'statsmodels'), 'fpr']:.3f}, "
            f"{pick.loc[(phi, 'levels', 'statsmodels'), 'bonferroni_hits']} Bonferroni hits; ours (diff, "
            f"small-sample) fpr {pick.loc[(phi, 'diff', 'small-sample'), 'fpr']:.3f}, "
            f"{pick.loc[(phi, 'diff', 'small-sample'), 'bonferroni_hits']} hits"
            for phi in dict.fromkeys(table.phi)]
    return head + "\n".join(lines) + "\n\n" + "\n".join(side) + "\n"


def write(out: Path, table: pd.DataFrame, alpha: float, note: str = "") -> dict[str, Path]:
    return {"calibration": write_csv(Path(out) / "calibration.csv", table),
            "calibration_md": write_text(Path(out) / "calibration.md", markdown(table, alpha, note))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bias_amp.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, required=True, help="panel units (setups x seeds)")
    ap.add_argument("--generations", type=int, default=11, help="fine-tuned versions per run (gen_00..)")
    ap.add_argument("--tests", type=int, required=True, help="null tests per row (neurons x relationships)")
    ap.add_argument("--phis", type=float, nargs="+", default=[0.0, 0.5, 0.9])
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--maxlags", type=int, default=1)
    ap.add_argument("--hac", default="stacked", choices=["stacked", "panel"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder for calibration.csv / calibration.md")
    a = ap.parse_args(argv)
    with cli.one_line_errors():
        check_range(a.alpha, "alpha", 0, 1, lo_open=True, hi_open=True)
        table = calibrate(a.runs, a.generations, a.tests, a.phis, alpha=a.alpha, maxlags=a.maxlags, hac=a.hac,
                          seed=a.seed)
        paths = write(Path(a.out), table, a.alpha)
        print(table[["phi", "mode", "inference", "fpr", "bonferroni_hits"]].to_string(index=False))
        print(f"wrote {paths['calibration_md']}")


if __name__ == "__main__":
    main()
