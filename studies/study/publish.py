"""Publish one finished run of the study into studies/study/ (what published every run from 2026-12-02 on): its
small files (metrics.csv, config.yaml, run.log; per version scores.csv, train.json, replay.json, probe.npz and its
first 3 articles as articles.sample.jsonl), its share of verbatim real text (copying.py, from the full
articles), its held-out log-likelihoods (heldout_gap.py --append: needs the run's
final checkpoint, so publish in the sitting that finished the run), the report rebuilt from the published files
(trajectories.md is kept: see bias_amp.report), analysis/'s c_t association over the published runs and STUDY.md's
findings tables (table.py).

    python studies/study/publish.py multirun/study beam-none 0

Then write what the run shows in STUDY.md's prose and delete its studies/study/wip/ archive, if any.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

from copying import update as update_copying  # this folder's scripts (the script's own folder)
from omegaconf import OmegaConf
from table import update as update_tables

from bias_amp import projection, report
from bias_amp.errors import check
from bias_amp.io import read_json, write_json, write_text
from bias_amp.layout import is_done, version_name

STUDY = Path(__file__).resolve().parent
FILES = ("metrics.csv", "config.yaml", "run.log")
VERSION_FILES = ("scores.csv", "train.json", "replay.json", "probe.npz")


def copy_run(src: Path, dst: Path) -> int:
    """The run's small files into dst; returns the number of versions copied."""
    generations = OmegaConf.load(src / "config.yaml").generations
    unfinished = [version_name(g) for g in range(-1, generations) if not is_done(src, g)]
    check(not unfinished, "run", f"a finished run ({src} has no DONE in {', '.join(unfinished)})")
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy2(src / name, dst / name)
    for g in range(-1, generations):
        version = version_name(g)
        (dst / version).mkdir(exist_ok=True)
        for name in VERSION_FILES:
            if (src / version / name).exists():
                shutil.copy2(src / version / name, dst / version / name)
        with open(src / version / "articles.jsonl") as f:
            (dst / version / "articles.sample.jsonl").write_text("".join(itertools.islice(f, 3)))
    return generations + 1


def update_c_t(study: Path) -> dict:
    """analysis/c_t.md and summary.json's c_t: mean c_t vs the next change in right share, every published run."""
    c_t = projection.association(report.load_runs(study, ["share_right"]))
    write_text(study / "analysis" / "c_t.md", projection.markdown(c_t))
    write_json(study / "analysis" / "summary.json", {**read_json(study / "analysis" / "summary.json"), "c_t": c_t})
    return c_t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="the sweep folder holding the run (multirun/study)")
    parser.add_argument("setup", help="the run's setup folder, e.g. beam-none")
    parser.add_argument("seed", type=int)
    parser.add_argument("--study", type=Path, default=STUDY)
    args = parser.parse_args()
    part = Path(args.setup) / f"seed_{args.seed}"
    n = copy_run(args.sweep / part, args.study / part)
    print(f"copied {n} versions of {part}")
    update_copying(args.sweep, [str(part)], args.study / "copying.csv")
    subprocess.run([sys.executable, str(STUDY / "heldout_gap.py"), str(args.sweep), "--per-label", "100",
                    "--cache", str(args.study / "heldout_logp"), "--out", str(args.study / "heldout_gap.csv"),
                    "--append"], check=True)
    written = report.build(args.study)
    (args.study / "report" / "index.html").unlink(missing_ok=True)    # 2.2 MB: rebuilt by whoever opens it
    print(f"report: {len(written) - 1} files")
    c_t = update_c_t(args.study)
    print("c_t:", {k: v for k, v in c_t.items() if not isinstance(v, (list, dict))})
    print(f"tables: {update_tables(args.study)}")


if __name__ == "__main__":
    main()
