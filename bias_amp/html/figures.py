"""Interactive Plotly figures of the report page, from metrics rows carrying a `series` column.

Each series is summarised by `report.aggregate` (the report's one seed aggregation): the line is the mean
over seeds, the band the range over seeds, or the run's own 95% CI when there is one seed. Every curve's
traces share a legendgroup named after its series, so a legend click (or the page's series toggles) hides a
setup with its band. The paper's published setups (paper-*) are dashed.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from bias_amp import report
from bias_amp.layout import LEANINGS
from bias_amp.plots import COLLAPSE, LEANING_COLORS, is_paper

HEIGHT = 420


def colors(series) -> dict[str, str]:
    """A stable colour per series (order of first appearance)."""
    palette = qualitative.Plotly + qualitative.Dark24
    return {s: palette[i % len(palette)] for i, s in enumerate(dict.fromkeys(series))}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per series x generation: `report.aggregate`'s means (c_t columns included), bands and n_seeds
    (the column `setup` of the result holds the series)."""
    return report.aggregate(metrics.assign(setup=metrics["series"]))


def _curve(fig, rows, column, series, color, scale=1.0, band=True, legend=True, **pos) -> bool:
    """Line (and band) of one series into fig; False when the series has no value in `column`."""
    a = rows[rows[column].notna()] if column in rows else rows.iloc[:0]
    if a.empty:
        return False
    x, dash = a["generation"].tolist(), "dash" if is_paper(series) else "solid"
    lo, hi = (a.get(f"{column}_band_{end}", pd.Series(float("nan"), index=a.index)) for end in ("low", "high"))
    if band and lo.notna().all() and (hi > lo).any():
        fig.add_trace(go.Scatter(
            x=x + x[::-1], y=(hi * scale).tolist() + (lo * scale).tolist()[::-1], mode="lines", fill="toself",
            fillcolor=_rgba(color, 0.18), line=dict(width=0), hoverinfo="skip", showlegend=False,
            legendgroup=series, name=f"{series} band"), **pos)
    fig.add_trace(go.Scatter(
        x=x, y=(a[column] * scale).tolist(), mode="lines+markers", name=series, legendgroup=series,
        showlegend=legend, line=dict(color=color, dash=dash), customdata=a["n_seeds"].tolist(),
        hovertemplate=f"{series}<br>generation %{{x}}<br>{column}: %{{y:.4g}}<br>seeds: %{{customdata}}<extra></extra>"),
        **pos)
    return True


def line_figure(summary: pd.DataFrame, col: str, title: str, ytitle: str, scale=1.0) -> go.Figure:
    fig = go.Figure()
    cmap = colors(summary["setup"])
    for series, rows in summary.groupby("setup", sort=False):
        _curve(fig, rows, col, series, cmap[series], scale)
    fig.update_layout(title=title, yaxis_title=ytitle)
    return _finish(fig, summary)


def panels_figure(summary: pd.DataFrame, cols: list[str], titles: list[str], title: str, scale=1.0) -> go.Figure:
    """One panel per column, each series a line in every panel (legend entry once)."""
    fig = make_subplots(rows=1, cols=len(cols), subplot_titles=titles)
    cmap = colors(summary["setup"])
    for series, rows in summary.groupby("setup", sort=False):
        shown = False
        for i, col in enumerate(cols):
            shown |= _curve(fig, rows, col, series, cmap[series], scale, band=False, legend=not shown, row=1, col=i + 1)
    fig.update_layout(title=title)
    return _finish(fig, summary)


def _finish(fig: go.Figure, summary: pd.DataFrame) -> go.Figure:
    gens = sorted({int(g) for g in summary["generation"]})
    fig.update_xaxes(title_text="generation", tickvals=gens, ticktext=["base" if g < 0 else str(g) for g in gens])
    fig.update_layout(template="plotly_white", height=HEIGHT, hovermode="closest", margin=dict(t=70, r=20))
    return fig


def metric_figures(metrics: pd.DataFrame) -> dict[str, tuple[str, go.Figure]]:
    """{figure id: (section title, figure)} for every metric the rows carry."""
    s = summarize(metrics)
    figs = {
        "right_share": ("Right-leaning share (Fig. 4, 6)", line_figure(
            s, "share_right", "% right-leaning articles per generation", "% right", 100)),
        "leaning_shares": ("Leaning shares", panels_figure(
            s, [f"share_{c}" for c in LEANINGS], [f"% {c}" for c in LEANINGS], "Left / center / right shares", 100)),
        "quality": ("Quality index (Fig. 5, 7)", line_figure(
            s, "quality_mean", "Quality index (0 noise .. 3 clean): mean and band", "quality index")),
        "perplexity": ("Perplexity (Fig. 11)", line_figure(s, "perplexity_mean", "Perplexity: mean and band", "perplexity")),
    }
    for ann, c in zip(figs["leaning_shares"][1].layout.annotations, LEANINGS, strict=True):
        ann.font = dict(color=LEANING_COLORS[c])  # panel titles in the leanings' colours
    ct = [c for c in s.columns if c.startswith("c_t") and s[c].notna().any()]
    if ct:
        figs["c_t"] = ("c_t", panels_figure(s, ct, ct, "c_t per generation"))
    collapse = [c for c in COLLAPSE if c in s.columns and s[c].notna().any()]
    if collapse:
        figs["collapse"] = ("Collapse measures (instrument-free)", panels_figure(
            s, collapse, [COLLAPSE[c] for c in collapse], "Collapse measures"))
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
