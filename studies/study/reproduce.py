"""A rerun of one published setup x seed set beside the published run, version by version: for the right share,
the quality index and the perplexity, the rerun's value, its difference and whether it falls inside the published
run's 95% CI; and which versions came out identical. Same seed, precision, thread count and CPU give identical
numbers; another CPU, numbers within the CIs (studies/README.md "Reproducing one setup x seed"). A partial rerun
is compared on the versions it finished.

    python studies/study/reproduce.py outputs/runs/study/greedy-none/seed_0 [--out FILE.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bias_amp.errors import check
from bias_amp.io import write_text

STUDY = Path(__file__).resolve().parent
# column: (name, scale, format, its CI's column prefix)
MEASURES = {"share_right": ("right share (%)", 100, ".1f", "share_right"),
            "quality_mean": ("quality index", 1, ".3f", "quality"),
            "perplexity_mean": ("perplexity", 1, ".2f", "perplexity")}
SAME = ["n_articles", "share_left", "share_center", "share_right", "quality_mean", "distinct_2",
        "repeated_4gram_share", "train_loss"]     # identical on the same CPU (perplexity: see studies/README.md)


def metrics(run: Path) -> pd.DataFrame:
    path = run / "metrics.csv"
    check(path.is_file(), "run", "a run folder with metrics.csv", str(run))
    return pd.read_csv(path).set_index("version")


def compare(run: Path, published: Path) -> tuple[pd.DataFrame, dict]:
    """One row per version both runs have; a summary of how many fall inside the published CIs."""
    ours, pub = metrics(run), metrics(published)
    versions = [v for v in pub.index if v in ours.index]
    check(bool(versions), "run", f"a finished version of {published}", str(run))
    rows = []
    for v in versions:
        row = {"version": v, "precision": f"{ours.precision[v]} / {pub.precision[v]}"}
        for col, (_, scale, fmt, ci) in MEASURES.items():
            lo, hi, x = pub[f"{ci}_ci_low"][v], pub[f"{ci}_ci_high"][v], ours[col][v]
            row[col] = f"{scale * pub[col][v]:{fmt}} [{scale * lo:{fmt}}, {scale * hi:{fmt}}] → {scale * x:{fmt}}"
            row[f"{col}_inside"] = bool(lo <= x <= hi)
        row["identical"] = bool(ours.loc[v, SAME].equals(pub.loc[v, SAME]))
        rows.append(row)
    table = pd.DataFrame(rows)
    summary = {col: int(table[f"{col}_inside"].sum()) for col in MEASURES} | {
        "identical": int(table.identical.sum()), "versions": len(versions),
        "missing": [v for v in pub.index if v not in ours.index]}
    return table, summary


def markdown(table: pd.DataFrame, summary: dict, run: Path, published: Path) -> str:
    head = ["version", "precision (rerun / published)"] + [
        f"{m[0]}: published [95% CI] → rerun" for m in MEASURES.values()] + ["identical"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in table.itertuples(index=False):
        r = r._asdict()
        cells = [r["version"], r["precision"]] + [
            r[c] + ("" if r[f"{c}_inside"] else " **outside**") for c in MEASURES] + ["yes" if r["identical"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    n = summary["versions"]
    inside = ", ".join(f"{m[0]} {summary[c]}" for c, m in MEASURES.items())
    missing = f"; not in the rerun: {', '.join(summary['missing'])}" if summary["missing"] else ""
    return (f"Rerun `{run}` against the published `{published}`: {n} versions compared{missing}. Inside the "
            f"published 95% CI, of {n}: {inside}; identical ({', '.join(SAME)}): {summary['identical']} of {n}.\n\n"
            + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the rerun's folder (…/<setup>/seed_<n>)")
    parser.add_argument("--published", type=Path, help="default: studies/study/<setup>/seed_<n> of the run's path")
    parser.add_argument("--out", type=Path, help="also write the comparison here (markdown)")
    args = parser.parse_args(argv)
    published = args.published or STUDY / args.run.resolve().parent.name / args.run.resolve().name
    table, summary = compare(args.run, published)
    text = markdown(table, summary, args.run, published)
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
