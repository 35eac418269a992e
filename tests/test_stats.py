"""Aggregates: t-intervals against scipy.stats, shares and their bootstrap intervals."""

import math

import numpy as np
import pytest
from scipy import stats

from bias_amp.metrics.stats import mean_ci, share_cis, shares

FIXED = [2.31, 2.05, 2.77, 1.69, 2.43, 2.58, 2.12, 2.90, 2.26, 2.44]


@pytest.mark.parametrize("level", [0.95, 0.90, 0.99])
def test_mean_ci_matches_scipy_t_interval(level):
    x = np.array(FIXED)
    low, high = stats.t.interval(level, df=len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    m, lo, hi = mean_ci(FIXED, level)
    assert m == pytest.approx(2.355)
    assert (lo, hi) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))


def test_mean_ci_known_numbers_and_edge_cases():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])  # sem = 0.6455, t(0.975, 3) = 3.1824
    assert (m, lo, hi) == (2.5, pytest.approx(0.44573, abs=1e-5), pytest.approx(4.55427, abs=1e-5))
    assert mean_ci([1.0, float("nan"), 3.0])[0] == 2.0  # NaN (empty article) dropped
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)
    assert all(math.isnan(v) for v in mean_ci([]))


def test_shares():
    assert shares(["left", "right", "right", "center"]) == {"left": 0.25, "center": 0.25, "right": 0.5}
    assert all(math.isnan(v) for v in shares([]).values())


def test_share_cis_known_values():
    labels = ["left"] * 30 + ["center"] * 50 + ["right"] * 20
    cis = share_cis(labels)
    assert cis == share_cis(list(labels))                  # seeded: the same labels, the same interval
    # normal approximation: 0.3 +- 1.96 * sqrt(0.3 * 0.7 / 100) = (0.210, 0.390), etc.
    for c, p in (("left", 0.3), ("center", 0.5), ("right", 0.2)):
        half = 1.96 * math.sqrt(p * (1 - p) / 100)
        assert cis[c] == (pytest.approx(p - half, abs=0.02), pytest.approx(p + half, abs=0.02))
    # the same as resampling the articles themselves (the slow way)
    rng = np.random.default_rng(1)
    y = np.array(labels)
    boot = np.array([(y[rng.integers(0, 100, 100)] == "left").mean() for _ in range(4000)])
    assert cis["left"] == (pytest.approx(np.quantile(boot, 0.025), abs=0.015),
                           pytest.approx(np.quantile(boot, 0.975), abs=0.015))
    assert share_cis(["left"] * 5) == {"left": (1.0, 1.0), "center": (0.0, 0.0), "right": (0.0, 0.0)}
    assert all(math.isnan(v) for ci in share_cis([]).values() for v in ci)
