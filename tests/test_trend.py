"""bias_amp.trend: the per-setup trend test of the study (#18) recovers planted slopes and stays calm on none."""

import numpy as np
import pandas as pd

from bias_amp import trend


def panel(slope: float, seeds=(0, 1), gens=11, noise=0.02, phi=0.5, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in seeds:
        e = 0.0
        rows.append({"setup": "greedy-none", "seed": s, "generation": -1, "share_right": 0.9, "quality_mean": 2.0})
        for g in range(gens):
            e = phi * e + rng.normal(0, noise)                      # autocorrelated, as consecutive versions are
            rows.append({"setup": "greedy-none", "seed": s, "generation": g, "share_right": 0.5 + slope * g + e,
                         "quality_mean": 2.5 - 0.05 * g})
    return pd.DataFrame(rows)


def test_a_planted_slope_is_inside_its_ci_and_the_baseline_does_not_count():
    t = trend.trend(panel(0.015)).set_index("measure")
    r = t.loc["share_right"]
    assert (r.n_seeds, r.n, r.generations) == (2, 22, "0-10")        # baseline (generation -1) left out
    assert r.slope_ci_low < 0.015 < r.slope_ci_high and r.p < 0.01
    assert abs(r.change - (r.last - r.first)) < 1e-12 and 0.5 < r.first < 0.6
    assert abs(t.loc["quality_mean"].slope + 0.05) < 1e-9             # exact line: slope recovered exactly


def test_the_calibration_measures_the_tests_own_false_positive_rate():
    p = [trend.trend(panel(0.0, seed=i, phi=0.0), reps=10).set_index("measure").loc["share_right"].p for i in range(200)]
    cal = trend.calibration(2, 11, phis=(0.0, 0.8), reps=400)
    assert abs(np.mean(np.array(p) < 0.05) - cal[0.0]) < 0.06      # the simulation matches the fitted tests
    assert 0.03 <= cal[0.0] <= 0.13 and cal[0.8] > cal[0.0]       # persistence makes Newey-West anti-conservative
    assert "2 seed(s) x 11 generations" in trend.markdown(trend.trend(panel(0.01)))


def test_too_few_generations_give_no_slope_and_the_table_says_so():
    t = trend.trend(panel(0.01, gens=2))
    assert t["slope"].isna().all() if "slope" in t else True
    assert "fewer than 3 generations" in trend.markdown(t)


def test_the_ar1_p_value_is_closer_to_calibrated_than_the_nominal_one():
    rows = [trend.trend(panel(0.0, seed=i, phi=0.5), reps=100).set_index("measure").loc["share_right"]
            for i in range(60)]
    nominal, ar1 = (np.mean([getattr(r, k) < 0.05 for r in rows]) for k in ("p", "p_ar1"))
    assert ar1 < nominal and ar1 <= 0.10
