"""Verbatim real text in the synthetic articles (STUDY.md): per version, the mean share of a synthetic article's
word 8-grams that occur in the real article it continues (`bias_amp.metrics.collapse.copied_share`): its
prompts copied, or its training text reproduced. Instrument-free, but it needs the full articles
(articles.jsonl): run it on the sweep that made a run (publish.py does, for the run it publishes); a published
run keeps 3 sample articles per version, too few for a share. Runs made on the code of 479d4ef or later record
the same measure themselves (`copied_8gram_share` in metrics.csv); the study's runs predate it.

    python studies/study/copying.py multirun/study beam-none/seed_0 [beam-none/seed_1 ...] \
        [--out studies/study/copying.csv]
Rows of the runs named replace their earlier rows in --out; other runs' rows stay.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from bias_amp import io
from bias_amp.data import Article
from bias_amp.errors import check
from bias_amp.layout import is_done, version_name
from bias_amp.metrics.collapse import SOURCE_TEMPLATE, copied_share
from bias_amp.metrics.stats import mean_ci

STUDY = Path(__file__).resolve().parent
KEY = ["setup", "seed", "version"]


def run_rows(run: Path) -> list[dict]:
    """One row per finished version of a run folder (<setup>/seed_<n>) with full articles."""
    real = {r["id"]: Article(**r).text(SOURCE_TEMPLATE) for r in io.read_jsonl(run / "real.jsonl")}
    rows = []
    for g in range(-1, OmegaConf.load(run / "config.yaml").generations):
        if not is_done(run, g):
            continue
        articles = io.read_jsonl(run / version_name(g) / "articles.jsonl")
        m, lo, hi = mean_ci([copied_share(a["text"], real[a["id"]]) for a in articles])
        rows.append({"setup": run.parent.name, "seed": int(run.name.removeprefix("seed_")),
                     "version": version_name(g), "n_articles": len(articles), "copied_8gram_share": m,
                     "ci_low": lo, "ci_high": hi})
    return rows


def update(sweep: Path, runs: list[str], out: Path) -> pd.DataFrame:
    """Compute the named runs' rows and merge them into `out` (written atomically); returns the new table."""
    for r in runs:
        check((sweep / r / "real.jsonl").is_file(), "run", f"<setup>/seed_<n> with real.jsonl under {sweep}", r)
    new = pd.DataFrame([row for r in runs for row in run_rows(sweep / r)])
    old = pd.read_csv(out) if out.exists() else new.iloc[:0]
    keep = ~old.set_index(["setup", "seed"]).index.isin(new.set_index(["setup", "seed"]).index)
    table = pd.concat([old[keep], new]).sort_values(KEY, ignore_index=True)
    io.write_csv(out, table.round(4))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="the sweep folder holding the runs (multirun/study)")
    parser.add_argument("runs", nargs="+", help="run folders under the sweep, e.g. beam-none/seed_0")
    parser.add_argument("--out", type=Path, default=STUDY / "copying.csv")
    args = parser.parse_args()
    table = update(args.sweep, args.runs, args.out)
    print(table.pivot_table(index="version", columns=["setup", "seed"], values="copied_8gram_share").round(3))


if __name__ == "__main__":
    main()
