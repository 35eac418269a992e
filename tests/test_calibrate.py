import numpy as np
import pandas as pd
import pytest
from test_analyze import make_sweep

from bias_amp import calibrate as cal
from bias_amp.analyze import analyze, load_config
from bias_amp.errors import ConfigError

STUDY = {"n_runs": 20, "n_gen": 11}          # the study's panel: setups x seeds, generations gen_00..gen_10


@pytest.fixture(scope="module")
def table():
    t = cal.calibrate(**STUDY, tests=3000, phis=[0.0, 0.9], seed=0)
    return t.set_index(["phi", "mode", "inference"])


def test_ar1_has_unit_variance_and_its_autocorrelation():
    rng = np.random.default_rng(0)
    x = cal.ar1(rng, 4, 400, 50, 0.7)
    assert abs(x.var() - 1.0) < 0.08
    unit = np.repeat(np.arange(4), 400)
    assert abs(np.median(cal.lag1(x.reshape(-1, 50), unit)) - 0.7) < 0.03


def test_white_noise_nulls_are_near_alpha_in_both_modes(table):
    for mode in cal.MODES:
        for inference in cal.INFERENCE:
            assert 0.02 < table.loc[(0.0, mode, inference), "fpr"] < 0.11, (mode, inference)
            assert table.loc[(0.0, mode, inference), "bonferroni_hits"] <= 2


def test_autocorrelated_nulls_break_levels_not_differences(table):
    levels = table.loc[(0.9, "levels", "statsmodels")]          # the authors' regression and p-values
    diff = table.loc[(0.9, "diff", "small-sample")]             # ours
    assert levels.fpr > 0.2                                     # >= 4 x alpha
    assert diff.fpr < 0.1
    assert levels.bonferroni_hits >= 20 and diff.bonferroni_hits <= 3


def test_analyze_calibrates_on_the_sweeps_shape(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", n_setups=2, n_gen=6, seeds=(0, 1))
    cfg = load_config(["calibrate=true", "plots=false", "calibrate_phis=[0.0]"])
    paths = analyze(sweep, cfg)
    t = pd.read_csv(paths["calibration"])
    assert set(t.runs) == {4} and set(t.generations) == {6}            # 2 setups x 2 seeds, gen_00..gen_05
    assert set(t.tests) == {2 * 8 * 4}                                 # neurons x relationships
    assert len(set(t.phi)) == 2 and t.phi.max() > 0.3                  # 0.0 and the random walks' own
    md = paths["calibration_md"].read_text()
    assert "paper-style (levels, statsmodels defaults)" in md and "neuron autocorrelation: phi =" in md


def test_cli_writes_the_tables_and_refuses_bad_phis(tmp_path, capsys):
    cal.main(["--runs", "3", "--generations", "5", "--tests", "64", "--phis", "0.5", "--out", str(tmp_path)])
    t = pd.read_csv(tmp_path / "calibration.csv")
    assert len(t) == len(cal.MODES) * len(cal.INFERENCE) and (t.tests == 64).all()
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="calibrate.phis"):
        cal.calibrate(3, 5, 10, [1.5])


def test_a_study_still_running_calibrates_on_its_unequal_runs(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", n_setups=2, n_gen=6)
    (sweep / "setup1" / "seed_0" / "gen_05" / "probe.npz").unlink()          # setup1 has finished gen_04 only
    paths = analyze(sweep, load_config(["calibrate=true", "plots=false", "calibrate_phis=[0.0]"]))
    t = pd.read_csv(paths["calibration"])
    assert set(t.runs) == {2} and set(t.generations) == {"5-6"}
    assert "2 runs x 5-6 generations" in paths["calibration_md"].read_text()
