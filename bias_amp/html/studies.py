"""What the HTML report reads from a sweep, through the report's own readers (`report.load_runs`: runs
found by `layout.run_dirs`): metrics rows, resolved configs, instrument cards, neuron analysis and article
trajectories."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from bias_amp import paper_scores, report
from bias_amp.io import read_jsonl
from bias_amp.layout import METRICS_COLUMNS

INSTRUMENTS = ("leaning", "quality")  # config groups whose `model` may carry an instrument_card.md


@dataclass
class Study:
    """One sweep (or the paper's published scores): metrics rows with a `study` column."""
    name: str
    metrics: pd.DataFrame
    runs: list[Path] = field(default_factory=list)
    analysis: Path | None = None


def study_names(sweeps: list[Path]) -> list[str]:
    """Short unique names: the folder name, with parent folders added until the names differ."""
    sweeps = [Path(s).resolve() for s in sweeps]
    for depth in range(1, max(len(s.parts) for s in sweeps) + 1):
        names = ["/".join(s.parts[-depth:]) for s in sweeps]
        if len(set(names)) == len(names):
            return names
    return [str(s) for s in sweeps]


def load_study(sweep, name: str) -> Study:
    sweep = Path(sweep)
    df = report.load_runs(sweep)  # checks the sweep holds runs
    runs = [Path(r) for r in dict.fromkeys(df["run_dir"])]
    analysis = sweep / "analysis"
    return Study(name, _ordered(df.assign(study=name)), runs, analysis if (analysis / "overlap.csv").is_file() else None)


def paper_study(paper_dir) -> Study:
    """The paper's published curves (setups paper-*), drawn as an overlay."""
    return Study("paper", _ordered(paper_scores.load_metrics(paper_dir).assign(seed=0, study="paper")))


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ["study", *METRICS_COLUMNS] if c in df.columns]
    df = df[cols + [c for c in df.columns if c not in cols]]
    return df.sort_values(["setup", "seed", "generation"], kind="stable").reset_index(drop=True)


def combine(studies: list[Study]) -> pd.DataFrame:
    """All studies' rows; `series` names a curve: the setup, prefixed by the study when several sweeps
    are compared (the paper's setups keep their paper-* names)."""
    df = pd.concat([s.metrics for s in studies], ignore_index=True)
    prefix = (df["study"] + " · ") if sum(bool(s.runs) for s in studies) > 1 else ""
    df["series"] = (prefix + df["setup"]).where(df["study"] != "paper", df["setup"])
    return df


def smoke_series(metrics: pd.DataFrame) -> list[str]:
    """Series measured with smoke instruments (`report.is_smoke` on their rows)."""
    return [s for s, rows in metrics.groupby("series", sort=False) if report.is_smoke(rows)]


def instrument_cards(runs: list[Path]) -> dict[str, str]:
    """{card path: markdown} of every instrument_card.md in or beside the classifier models the runs used."""
    cards = {}
    for run in runs:
        cfg = OmegaConf.load(run / "config.yaml") if (run / "config.yaml").is_file() else OmegaConf.create()
        for group in INSTRUMENTS:
            model = OmegaConf.select(cfg, f"{group}.model")
            if not model or "://" in str(model):
                continue
            for path in (Path(model) / "instrument_card.md", Path(model).parent / "instrument_card.md"):
                if path.is_file():
                    cards.setdefault(str(path.resolve()), path.read_text(encoding="utf-8"))
                    break
    return cards


def trajectories(metrics: pd.DataFrame, run: Path, ids: list[str]) -> dict[str, dict]:
    """{id: {"real": the real article or None, "versions": [{version, text, scores...}]}} of the articles
    `ids` in one run (the versions of its metrics rows); each file is read once."""
    def pick(path: Path) -> dict[str, dict]:
        return {str(a["id"]): a for a in read_jsonl(path) if str(a["id"]) in ids} if path.is_file() else {}

    ids = set(ids)
    real, out = pick(run / "real.jsonl"), {}
    for aid in ids:
        out[aid] = {"real": real.get(aid), "versions": []}
    for version in metrics.loc[metrics["run_dir"] == str(run), "version"]:
        arts, scores = pick(run / version / "articles.jsonl"), run / version / "scores.csv"
        rows = {}
        if scores.is_file():
            df = pd.read_csv(scores, dtype={"id": str})
            rows = {r["id"]: r for r in df[df["id"].isin(ids)].to_dict("records")}
        for aid in ids:
            art = arts.get(aid)
            text = None if art is None else (art.get("text") or "\n".join(art.get("continuations", [])))
            out[aid]["versions"].append({"version": version, "text": text, **rows.get(aid, {})})
    return out
