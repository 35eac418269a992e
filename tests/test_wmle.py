"""The theory demo (§3.2, App. A): weighted-MLE Beta recursion, its control and the mean constraint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bias_amp.errors import ConfigError
from bias_amp.wmle import COLUMNS, expected_params, fig_pdfs, fit_beta, run_wmle, validate

ROOT = Path(__file__).resolve().parents[1]
SEEDS = range(16)  # a run takes ~0.05 s


@pytest.fixture()
def hydra_compose():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        yield lambda *overrides: compose("wmle", overrides=["logger=none", *overrides])
    GlobalHydra.instance().clear()


def cfg(**over):
    c = OmegaConf.load(ROOT / "conf" / "wmle.yaml")
    for key in ("defaults", "hydra"):
        c.pop(key)
    for k, v in over.items():
        OmegaConf.update(c, k, v)
    return c


def runs(**over) -> list[pd.DataFrame]:
    return [run_wmle(cfg(seed=s, **over)) for s in SEEDS]


# --- fit_beta ---------------------------------------------------------------------------------------

def test_fit_beta_recovers_known_parameters():
    x = np.random.default_rng(1).beta(5.0, 1.5, size=200_000)
    a, b = fit_beta(x)
    assert a == pytest.approx(5.0, rel=0.02) and b == pytest.approx(1.5, rel=0.02)


def test_integer_weights_equal_duplicated_points():
    rng = np.random.default_rng(2)
    x = rng.beta(2.0, 3.0, size=500)
    w = rng.integers(0, 5, size=500)
    weighted = fit_beta(x, w)
    assert weighted == pytest.approx(fit_beta(np.repeat(x, w)), rel=1e-9)
    assert weighted != pytest.approx(fit_beta(x), rel=1e-3)  # the weights matter


def test_mean_constraint_is_exact_and_maximises_likelihood():
    from scipy import stats

    rng = np.random.default_rng(3)
    x = rng.beta(3.0, 2.0, size=5000)
    w = stats.beta.pdf(x, 3.0, 2.0)
    a, b = fit_beta(x, w, mean=0.5)
    assert a / (a + b) == pytest.approx(0.5, abs=1e-12)

    def loglik(k):
        return float(np.sum(w * stats.beta.logpdf(x, 0.5 * k, 0.5 * k)))

    k = a + b
    assert loglik(k) > loglik(k * 1.01) and loglik(k) > loglik(k * 0.99)


def test_fit_beta_rejects_bad_weights():
    with pytest.raises(ValueError, match="weights"):
        fit_beta([0.2, 0.5, 0.7], [1.0, -1.0, 1.0])


# --- the recursion ----------------------------------------------------------------------------------

def test_defaults_wmle_drifts_to_0_6_and_collapses():
    df = run_wmle(cfg())
    assert list(df.columns) == COLUMNS and list(df.generation) == list(range(11))
    assert 0.59 <= df["mean"].iloc[-1] <= 0.61
    assert (np.diff(df["variance"]) < 0).all()
    assert df["mean"].iloc[0] == pytest.approx(4 / 7, abs=0.01)  # Beta(2,2) tilted by Beta(3,2) = Beta(4,3)


def test_pdf_figure_is_readable_per_generation():
    """Small multiples: each generation's pdf on its own density scale (generation 0's peak ~2 is not
    flattened by generation 10's ~58), each panel titled with its mean, and a last panel with the mean's
    drift from 0.5 towards 0.6."""
    df = run_wmle(cfg())
    fig = fig_pdfs(df, (2, 2))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(df) + 1
    peaks = [ax.get_ylim()[1] for ax in panels[:-1]]
    assert peaks[0] < 3 < 50 < peaks[-1]
    assert [ax.get_title() for ax in panels[:-1]] == [f"gen {g}: mean {m:.3f}" for g, m in zip(df.generation, df["mean"], strict=True)]
    np.testing.assert_allclose(panels[-1].lines[0].get_ydata(), df["mean"])


def test_mle_control_keeps_the_mean():
    """Defaults (stratified draws): every generation's mean in [0.49, 0.51]. With iid draws only sampling
    noise moves the mean: a random walk with sd sqrt((g+1) 0.05 / n), 0.0076 at generation 10 (measured
    over 150 seeds). A single iid run is held to 4 sd of that walk; the average of 16 runs to [0.49, 0.51]."""
    df = run_wmle(cfg(weighting="mle"))
    assert df["mean"].between(0.49, 0.51).all()
    assert df["variance"].iloc[-1] == pytest.approx(0.05, rel=0.02)
    n, var = 10_000, 0.05
    sd = np.sqrt((np.arange(11) + 1) * var / n)
    dfs = runs(weighting="mle", sampling="iid")
    for df in dfs:
        assert (np.abs(df["mean"] - 0.5) <= 4 * sd + 1e-3).all()
        assert df["variance"].iloc[-1] == pytest.approx(var, rel=0.1)  # no collapse either
    avg = np.mean([df["mean"] for df in dfs], axis=0)
    assert ((avg >= 0.49) & (avg <= 0.51)).all()


def test_wmle_follows_the_expected_recursion():
    """alpha_g - 1 = 3 * 2^g, beta_g - 1 = 2 * 2^g. The relative error of one run grows to ~4.3% sd at
    generation 10 (sampling noise compounds); the mean log-ratio of 16 runs has sd ~1.1%: tolerance 5%."""
    exp = expected_params((3, 2), (2, 2), 11)
    assert list(exp.alpha - 1) == [3 * 2**g for g in range(11)]
    df = run_wmle(cfg())  # stratified draws: close to the expectation in every generation
    for col in ("alpha", "beta"):
        np.testing.assert_allclose(df[col] - 1, exp[col] - 1, rtol=0.01)
    dfs = runs(sampling="iid")
    for col in ("alpha", "beta"):
        logratio = np.array([np.log((df[col] - 1) / (exp[col] - 1)) for df in dfs])
        assert (np.abs(logratio) < 0.25).all(), col  # every run, every generation (~6 sd)
        assert (np.abs(logratio.mean(axis=0)) < 0.05).all(), col
    avg_mean = np.mean([df["mean"] for df in dfs], axis=0)
    np.testing.assert_allclose(avg_mean, exp["mean"], atol=0.004)


def test_mean_constraint_stops_drift_but_not_collapse():
    df = run_wmle(cfg(constraint="mean"))
    assert (np.abs(df["mean"] - 0.5) <= 0.01).all()
    ratio = df["variance"].to_numpy()[1:] / df["variance"].to_numpy()[:-1]
    assert (ratio < 0.7).all()  # still narrows (by ~1/2 a generation: Beta(a,a) -> Beta(2a-1, 2a-1))
    assert df["variance"].iloc[-1] < df["variance"].iloc[0] / 100
    drift = run_wmle(cfg())
    assert drift["mean"].iloc[-1] - 0.5 > 0.08  # the same weighting without the constraint drifts
    for other in runs(constraint="mean", sampling="iid"):
        assert (np.abs(other["mean"] - 0.5) <= 0.015).all()


# --- validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("pretrain.a", -1, "pretrain.a: expected a number in (0, inf), got -1"),
    ("real.b", 0, "real.b: expected a number in (0, inf), got 0"),
    ("real.a", "x", "real.a: expected a number, got 'x'"),
    ("n", 0, "n: expected an integer in [2, inf), got 0"),
    ("n", 2.5, "n: expected an integer, got 2.5"),
    ("weighting", "map", "weighting: expected one of ['wmle', 'mle'], got 'map'"),
    ("constraint", "var", "constraint: expected one of ['none', 'mean'], got 'var'"),
    ("generations", 0, "generations: expected an integer in [1, inf), got 0"),
])
def test_bad_values_fail_with_one_line(key, value, message):
    with pytest.raises(ConfigError) as err:
        run_wmle(cfg(**{key: value}))
    assert str(err.value) == message


def test_compose_validates(hydra_compose):
    c = hydra_compose()
    validate(c)
    assert c.logger.name == "none" and c.generations == 11 and c.pretrain.a == 3
    with pytest.raises(ConfigError, match=r"^pretrain\.a: expected a number in \(0, inf\), got -1$"):
        validate(hydra_compose("pretrain.a=-1"))
    with pytest.raises(ConfigError, match="^weighting: "):
        validate(hydra_compose("weighting=foo"))


# --- the Hydra app ----------------------------------------------------------------------------------

def app(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "bias_amp.wmle", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_app_bad_value_exits_with_one_line(tmp_path):
    p = app("pretrain.a=-1", "logger=none", f"hydra.run.dir={tmp_path}", cwd=ROOT)
    assert p.returncode != 0
    assert "error: pretrain.a: expected a number in (0, inf), got -1" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert not (tmp_path / "generations.csv").exists()


def test_app_run_and_multirun(tmp_path):
    run = tmp_path / "run"
    p = app("logger=none", f"hydra.run.dir={run}", cwd=ROOT)
    assert p.returncode == 0, p.stderr
    df = pd.read_csv(run / "generations.csv")
    assert list(df.columns) == COLUMNS and len(df) == 11
    pd.testing.assert_frame_equal(df, run_wmle(cfg()), check_exact=False, rtol=1e-12)
    assert (run / "pdfs.png").stat().st_size > 10_000

    sweep = tmp_path / "sweep"
    p = app("-m", "weighting=wmle,mle", "logger=none", f"hydra.sweep.dir={sweep}", cwd=ROOT)
    assert p.returncode == 0, p.stderr
    means = {}
    for job in ("wmle-none", "mle-none"):
        df = pd.read_csv(sweep / job / "generations.csv")
        assert len(df) == 11 and (sweep / job / "pdfs.png").exists()
        means[job] = df["mean"].iloc[-1]
    assert means["wmle-none"] > 0.59 and abs(means["mle-none"] - 0.5) < 0.03
