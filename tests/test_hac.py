import numpy as np
import pytest
import statsmodels.api as sm

from bias_amp.hac import ols_hac, within_diff

RTOL = 1e-8


def _panel(seed, n_groups=4, n_gen=11, k=6):
    """Random walks per group (setup) over generations, plus a y that loads on column 0."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), n_gen)
    gen = np.tile(np.arange(n_gen), n_groups)
    X = rng.normal(size=(n_groups * n_gen, k)).cumsum(axis=0)
    y = 0.7 * X[:, 0] + rng.normal(size=len(groups)).cumsum()
    return y, X, groups, gen


def _sm(y, x, **fit):
    return sm.OLS(y, sm.add_constant(x)).fit(**fit)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=0)


@pytest.mark.parametrize("maxlags", [0, 1, 2, 3])
@pytest.mark.parametrize("mode", ["levels", "diff"])
def test_equals_statsmodels_hac(maxlags, mode):
    y, X, groups, gen = _panel(seed=maxlags)
    if mode == "diff":
        X, _ = within_diff(X, groups, gen)
        y, _ = within_diff(y, groups, gen)
    res = ols_hac(y, X, maxlags)
    for j in range(X.shape[1]):
        f = _sm(y, X[:, j], cov_type="HAC", cov_kwds={"maxlags": maxlags})
        assert not f.use_t and f.cov_kwds["use_correction"] is False   # the defaults we mirror
        _close([res.alpha[j], res.beta[j]], f.params)
        _close([res.se_alpha[j], res.se[j]], f.bse)
        _close(res.t[j], f.tvalues[1])
        _close(res.p[j], f.pvalues[1])
        _close(res.r[j], np.corrcoef(y, X[:, j])[0, 1])


@pytest.mark.parametrize("maxlags", [1, 3])
def test_small_sample_options_equal_statsmodels(maxlags):
    y, X, _, _ = _panel(seed=10, k=3)
    res = ols_hac(y, X, maxlags, use_correction=True, use_t=True)
    for j in range(X.shape[1]):
        f = _sm(y, X[:, j], cov_type="HAC", cov_kwds={"maxlags": maxlags, "use_correction": True}, use_t=True)
        _close(res.se[j], f.bse[1])
        _close(res.p[j], f.pvalues[1])


@pytest.mark.parametrize("maxlags", [0, 2])
def test_panel_hac_equals_statsmodels_hac_panel(maxlags):
    y, X, groups, gen = _panel(seed=5, k=3)
    dX, g = within_diff(X, groups, gen)
    dy, _ = within_diff(y, groups, gen)
    res = ols_hac(dy, dX, maxlags, groups=g)
    for j in range(X.shape[1]):
        f = _sm(dy, dX[:, j], cov_type="hac-panel",
                cov_kwds={"groups": g, "maxlags": maxlags, "use_correction": False})
        _close(res.se[j], f.bse[1])
        _close(res.p[j], f.pvalues[1])
    if maxlags:   # the stacked series counts lag products across setups: a different number
        assert not np.allclose(res.se, ols_hac(dy, dX, maxlags).se)


def test_within_diff_stays_inside_each_setup_and_skips_gaps():
    groups = np.array(["b", "a", "a", "b", "a", "b", "b"])
    gen = np.array([1, 2, 0, 0, 1, 2, 4])
    vals = np.array([10.0, 200.0, 0.0, 1.0, 50.0, 30.0, 1000.0])
    d, g = within_diff(vals, groups, gen)
    # a: 0, 50, 200 -> 50, 150 ; b: 1, 10, 30, (gap) 1000 -> 9, 20
    np.testing.assert_array_equal(d, [50.0, 150.0, 9.0, 20.0])
    np.testing.assert_array_equal(g, ["a", "a", "b", "b"])


def test_constant_regressor_gives_nan_not_significance():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(20), rng.normal(size=20)])
    res = ols_hac(rng.normal(size=20), X, 1)
    assert np.isnan([res.beta[0], res.se[0], res.p[0], res.r[0]]).all()
    assert np.isfinite([res.beta[1], res.p[1]]).all()


def test_rejects_too_few_observations():
    with pytest.raises(ValueError, match="at least 3 observations"):
        ols_hac([1.0, 2.0], [[1.0], [3.0]])
