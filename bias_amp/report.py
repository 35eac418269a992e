"""Tables, figures and article trajectories of a sweep (and/or the paper's published scores).

    python -m bias_amp.report SWEEP [key=value ...]       (= sweep=SWEEP; keys in conf/report.yaml)
    python -m bias_amp.report paper=../shared/reference/paper_scores out=DIR     # the paper's own curves

Written to OUT (default SWEEP/report/), listed in OUT/README.md:
  summary_table.csv/.md         per setup x generation: n_seeds, the mean over seeds of the leaning shares,
                                quality index and perplexity, and their band (the 95% CI of a single seed,
                                min-max over seeds when there are several)
  metrics_table.csv/.md         every run's metrics.csv rows (setup x seed x version, baseline = -1)
  paper_metrics_table.csv/.md   the paper's published scores in the same schema (with paper=DIR)
  trend.csv/.md                 per setup: slope of the right share and quality index per generation, seeds
                                pooled, Newey-West SEs, 95% CI and p (bias_amp.trend)
  fig3_baseline_leaning.png     leaning shares of the un-fine-tuned model, per decoding rule (Fig. 3)
  fig4_right_share.png          % right-leaning across generations per setup (Fig. 4, 6)
  fig4_leaning_shares.png       left/center/right shares across generations, one panel per setup
  fig5_quality.png              quality index, 0 = noise .. 3 = clean (Fig. 5, 7)
  fig8_quality_distribution.png per-article quality index by generation, seeds pooled (Fig. 8-10)
  fig11_perplexity.png          perplexity (Fig. 11)
  fig_collapse.png              instrument-free collapse measures (distinct-n, repeated 4-grams, compression, copying)
  fig_c_t.png                   mean c_t per generation above the change in right share it produces (#15)
  trajectories.md               chosen articles: the original and every version's continuation (App. C, F); a sweep
                                without articles.jsonl (a published one: samples only) keeps the one it has
  index.html                    all of the above in one self-contained interactive page (bias_amp.html)
The paper's setups (paper-none, ...) are drawn dashed beside the sweep's own. Made with smoke instruments
(any metrics row with smoke_instruments true), every figure, markdown table and the index carry the banner
"SMOKE instruments — not real measurements".
"""

from __future__ import annotations

import random
from pathlib import Path

import hydra
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bias_amp import cli, paper_scores, plots, trend
from bias_amp.errors import check, check_range
from bias_amp.io import read_jsonl, write_csv, write_text
from bias_amp.layout import LEANINGS, run_dirs, version_name

REQUIRED = ["setup", "generation", "n_articles", "share_left", "share_center", "share_right", "quality_mean",
            "quality_ci_low", "quality_ci_high", "perplexity_mean", "perplexity_ci_low", "perplexity_ci_high"]
TABLE_COLUMNS = ["setup", "seed", "version", "generation", *REQUIRED[2:]]
# summary values: the mean over seeds; banded ones also get <column>_band_low/high
BANDS = {**{f"share_{k}": (f"share_{k}_ci_low", f"share_{k}_ci_high") for k in LEANINGS},
         "quality_mean": ("quality_ci_low", "quality_ci_high"),
         "perplexity_mean": ("perplexity_ci_low", "perplexity_ci_high"),
         **{c: None for c in plots.COLLAPSE}}
MEANS = ["n_articles", "n_unscorable", *(f"expected_{k}" for k in LEANINGS), "train_loss"]
PAPER_AUTO = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper_scores"
FIGURES = {
    "fig3_baseline_leaning.png": (plots.fig_baseline_leaning, "summary"),
    "fig4_right_share.png": (plots.fig_right_share, "summary"),
    "fig4_leaning_shares.png": (plots.fig_leaning_shares, "summary"),
    "fig5_quality.png": (plots.fig_quality, "summary"),
    "fig8_quality_distribution.png": (plots.fig_quality_distribution, "scores"),
    "fig11_perplexity.png": (plots.fig_perplexity, "summary"),
}
COLLAPSE_FIGURE = "fig_collapse.png"


# --- reading a sweep ---

def _decoding(run: Path) -> str | None:
    path = run / "config.yaml"
    if not path.is_file():
        return None
    return ((yaml.safe_load(path.read_text()) or {}).get("decoding") or {}).get("name")


def load_runs(sweep, required=()) -> pd.DataFrame:
    """Every run's metrics.csv rows (runs found by `layout.run_dirs`), with `run_dir`, `setup`, `seed` and
    `decoding` (from the run's config.yaml) filled in where the file lacks them; each file must hold the
    `required` columns."""
    sweep = Path(sweep)
    check(sweep.is_dir(), "sweep", "an existing sweep directory", str(sweep))
    runs = [d for d in run_dirs(sweep) if (d / "metrics.csv").is_file()]
    check(bool(runs), "sweep", "a directory holding <setup>/seed_<n>/metrics.csv", str(sweep))
    frames = []
    for d in runs:
        df = pd.read_csv(d / "metrics.csv")
        missing = [c for c in required if c not in df]
        check(not missing, f"{d.parent.name}/{d.name}/metrics.csv", f"columns {list(required)}", f"missing {missing}")
        for col, value in (("setup", d.parent.name), ("seed", int(d.name[5:])), ("decoding", _decoding(d))):
            if col not in df:
                df[col] = value
        if "version" not in df:
            df["version"] = df["generation"].map(version_name)
        frames.append(df.drop_duplicates("version", keep="last").assign(run_dir=str(d)))
    return pd.concat(frames, ignore_index=True)


def load_metrics(sweep) -> pd.DataFrame:
    """All runs' metrics.csv rows, sorted by setup, seed and generation."""
    df = load_runs(sweep, REQUIRED)
    return df.sort_values(["setup", "seed", "generation"], kind="stable").reset_index(drop=True)


def load_scores(sweep, metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-article scores.csv of every version listed in metrics.csv, with setup, seed and generation
    columns. Versions without a scores.csv (a run in progress) are left out."""
    metrics = load_metrics(sweep) if metrics is None else metrics
    frames = []
    for row in metrics.itertuples():
        path = Path(row.run_dir) / row.version / "scores.csv"
        if path.exists():
            df = pd.read_csv(path, dtype={"id": str, "label": str})
            frames.append(df.assign(setup=row.setup, seed=int(row.seed), generation=int(row.generation)))
    if not frames:
        return pd.DataFrame(columns=[*paper_scores.SCORE_COLUMNS, "seed"])
    return pd.concat(frames, ignore_index=True)


def is_smoke(metrics: pd.DataFrame) -> bool:
    """True when any row was measured with smoke instruments (a missing column counts as not smoke)."""
    if "smoke_instruments" not in metrics:
        return False
    return bool(metrics["smoke_instruments"].astype(str).str.strip().str.lower().isin(["true", "1", "1.0"]).any())


def resolve_paper(paper) -> Path | None:
    """The paper overlay of report and notebook: `auto` = ../shared/reference/paper_scores when present,
    null/none = no overlay, else that directory (which must exist)."""
    if paper is None or str(paper).lower() in ("", "null", "none"):
        return None
    if str(paper) == "auto":
        return PAPER_AUTO if PAPER_AUTO.is_dir() else None
    check(Path(paper).is_dir(), "paper", "a directory of the paper's score CSVs, auto or null", str(paper))
    return Path(paper)


# --- tables ---

def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The per run x version table (values as in metrics.csv: shares 0..1)."""
    return metrics.reindex(columns=TABLE_COLUMNS).reset_index(drop=True)


def aggregate(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per setup x generation: n_seeds, the mean over seeds of every summary value, and for the banded ones
    <column>_band_low/high: the 95% CI of the one seed (NaN without CI columns), min-max over seeds."""
    m = metrics.assign(seed=metrics["seed"].fillna(0) if "seed" in metrics else 0)   # the paper: one run
    rows = []
    for (setup, gen), g in m.groupby(["setup", "generation"], sort=False):
        row = {"setup": setup, "version": version_name(int(gen)), "generation": int(gen),
               "n_seeds": int(g["seed"].nunique()), "smoke_instruments": is_smoke(g),
               "decoding": g["decoding"].dropna().iloc[0] if "decoding" in g and g["decoding"].notna().any() else None}
        for col in [c for c in MEANS if c in g] + [c for c in g if c.startswith("c_t")]:
            row[col] = g[col].mean()
        for col, ci in BANDS.items():
            if col not in g:
                continue
            row[col] = g[col].mean()
            if len(g) > 1:
                row[f"{col}_band_low"], row[f"{col}_band_high"] = g[col].min(), g[col].max()
            elif ci is not None and ci[0] in g:
                row[f"{col}_band_low"], row[f"{col}_band_high"] = g[ci[0]].iat[0], g[ci[1]].iat[0]
            else:
                row[f"{col}_band_low"] = row[f"{col}_band_high"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _ci(m, lo, hi, digits: int, scale: float = 1.0) -> str:
    if pd.isna(m):
        return "n/a"
    band = "" if pd.isna(lo) else f" [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
    return f"{scale * m:.{digits}f}{band}"


def _gen(g) -> str:
    return "base" if g < 0 else str(int(g))


def _banner(smoke: bool) -> str:
    return f"> **{plots.SMOKE_BANNER}**\n\n" if smoke else ""


def markdown_table(table: pd.DataFrame, smoke: bool = False) -> str:
    """Every run's rows: shares as percentages, quality / perplexity as `mean [95% CI]`."""
    lines = ["| setup | seed | generation | n | % left | % center | % right | quality index | perplexity |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in table.itertuples():
        seed = "" if pd.isna(r.seed) else str(int(r.seed))
        lines.append(f"| {r.setup} | {seed} | {_gen(r.generation)} | {int(r.n_articles)} | {100 * r.share_left:.1f} | "
                     f"{100 * r.share_center:.1f} | {100 * r.share_right:.1f} | "
                     f"{_ci(r.quality_mean, r.quality_ci_low, r.quality_ci_high, 3)} | "
                     f"{_ci(r.perplexity_mean, r.perplexity_ci_low, r.perplexity_ci_high, 2)} |")
    return _banner(smoke) + "\n".join(lines) + "\n"


def markdown_summary(summary: pd.DataFrame, smoke: bool = False) -> str:
    """Mean over seeds [band]: the 95% CI of one seed, min-max over several."""
    lines = ["Mean over seeds [band: the 95% CI of a single seed, min–max over seeds when n_seeds > 1]; n: articles "
             "per run (unscorable ones, empty or near-empty, have no scores).", "",
             "| setup | generation | seeds | n | % left | % center | % right | quality index (0–3) | perplexity |",
             "| --- | ---: | ---: | ---: | --- | --- | --- | --- | --- |"]
    for r in summary.itertuples():
        shares = [_ci(getattr(r, f"share_{k}"), getattr(r, f"share_{k}_band_low"),
                      getattr(r, f"share_{k}_band_high"), 1, 100) for k in LEANINGS]
        unscorable = getattr(r, "n_unscorable", float("nan"))
        n = f"{r.n_articles:g}" + (f" ({unscorable:g} unscorable)" if unscorable > 0 else "")
        lines.append(f"| {r.setup} | {_gen(r.generation)} | {r.n_seeds} | {n} | {' | '.join(shares)} | "
                     f"{_ci(r.quality_mean, r.quality_mean_band_low, r.quality_mean_band_high, 3)} | "
                     f"{_ci(r.perplexity_mean, r.perplexity_mean_band_low, r.perplexity_mean_band_high, 2)} |")
    return _banner(smoke) + "\n".join(lines) + "\n"


# --- trajectories (App. C, F) ---

def choose_articles(scores: pd.DataFrame, n: int = 3, seed: int = 0) -> list[str]:
    """`n` article ids (seeded) among those scored in every version of the first run."""
    if scores.empty:
        return []
    first = scores[(scores["setup"] == scores["setup"].iloc[0]) & (scores["seed"] == scores["seed"].iloc[0])]
    counts = first.groupby("id")["generation"].nunique()
    ids = sorted(counts[counts == first["generation"].nunique()].index, key=str)
    return sorted(random.Random(seed).sample(ids, min(n, len(ids))), key=str)


def _quote(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in str(text).strip().splitlines()) or "> (empty)"


def _by_id(path: Path) -> dict[str, dict]:
    return {str(a["id"]): a for a in read_jsonl(path)} if path.exists() else {}


def has_articles(metrics: pd.DataFrame) -> bool:
    """Whether any version of the sweep kept its synthetic articles (articles.jsonl), not only a sample."""
    return any((Path(r.run_dir) / r.version / "articles.jsonl").exists() for r in metrics.itertuples())


def trajectories(metrics: pd.DataFrame, scores: pd.DataFrame, ids: list[str]) -> str:
    """Markdown: per article and run, the original (the run's real.jsonl when present) and every version's
    continuation with its leaning probabilities and quality index."""
    runs = list(dict.fromkeys(metrics["run_dir"]))
    synthetic = {(r.run_dir, int(r.generation)): _by_id(Path(r.run_dir) / r.version / "articles.jsonl")
                 for r in metrics.itertuples()} if ids else {}
    known = set(scores["id"]) | {i for arts in synthetic.values() for i in arts}
    missing = [i for i in ids if i not in known]
    check(not missing, "articles", "ids of articles in the sweep", missing)
    wanted = scores[scores["id"].isin(ids)]
    by_key = {(r["setup"], int(r["seed"]), int(r["generation"]), r["id"]): r for r in wanted.to_dict("records")}
    reals = {run: _by_id(Path(run) / "real.jsonl") for run in runs} if ids else {}
    md = [_banner(is_smoke(metrics)) + "# Article trajectories", "",
          "Each version's continuation of the article's blocks, with its leaning probabilities "
          "(left / center / right) and quality index (0 = noise .. 3 = clean).", ""]
    for aid in ids:
        md += [f"## Article {aid}", ""]
        for run in runs:
            rows = metrics[metrics["run_dir"] == run]
            setup, seed = rows["setup"].iat[0], int(rows["seed"].iat[0])
            md += [f"### {setup}, seed {seed}", ""]
            real = reals[run].get(aid)
            if real is not None:
                md += [f"**Original** ({real.get('label', '?')}) — *{real.get('title', '')}*", "",
                       _quote(real.get("body", "")), ""]
            for row in rows.itertuples():
                gen = int(row.generation)
                art = synthetic.get((run, gen), {}).get(aid)
                s = by_key.get((setup, seed, gen, aid))
                head = f"**{row.version}**"
                if s is not None:
                    head += (f" — {s['leaning']} (L {s['p_left']:.3f} / C {s['p_center']:.3f} / "
                             f"R {s['p_right']:.3f}), quality {s['quality']:.3f}")
                text = "(not synthesised)" if art is None else art.get("text") or "\n".join(art.get("continuations", []))
                md += [head, "", _quote(text), ""]
    return "\n".join(md)


# --- the report ---

def write_figures(out: Path, summary: pd.DataFrame, scores: pd.DataFrame, smoke: bool = False) -> list[Path]:
    """Every figure of FIGURES (and fig_collapse.png when the collapse columns are present); with `smoke`
    each carries the smoke banner (not the instrument-free collapse figure)."""
    data = {"summary": summary, "scores": scores}
    figures = {name: (draw, data[kind]) for name, (draw, kind) in FIGURES.items()}
    if plots.has_collapse(summary):
        figures[COLLAPSE_FIGURE] = (plots.fig_collapse, summary)
    if plots.has_c_t(summary):
        figures["fig_c_t.png"] = (plots.fig_c_t, summary)
    paths = []
    for name, (draw, frame) in tqdm(figures.items(), desc="figures", leave=False):
        fig = draw(frame)
        if smoke and name != COLLAPSE_FIGURE:
            plots.banner(fig)
        plots.save(fig, out / name)
        paths.append(out / name)
    return paths


def build(sweep=None, out=None, paper=None, articles: list[str] | None = None, n_articles: int = 3,
          seed: int = 0) -> list[Path]:
    """Write the report; returns the written paths. Needs a sweep, the paper's scores, or both."""
    check(sweep is not None or paper is not None, "sweep", "a sweep directory (sweep=DIR) or paper=DIR", None)
    check(out is not None or sweep is not None, "out", "an output directory (out=DIR) when there is no sweep")
    check_range(n_articles, "n_articles", 0, integer=True)
    out = Path(out) if out is not None else Path(sweep) / "report"
    metrics = load_metrics(sweep) if sweep is not None else pd.DataFrame(columns=[*TABLE_COLUMNS, "run_dir"])
    paper_metrics = paper_scores.load_metrics(paper) if paper is not None else None
    scores = load_scores(sweep, metrics) if sweep is not None else pd.DataFrame(columns=paper_scores.SCORE_COLUMNS)
    smoke = is_smoke(metrics)
    traj = None
    # a published sweep keeps a few sample articles only: its trajectories.md (built where the run ran) is kept
    if sweep is not None and (articles is not None or has_articles(metrics)):
        ids = list(articles) if articles is not None else choose_articles(scores, n_articles, seed)
        traj = trajectories(metrics, scores, ids)  # first: a bad article id fails before anything is written
    written: list[Path] = []
    summary = aggregate(metrics) if sweep is not None else pd.DataFrame()
    if sweep is not None:
        written += [write_csv(out / "summary_table.csv", summary),
                    write_text(out / "summary_table.md", markdown_summary(summary, smoke)),
                    write_csv(out / "metrics_table.csv", metrics_table(metrics)),
                    write_text(out / "metrics_table.md", markdown_table(metrics_table(metrics), smoke))]
    all_summary, all_scores = summary, scores
    if paper_metrics is not None:
        table = metrics_table(paper_metrics)
        written += [write_csv(out / "paper_metrics_table.csv", table),
                    write_text(out / "paper_metrics_table.md", markdown_table(table))]
        paper_articles = paper_scores.load_articles(paper)
        all_summary = pd.concat([summary, aggregate(paper_metrics)], ignore_index=True)
        all_scores = pd.concat([scores, paper_articles], ignore_index=True) if sweep is not None else paper_articles
    all_metrics = pd.concat([metrics, paper_metrics], ignore_index=True) if paper_metrics is not None else metrics
    if not all_metrics.empty:
        slopes = trend.trend(all_metrics)
        written += [write_csv(out / "trend.csv", slopes), write_text(out / "trend.md", _banner(smoke) + trend.markdown(slopes))]
    written += write_figures(out, all_summary, all_scores, smoke)
    if traj is not None:
        written.append(write_text(out / "trajectories.md", traj))
    kept = [out / "trajectories.md"] if traj is None and (out / "trajectories.md").exists() else []
    # the page people open in a browser (imported here: bias_amp.html reads sweeps through this module)
    from bias_amp import html

    written.append(html.build(sweep, out, paper, n_articles, seed, articles))
    index = [f"# {plots.SMOKE_BANNER}\n\nThe leaning and quality numbers of this report come from smoke "
             "instruments (small models trained on the fly): they test the pipeline, they measure nothing. "
             "The collapse measures are instrument-free.\n" if smoke else "",
             "# Report", "", f"sweep: `{sweep}`" if sweep is not None else "sweep: none",
             f"paper scores: `{paper}`" if paper is not None else "paper scores: none", "",
             *(f"- [{p.name}]({p.name})" for p in written + kept), ""]
    written.append(write_text(out / "README.md", "\n".join(index) + "\n```\n" + _files_doc() + "```\n"))
    return written


def _files_doc() -> str:
    """The file list of this module's docstring (kept in one place)."""
    doc = __doc__ or ""
    return doc[doc.index("  summary_table"):doc.index("The paper's setups")]


def run(cfg: DictConfig) -> list[Path]:
    """The app: conf/report.yaml's keys -> build(); several sweeps -> each one's report, and with `out` one
    index.html comparing them."""
    check(cfg.sweep is not None or cfg.paper not in (None, "auto"), "sweep",
          "a sweep directory (SWEEP or sweep=DIR), or paper=DIR out=DIR for the paper's curves alone")
    articles = cfg.get("articles")
    check(articles is None or OmegaConf.is_list(articles), "articles", "a list of article ids or null", articles)
    articles = None if articles is None else [str(a) for a in articles]
    paper = resolve_paper(cfg.paper)
    if not OmegaConf.is_list(cfg.sweep):
        return build(cfg.sweep, cfg.out, paper, articles, cfg.n_articles, cfg.seed)
    sweeps = [str(s) for s in cfg.sweep]
    check(len(sweeps) == 1 or cfg.out is not None, "out", "a directory for the page comparing several sweeps",
          None)
    written = [p for s in sweeps for p in build(s, None, paper, articles, cfg.n_articles, cfg.seed)]
    if len(sweeps) > 1:
        from bias_amp import html

        written.append(html.build(sweeps, cfg.out, paper, cfg.n_articles, cfg.seed, articles))
    return written


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def _app(cfg: DictConfig) -> None:
    with cli.one_line_errors():
        paths = run(cfg)
    print(f"wrote {len(paths)} files to {paths[-1].parent}")


def main() -> None:
    cli.sweep_argument()
    _app()


if __name__ == "__main__":
    main()
