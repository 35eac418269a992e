"""The theory demo (§3.2, App. A, Fig. 1-2): weighted MLE of a Beta model, generation after generation.

f_pre is the MLE fit of samples of Beta(3, 2); generation 0 fits real data D_real ~ Beta(2, 2) with weights
w_j = f_pre(x_j) (App. A eq. 2); generation g >= 1 refits samples of f_{g-1} weighted by f_{g-1}(x_j).
In expectation tilting Beta(a, b) by its own pdf gives Beta(2a-1, 2b-1): the mean drifts to 0.6 (bias
amplification) while the variance halves each generation (collapse). `constraint=mean` pins the fitted mean
to the sample mean: the drift stops, the narrowing does not — the two are separable.

python -m bias_amp.wmle [-m] weighting=wmle|mle constraint=none|mean [logger=none] ...
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from scipy import optimize, special, stats
from tqdm.auto import tqdm

from bias_amp.errors import check, check_range

log = logging.getLogger(__name__)

WEIGHTINGS = ("wmle", "mle")
CONSTRAINTS = ("none", "mean")
SAMPLINGS = ("stratified", "iid")
COLUMNS = ["generation", "alpha", "beta", "mean", "variance"]
_EPS = 1e-12  # samples are clipped into [eps, 1-eps] so ln x, ln(1-x) stay finite


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line naming the key) for any bad value, before anything runs."""
    check(cfg.get("weighting") in WEIGHTINGS, "weighting", f"one of {list(WEIGHTINGS)}", cfg.get("weighting"))
    check(cfg.get("sampling") in SAMPLINGS, "sampling", f"one of {list(SAMPLINGS)}", cfg.get("sampling"))
    check(cfg.get("constraint") in CONSTRAINTS, "constraint", f"one of {list(CONSTRAINTS)}", cfg.get("constraint"))
    check_range(cfg.get("seed"), "seed", 0, integer=True)
    check_range(cfg.get("n"), "n", 2, hi_open=True, integer=True)  # a Beta MLE needs two distinct points
    check_range(cfg.get("generations"), "generations", 1, hi_open=True, integer=True)
    for group in ("pretrain", "real"):
        check(isinstance(cfg.get(group), DictConfig), group, "a mapping {a, b}", cfg.get(group))
        for p in ("a", "b"):
            value = cfg[group].get(p)
            check_range(value, f"{group}.{p}", 0, float("inf"), lo_open=True, hi_open=True)
            check(value == value, f"{group}.{p}", "a number in (0, inf)", value)  # NaN


def _moments_start(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted method-of-moments (a, b): the Newton start."""
    m = float(np.sum(w * x))
    v = float(np.sum(w * (x - m) ** 2))
    k = m * (1 - m) / v - 1 if v > 0 else 1.0
    k = max(k, 1e-3)
    return m * k, (1 - m) * k


def fit_beta(x, w=None, mean: float | None = None) -> tuple[float, float]:
    """(a, b) maximising sum_j w_j ln Beta(x_j; a, b) (w=None: plain MLE).

    Solves the weighted score equations psi(a) - psi(a+b) = sum w ln x / sum w and
    psi(b) - psi(a+b) = sum w ln(1-x) / sum w by Newton (trigamma Jacobian) in log-parameters.
    With `mean`, a = mean*k, b = (1-mean)*k and the (concave) likelihood is maximised over k alone.
    """
    x = np.clip(np.asarray(x, dtype=float).ravel(), _EPS, 1 - _EPS)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=float).ravel()
    if x.size != w.size:
        raise ValueError(f"fit_beta: {x.size} samples but {w.size} weights")
    if x.size < 2 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("fit_beta: need >= 2 samples and finite, non-negative weights with a positive sum")
    w = w / w.sum()
    s1, s2 = float(np.sum(w * np.log(x))), float(np.sum(w * np.log1p(-x)))
    a0, b0 = _moments_start(x, w)
    if mean is not None:
        return _fit_beta_mean(s1, s2, float(mean), a0 + b0)

    def score(u):
        a, b = np.exp(u)
        dab = special.digamma(a + b)
        return [special.digamma(a) - dab - s1, special.digamma(b) - dab - s2]

    def jac(u):
        a, b = np.exp(u)
        t = special.polygamma(1, a + b)
        return [[a * (special.polygamma(1, a) - t), -b * t], [-a * t, b * (special.polygamma(1, b) - t)]]

    sol = optimize.root(score, np.log([a0, b0]), jac=jac, method="hybr", options={"xtol": 1e-12})
    a, b = np.exp(sol.x)
    resid = np.abs(score(sol.x)).max()
    if not (np.isfinite(a) and np.isfinite(b)) or resid > 1e-8 * max(1.0, abs(s1) + abs(s2)):
        raise RuntimeError(f"fit_beta: the score equations did not converge ({sol.message}, residual {resid:.2e})")
    return float(a), float(b)


def _fit_beta_mean(s1: float, s2: float, m: float, k0: float) -> tuple[float, float]:
    """Maximise (a-1)s1 + (b-1)s2 - ln B(a, b) over k with a = m k, b = (1-m) k (root of its k-derivative)."""
    if not 0 < m < 1:
        raise ValueError(f"fit_beta: mean must lie in (0, 1), got {m}")

    def dlik(t):  # d/dk of the weighted log-likelihood, at k = e^t; decreasing in k
        k = np.exp(t)
        return (m * s1 + (1 - m) * s2 - m * special.digamma(m * k)
                - (1 - m) * special.digamma((1 - m) * k) + special.digamma(k))

    lo = hi = np.log(k0)
    while dlik(lo) <= 0 and lo > -50:
        lo -= 2.0
    while dlik(hi) >= 0 and hi < 50:
        hi += 2.0
    if not (dlik(lo) > 0 > dlik(hi)):
        raise RuntimeError("fit_beta: no maximum of the mean-constrained likelihood (degenerate data)")
    k = float(np.exp(optimize.brentq(dlik, lo, hi, xtol=1e-13, rtol=1e-14)))
    return m * k, (1 - m) * k


def beta_moments(a: float, b: float) -> tuple[float, float]:
    """(mean, variance) of Beta(a, b)."""
    return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))


def run_wmle(cfg: DictConfig, progress: bool = False) -> pd.DataFrame:
    """The generation loop; one row per generation (COLUMNS). df.attrs['pretrain'] = f_pre's (a, b)."""
    validate(cfg)
    rng = np.random.default_rng(cfg.seed)
    n, wmle, pin_mean = cfg.n, cfg.weighting == "wmle", cfg.constraint == "mean"
    draw = (lambda a, b: rng.beta(a, b, size=n)) if cfg.sampling == "iid" else (
        lambda a, b: stats.beta.ppf((np.arange(n) + rng.random(n)) / n, a, b))  # one draw per 1/n quantile
    f_pre = fit_beta(draw(cfg.pretrain.a, cfg.pretrain.b))
    x = draw(cfg.real.a, cfg.real.b)  # D_real
    weigh_by = f_pre
    rows = []
    for g in tqdm(range(cfg.generations), desc=f"wmle {cfg.weighting}-{cfg.constraint}", disable=not progress):
        if g > 0:
            x = draw(*weigh_by)  # samples of f_{g-1}
        w = stats.beta.pdf(np.clip(x, _EPS, 1 - _EPS), *weigh_by) if wmle else None
        a, b = fit_beta(x, w, mean=float(x.mean()) if pin_mean else None)
        rows.append((g, a, b, *beta_moments(a, b)))
        weigh_by = (a, b)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["pretrain"] = f_pre
    return df


def expected_params(pretrain: tuple[float, float], real: tuple[float, float], generations: int) -> pd.DataFrame:
    """The recursion in expectation: gen 0 = Beta(real) tilted by f_pre, then Beta(a, b) -> Beta(2a-1, 2b-1)."""
    a, b = real[0] + pretrain[0] - 1, real[1] + pretrain[1] - 1
    rows = []
    for g in range(generations):
        rows.append((g, a, b, *beta_moments(a, b)))
        a, b = 2 * a - 1, 2 * b - 1
    return pd.DataFrame(rows, columns=COLUMNS)


def fig_pdfs(df: pd.DataFrame, real: tuple[float, float], title: str = ""):
    """Fig. 1/2 as small multiples: one panel per generation with its own density scale (the fitted pdf
    narrows ~2x a generation), the real-data pdf dashed, f_pre dotted, the fitted mean marked against 0.5;
    the last panel follows the mean across generations (bias amplification: 0.5 -> 0.6)."""
    import seaborn as sns

    from bias_amp import plots

    xs = np.linspace(0, 1, 2001)
    colours = sns.color_palette("viridis", len(df))
    ncols = 4
    nrows = int(np.ceil((len(df) + 1) / ncols))
    with plots.style():
        fig, axes = plots.new_figure(3.0 * ncols, 2.1 * nrows + 0.5, nrows, ncols)
        for ax, colour, row in zip(axes.flat, colours, df.itertuples(), strict=False):
            ax.fill_between(xs, stats.beta.pdf(xs, row.alpha, row.beta), color=colour, alpha=0.35, lw=0)
            ax.plot(xs, stats.beta.pdf(xs, row.alpha, row.beta), color=colour, lw=1.6, label="fit")
            ax.plot(xs, stats.beta.pdf(xs, *real), "k--", lw=1.0, label=f"real Beta({real[0]:g}, {real[1]:g})")
            if "pretrain" in df.attrs:
                ax.plot(xs, stats.beta.pdf(xs, *df.attrs["pretrain"]), ":", color="grey", lw=1.2, label="$f_{pre}$")
            ax.axvline(0.5, color="0.5", lw=0.8)
            ax.axvline(row.mean, color=colour, lw=1.4, ls="-.")
            ax.set_xlim(0, 1)
            ax.set_title(f"gen {row.generation}: mean {row.mean:.3f}", fontsize=9)
            ax.tick_params(labelsize=7)
        last = axes.flat[len(df)]
        last.plot(df["generation"], df["mean"], marker="o", color="tab:red", lw=1.6)
        last.axhline(0.5, color="0.5", lw=0.8)
        last.set(title="fitted mean by generation", xlabel="generation", ylim=(0.45, max(0.65, df["mean"].max() + 0.02)))
        last.set_xticks(df["generation"][::2])
        last.tick_params(labelsize=7)
        last.title.set_fontsize(9)
        for ax in list(axes.flat)[len(df) + 1:]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel("density")
        plots.legend_outside(fig, handles=axes.flat[0].lines[:3], labels=[ln.get_label() for ln in axes.flat[0].lines[:3]])
        fig.suptitle(title or "Beta fits per generation")
    return fig


def plot_pdfs(df: pd.DataFrame, real: tuple[float, float], path: Path, title: str = "") -> Path:
    """Write fig_pdfs to `path` (PNG, atomically)."""
    from bias_amp import plots

    plots.save(fig_pdfs(df, real, title), path)
    return Path(path)


def print_table(df: pd.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*COLUMNS, title=title)
    for r in df.itertuples(index=False):
        table.add_row(str(r.generation), f"{r.alpha:.4g}", f"{r.beta:.4g}", f"{r.mean:.4f}", f"{r.variance:.3e}")
    Console().print(table)


def run_app(cfg: DictConfig) -> pd.DataFrame:
    """The Hydra job: validate, run, log, write generations.csv + pdfs.png into the job's output dir."""
    from hydra.core.hydra_config import HydraConfig

    from bias_amp import tracking
    from bias_amp.io import write_csv

    validate(cfg)
    out = Path(HydraConfig.get().runtime.output_dir)
    name = f"{cfg.weighting}-{cfg.constraint}"
    acc = tracking.make_accelerator(cfg.logger, cpu=True)
    try:
        tracking.start_tracking(acc, cfg.logger, name=name, group="wmle", config=cfg, run_dir=out)
        df = run_wmle(cfg, progress=True)
        for r in df.itertuples(index=False):
            tracking.log_metrics(acc, {"alpha": r.alpha, "beta": r.beta, "mean": r.mean, "variance": r.variance},
                                 step=int(r.generation))
        write_csv(out / "generations.csv", df)
        plot_pdfs(df, (cfg.real.a, cfg.real.b), out / "pdfs.png", title=f"Beta fits per generation ({name})")
        print_table(df, f"{name}: f_pre = Beta({df.attrs['pretrain'][0]:.3f}, {df.attrs['pretrain'][1]:.3f})")
        log.info("wrote %s", out)
        return df
    finally:
        tracking.finish(acc)


@hydra.main(version_base="1.3", config_path="../conf", config_name="wmle")
def main(cfg: DictConfig) -> None:
    from bias_amp.cli import one_line_errors

    with one_line_errors():
        run_app(cfg)


if __name__ == "__main__":
    main()
