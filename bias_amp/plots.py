"""Shared seaborn style and every figure of the project: leaning colours, per-setup colours and markers,
runs solid and the paper's curves dashed, the smoke banner, atomic PNG writes.

Figures are plain `matplotlib.figure.Figure` objects (no pyplot state), so they render with the Agg canvas
in scripts and display inline in notebooks. The report's figures take the seed summary of
`report.aggregate` (per setup x generation: the mean over seeds and its band, `<column>_band_low/high`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from bias_amp.io import atomic_path
from bias_amp.layout import LEANINGS

logging.getLogger("matplotlib.category").setLevel(logging.WARNING)   # not "categorical units" notes in app logs
LEANING_COLORS = dict(zip(LEANINGS, ("#3b6fb6", "#8a8a8a", "#c8423b"), strict=True))
PAPER_PREFIX = "paper-"
SMOKE_BANNER = "SMOKE instruments — not real measurements"
QUALITY_LEVELS = {0: "noise", 1: "word salad", 2: "mild gibberish", 3: "clean"}   # the quality index (§4.4)
COLLAPSE = {"distinct_1": "distinct-1", "distinct_2": "distinct-2", "repeated_4gram_share": "repeated 4-gram share",
            "compression_ratio": "compression ratio", "copied_8gram_share": "copied 8-gram share"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
DASHES = ((), (5, 2), (2, 1.5), (6, 2, 1.5, 2), (3, 3), (8, 2, 2, 2, 2, 2))
BAND_NOTE = "band: 95% CI (one seed),\nmin–max (several seeds)"


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


def line_styles(setups: Iterable[str]) -> dict[str, dict]:
    """Per setup: colour, marker and dash pattern, all distinct, and a marker size that shrinks in draw
    order, so curves that coincide (e.g. two setups at 0% right) stay visible as nested markers.
    The paper's curves beside a run are dashed with hollow markers."""
    setups = list(dict.fromkeys(setups))
    colors = setup_colors(setups)
    overlay = not all(map(is_paper, setups))
    out = {}
    for i, s in enumerate(setups):
        kw = dict(color=colors[s], marker=MARKERS[i % len(MARKERS)], ms=max(3.0, 8.5 - 0.8 * i), lw=1.8,
                  zorder=2 + 0.1 * i)
        if overlay and is_paper(s):
            kw |= dict(ls="--", mfc="white", mec=colors[s], lw=1.5)
        else:
            kw |= dict(ls="-", dashes=DASHES[i % len(DASHES)])
        out[s] = kw
    return out


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


def quality_axis(ax, label: str = "quality index") -> None:
    """The quality index runs 0 (noise) .. 3 (clean): the whole range, each level named."""
    ax.set_ylim(-0.05, 3.1)
    ax.set_yticks(list(QUALITY_LEVELS), [f"{k} {v}" for k, v in QUALITY_LEVELS.items()])
    ax.set_ylabel(label)


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def banner(fig: Figure, text: str = SMOKE_BANNER) -> Figure:
    """A plain warning across the top of the figure (smoke instruments)."""
    fig.suptitle(text, color="#b00000", fontweight="bold", fontsize=12)
    return fig


def save(fig: Figure, path, dpi: int | None = None) -> None:
    """Write a PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **({} if dpi is None else {"dpi": dpi}))


def legend_outside(ax_or_fig, **kw) -> None:
    """Legend to the right of the axes (or below a figure's panels), never over the data."""
    if isinstance(ax_or_fig, Figure):
        ax_or_fig.legend(loc="outside lower center", ncols=kw.pop("ncols", 3), fontsize=9, **kw)
    else:
        ax_or_fig.legend(fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), **kw)


# --- the report's figures: each takes the seed summary (and per-article scores) and returns a Figure ---

def _baseline_label(row) -> str:
    if is_paper(row.setup):
        return {"paper-none": "base GPT-2 (paper)",
                "paper-center-only": "paper-center-only\n(before gen. 0)"}.get(row.setup, row.setup)
    return f"base model,\n{row.decoding} decoding"


def baseline_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """Fig. 3's bars: the un-fine-tuned model under each decoding rule (setups sharing a decoding rule share
    the base model: their baseline rows are averaged into one bar); the paper's identical base GPT-2 rows
    are drawn once."""
    shares = [f"share_{k}" for k in LEANINGS]
    base = summary[summary["generation"] < 0]
    if base.empty:
        return base.assign(label=[])
    prefix = base["setup"].map(lambda s: s.split("-")[0])
    base = base.assign(decoding=base["decoding"].fillna(prefix) if "decoding" in base else prefix)
    paper = base[base["setup"].map(is_paper)].drop_duplicates([*shares, "n_articles"])
    runs = base[~base["setup"].map(is_paper)].groupby("decoding", sort=False, as_index=False).agg(
        {"setup": "first", **{c: "mean" for c in [*shares, "n_articles"]}})
    out = pd.concat([runs, paper], ignore_index=True)
    return out.assign(label=[_baseline_label(r) for r in out.itertuples()])


def fig_baseline_leaning(summary):
    """Fig. 3: leaning shares of the un-fine-tuned model's synthesis, one bar group per decoding rule."""
    base = baseline_rows(summary)
    long = base.melt(id_vars="label", value_vars=[f"share_{k}" for k in LEANINGS], var_name="leaning",
                     value_name="share")
    long["leaning"] = long["leaning"].str.removeprefix("share_")
    long["percent"] = 100 * long["share"]
    with style():
        fig, axes = new_figure(max(5.5, 1.5 * len(base) + 3), 3.6)
        ax = axes[0, 0]
        if base.empty:
            ax.text(0.5, 0.5, "no baseline rows (run with baseline=true)", transform=ax.transAxes,
                    ha="center", color="0.4")
            return fig
        sns.barplot(long, x="label", y="percent", hue="leaning", palette=LEANING_COLORS, ax=ax,
                    hue_order=list(LEANINGS))
        for bars in ax.containers:
            ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=1)
        ax.set(xlabel="", ylabel="% of synthetic articles", ylim=(0, 105),
               title="Leaning of the un-fine-tuned model's continuations")
        legend_outside(ax, title="")
    return fig


def _lines(ax, summary, column: str, *, scale: float = 1.0, band: bool = True, legend: bool = True):
    """One curve per setup (mean over seeds), its band shaded; setups are dodged a little along x so that
    coinciding curves stay visible."""
    styles = line_styles(summary["setup"])
    overlay = not all(map(is_paper, styles))
    data = summary.dropna(subset=[column]) if column in summary else summary.iloc[:0]
    setups = list(dict.fromkeys(data["setup"]))
    dodge = 0.05 if len(setups) > 1 else 0.0
    for i, setup in enumerate(setups):
        g = data[data["setup"] == setup].sort_values("generation")
        x = g["generation"] + dodge * (i - (len(setups) - 1) / 2)
        ax.plot(x, scale * g[column], label=setup, **styles[setup])
        lo, hi = f"{column}_band_low", f"{column}_band_high"
        if band and lo in g and g[lo].notna().any():
            ax.fill_between(x, scale * g[lo], scale * g[hi], color=styles[setup]["color"], lw=0,
                            alpha=0.10 if overlay and is_paper(setup) else 0.18)
    generation_axis(ax, data["generation"])
    if not ax.lines:
        ax.text(0.5, 0.5, f"no {column} values", transform=ax.transAxes, ha="center", color="0.4")
    elif legend:
        legend_outside(ax, title=BAND_NOTE if band else None)


def fig_right_share(summary):
    """Fig. 4 / 6: % of synthetic articles classified right-leaning, per generation and setup."""
    with style():
        fig, axes = new_figure(8, 4)
        ax = axes[0, 0]
        _lines(ax, summary, "share_right", scale=100)
        ax.set(ylabel="% right-leaning (mean over seeds)", title="Right-leaning share across generations")
        ax.set_ylim(-2, max(ax.get_ylim()[1], 50))
    return fig


def fig_leaning_shares(summary):
    """All three leaning shares per generation, one panel per setup; the legend below the panels."""
    setups = list(dict.fromkeys(summary["setup"]))
    overlay = not all(map(is_paper, setups))
    ncols = max(1, min(3, len(setups)))
    nrows = max(1, int(np.ceil(len(setups) / ncols)))
    with style():
        fig, axes = new_figure(3.7 * ncols, 2.7 * nrows + 0.6, nrows, ncols, sharex=True, sharey=True)
        for ax, setup in zip(axes.flat, setups, strict=False):
            g = summary[summary["setup"] == setup].sort_values("generation")
            for k, color in LEANING_COLORS.items():
                ax.plot(g["generation"], 100 * g[f"share_{k}"], color=color, marker="o", ms=3.5, label=k,
                        ls="--" if overlay and is_paper(setup) else "-")
                if f"share_{k}_band_low" in g:
                    ax.fill_between(g["generation"], 100 * g[f"share_{k}_band_low"],
                                    100 * g[f"share_{k}_band_high"], color=color, alpha=0.15, lw=0)
            ax.set(title=setup, ylim=(0, 100))
        for ax in list(axes.flat)[len(setups):]:
            ax.set_visible(False)
        for ax in axes.flat:
            generation_axis(ax, summary["generation"])
            ax.tick_params(axis="x", labelsize=8)
        for i, ax in enumerate(axes.flat):   # generation labels only on the lowest panel of each column
            bottom = i + ncols >= len(setups)
            ax.xaxis.set_tick_params(labelbottom=bottom)
            ax.set_xlabel("generation" if bottom else "")
        for ax in axes[:, 0]:
            ax.set_ylabel("% of articles")
        if setups:
            legend_outside(fig, handles=axes.flat[0].lines[:3], labels=list(LEANINGS))
    return fig


def fig_quality(summary):
    """Fig. 5 / 7: mean quality index with its band, on the index's whole range 0 (noise) .. 3 (clean)."""
    with style():
        fig, axes = new_figure(8, 4)
        _lines(axes[0, 0], summary, "quality_mean")
        quality_axis(axes[0, 0], "quality index (mean over seeds)")
        axes[0, 0].set_title("Generation quality across generations")
    return fig


def fig_perplexity(summary):
    """Fig. 11: mean perplexity with its band."""
    with style():
        fig, axes = new_figure(8, 4)
        _lines(axes[0, 0], summary, "perplexity_mean")
        axes[0, 0].set(ylabel="perplexity (mean over seeds)", title="Perplexity of the synthetic articles")
    return fig


def has_collapse(summary) -> bool:
    return any(c in summary and summary[c].notna().any() for c in COLLAPSE)


def fig_collapse(summary):
    """The instrument-free collapse measures (no classifier involved), one panel each of those measured."""
    cols = [c for c in COLLAPSE if c in summary and summary[c].notna().any()]
    with style():
        fig, axes = new_figure(11, 3.25 * ((len(cols) + 1) // 2), (len(cols) + 1) // 2, 2, sharex=True)
        for i, (ax, col) in enumerate(zip(axes.flat, cols, strict=False)):
            _lines(ax, summary, col, legend=False)
            ax.set(ylabel=COLLAPSE[col], title=COLLAPSE[col])
            if col != "compression_ratio":                  # a share: its whole range, 0 to 1
                ax.set_ylim(-0.02, 1.02)
            if i == min(1, len(cols) - 1):
                legend_outside(ax, title=BAND_NOTE)
        for j in range(len(cols), axes.size):              # an odd count: the panel above the gap shows its ticks
            axes.flat[j].set_visible(False)
            axes.flat[j - 2].tick_params(labelbottom=True)
        fig.suptitle("Collapse measures of the synthetic articles (instrument-free, no classifier involved)")
    return fig


def fig_quality_distribution(scores):
    """Fig. 8-10: per-article quality index by generation (seeds pooled), one violin panel per setup; each
    panel shows the versions it has (the paper published no baseline quality)."""
    scores = scores.dropna(subset=["quality"])
    setups = list(dict.fromkeys(scores["setup"]))
    colors = setup_colors(setups)
    n_versions = scores.groupby("setup")["generation"].nunique().max() if setups else 1
    ncols = 2 if len(setups) > 3 else 1
    nrows = max(1, int(np.ceil(len(setups) / ncols)))
    with style():
        fig, axes = new_figure(max(6, 0.5 * n_versions + 2) * ncols, 2.4 * nrows + 0.4, nrows, ncols, sharey=True)
        for ax, setup in zip(axes.flat, setups, strict=False):
            g = scores[scores["setup"] == setup]
            order = sorted(g["generation"].unique())
            light = tuple(0.45 * np.asarray(mpl.colors.to_rgb(colors[setup])) + 0.55)  # tint towards white
            sns.violinplot(g, x="generation", y="quality", order=order, color=light, cut=0, inner="quartile",
                           linewidth=0.9, linecolor=colors[setup], density_norm="width", ax=ax)
            ax.set_xticks(range(len(order)), ["base" if x < 0 else str(x) for x in order])
            ax.set(title=setup, xlabel="generation")
            quality_axis(ax)
        for ax in list(axes.flat)[len(setups):]:
            ax.set_visible(False)
        if not setups:
            axes[0, 0].set_title("no per-article quality scores")
    return fig


def fig_confusion(matrices: dict, classes) -> Figure:
    """A trained classifier's test confusion matrix [true, predicted] per backbone (title -> counts)."""
    with style():
        fig, axes = new_figure(4.2 * len(matrices), 3.8, 1, len(matrices))
        for ax, (title, cm) in zip(axes[0], matrices.items(), strict=True):
            sns.heatmap(np.asarray(cm), annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax,
                        xticklabels=classes, yticklabels=classes)
            ax.set(title=title, xlabel="predicted", ylabel="true")
    return fig


def fig_outlet_swap(deltas: dict) -> Figure:
    """Change in p(right) when held-out articles' own outlet names are swapped for an outlet of the other
    side ({true leaning: deltas}); a classifier without outlet shortcuts stays near 0."""
    with style():
        fig, axes = new_figure(5.5, 3.4)
        ax = axes[0, 0]
        for label, d in deltas.items():
            if len(d):
                ax.hist(d, bins=np.linspace(-1, 1, 41), alpha=0.6, color=LEANING_COLORS[label],
                        label=f"{label} articles (n={len(d)}, mean |Δ|={np.mean(np.abs(d)):.3f})")
        ax.axvline(0, color="k", lw=0.8)
        ax.set(xlabel="Δ p(right) after the outlet swap", ylabel="articles", title="outlet-name swap")
        ax.legend(fontsize=8)
    return fig


def has_c_t(summary) -> bool:
    return "c_t_mean" in summary and summary["c_t_mean"].notna().any()


def fig_c_t(summary):
    """The bias projection coefficient (#15): each generation's mean c_t (top; < 0 = its fine-tuning steps
    raise the preference for right text) above the change in right share that generation produces (bottom,
    vs the version it continued from), per setup; with the probe set's log-likelihood gap measured, a third
    panel draws it after each generation (the classifier-free leaning of the model)."""
    measured = summary.groupby("setup")["c_t_mean"].transform(lambda c: c.notna().any())
    s = summary[measured].sort_values(["setup", "generation"])          # setups without c_t (the paper's) stay out
    prev = s.groupby("setup")["share_right"].shift(1).where(s.groupby("setup")["generation"].diff() == 1)
    s = s.assign(delta_right=100 * (s["share_right"] - prev))
    gap = "c_t_logp_gap_end" in s and s["c_t_logp_gap_end"].notna().any()
    with style():
        fig, axes = new_figure(8, 9 if gap else 6, 3 if gap else 2, 1, sharex=True)
        _lines(axes[0, 0], s, "c_t_mean", band=False)
        axes[0, 0].axhline(0, color="k", lw=0.6)
        axes[0, 0].set(ylabel="mean c_t = b̂ᵀ∇L", title="Bias projection c_t and the change in right share")
        _lines(axes[1, 0], s, "delta_right", band=False, legend=False)
        axes[1, 0].axhline(0, color="k", lw=0.6)
        axes[1, 0].set(ylabel="Δ % right-leaning")
        if gap:
            _lines(axes[2, 0], s, "c_t_logp_gap_end", band=False, legend=False)
            axes[2, 0].set(ylabel="log p(right) − log p(left)\nper token, probe set",
                           title="the model's own leaning after each generation (> 0: prefers right texts)")
    return fig
