"""The paper's published per-article scores, mapped onto this project's per-generation metrics schema.

The authors' release (../shared/reference/paper_scores) holds, per setup:
  <Name>_Bias_Performance.csv    Generation, Article_ID, Left_Score, Center_Score, Right_Score
  <Name>_Generation_Quality.csv  Generation, GibberishLevel (the quality index; rows in article order, no id)
  Synthetic_Perplexity.csv       Generation, Perplexity (no-mitigation setup only)
  GPT2_Bias_Performance.csv      Model, Article_ID, ... : base GPT-2 (the un-fine-tuned model, Fig. 3)
File Generation g is the paper's Generation g-1 (g = 1 is the model fine-tuned on the real articles), so the
files map onto `generation = g - 1`. The Center-Leaning-Only no-mitigation file also has a Generation 0, the
version before the paper's Generation 0; it becomes that setup's baseline row (generation -1). Base GPT-2 is
the baseline row (-1) of the four main setups (its quality and perplexity were not published: NaN).
A leaning is the argmax of an article's three scores; shares, means and 95% CIs use metrics.stats.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bias_amp.errors import check
from bias_amp.layout import LEANINGS, METRICS_COLUMNS, version_name

# file prefix -> setup name (mitigation names as in conf/mitigation)
SETUPS = {
    "Synthetic": "paper-none",
    "Overfitting": "paper-overfit",
    "Preservation": "paper-preserve",
    "Accumulation": "paper-accumulate",
    "Synthetic_Center-Leaning-Only": "paper-center-only",
    "Preservation_Center-Leaning-Only": "paper-center-only-preserve",
}
BASE_GPT2_SETUPS = ("paper-none", "paper-overfit", "paper-preserve", "paper-accumulate")
METRIC_COLUMNS = [c for c in METRICS_COLUMNS if c != "seed"]   # the release is one run of unknown seed
SCORE_COLUMNS = ["setup", "generation", "id", "label", "p_left", "p_center", "p_right", "leaning", "quality",
                 "perplexity"]
_SCORES = {"Left_Score": "p_left", "Center_Score": "p_center", "Right_Score": "p_right"}


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = [c for c in columns if c not in df.columns]
    check(not missing, f"paper_scores.{path.name}", f"columns {columns}", list(df.columns))
    return df


def _bias(path: Path, setup: str, generation_col: str = "Generation") -> pd.DataFrame:
    df = _read(path, [generation_col, "Article_ID", *_SCORES]).rename(columns=_SCORES)
    gen = df[generation_col] - 1 if generation_col == "Generation" else pd.Series(-1, index=df.index)
    probs = df[list(_SCORES.values())].to_numpy(float)
    return pd.DataFrame({
        "setup": setup, "generation": gen.astype(int), "id": df["Article_ID"].astype(str),
        **{c: df[c].astype(float) for c in _SCORES.values()},
        "leaning": np.asarray(LEANINGS)[probs.argmax(axis=1)],
    })


def _per_row(path: Path, setup: str, value: str, out: str) -> pd.DataFrame:
    """Quality / perplexity files: no article id, rows in article order within a generation."""
    df = _read(path, ["Generation", value])
    gen = df["Generation"].astype(int) - 1
    return pd.DataFrame({"setup": setup, "generation": gen,
                         "id": (df.groupby("Generation").cumcount() + 1).astype(str), out: df[value].astype(float)})


def load_articles(paper_dir) -> pd.DataFrame:
    """Every published per-article score as one frame in scores.csv's schema plus setup and generation.
    `label` (the source article's leaning) was not published: empty."""
    paper_dir = Path(paper_dir)
    check(paper_dir.is_dir(), "paper", "a directory with the paper's score CSVs", str(paper_dir))
    frames = []
    for prefix, setup in SETUPS.items():
        bias_path = paper_dir / f"{prefix}_Bias_Performance.csv"
        if not bias_path.exists():
            continue
        df = _bias(bias_path, setup)
        for suffix, value, out in (("Generation_Quality", "GibberishLevel", "quality"),
                                   ("Perplexity", "Perplexity", "perplexity")):
            path = paper_dir / f"{prefix}_{suffix}.csv"
            if path.exists():
                df = df.merge(_per_row(path, setup, value, out), on=["setup", "generation", "id"], how="outer")
        frames.append(df)
    gpt2 = paper_dir / "GPT2_Bias_Performance.csv"
    if gpt2.exists():
        base = _bias(gpt2, "", generation_col="Model")
        frames += [base.assign(setup=s) for s in BASE_GPT2_SETUPS if s in {f.setup.iat[0] for f in frames}]
    check(bool(frames), "paper", "a directory holding *_Bias_Performance.csv files", str(paper_dir))
    df = pd.concat(frames, ignore_index=True).reindex(columns=SCORE_COLUMNS)
    df["label"] = ""
    order = {s: i for i, s in enumerate(SETUPS.values())}  # the paper's order: none, overfit, preserve, ...
    df = df.assign(_s=df["setup"].map(order), _n=pd.to_numeric(df["id"]))
    return df.sort_values(["_s", "generation", "_n"]).drop(columns=["_s", "_n"]).reset_index(drop=True)


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-article scores (setup, generation, leaning, quality, perplexity) -> one metrics.csv row per
    setup x generation: leaning shares over scored articles, mean and 95% CI of quality and perplexity."""
    from bias_amp.metrics.scorer import summarize as summarize_version

    rows = []
    for (setup, gen), g in scores.groupby(["setup", "generation"], sort=False):  # keeps the frame's order
        g = g.reindex(columns=[*g.columns, *(c for c in ("quality", "perplexity") if c not in g)])
        rows.append({"setup": setup, "version": version_name(int(gen)), "generation": int(gen),
                     **summarize_version(g), "n_articles": int(g["leaning"].notna().sum())})
    return pd.DataFrame(rows).reindex(columns=METRIC_COLUMNS)


def load_metrics(paper_dir) -> pd.DataFrame:
    """The paper's per-generation metrics for every published setup (metrics.csv columns; train_* NaN)."""
    return summarize(load_articles(paper_dir))
