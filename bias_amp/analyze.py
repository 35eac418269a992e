"""`python -m bias_amp.analyze SWEEP [key=value ...]`: which neurons move with bias and quality (§5.4, App. K).

Joins every run's metrics.csv (SWEEP/<setup>/seed_<n>/, found by `layout.run_dirs`) with the versions'
`probe.npz` and, per neuron (block output unit), relates each probe (weight, activation) to each target
(right share, quality index): Pearson r and OLS with Newey-West SEs (`bias_amp.hac`), in first differences
within each run (default, App. K) or in levels (`mode=levels`). Each setup x seed is its own panel unit (its
own time series). r is computed on the same series as the regression (differences or levels).
Significance: p < alpha / (neurons x relationships) (Bonferroni). Writes to SWEEP/analysis/:
neurons.csv (one row per relationship x neuron; layer and unit are 0-based array indices), overlap.csv /
overlap.md (significant-set sizes on the diagonal, pairwise overlaps off it), summary.json, and per
relationship r_by_layer_<rel>.png (Fig. 12-15 style) and p_by_layer_<rel>.png. Targets measured with smoke
instruments carry the smoke banner (overlap.md, figures, summary.json's smoke_instruments).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bias_amp import calibrate as calibration
from bias_amp import cli, plots, projection
from bias_amp.errors import check, check_range
from bias_amp.hac import ols_hac, within_diff
from bias_amp.io import read_json, write_csv, write_json, write_text
from bias_amp.probes import KEYS, load_probe
from bias_amp.report import is_smoke, load_runs

log = logging.getLogger(__name__)


def validate(cfg: DictConfig) -> None:
    check(cfg.mode in ("diff", "levels"), "mode", "diff or levels", cfg.mode)
    check(cfg.hac in ("stacked", "panel"), "hac", "stacked or panel", cfg.hac)
    check_range(cfg.maxlags, "maxlags", 0, integer=True)
    check_range(cfg.alpha, "alpha", 0, 1, lo_open=True, hi_open=True)
    check(bool(cfg.targets) and all(isinstance(v, str) for v in cfg.targets.values()), "targets",
          "a mapping name: metrics.csv column", OmegaConf.to_container(cfg.targets) if cfg.targets else None)
    probes = list(cfg.probes or [])
    check(bool(probes) and set(probes) <= set(KEYS), "probes", f"a non-empty subset of {list(KEYS)}", probes)


def load_sweep(sweep: Path, targets: dict[str, str], include_baseline=False, setups=None):
    """(meta, arrays): one meta row per probed version (run = '<setup>/seed_<n>', setup, seed, version,
    generation, target columns, smoke_instruments) and {"weight"|"activation": float64 [n_versions, n_layer,
    hidden]} in the same order."""
    runs = load_runs(sweep, ["version", "generation", *dict.fromkeys(targets.values())])
    if setups is not None:
        runs = runs[runs.setup.isin(set(setups))]
    check(not runs.empty, "setups", "names of setups in the sweep", list(setups or []))
    if not include_baseline:
        runs = runs[runs.generation >= 0]
    runs = runs.assign(run=runs.setup + "/seed_" + runs.seed.astype(int).astype(str),
                       path=[Path(d) / str(v) / "probe.npz" for d, v in zip(runs.run_dir, runs.version, strict=True)])
    have = runs[[p.is_file() for p in runs.path]]
    if len(have) < len(runs):
        log.warning("%d of %d versions have no probe.npz and are left out", len(runs) - len(have), len(runs))
    check(not have.empty, "sweep", "probe.npz files under SWEEP/<setup>/seed_<n>/<version>/ (run with "
          "probe=default)", str(sweep))
    check(len(have) >= 3, "sweep", "at least 3 probed versions", len(have))
    meta = have.assign(smoke_instruments=is_smoke(have))[
        ["run", "setup", "seed", "version", "generation", "path", "smoke_instruments", *dict.fromkeys(targets.values())]]
    meta = meta.sort_values(["run", "generation"], kind="stable").reset_index(drop=True)   # time order per run
    arrays = {k: [] for k in KEYS}
    for path in tqdm(meta.path, desc="probes", leave=False, disable=None):
        for k, v in load_probe(path).items():
            arrays[k].append(v)
    shapes = {a.shape for v in arrays.values() for a in v}
    check(len(shapes) == 1, "sweep", "probes of one shape [n_layer, hidden] in every version", sorted(shapes))
    return meta.drop(columns="path"), {k: np.stack(v).astype(np.float64) for k, v in arrays.items()}


def fit(y, X, unit, gen, mode: str, maxlags: int, hac: str, use_correction: bool, use_t: bool):
    """One target y (n,) against every column of X (n, k), rows = versions of the panel units `unit` at
    generations `gen`: in levels, or in first differences within each unit (mode=diff); HAC stacked or panel."""
    groups = unit
    if mode == "diff":
        X, groups = within_diff(X, unit, gen)
        y, _ = within_diff(y, unit, gen)
    check(len(y) >= 3, "mode", f"at least 3 observations for mode={mode}", len(y))
    return ols_hac(y, X, maxlags, groups=groups if hac == "panel" else None,
                   use_correction=use_correction, use_t=use_t)


def regress(meta: pd.DataFrame, arrays: dict, cfg: DictConfig) -> pd.DataFrame:
    """Long table: one row per (relationship, neuron) with r, beta, alpha, se, t, p, significant."""
    n_layer, hidden = next(iter(arrays.values())).shape[1:]
    rels = [(p, t) for p in cfg.probes for t in cfg.targets]
    threshold = cfg.alpha / (n_layer * hidden * len(rels))
    unit, gen = meta.run.to_numpy(), meta.generation.to_numpy()           # panel unit: setup x seed
    out = []
    for probe_name, target in tqdm(rels, desc="regressions", leave=False, disable=None):
        col = cfg.targets[target]
        X = arrays[probe_name].reshape(len(meta), -1)
        y = meta[col].to_numpy(dtype=np.float64)
        check(bool(np.isfinite(y).all()), f"targets.{target}", f"finite values in metrics.csv column {col}",
              f"{int((~np.isfinite(y)).sum())} missing")
        res = fit(y, X, unit, gen, cfg.mode, cfg.maxlags, cfg.hac, cfg.use_correction, cfg.use_t)
        out.append(pd.DataFrame({
            "relationship": f"{probe_name}_{target}", "probe": probe_name, "target": target,
            "layer": np.repeat(np.arange(n_layer), hidden), "unit": np.tile(np.arange(hidden), n_layer),
            "n": res.n, "r": res.r, "beta": res.beta, "alpha": res.alpha, "se": res.se, "t": res.t, "p": res.p,
            "significant": res.p < threshold,
        }))
    df = pd.concat(out, ignore_index=True)
    df.attrs["threshold"] = threshold
    return df


def overlap(df: pd.DataFrame) -> pd.DataFrame:
    """Significant-set sizes (diagonal, and `size`) and pairwise overlaps of neurons (layer, unit)."""
    rels = list(dict.fromkeys(df.relationship))
    sets = {r: set(map(tuple, df[(df.relationship == r) & df.significant][["layer", "unit"]].to_numpy()))
            for r in rels}
    table = pd.DataFrame({b: [len(sets[a] & sets[b]) for a in rels] for b in rels}, index=rels)
    table.insert(0, "size", [len(sets[r]) for r in rels])
    return table.rename_axis("relationship").reset_index()


def _markdown(table: pd.DataFrame, summary: dict) -> str:
    banner = f"> **{plots.SMOKE_BANNER}** (the targets)\n\n" if summary["smoke_instruments"] else ""
    head = banner + (f"# Significant neurons ({summary['mode']}, Newey-West maxlags={summary['maxlags']}, "
            f"HAC {summary['hac']})\n\nBonferroni threshold p < {summary['alpha']} / "
            f"({summary['neurons']} neurons x {summary['relationships']} relationships) = "
            f"{summary['threshold']:.3g}; {summary['observations']} observations from {summary['versions']} "
            f"versions of {len(summary['runs'])} runs ({len(summary['setups'])} setups x seeds). Diagonal: set size; off-diagonal: overlap.\n\n")
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return head + "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, out: Path, threshold: float, smoke: bool = False) -> list[Path]:
    """Per relationship: r by layer (jittered, coloured by significance) and -log10 p by layer."""
    import seaborn as sns

    rng = np.random.default_rng(0)
    paths = []
    for rel, d in tqdm(df.groupby("relationship", sort=False), desc="figures", leave=False, disable=None):
        d = d.assign(jittered=d.layer + rng.uniform(-0.3, 0.3, len(d)),
                     neg_log_p=-np.log10(np.clip(d.p.to_numpy(), 1e-300, None)),
                     significance=np.where(d.significant, "significant", "not significant"))
        hue = dict(hue="significance", hue_order=["not significant", "significant"],
                   palette={"not significant": "0.6", "significant": "tab:red"})
        n_sig = int(d.significant.sum())
        for kind, y, label in (("r", "r", "Pearson r"), ("p", "neg_log_p", "-log10 p")):
            with plots.style():
                fig, axes = plots.new_figure(8, 4.5)
                ax = axes[0, 0]
                sns.scatterplot(data=d, x="jittered", y=y, s=6, linewidth=0, alpha=0.6, ax=ax, **hue)
                if kind == "p":
                    ax.axhline(-np.log10(threshold), color="tab:red", ls="--", lw=1, label="Bonferroni")
                plots.legend_outside(ax)
                ax.set(xlabel="block (0-based)", ylabel=label, xticks=sorted(d.layer.unique()),
                       title=f"{rel.replace('_', ' vs ')}: {n_sig} significant of {len(d)} neurons")
                if smoke:
                    plots.banner(fig)
                path = out / f"{kind}_by_layer_{rel}.png"
                plots.save(fig, path, dpi=120)
            paths.append(path)
    return paths


def analyze(sweep: str | Path, cfg: DictConfig) -> dict[str, Path]:
    """Run the analysis of one sweep; returns {name: written path}."""
    validate(cfg)
    sweep = Path(sweep)
    targets = dict(cfg.targets)
    meta, arrays = load_sweep(sweep, targets, cfg.include_baseline,
                              None if cfg.setups is None else list(cfg.setups))
    df = regress(meta, arrays, cfg)
    out = Path(cfg.out_dir) if cfg.out_dir else sweep / "analysis"
    table = overlap(df)
    n_layer, hidden = next(iter(arrays.values())).shape[1:]
    summary = {
        "mode": cfg.mode, "maxlags": cfg.maxlags, "hac": cfg.hac, "alpha": cfg.alpha,
        "use_correction": cfg.use_correction, "use_t": cfg.use_t, "threshold": df.attrs["threshold"],
        "neurons": int(n_layer * hidden), "n_layer": int(n_layer), "hidden": int(hidden),
        "relationships": int(df.relationship.nunique()), "observations": int(df.n.iloc[0]),
        "versions": len(meta), "setups": sorted(meta.setup.unique()), "runs": sorted(meta.run.unique()),
        "smoke_instruments": bool(meta.smoke_instruments.any()),
        "significant": dict(zip(table.relationship, table["size"].astype(int).tolist(), strict=True)),
    }
    c_t = projection.association(load_runs(sweep, ["share_right"]))     # Theorem 1 tested: c_t vs Δ right share
    if c_t is not None:
        summary["c_t"] = c_t
    paths = {
        **({"c_t": write_text(out / "c_t.md", projection.markdown(c_t))} if c_t else {}),
        "neurons": write_csv(out / "neurons.csv", df),
        "overlap": write_csv(out / "overlap.csv", table),
        "overlap_md": write_text(out / "overlap.md", _markdown(table, summary)),
        "summary": write_json(out / "summary.json", summary),
    }
    if cfg.calibrate:
        paths.update(_calibrate(meta, arrays, cfg, summary, out))
    if cfg.plots:
        paths.update({p.stem: p for p in plot(df, out, df.attrs["threshold"], summary["smoke_instruments"])})
    return paths


def _calibrate(meta: pd.DataFrame, arrays: dict, cfg: DictConfig, summary: dict, out: Path) -> dict[str, Path]:
    """analysis/calibration.csv/.md: null panels of this sweep's shape, at calibrate_phis and at the sweep's own
    autocorrelation (median over neurons of the lag-1 autocorrelation within runs, probes pooled)."""
    runs = meta.groupby("run", sort=False).size()                # meta is ordered by run, then generation
    unit = meta.run.to_numpy()
    own = float(np.clip(np.nanmedian(np.concatenate(
        [calibration.lag1(arrays[p].reshape(len(meta), -1), unit) for p in cfg.probes])), 0.0, 1.0))
    phis = sorted({float(p) for p in cfg.calibrate_phis} | {round(own, 2)})
    tests = cfg.calibrate_tests or summary["neurons"] * summary["relationships"]
    table = calibration.calibrate(len(runs), runs.tolist(), int(tests), phis, alpha=cfg.alpha,
                                  maxlags=cfg.maxlags, hac=cfg.hac, seed=cfg.calibrate_seed)
    note = f" The sweep's own neuron autocorrelation: phi = {own:.2f} (lag 1, median over neurons)."
    return calibration.write(out, table, cfg.alpha, note)


def load_config(overrides: list[str] = ()) -> DictConfig:
    """conf/analyze.yaml with Hydra overrides (`+targets.<name>=<column>` adds a target)."""
    return cli.compose("analyze", overrides)


def run(cfg: DictConfig) -> dict[str, Path]:
    """The app: analyze cfg.sweep and print the significant-set sizes."""
    check(cfg.sweep is not None, "sweep", "a sweep directory (SWEEP or sweep=DIR)", None)
    paths = analyze(cfg.sweep, cfg)
    summary = read_json(paths["summary"])
    print(f"significant neurons (p < {summary['threshold']:.3g}): {summary['significant']}")
    print(f"wrote {len(paths)} files to {paths['neurons'].parent}")
    return paths


@hydra.main(version_base="1.3", config_path="../conf", config_name="analyze")
def _app(cfg: DictConfig) -> None:
    with cli.one_line_errors():
        run(cfg)


def main() -> None:
    cli.sweep_argument()
    _app()


if __name__ == "__main__":
    main()
