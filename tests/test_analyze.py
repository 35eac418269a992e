import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import ROOT
from hydra.errors import ConfigCompositionException

from bias_amp.analyze import analyze, load_config, run
from bias_amp.errors import ConfigError
from bias_amp.plots import SMOKE_BANNER
from bias_amp.probes import save_probe

RELS = ["weight_right", "weight_quality", "activation_right", "activation_quality"]


def make_sweep(root, n_setups=3, n_gen=6, n_layer=2, hidden=8, seed=0, planted=(), probes=True, seeds=(0,),
               smoke=None):
    """A sweep in the run layout: SWEEP/<setup>/seed_<n>/metrics.csv (baseline + gen_00..) and
    <version>/probe.npz, one run per setup x seed. Probes are random walks over generations; `planted`
    activation units follow 3 x share_right. Weight unit (0, 0) follows the right share, weight unit (1, 3)
    the quality index."""
    rng = np.random.default_rng(seed)
    for s, run_seed in [(s, r) for s in range(n_setups) for r in seeds]:
        setup = root / f"setup{s}" / f"seed_{run_seed}"
        gens = np.arange(-1, n_gen)
        right = 0.5 + rng.normal(0, 0.02, len(gens)).cumsum()
        quality = 0.3 + rng.normal(0, 0.02, len(gens)).cumsum()
        versions = ["baseline"] + [f"gen_{g:02d}" for g in range(n_gen)]
        act = rng.normal(0, 0.02, (len(gens), n_layer, hidden)).cumsum(axis=0)
        wt = rng.normal(0, 0.02, (len(gens), n_layer, hidden)).cumsum(axis=0)
        for j in planted:
            layer, unit = divmod(j, hidden)
            act[:, layer, unit] = 3 * right + rng.normal(0, 0.05, len(gens)).cumsum()   # diff r ~ 0.77
        wt[:, 0, 0] = 3 * right + rng.normal(0, 0.001, len(gens))
        wt[:, 1, 3] = -2 * quality + rng.normal(0, 0.001, len(gens))
        metrics = pd.DataFrame({"setup": f"setup{s}", "seed": run_seed, "version": versions, "generation": gens,
                                "n_articles": 100, "share_left": 0.1, "share_center": 0.9 - right,
                                "share_right": right, "quality_mean": quality})
        if smoke is not None:
            metrics["smoke_instruments"] = smoke
        setup.mkdir(parents=True)
        metrics.sample(frac=1, random_state=s).to_csv(setup / "metrics.csv", index=False)   # any row order
        if probes:
            for i, v in enumerate(versions):
                save_probe(setup / v / "probe.npz", {"weight": wt[i], "activation": act[i]})
    (root / "notes").mkdir()                                  # a dir without seed_<n>/ is not a setup
    return root


def _cfg(**kw):
    return load_config([f"{k}={v}" for k, v in kw.items()])


def _series(sweep, mode, layer, unit, probe, target, baseline=False):
    """The regression series for one neuron, built independently with pandas."""
    rows = []
    for m in sorted(sweep.glob("*/seed_*/metrics.csv")):
        df = pd.read_csv(m).sort_values("generation")
        if not baseline:
            df = df[df.generation >= 0]
        x = [np.load(m.parent / v / "probe.npz")[probe][layer, unit] for v in df.version]
        d = pd.DataFrame({"x": np.asarray(x, float), "y": df[target].to_numpy()})
        rows.append(d.diff().dropna() if mode == "diff" else d)
    d = pd.concat(rows)
    return d.y.to_numpy(), d.x.to_numpy()


@pytest.mark.parametrize("mode, maxlags, n_obs", [("diff", 1, 15), ("levels", 2, 18)])
def test_analyze_writes_tables_and_figures_matching_statsmodels(tmp_path, mode, maxlags, n_obs):
    sweep = make_sweep(tmp_path / "sweep")
    paths = analyze(sweep, _cfg(mode=mode, maxlags=maxlags))
    out = sweep / "analysis"
    names = {"neurons.csv", "overlap.csv", "overlap.md", "summary.json"}
    names |= {f"{k}_by_layer_{r}.png" for k in ("r", "p") for r in RELS}
    assert {p.name for p in paths.values()} == names
    assert all((out / n).stat().st_size > 0 for n in names)
    assert not list(out.glob(".*tmp"))

    df = pd.read_csv(out / "neurons.csv")
    assert len(df) == 4 * 2 * 8 and set(df.relationship) == set(RELS) and (df.n == n_obs).all()
    threshold = 0.05 / (16 * 4)
    assert (df.significant == (df.p < threshold)).all()
    targets = {"right": "share_right", "quality": "quality_mean"}
    for rel, layer, unit in [("weight_right", 0, 0), ("activation_quality", 1, 5), ("weight_quality", 1, 3)]:
        probe, target = rel.split("_")
        y, x = _series(sweep, mode, layer, unit, probe, targets[target])
        f = sm.OLS(y, sm.add_constant(x)).fit(cov_type="HAC", use_t=True,
                                              cov_kwds={"maxlags": maxlags, "use_correction": True})
        row = df[(df.relationship == rel) & (df.layer == layer) & (df.unit == unit)].iloc[0]
        np.testing.assert_allclose([row.alpha, row.beta], f.params, rtol=1e-6)
        np.testing.assert_allclose([row.se, row.p], [f.bse[1], f.pvalues[1]], rtol=1e-6)
        np.testing.assert_allclose(row.r, np.corrcoef(x, y)[0, 1], rtol=1e-6)

    # the planted ties are found; the overlap table counts shared (layer, unit) pairs
    sig = {r: set(zip(d.layer, d.unit, strict=True)) for r, d in df[df.significant].groupby("relationship")}
    assert (0, 0) in sig["weight_right"] and (1, 3) in sig["weight_quality"]
    table = pd.read_csv(out / "overlap.csv").set_index("relationship")
    for a in RELS:
        assert table.loc[a, "size"] == table.loc[a, a] == len(sig.get(a, ()))
        for b in RELS:
            assert table.loc[a, b] == len(sig.get(a, set()) & sig.get(b, set()))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold"] == pytest.approx(threshold) and summary["observations"] == n_obs
    assert summary["setups"] == ["setup0", "setup1", "setup2"] and summary["versions"] == 18
    md = (out / "overlap.md").read_text()
    assert f"{threshold:.3g}" in md and f"| weight_right | {table.loc['weight_right', 'size']} |" in md


def test_baseline_panel_hac_and_out_dir_options(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    cfg = _cfg(include_baseline="true", hac="panel", plots="false", out_dir=str(tmp_path / "elsewhere"),
               probes="[activation]", use_t="false", use_correction="false")
    paths = analyze(sweep, cfg)
    assert set(paths) == {"neurons", "overlap", "overlap_md", "summary"}
    df = pd.read_csv(tmp_path / "elsewhere" / "neurons.csv")
    assert set(df.relationship) == {"activation_right", "activation_quality"} and (df.n == 3 * 6).all()
    y, x = _series(sweep, "diff", 0, 2, "activation", "share_right", baseline=True)
    groups = np.repeat([0, 1, 2], 6)
    f = sm.OLS(y, sm.add_constant(x)).fit(cov_type="hac-panel",
                                          cov_kwds={"groups": groups, "maxlags": 1, "use_correction": False})
    row = df[(df.relationship == "activation_right") & (df.layer == 0) & (df.unit == 2)].iloc[0]
    np.testing.assert_allclose([row.beta, row.se, row.p], [f.params[1], f.bse[1], f.pvalues[1]], rtol=1e-6)
    assert (df.p < 0.05 / (16 * 2)).eq(df.significant).all()


def test_planted_neurons_are_recovered_with_bonferroni(tmp_path):
    """50 of 9,216 activation units follow the right share over 66 versions (6 setups x 11 generations),
    default config (first differences, Newey-West maxlags=1, t p-values, Bonferroni over 36,864 tests).
    Over 20 seeds of this design: 45-50 recovered (median 50); false positives 0.05 on average within
    activation_right, 0.8 over all four relationships (benchmarks/RESULTS.md). This seed is one of them."""
    rng = np.random.default_rng(1)
    planted = set(rng.choice(12 * 768, size=50, replace=False).tolist())
    sweep = make_sweep(tmp_path / "sweep", n_setups=6, n_gen=11, n_layer=12, hidden=768, seed=2,
                       planted=sorted(planted))
    analyze(sweep, _cfg(plots="false"))
    df = pd.read_csv(sweep / "analysis" / "neurons.csv")
    assert (df.n == 60).all() and len(df) == 4 * 9216
    sig = df[df.significant].assign(j=lambda d: d.layer * 768 + d.unit)
    act = set(sig[sig.relationship == "activation_right"].j)
    assert len(act & planted) >= 45
    assert len(act - planted) <= 1
    ties = {("weight_right", 0), ("weight_quality", 768 + 3)}                # make_sweep's deliberate ties
    others = [(r, j) for r, j in zip(sig.relationship, sig.j, strict=True)
              if r != "activation_right" and (r, j) not in ties]
    assert ties <= set(zip(sig.relationship, sig.j, strict=True))
    assert len(others) <= 3, others


def test_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"^sweep: expected a directory holding <setup>/seed_<n>/metrics.csv"):
        analyze(empty, _cfg())
    with pytest.raises(ConfigError, match=r"^sweep: expected an existing sweep directory"):
        analyze(tmp_path / "nope", _cfg())
    noprobe = make_sweep(tmp_path / "noprobe", probes=False)
    with pytest.raises(ConfigError, match=r"^sweep: expected probe.npz files under"):
        analyze(noprobe, _cfg())
    short = make_sweep(tmp_path / "short", n_setups=1, n_gen=2)
    with pytest.raises(ConfigError, match=r"^sweep: expected at least 3 probed versions, got 2"):
        analyze(short, _cfg())
    p = _app(str(short))
    assert p.returncode == 2 and p.stderr.strip() == "error: sweep: expected at least 3 probed versions, got 2"
    with pytest.raises(ConfigError, match=r"^sweep: expected a sweep directory \(SWEEP or sweep=DIR\)"):
        run(load_config())
    with pytest.raises(ConfigError, match=r"^mode: expected diff or levels, got 'delta'"):
        analyze(short, _cfg(mode="delta"))
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'maxlag'"):
        load_config(["maxlag=2"])
    with pytest.raises(ConfigError, match=r"^maxlags: expected an integer in \[0, inf\]"):
        analyze(short, _cfg(maxlags=-1))


def _app(*args):
    return subprocess.run([sys.executable, "-m", "bias_amp.analyze", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_runs_end_to_end(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    p = _app(str(sweep), "plots=false", "maxlags=0", "+targets.center=share_center")
    assert p.returncode == 0, p.stderr
    df = pd.read_csv(sweep / "analysis" / "neurons.csv")
    assert "activation_center" in set(df.relationship) and df.relationship.nunique() == 6
    assert "significant neurons (p < " in p.stdout and not list(ROOT.glob("analyze.log"))


def test_each_setup_and_seed_is_its_own_panel_unit(tmp_path):
    """Two seeds per setup: differences and HAC lag products stay inside one run (setup x seed), never
    across the seeds of a setup; smoke instruments put the banner on the outputs."""
    sweep = make_sweep(tmp_path / "sweep", n_setups=2, seeds=(0, 1), smoke=True)
    analyze(sweep, _cfg(hac="panel", plots="false", use_t="false", use_correction="false"))
    df = pd.read_csv(sweep / "analysis" / "neurons.csv")
    assert (df.n == 4 * 5).all()                               # 4 runs x (6 generations - 1)
    y, x = _series(sweep, "diff", 1, 6, "activation", "quality_mean")
    f = sm.OLS(y, sm.add_constant(x)).fit(cov_type="hac-panel", cov_kwds={
        "groups": np.repeat([0, 1, 2, 3], 5), "maxlags": 1, "use_correction": False})
    row = df[(df.relationship == "activation_quality") & (df.layer == 1) & (df.unit == 6)].iloc[0]
    np.testing.assert_allclose([row.beta, row.se, row.p], [f.params[1], f.bse[1], f.pvalues[1]], rtol=1e-6)
    summary = json.loads((sweep / "analysis" / "summary.json").read_text())
    assert summary["runs"] == ["setup0/seed_0", "setup0/seed_1", "setup1/seed_0", "setup1/seed_1"]
    assert summary["setups"] == ["setup0", "setup1"] and summary["smoke_instruments"] is True
    assert (sweep / "analysis" / "overlap.md").read_text().startswith(f"> **{SMOKE_BANNER}**")
