"""What the HTML report reads from a sweep: every run's metrics rows, resolved config, instrument cards,
neuron analysis and article trajectories. Run directories come from `layout.run_dirs` only."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from bias_amp import paper_scores
from bias_amp.errors import check
from bias_amp.io import read_jsonl
from bias_amp.layout import METRICS_COLUMNS, run_dirs, version_name

INSTRUMENTS = ("leaning", "quality")  # config groups whose `model` may carry an instrument_card.md


@dataclass
class Study:
    """One sweep (or the paper's published scores): metrics rows with `study` and `series` columns."""
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


def run_metrics(run: Path) -> pd.DataFrame:
    """A run's metrics.csv rows; `setup` and `seed` filled from the directory when absent."""
    df = pd.read_csv(run / "metrics.csv")
    check("generation" in df.columns, f"{run}/metrics.csv", "a generation column", list(df.columns))
    if "setup" not in df.columns:
        df["setup"] = run.parent.name
    if "seed" not in df.columns:
        df["seed"] = int(run.name.removeprefix("seed_"))
    if "version" not in df.columns:
        df["version"] = df["generation"].map(version_name)
    return df


def load_study(sweep, name: str) -> Study:
    sweep = Path(sweep)
    check(sweep.is_dir(), "sweep", "an existing sweep directory", str(sweep))
    runs = [r for r in run_dirs(sweep) if (r / "metrics.csv").is_file()]
    check(bool(runs), "sweep", "a sweep holding <setup>/seed_<n>/metrics.csv", str(sweep))
    df = pd.concat([run_metrics(r) for r in runs], ignore_index=True)
    analysis = sweep / "analysis"
    return Study(name, _ordered(df.assign(study=name)), runs, analysis if (analysis / "overlap.csv").is_file() else None)


def paper_study(paper_dir) -> Study:
    """The paper's published curves (setups paper-*), drawn as an overlay."""
    df = paper_scores.load_metrics(paper_dir).assign(seed=0, study="paper")
    return Study("paper", _ordered(df))


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ["study", *METRICS_COLUMNS] if c in df.columns]
    df = df[cols + [c for c in df.columns if c not in cols]]
    return df.sort_values(["setup", "seed", "generation"], kind="stable").reset_index(drop=True)


def combine(studies: list[Study]) -> pd.DataFrame:
    """All studies' rows; `series` names a curve: the setup, prefixed by the study when several sweeps
    are compared (the paper's setups keep their paper-* names)."""
    sweeps = [s for s in studies if s.runs]
    df = pd.concat([s.metrics for s in studies], ignore_index=True)
    prefix = (df["study"] + " · ") if len(sweeps) > 1 else ""
    df["series"] = (prefix + df["setup"]).where(df["study"] != "paper", df["setup"])
    return df


def smoke_setups(metrics: pd.DataFrame) -> list[str]:
    """Series whose rows say their leaning or quality model was a smoke model trained on the fly."""
    if "smoke_instruments" not in metrics.columns:
        return []
    smoke = metrics["smoke_instruments"].astype(str).str.lower().isin(["true", "1", "1.0"])
    return list(dict.fromkeys(metrics.loc[smoke, "series"]))


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


# --- article trajectories (App. C, F) ---

def _versions(run: Path) -> list[Path]:
    df = pd.read_csv(run / "metrics.csv")
    return [run / version_name(int(g)) for g in sorted(df["generation"].unique())]


def choose_articles(run: Path, n: int, seed: int = 0) -> list[str]:
    """`n` article ids (seeded) synthesised in every version of the run."""
    common = None
    for vdir in _versions(run):
        path = vdir / "articles.jsonl"
        ids = {str(a["id"]) for a in read_jsonl(path)} if path.is_file() else set()
        common = ids if common is None else common & ids
    ids = sorted(common or ())
    return sorted(random.Random(seed).sample(ids, min(n, len(ids))))


def trajectory(run: Path, aid: str) -> dict:
    """{"real": the real article or None, "versions": [{version, text, scores...}]} of one article."""
    real = run / "real.jsonl"
    real = next((a for a in read_jsonl(real) if str(a["id"]) == aid), None) if real.is_file() else None
    versions = []
    for vdir in _versions(run):
        path, scores = vdir / "articles.jsonl", vdir / "scores.csv"
        art = next((a for a in read_jsonl(path) if str(a["id"]) == aid), None) if path.is_file() else None
        row = {}
        if scores.is_file():
            df = pd.read_csv(scores, dtype={"id": str})
            hit = df[df["id"] == aid]
            row = hit.iloc[0].to_dict() if len(hit) else {}
        text = None if art is None else (art.get("text") or "\n".join(art.get("continuations", [])))
        versions.append({"version": vdir.name, "text": text, **row})
    return {"real": real, "versions": versions}
