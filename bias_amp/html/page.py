"""Assemble report/index.html: one self-contained page (plotly.js, styles, data and a few lines of vanilla
JS inline; nothing fetched, opens from file://) for one or several sweeps and the paper's curves.

plotly.min.js (4.9 MB) is embedded gzip-compressed (base64, ~2 MB) and inflated by the browser's own
DecompressionStream; each figure is a div followed by its JSON, drawn once plotly.js is loaded. This keeps
a six-setup study with its trajectories near 3 MB instead of ~6 MB."""

from __future__ import annotations

import base64
import functools
import gzip
import json
from html import escape
from pathlib import Path

import pandas as pd
from plotly.offline import get_plotlyjs

from bias_amp import plots, report
from bias_amp.errors import check, check_range
from bias_amp.html import figures, studies
from bias_amp.html.studies import Study
from bias_amp.io import write_text
from bias_amp.layout import LEANINGS

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
LOAD_ERROR = ('<div class="banner" id="load-error" hidden>The figures need a browser that can inflate the embedded '
              "plotly.js (DecompressionStream: Chrome 80+, Firefox 113+, Safari 16.4+).</div>")
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;color:#222}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
.banner{background:#fff4d6;border:1px solid #e0b04a;padding:8px 12px;margin:12px 0;border-radius:4px}
table.sortable{border-collapse:collapse;font-size:12px;display:block;overflow:auto;max-height:520px}
table.sortable th{position:sticky;top:0;background:#f4f4f4;cursor:pointer;white-space:nowrap;padding:4px 6px}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
table.sortable td{padding:2px 6px;border-top:1px solid #eee;text-align:right;white-space:nowrap}
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:400px;white-space:pre-wrap;overflow-wrap:anywhere}
.version{border-left:3px solid #ccc;padding-left:8px;margin:8px 0}
.toggles label{margin-right:12px;white-space:nowrap}
"""
# plotly.js inflated and run, then every figure drawn (body[data-plotted] = number drawn, for tests); table
# sort, article picker and series toggles (all figures at once).
SCRIPT = """
(async () => {
  const bytes = Uint8Array.from(atob(document.getElementById('plotly-js-gz').textContent), c => c.charCodeAt(0));
  const js = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).text();
  const lib = document.createElement('script');
  lib.textContent = js;
  document.head.append(lib);
  const divs = [...document.querySelectorAll('.figure')];
  await Promise.all(divs.map(div => {
    const spec = JSON.parse(div.nextElementSibling.textContent);
    return Plotly.newPlot(div, spec.data, spec.layout, CONFIG);
  }));
  document.body.dataset.plotted = divs.length;
})().catch(err => {
  document.getElementById('load-error').hidden = false;
  console.error(err);
});
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], asc = th.getAttribute('aria-sort') !== 'ascending';
  th.parentNode.querySelectorAll('th').forEach(h => h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
  const key = tr => tr.cells[i].dataset.v, num = v => v !== '' && !isNaN(v);
  const rows = [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === '' || y === '') return (x === '') - (y === '');  // missing values last
    const c = num(x) && num(y) ? x - y : x.localeCompare(y);
    return asc ? c : -c;
  });
  body.append(...rows);
}));
const picker = document.getElementById('article-picker');
if (picker) picker.addEventListener('change', () => document.querySelectorAll('.trajectory')
  .forEach(s => { s.hidden = s.dataset.article !== picker.value; }));
document.querySelectorAll('.toggles input').forEach(box => box.addEventListener('change', () =>
  document.querySelectorAll('.js-plotly-plot').forEach(div => {
    const idx = div.data.map((t, i) => t.legendgroup === box.value ? i : -1).filter(i => i >= 0);
    if (idx.length) Plotly.restyle(div, {visible: box.checked ? true : 'legendonly'}, idx);
  })));
"""


@functools.cache
def plotly_gz() -> str:
    """plotly.min.js of the installed plotly, gzip-compressed and base64-encoded."""
    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), mtime=0)).decode()


def _figure(fig, div_id: str) -> str:
    spec = fig.to_json().replace("</", "<\\/")  # JSON-safe inside <script>
    return (f'<div class="figure" id="{escape(div_id)}" style="height:{fig.layout.height or 420}px"></div>'
            f'<script type="application/json">{spec}</script>')


def _cell(v) -> str:
    if isinstance(v, float | int) and not isinstance(v, bool):
        if pd.isna(v):
            return '<td data-v=""></td>'
        return f'<td data-v="{v!r}">{v:.4g}</td>' if isinstance(v, float) else f'<td data-v="{v}">{v}</td>'
    text = "" if v is None or (isinstance(v, float) and pd.isna(v)) else escape(str(v))
    return f'<td data-v="{text}">{text}</td>'


def metrics_table(metrics: pd.DataFrame) -> str:
    """Every row, every column (raw values in data-v for sorting, shown with 4 significant digits)."""
    cols = list(metrics.columns)
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>\n"
                   for r in metrics[cols].astype(object).itertuples(index=False))
    return f'<table class="sortable" id="metrics-table"><thead><tr>{head}</tr></thead><tbody>\n{rows}</tbody></table>'


def _scores(v: dict) -> str:
    parts = []
    if all(f"p_{c}" in v and pd.notna(v[f"p_{c}"]) for c in LEANINGS):
        parts.append(f"{v.get('leaning', '?')} (" + " / ".join(f"{c[0].upper()} {v[f'p_{c}']:.3f}" for c in LEANINGS) + ")")
    for k in ("quality", "perplexity"):
        if pd.notna(v.get(k, float("nan"))):
            parts.append(f"{k} {v[k]:.3g}")
    return " — ".join(parts)


def trajectories(study: Study, n: int, seed: int, ids: list[str] | None = None) -> list[tuple[str, str]]:
    """[(picker key, html)]: per article (`ids`, else `n` chosen by `report.choose_articles`), the real
    article and every version of each setup's first run."""
    m = study.metrics
    if ids is None:
        ids = report.choose_articles(report.load_scores(None, m), n, seed)
    first = m.drop_duplicates("setup")[["setup", "run_dir"]].itertuples(index=False)
    found = {(setup, Path(run)): studies.trajectories(m, Path(run), ids) for setup, run in first}
    out = []
    for aid in ids:
        body = []
        for (setup, run), by_id in found.items():
            t = by_id[aid]
            body.append(f"<h4>{escape(setup)} ({escape(run.name)})</h4>")
            if t["real"] is not None:
                r = t["real"]
                body.append(f'<div class="version"><b>original</b> ({escape(str(r.get("label", "?")))}) '
                            f'<i>{escape(str(r.get("title", "")))}</i><pre>{escape(str(r.get("body", "")))}</pre></div>')
            for v in t["versions"]:
                text = "(not synthesised)" if v["text"] is None else v["text"]
                body.append(f'<div class="version"><b>{escape(v["version"])}</b> {escape(_scores(v))}'
                            f"<pre>{escape(text)}</pre></div>")
        out.append((f"{study.name} · {aid}", "\n".join(body)))
    return out


def _trajectory_section(items: list[tuple[str, str]]) -> str:
    if not items:
        return "<p>No synthesised articles.</p>"
    options = "".join(f'<option value="{escape(k)}">{escape(k)}</option>' for k, _ in items)
    sections = "".join(f'<section class="trajectory" data-article="{escape(k)}"{" hidden" if i else ""}>{h}</section>'
                       for i, (k, h) in enumerate(items))
    return f'<label>article <select id="article-picker">{options}</select></label>{sections}'


def _details(summary: str, text: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary><pre>{escape(text)}</pre></details>"


def _analysis(study: Study) -> str:
    overlap = pd.read_csv(study.analysis / "overlap.csv")
    parts = [_figure(figures.overlap_figure(overlap, study.name), f"overlap-{study.name}")]
    neurons = study.analysis / "neurons.csv"
    if neurons.is_file():
        df = pd.read_csv(neurons, usecols=["relationship", "layer", "r", "significant"])
        parts.append(_figure(figures.r_by_layer_figure(df, study.name), f"r-by-layer-{study.name}"))
    return "\n".join(parts)


def render(shown: list[Study], n_articles: int = 3, seed: int = 0, articles: list[str] | None = None) -> str:
    """The page's HTML for the studies (sweeps first, the paper's curves last)."""
    metrics = studies.combine(shown)
    sweeps = [s for s in shown if s.runs]
    body = [f"<h1>bias-amp report: {escape(', '.join(s.name for s in shown))}</h1>"]
    smoke = studies.smoke_series(metrics)
    if smoke:
        body.append(f'<div class="banner" id="smoke-banner"><b>{escape(plots.SMOKE_BANNER)}</b>. instrument: smoke '
                    f'model trained on the fly ({escape(", ".join(smoke))}): their leaning shares and quality indices '
                    "test the pipeline, they measure nothing; the collapse measures are instrument-free.</div>")
    boxes = "".join(f'<label><input type="checkbox" value="{escape(s)}" checked> {escape(s)}</label>'
                    for s in dict.fromkeys(metrics["series"]))
    body.append(f'<div class="toggles" id="series-toggles"><b>series:</b> {boxes}</div>')
    for fid, (title, fig) in figures.metric_figures(metrics).items():
        body += [f"<h2>{escape(title)}</h2>", _figure(fig, fid)]
    analysed = [s for s in sweeps if s.analysis is not None]
    if analysed:
        body += ["<h2>Neuron analysis (§5.4)</h2>", *(_analysis(s) for s in analysed)]
    body += ["<h2>Metrics</h2><p>Click a column to sort.</p>", metrics_table(metrics.drop(columns=["series", "run_dir"], errors="ignore"))]
    cards = {p: t for s in sweeps for p, t in studies.instrument_cards(s.runs).items()}
    if cards:
        body += ["<h2>Instrument cards</h2>", *(_details(p, t, open_=True) for p, t in cards.items())]
    body += ["<h2>Article trajectories (App. C, F)</h2>",
             _trajectory_section([t for s in sweeps for t in trajectories(s, n_articles, seed, articles)])]
    body.append("<h2>Resolved configs</h2>")
    body += [_details(f"{s.name} · {r.parent.name} · {r.name}", (r / "config.yaml").read_text(encoding="utf-8"))
             for s in sweeps for r in s.runs if (r / "config.yaml").is_file()]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>bias-amp report</title>"
            f"<style>{STYLE}</style></head><body>\n" + LOAD_ERROR + "\n".join(body)
            + f'\n<script type="application/octet-stream" id="plotly-js-gz">{plotly_gz()}</script>'
            + f"\n<script>const CONFIG = {json.dumps(PLOT_CONFIG)};{SCRIPT}</script></body></html>\n")


def build(sweeps, out, paper=None, n_articles: int = 3, seed: int = 0, articles: list[str] | None = None) -> Path:
    """Write OUT/index.html for the sweeps (a path or a list) and, with `paper`, the published curves;
    trajectories of `articles` (ids) or of `n_articles` chosen with `seed`."""
    sweeps = [sweeps] if isinstance(sweeps, str | Path) else list(sweeps or [])
    check(bool(sweeps) or paper is not None, "sweeps", "a sweep directory or the paper's scores", None)
    check_range(n_articles, "n_articles", 0, integer=True)
    names = studies.study_names(sweeps) if sweeps else []
    shown = [studies.load_study(s, n) for s, n in zip(sweeps, names, strict=True)]
    if paper is not None:
        shown.append(studies.paper_study(paper))
    return write_text(Path(out) / "index.html", render(shown, n_articles, seed, articles))
