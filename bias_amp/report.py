"""Tables, figures and article trajectories of a sweep (and/or the paper's published scores).

    python -m bias_amp.report SWEEP [--out DIR] [--paper DIR] [--articles ID,ID] [--n-articles 3] [--seed 0]
    python -m bias_amp.report --paper ../shared/reference/paper_scores --out DIR     # the paper's own curves

Written to OUT (default SWEEP/report/), listed in OUT/README.md:
  metrics_table.csv/.md         per setup x generation: n_articles, left/center/right shares, quality and
                                perplexity mean with 95% CI (the sweep's metrics.csv rows, baseline = -1)
  paper_metrics_table.csv/.md   the same from the paper's published scores (with --paper)
  fig3_baseline_leaning.png     leaning shares of the un-fine-tuned model's synthesis per setup (Fig. 3)
  fig4_right_share.png          % right-leaning across generations per setup (Fig. 4, 6)
  fig4_leaning_shares.png       left/center/right shares across generations, one panel per setup
  fig5_quality.png              quality index mean and 95% CI band (Fig. 5, 7)
  fig8_quality_distribution.png per-article quality index by generation (Fig. 8-10)
  fig11_perplexity.png          perplexity mean and 95% CI band (Fig. 11)
  trajectories.md               chosen articles: the original and every version's continuation (App. C, F)
The paper's setups (paper-none, ...) are drawn dashed beside the sweep's own.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from bias_amp import paper_scores, plots
from bias_amp.errors import ConfigError, check
from bias_amp.io import read_jsonl, write_csv, write_text

REQUIRED = ["setup", "generation", "n_articles", "share_left", "share_center", "share_right", "quality_mean",
            "quality_ci_low", "quality_ci_high", "perplexity_mean", "perplexity_ci_low", "perplexity_ci_high"]
TABLE_COLUMNS = ["setup", "version", "generation", *REQUIRED[2:]]
FIGURES = {
    "fig3_baseline_leaning.png": (plots.fig_baseline_leaning, "metrics"),
    "fig4_right_share.png": (plots.fig_right_share, "metrics"),
    "fig4_leaning_shares.png": (plots.fig_leaning_shares, "metrics"),
    "fig5_quality.png": (plots.fig_quality, "metrics"),
    "fig8_quality_distribution.png": (plots.fig_quality_distribution, "scores"),
    "fig11_perplexity.png": (plots.fig_perplexity, "metrics"),
}


# --- reading a sweep ---

def setup_dirs(sweep) -> list[Path]:
    """Every <setup>/ of a sweep that has a metrics.csv, sorted by name."""
    sweep = Path(sweep)
    check(sweep.is_dir(), "sweep", "an existing sweep directory", str(sweep))
    dirs = sorted(p.parent for p in sweep.glob("*/metrics.csv"))
    check(bool(dirs), "sweep", "a directory holding <setup>/metrics.csv", str(sweep))
    return dirs


def load_metrics(sweep) -> pd.DataFrame:
    """All setups' metrics.csv rows, sorted by setup and generation."""
    frames = []
    for d in setup_dirs(sweep):
        df = pd.read_csv(d / "metrics.csv")
        missing = [c for c in REQUIRED if c not in df.columns]
        check(not missing, f"{d.name}/metrics.csv", f"columns {REQUIRED}", f"missing {missing}")
        if "version" not in df.columns:
            df["version"] = df["generation"].map(paper_scores.version_name)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["setup", "generation"], kind="stable").reset_index(drop=True)


def _version_dir(sweep: Path, row) -> Path:
    return Path(sweep) / row.setup / row.version


def load_scores(sweep, metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-article scores.csv of every version listed in metrics.csv, with setup and generation columns.
    Versions without a scores.csv (a run in progress) are left out."""
    metrics = load_metrics(sweep) if metrics is None else metrics
    frames = []
    for row in metrics.itertuples():
        path = _version_dir(sweep, row) / "scores.csv"
        if path.exists():
            df = pd.read_csv(path, dtype={"id": str, "label": str})
            frames.append(df.assign(setup=row.setup, generation=int(row.generation)))
    if not frames:
        return pd.DataFrame(columns=paper_scores.SCORE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


# --- tables ---

def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The per setup x generation table (values as in metrics.csv: shares 0..1)."""
    return metrics.reindex(columns=TABLE_COLUMNS).reset_index(drop=True)


def _ci(m, lo, hi, digits: int) -> str:
    return "n/a" if pd.isna(m) else f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown_table(table: pd.DataFrame) -> str:
    """Shares as percentages, quality / perplexity as `mean [95% CI]`."""
    lines = ["| setup | generation | n | % left | % center | % right | quality index | perplexity |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in table.itertuples():
        gen = "base" if r.generation < 0 else str(int(r.generation))
        lines.append(f"| {r.setup} | {gen} | {int(r.n_articles)} | {100 * r.share_left:.1f} | "
                     f"{100 * r.share_center:.1f} | {100 * r.share_right:.1f} | "
                     f"{_ci(r.quality_mean, r.quality_ci_low, r.quality_ci_high, 3)} | "
                     f"{_ci(r.perplexity_mean, r.perplexity_ci_low, r.perplexity_ci_high, 2)} |")
    return "\n".join(lines) + "\n"


# --- trajectories (App. C, F) ---

def _real_articles(sweep: Path, setup: str) -> dict[str, dict]:
    path = sweep / setup / "real.jsonl"
    return {str(a["id"]): a for a in read_jsonl(path)} if path.exists() else {}


def _synthetic(sweep: Path, metrics: pd.DataFrame) -> dict[tuple[str, int], dict[str, dict]]:
    out = {}
    for row in metrics.itertuples():
        path = _version_dir(sweep, row) / "articles.jsonl"
        if path.exists():
            out[row.setup, int(row.generation)] = {str(a["id"]): a for a in read_jsonl(path)}
    return out


def choose_articles(scores: pd.DataFrame, n: int = 3, seed: int = 0) -> list[str]:
    """`n` article ids (seeded) among those scored in every version of the first setup."""
    if scores.empty:
        return []
    first = scores[scores["setup"] == scores["setup"].iloc[0]]
    counts = first.groupby("id")["generation"].nunique()
    ids = sorted(counts[counts == first["generation"].nunique()].index, key=str)
    return sorted(random.Random(seed).sample(ids, min(n, len(ids))), key=str)


def _quote(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in str(text).strip().splitlines()) or "> (empty)"


def trajectories(sweep, metrics: pd.DataFrame, scores: pd.DataFrame, ids: list[str]) -> str:
    """Markdown: per article, the original (SWEEP/<setup>/real.jsonl when present) and, per setup and
    version, the continuation with its leaning probabilities and quality index."""
    sweep = Path(sweep)
    synthetic = _synthetic(sweep, metrics)
    known = set(scores["id"]) | {i for arts in synthetic.values() for i in arts}
    missing = [i for i in ids if i not in known]
    check(not missing, "articles", "ids of articles in the sweep", missing)
    wanted = scores[scores["id"].isin(ids)]
    by_key = {(r["setup"], int(r["generation"]), r["id"]): r for r in wanted.to_dict("records")}
    reals = {setup: _real_articles(sweep, setup) for setup in dict.fromkeys(metrics["setup"])}
    md = ["# Article trajectories", "",
          "Each version's continuation of the article's blocks, with its leaning probabilities "
          "(left / center / right) and quality index.", ""]
    for aid in ids:
        md += [f"## Article {aid}", ""]
        for setup in dict.fromkeys(metrics["setup"]):
            real = reals[setup].get(aid)
            md += [f"### {setup}", ""]
            if real is not None:
                md += [f"**Original** ({real.get('label', '?')}) — *{real.get('title', '')}*", "",
                       _quote(real.get("body", "")), ""]
            for row in metrics[metrics["setup"] == setup].itertuples():
                gen = int(row.generation)
                art = synthetic.get((setup, gen), {}).get(aid)
                s = by_key.get((setup, gen, aid))
                head = f"**{row.version}**"
                if s is not None:
                    head += (f" — {s['leaning']} (L {s['p_left']:.3f} / C {s['p_center']:.3f} / "
                             f"R {s['p_right']:.3f}), quality {s['quality']:.3f}")
                text = "(not synthesised)" if art is None else art.get("text") or "\n".join(art.get("continuations", []))
                md += [head, "", _quote(text), ""]
    return "\n".join(md)


# --- the report ---

def write_figures(out: Path, metrics: pd.DataFrame, scores: pd.DataFrame) -> list[Path]:
    data = {"metrics": metrics, "scores": scores}
    paths = []
    for name, (draw, kind) in tqdm(FIGURES.items(), desc="figures", leave=False):
        plots.save(draw(data[kind]), out / name)
        paths.append(out / name)
    return paths


def _write_table(out: Path, stem: str, table: pd.DataFrame) -> list[Path]:
    return [write_csv(out / f"{stem}.csv", table), write_text(out / f"{stem}.md", markdown_table(table))]


def build(sweep=None, out=None, paper=None, articles: list[str] | None = None, n_articles: int = 3,
          seed: int = 0) -> list[Path]:
    """Write the report; returns the written paths. Needs a sweep, the paper's scores, or both."""
    check(sweep is not None or paper is not None, "sweep", "a sweep directory or --paper DIR", None)
    check(out is not None or sweep is not None, "out", "an output directory (--out) when there is no sweep")
    check(n_articles >= 0, "n_articles", "an integer >= 0", n_articles)
    out = Path(out) if out is not None else Path(sweep) / "report"
    metrics = load_metrics(sweep) if sweep is not None else pd.DataFrame(columns=TABLE_COLUMNS)
    paper_metrics = paper_scores.load_metrics(paper) if paper is not None else None
    scores = load_scores(sweep, metrics) if sweep is not None else pd.DataFrame(columns=paper_scores.SCORE_COLUMNS)
    traj = None
    if sweep is not None:  # first: a bad article id fails before anything is written
        ids = articles if articles is not None else choose_articles(scores, n_articles, seed)
        traj = trajectories(sweep, metrics, scores, ids)
    written: list[Path] = []
    if sweep is not None:
        written += _write_table(out, "metrics_table", metrics_table(metrics))
    all_metrics, all_scores = metrics, scores
    if paper_metrics is not None:
        written += _write_table(out, "paper_metrics_table", metrics_table(paper_metrics))
        all_metrics = pd.concat([metrics, paper_metrics], ignore_index=True) if sweep is not None else paper_metrics
        paper_articles = paper_scores.load_articles(paper)
        all_scores = pd.concat([scores, paper_articles], ignore_index=True) if sweep is not None else paper_articles
    written += write_figures(out, all_metrics, all_scores)
    if traj is not None:
        written.append(write_text(out / "trajectories.md", traj))
    index = ["# Report", "", f"sweep: `{sweep}`" if sweep is not None else "sweep: none",
             f"paper scores: `{paper}`" if paper is not None else "paper scores: none", "",
             *(f"- [{p.name}]({p.name})" for p in written), ""]
    written.append(write_text(out / "README.md", "\n".join(index) + "\n```\n" + _files_doc() + "```\n"))
    return written


def _files_doc() -> str:
    """The file list of this module's docstring (kept in one place)."""
    doc = __doc__ or ""
    return doc[doc.index("  metrics_table"):doc.index("The paper's setups")]


def _parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bias_amp.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", nargs="?", help="sweep directory (multirun/<experiment_name>)")
    ap.add_argument("--out", help="output directory (default SWEEP/report)")
    ap.add_argument("--paper", help="directory of the paper's published score CSVs: drawn dashed")
    ap.add_argument("--articles", help="comma-separated article ids for trajectories.md")
    ap.add_argument("--n-articles", type=int, default=3, help="articles chosen (seeded) when --articles is absent")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = _parse(argv)
    ids = [i.strip() for i in args.articles.split(",") if i.strip()] if args.articles else None
    try:
        paths = build(args.sweep, args.out, args.paper, ids, args.n_articles, args.seed)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {len(paths)} files to {paths[-1].parent}")


if __name__ == "__main__":
    main()
