"""Interactive Plotly figures of the report page, from metrics rows carrying a `series` column.

Every curve's traces share a legendgroup named after its series, so a legend click (or the page's series
toggles) hides a setup together with its band. Several seeds of a series: the line is the mean over seeds
and the band their range (min..max); one seed: the band is the run's own 95% CI where metrics.csv has it.
The paper's published setups (paper-*) are dashed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from bias_amp.layout import LEANINGS
from bias_amp.plots import LEANING_COLORS, is_paper

COLLAPSE = ["distinct_1", "distinct_2", "repeated_4gram_share", "compression_ratio"]
HEIGHT = 420


def colors(series) -> dict[str, str]:
    """A stable colour per series (order of first appearance)."""
    palette = qualitative.Plotly + qualitative.Dark24
    return {s: palette[i % len(palette)] for i, s in enumerate(dict.fromkeys(series))}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def aggregate(df: pd.DataFrame, col: str, ci: tuple[str, str] | None = None) -> pd.DataFrame:
    """Per generation of one series: mean over seeds, band (seed range, or the CI columns of a single
    seed), number of seeds. Rows where `col` is missing are left out."""
    d = df[df[col].notna()]
    g = d.groupby("generation")[col]
    out = pd.DataFrame({"y": g.mean(), "lo": g.min(), "hi": g.max(), "seeds": g.size()})
    if d["seed"].nunique() <= 1:
        has_ci = ci is not None and all(c in d.columns for c in ci) and d[list(ci)].notna().all().all()
        rows = d.set_index("generation")
        out["lo"], out["hi"] = (rows[ci[0]], rows[ci[1]]) if has_ci else (np.nan, np.nan)
    return out.reset_index()


def _axis(fig: go.Figure, gens, **kw) -> None:
    gens = sorted({int(g) for g in gens})
    fig.update_xaxes(title_text="generation", tickvals=gens, ticktext=["base" if g < 0 else str(g) for g in gens], **kw)


def _curve(fig, df, column, series, color, scale=1.0, ci=None, band=True, legend=True, **pos) -> bool:
    """Line (and band) of one series into fig; False when the series has no value in `col`."""
    a = aggregate(df, column, ci)
    if a.empty:
        return False
    x, dash = a["generation"].tolist(), "dash" if is_paper(series) else "solid"
    if band and a["lo"].notna().all() and (a["hi"] > a["lo"]).any():
        fig.add_trace(go.Scatter(
            x=x + x[::-1], y=(a["hi"] * scale).tolist() + (a["lo"] * scale).tolist()[::-1], mode="lines", fill="toself",
            fillcolor=_rgba(color, 0.18), line=dict(width=0), hoverinfo="skip", showlegend=False,
            legendgroup=series, name=f"{series} band"), **pos)
    fig.add_trace(go.Scatter(
        x=x, y=(a["y"] * scale).tolist(), mode="lines+markers", name=series, legendgroup=series,
        showlegend=legend, line=dict(color=color, dash=dash), customdata=a["seeds"].tolist(),
        hovertemplate=f"{series}<br>generation %{{x}}<br>{column}: %{{y:.4g}}<br>seeds: %{{customdata}}<extra></extra>"),
        **pos)
    return True


def line_figure(metrics: pd.DataFrame, col: str, title: str, ytitle: str, scale=1.0, ci=None) -> go.Figure:
    fig = go.Figure()
    cmap = colors(metrics["series"])
    for series, df in metrics.groupby("series", sort=False):
        _curve(fig, df, col, series, cmap[series], scale, ci)
    fig.update_layout(title=title, yaxis_title=ytitle)
    return _finish(fig, metrics)


def panels_figure(metrics: pd.DataFrame, cols: list[str], titles: list[str], title: str, scale=1.0) -> go.Figure:
    """One panel per column, each series a line in every panel (legend entry once)."""
    fig = make_subplots(rows=1, cols=len(cols), subplot_titles=titles, shared_yaxes=True)
    cmap = colors(metrics["series"])
    for series, df in metrics.groupby("series", sort=False):
        shown = False
        for i, col in enumerate(cols):
            shown |= _curve(fig, df, col, series, cmap[series], scale, band=False, legend=not shown, row=1, col=i + 1)
    fig.update_layout(title=title)
    return _finish(fig, metrics)


def _finish(fig: go.Figure, metrics: pd.DataFrame) -> go.Figure:
    _axis(fig, metrics["generation"])
    fig.update_layout(template="plotly_white", height=HEIGHT, hovermode="closest", margin=dict(t=70, r=20))
    return fig


def metric_figures(metrics: pd.DataFrame) -> dict[str, tuple[str, go.Figure]]:
    """{figure id: (section title, figure)} for every metric the rows carry."""
    m = metrics
    figs = {
        "right_share": ("Right-leaning share (Fig. 4, 6)", line_figure(
            m, "share_right", "% right-leaning articles per generation", "% right", 100,
            ("share_right_ci_low", "share_right_ci_high"))),
        "leaning_shares": ("Leaning shares", panels_figure(
            m, [f"share_{c}" for c in LEANINGS], [f"% {c}" for c in LEANINGS], "Left / center / right shares", 100)),
        "quality": ("Quality index (Fig. 5, 7)", line_figure(
            m, "quality_mean", "Quality index (0 noise ... 3 clean), mean and 95% CI", "quality index", 1,
            ("quality_ci_low", "quality_ci_high"))),
        "perplexity": ("Perplexity (Fig. 11)", line_figure(
            m, "perplexity_mean", "Perplexity, mean and 95% CI", "perplexity", 1,
            ("perplexity_ci_low", "perplexity_ci_high"))),
    }
    ct = [c for c in m.columns if c.startswith("c_t") and m[c].notna().any()]
    if ct:
        figs["c_t"] = ("c_t", panels_figure(m, ct, ct, "c_t per generation"))
    collapse = [c for c in COLLAPSE if c in m.columns and m[c].notna().any()]
    if collapse:
        figs["collapse"] = ("Collapse measures (instrument-free)", panels_figure(
            m, collapse, [c.replace("_", " ") for c in collapse], "Collapse measures"))
    for ann, c in zip(figs["leaning_shares"][1].layout.annotations, LEANINGS, strict=True):
        ann.font = dict(color=LEANING_COLORS[c])  # panel titles in the leanings' colours
    return figs


# --- neuron analysis (SWEEP/analysis, §5.4) ---

def overlap_figure(overlap: pd.DataFrame, study: str) -> go.Figure:
    """Significant-set sizes (diagonal) and pairwise overlaps, as analyze's overlap.csv."""
    rels = overlap["relationship"].tolist()
    z = overlap[rels].to_numpy()
    fig = go.Figure(go.Heatmap(z=z, x=rels, y=rels, text=z, texttemplate="%{text}", colorscale="Blues",
                               hovertemplate="%{y} & %{x}: %{z} neurons<extra></extra>"))
    fig.update_layout(title=f"{study}: significant neurons (diagonal: set size; off-diagonal: overlap)",
                      template="plotly_white", height=HEIGHT, yaxis_autorange="reversed")
    return fig


def r_by_layer_figure(neurons: pd.DataFrame, study: str) -> go.Figure:
    """Per relationship, the distribution of r over each layer's neurons (quartiles and range, precomputed
    so the page holds a few numbers per layer, not every neuron)."""
    fig = go.Figure()
    for rel, d in neurons.groupby("relationship", sort=False):
        q = d.groupby("layer")["r"].quantile([0.0, 0.25, 0.5, 0.75, 1.0]).unstack()
        n_sig = d.groupby("layer")["significant"].sum().reindex(q.index).astype(int)
        fig.add_trace(go.Box(
            x=q.index.tolist(), lowerfence=q[0.0].tolist(), q1=q[0.25].tolist(), median=q[0.5].tolist(),
            q3=q[0.75].tolist(), upperfence=q[1.0].tolist(), name=rel, legendgroup=rel,
            text=[f"{n} significant" for n in n_sig], hoverinfo="y+name+text"))
    fig.update_layout(title=f"{study}: Pearson r by layer (box: quartiles, whiskers: min..max)", boxmode="group",
                      xaxis_title="block (0-based)", yaxis_title="r", template="plotly_white", height=HEIGHT)
    return fig
