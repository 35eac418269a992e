"""Shared seaborn style: leaning colours, per-setup colours, runs solid and the paper's curves dashed.

Figures are plain `matplotlib.figure.Figure` objects (no pyplot state), so they render with the Agg canvas
in scripts and display inline in notebooks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from bias_amp.io import atomic_path

LEANING_COLORS = {"left": "#3b6fb6", "center": "#8a8a8a", "right": "#c8423b"}
PAPER_PREFIX = "paper-"


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Seaborn whitegrid theme for the figures made inside, without touching global rcParams."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.95),
          "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
          "figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight"}
    with mpl.rc_context(rc):
        yield


def is_paper(setup: str) -> bool:
    return setup.startswith(PAPER_PREFIX)


def setup_colors(setups: Iterable[str]) -> dict[str, tuple]:
    """A stable colour per setup: runs from 'colorblind', the paper's setups from 'dark'."""
    setups = list(dict.fromkeys(setups))
    runs = [s for s in setups if not is_paper(s)]
    paper = [s for s in setups if is_paper(s)]
    colors = dict(zip(runs, sns.color_palette("colorblind", max(len(runs), 1)), strict=False))
    colors |= dict(zip(paper, sns.color_palette("dark", max(len(paper), 1)), strict=False))
    return colors


def line_kwargs(setup: str, color, overlay: bool = True) -> dict:
    """Runs: solid with filled markers; the paper's curves beside a run (overlay): dashed, hollow markers."""
    if overlay and is_paper(setup):
        return dict(color=color, ls="--", marker="o", ms=4, mfc="white", mec=color, lw=1.6)
    return dict(color=color, ls="-", marker="o", ms=4.5, lw=2.0)


def generation_axis(ax, generations: Iterable[int]) -> None:
    """Integer generation ticks; the baseline (generation -1) is labelled 'base'."""
    gens = sorted({int(g) for g in generations})
    if not gens:
        return
    step = max(1, int(np.ceil(len(gens) / 12)))
    ticks = gens[::step]
    ax.set_xticks(ticks, ["base" if g < 0 else str(g) for g in ticks])
    ax.set_xlabel("generation")
    if gens[0] < 0:
        ax.axvspan(gens[0] - 0.4, gens[0] + 0.4, color="0.93", zorder=0, lw=0)


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig: Figure, path) -> None:
    """Write a PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# --- the report's figures: each takes metrics.csv rows (and per-article scores) and returns a Figure ---

def fig_baseline_leaning(metrics):
    """Fig. 3: leaning shares of the un-fine-tuned model's synthesis, one bar group per setup.
    Identical baselines (the paper's setups share base GPT-2) are drawn once."""
    base = metrics[metrics["generation"] < 0].drop_duplicates(["share_left", "share_center", "share_right",
                                                               "n_articles"])
    long = base.melt(id_vars="setup", value_vars=[f"share_{k}" for k in LEANING_COLORS],
                     var_name="leaning", value_name="share")
    long["leaning"] = long["leaning"].str.removeprefix("share_")
    long["percent"] = 100 * long["share"]
    long["setup"] = long["setup"].replace({"paper-none": "base GPT-2 (paper)",
                                           "paper-center-only": "paper-center-only\n(before gen. 0)"})
    with style():
        fig, axes = new_figure(max(4.5, 1.3 * len(base) + 2), 3.6)
        ax = axes[0, 0]
        if base.empty:
            ax.text(0.5, 0.5, "no baseline rows (run with baseline=true)", transform=ax.transAxes,
                    ha="center", color="0.4")
            return fig
        sns.barplot(long, x="setup", y="percent", hue="leaning", palette=LEANING_COLORS, ax=ax,
                    hue_order=list(LEANING_COLORS))
        for bars in ax.containers:
            ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=1)
        ax.set(xlabel="", ylabel="% of synthetic articles", ylim=(0, 105),
               title="Leaning of the un-fine-tuned model's continuations")
        ax.legend(title="", ncols=3, loc="upper right")
        ax.tick_params(axis="x", labelrotation=15 if len(base) > 3 else 0)
    return fig


def _lines(ax, metrics, column: str, *, scale: float = 1.0, ci: tuple[str, str] | None = None):
    colors = setup_colors(metrics["setup"])
    overlay = not all(map(is_paper, metrics["setup"]))
    for setup, g in metrics.groupby("setup", sort=False):
        g = g.sort_values("generation").dropna(subset=[column])
        if g.empty:
            continue
        ax.plot(g["generation"], scale * g[column], label=setup, **line_kwargs(setup, colors[setup], overlay))
        if ci is not None:
            ax.fill_between(g["generation"], scale * g[ci[0]], scale * g[ci[1]], color=colors[setup],
                            alpha=0.12 if overlay and is_paper(setup) else 0.22, lw=0)
    generation_axis(ax, metrics.dropna(subset=[column])["generation"])
    if ax.lines:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, f"no {column} values", transform=ax.transAxes, ha="center", color="0.4")


def fig_right_share(metrics):
    """Fig. 4 / 6: % of synthetic articles classified right-leaning, per generation and setup."""
    with style():
        fig, axes = new_figure(8, 4)
        ax = axes[0, 0]
        _lines(ax, metrics, "share_right", scale=100)
        ax.set(ylabel="% right-leaning", title="Right-leaning share across generations")
        ax.set_ylim(0, max(ax.get_ylim()[1], 50))
    return fig


def fig_leaning_shares(metrics):
    """All three leaning shares per generation, one panel per setup."""
    setups = list(dict.fromkeys(metrics["setup"]))
    overlay = not all(map(is_paper, setups))
    ncols = min(3, len(setups))
    nrows = int(np.ceil(len(setups) / ncols))
    with style():
        fig, axes = new_figure(3.7 * ncols, 2.7 * nrows + 0.3, nrows, ncols, sharex=True, sharey=True)
        for ax, setup in zip(axes.flat, setups, strict=False):
            g = metrics[metrics["setup"] == setup].sort_values("generation")
            for k, color in LEANING_COLORS.items():
                ax.plot(g["generation"], 100 * g[f"share_{k}"], color=color, marker="o", ms=3.5, label=k,
                        ls="--" if overlay and is_paper(setup) else "-")
            ax.set(title=setup, ylim=(0, 100))
        for ax in list(axes.flat)[len(setups):]:
            ax.set_visible(False)
        for ax in axes.flat:
            generation_axis(ax, metrics["generation"])
            ax.tick_params(axis="x", labelsize=8)
        for ax in axes[:, 0]:
            ax.set_ylabel("% of articles")
        axes.flat[0].legend(fontsize=8, ncols=3, loc="upper center")
    return fig


def _mean_ci_figure(metrics, metric: str, ylabel: str, title: str):
    with style():
        fig, axes = new_figure(8, 4)
        _lines(axes[0, 0], metrics, f"{metric}_mean", ci=(f"{metric}_ci_low", f"{metric}_ci_high"))
        axes[0, 0].set(ylabel=ylabel, title=title)
    return fig


def fig_quality(metrics):
    """Fig. 5 / 7: mean quality index with its 95% CI band."""
    return _mean_ci_figure(metrics, "quality", "quality index (mean, 95% CI)", "Generation quality across generations")


def fig_perplexity(metrics):
    """Fig. 11: mean perplexity with its 95% CI band."""
    return _mean_ci_figure(metrics, "perplexity", "perplexity (mean, 95% CI)", "Perplexity of the synthetic articles")


def fig_quality_distribution(scores):
    """Fig. 8-10: per-article quality index by generation, one violin panel per setup (shared axes)."""
    scores = scores.dropna(subset=["quality"])
    setups = list(dict.fromkeys(scores["setup"]))
    colors = setup_colors(setups)
    order = sorted(scores["generation"].unique())
    ncols = 2 if len(setups) > 3 else 1
    nrows = max(1, int(np.ceil(len(setups) / ncols)))
    with style():
        fig, axes = new_figure(max(6, 0.5 * len(order) + 2) * ncols, 2.3 * nrows + 0.4, nrows, ncols,
                               sharex=True, sharey=True)
        for ax, setup in zip(axes.flat, setups, strict=False):
            g = scores[scores["setup"] == setup]
            light = tuple(0.45 * np.asarray(mpl.colors.to_rgb(colors[setup])) + 0.55)  # tint towards white
            sns.violinplot(g, x="generation", y="quality", order=order, color=light, cut=0, inner="quartile",
                           linewidth=0.9, linecolor=colors[setup], density_norm="width", ax=ax)
            ax.set(title=setup, ylabel="quality index", xlabel="")
        for ax in list(axes.flat)[len(setups):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xticks(range(len(order)), ["base" if x < 0 else str(x) for x in order])
            ax.set_xlabel("generation")
        if not setups:
            axes[0, 0].set_title("no per-article quality scores")
    return fig
