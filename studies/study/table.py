"""STUDY.md's findings tables, rebuilt from the published files: one row per setup (trends with seeds pooled,
`report/trend.csv`; held-out tilt, `heldout_gap.csv`) and one row per run (its `metrics.csv`, `heldout_gap.csv`,
`copying.csv`). Replaces what stands between STUDY.md's `<!-- table.py -->` and `<!-- /table.py -->` lines;
publish.py runs it after the report. A CI that excludes 0 is bold (a trend: where p (AR(1)) < 0.05); – where a run lacks the measure.

    python studies/study/table.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bias_amp.errors import check
from bias_amp.io import write_text

STUDY = Path(__file__).resolve().parent
BEGIN, END = "<!-- table.py -->", "<!-- /table.py -->"


def num(x, fmt: str) -> str:
    return "–" if pd.isna(x) else format(x, fmt).replace("-", "−")


def with_ci(x, lo, hi, fmt: str = "+.3f", bold: bool | None = None) -> str:
    """x [lo, hi], bold where the CI excludes 0 (or as `bold` says)."""
    if pd.isna(x):
        return "–"
    text = f"{num(x, fmt)} [{num(lo, fmt)}, {num(hi, fmt)}]"
    return f"**{text}**" if (lo > 0 or hi < 0 if bold is None else bold) else text


def change(a, b, fmt: str = ".2f") -> str:
    return f"{num(a, fmt)} → {num(b, fmt)}"


def markdown(rows: list[dict]) -> str:
    head = list(rows[0])
    return "\n".join(["| " + " | ".join(head) + " |", "|" + " --- |" * len(head),
                      *("| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows)])


def gap(heldout: pd.DataFrame, model: str, column: str = "gap_change") -> str:
    if model not in heldout.index or column not in heldout:
        return "–"
    r = heldout.loc[model]
    return with_ci(r[column], r[f"{column}_ci_low"], r[f"{column}_ci_high"])


def setup_tilt(heldout: pd.DataFrame, setup: str, seeds: list[str]) -> str:
    """The `<setup>/mean` row with its CI; without one (a seed's per-article log-likelihoods were not kept) one
    seed's value with its CI, or the seeds' values and their plain mean, without a CI."""
    if f"{setup}/mean" in heldout.index:
        return gap(heldout, f"{setup}/mean")
    models = [m for m in (f"{setup}/seed_{s}/gen_10" for s in seeds) if m in heldout.index]
    if len(models) < 2:
        return gap(heldout, models[0]) if models else "–"
    values = heldout.loc[models, "gap_change"]
    return f"{num(values.mean(), '+.3f')} (no CI: {', '.join(num(v, '+.3f') for v in values)})"


def setup_rows(study: Path, heldout: pd.DataFrame) -> list[dict]:
    trend = pd.read_csv(study / "report" / "trend.csv").set_index(["setup", "measure"])
    rows = []
    for setup in trend.index.get_level_values("setup").unique():
        r, q = trend.loc[(setup, "share_right")], trend.loc[(setup, "quality_mean")]
        seeds = sorted(p.name.removeprefix("seed_") for p in (study / setup).glob("seed_*"))
        rows.append({
            "setup": setup, "seeds": ", ".join(seeds),
            "right share, pp / generation [95% CI]; p (AR(1))": (
                f"{with_ci(100 * r.slope, 100 * r.slope_ci_low, 100 * r.slope_ci_high, '+.2f', r.p_ar1 < 0.05)}; {num(r.p_ar1, '.3g')}"),
            "quality index / generation [95% CI]; p (AR(1))": (
                f"{with_ci(q.slope, q.slope_ci_low, q.slope_ci_high, '+.4f', q.p_ar1 < 0.05)}; {num(q.p_ar1, '.3g')}"),
            "held-out tilt, base → gen 10 (seeds' mean)": setup_tilt(heldout, setup, seeds),
        })
    return rows


def run_rows(study: Path, heldout: pd.DataFrame) -> list[dict]:
    copying = pd.read_csv(study / "copying.csv").set_index(["setup", "seed", "version"])
    rows = []
    for path in sorted(study.glob("*/seed_*/metrics.csv")):
        m = pd.read_csv(path).set_index("version")
        setup, seed = path.parts[-3], int(path.parts[-2].removeprefix("seed_"))
        gens = m[m.generation >= 0]
        a, b = gens.iloc[0], gens.iloc[-1]
        model = f"{setup}/seed_{seed}/{b.name}"
        copied = (copying.loc[(setup, seed, b.name), "copied_8gram_share"] if (setup, seed, b.name) in copying.index
                  else b.get("copied_8gram_share"))
        logp = (heldout.loc[model, ["logp_right", "logp_left"]].mean() if model in heldout.index else float("nan"))
        rows.append({
            "run (setup, seed)": f"{setup}, {seed}",
            "right share (%)": change(100 * a.share_right, 100 * b.share_right, ".1f"),
            "quality index": change(a.quality_mean, b.quality_mean),
            "repeated 4-grams": change(a.repeated_4gram_share, b.repeated_4gram_share),
            "distinct-2": change(a.distinct_2, b.distinct_2),
            "perplexity (base model)": change(a.perplexity_mean, b.perplexity_mean),
            "verbatim real 8-grams": num(copied, ".2f"),
            "real text's log p": num(logp, ".2f"),
            "probe gap": change(a.c_t_logp_gap_end, b.c_t_logp_gap_end),
            "mean c_t; c_t < 0": f"{num(gens.c_t_mean.mean(), '+.4f')}; {(gens.c_t_mean < 0).sum()} of {len(gens)}",
            "held-out tilt": gap(heldout, model),
            "− greedy-none, same seed": "" if setup == "greedy-none" else gap(heldout, model, "gap_vs_greedy_none"),
            "− greedy-none, seeds' mean": gap(heldout, model, "gap_vs_greedy_none_mean"),
            "− greedy-rebalance, same seed": ("" if setup == "greedy-rebalance"
                                              else gap(heldout, model, "gap_vs_greedy-rebalance")),
        })
    return rows


def tables(study: Path) -> str:
    heldout = pd.read_csv(study / "heldout_gap.csv").set_index("model")
    return "\n\n".join([markdown(setup_rows(study, heldout)), markdown(run_rows(study, heldout))])


def update(study: Path = STUDY) -> Path:
    """Rewrite the tables of study/STUDY.md in place (atomically)."""
    path = study / "STUDY.md"
    text = path.read_text()
    check(text.count(BEGIN) == 1 and text.count(END) == 1, "STUDY.md",
          f"one '{BEGIN}' line and one '{END}' line around the findings tables")
    head, rest = text.split(BEGIN)
    return write_text(path, f"{head}{BEGIN}\n{tables(study)}\n{END}{rest.split(END)[1]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=STUDY)
    print(f"wrote {update(parser.parse_args().study)}")
