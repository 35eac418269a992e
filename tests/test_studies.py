"""The published study (studies/study/): its STUDY.md tables are what its files say."""

import numpy as np
import pandas as pd
import pytest
from conftest import study_script

from bias_amp.errors import ConfigError

table = study_script("table")


def published_tables() -> str:
    text = (table.STUDY / "STUDY.md").read_text()
    return text.split(table.BEGIN + "\n")[1].split("\n" + table.END)[0]


def test_study_md_tables_match_the_published_files():
    """A run published without rerunning table.py (or a hand edit of a cell) fails here."""
    assert published_tables() == table.tables(table.STUDY)


def test_run_row_reads_the_runs_metrics():
    m = pd.read_csv(table.STUDY / "greedy-none" / "seed_0" / "metrics.csv").set_index("version")
    row = next(line for line in published_tables().splitlines() if line.startswith("| greedy-none, 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{100 * m.share_right.gen_00:.1f} → {100 * m.share_right.gen_10:.1f}"
    assert cells[2] == f"{m.quality_mean.gen_00:.2f} → {m.quality_mean.gen_10:.2f}"


def test_setup_tilt_never_passes_one_seed_off_as_the_seeds_mean():
    h = pd.DataFrame({"gap_change": [0.06, 0.03, 0.08], "gap_change_ci_low": [0.0, -0.03, 0.01],
                      "gap_change_ci_high": [0.12, 0.09, 0.15]},
                     index=["s/seed_0/gen_10", "s/seed_1/gen_10", "t/mean"])
    assert table.setup_tilt(h, "s", ["0", "1"]) == "+0.045 (no CI: +0.060, +0.030)"
    assert table.setup_tilt(h, "s", ["0"]) == "+0.060 [+0.000, +0.120]"
    assert table.setup_tilt(h, "t", ["0", "1"]) == "**+0.080 [+0.010, +0.150]**"
    assert table.setup_tilt(h, "u", ["0"]) == "–"


def test_update_needs_the_markers_and_keeps_the_file(tmp_path):
    (tmp_path / "STUDY.md").write_text("# a study without the table markers\n")
    with pytest.raises(ConfigError, match="STUDY.md"):
        table.update(tmp_path)
    assert (tmp_path / "STUDY.md").read_text() == "# a study without the table markers\n"


def test_reproduce_flags_a_rerun_outside_the_published_cis(tmp_path):
    reproduce = study_script("reproduce")
    published = reproduce.STUDY / "greedy-none" / "seed_0"
    m = pd.read_csv(published / "metrics.csv")
    rerun = tmp_path / "greedy-none" / "seed_0"
    rerun.mkdir(parents=True)
    m.loc[m.version == "gen_05", "share_right"] += 0.2      # 20 points: outside any CI of 225 articles
    m[m.version != "gen_10"].to_csv(rerun / "metrics.csv", index=False)   # a partial rerun
    table, summary = reproduce.compare(rerun, published)
    assert summary == {"share_right": 10, "quality_mean": 11, "perplexity_mean": 11, "identical": 10,
                       "versions": 11, "missing": ["gen_10"]}
    assert table.set_index("version").share_right_inside.idxmin() == "gen_05"
    assert "**outside**" in reproduce.markdown(table, summary, rerun, published)
    with pytest.raises(ConfigError, match="run: expected a run folder with metrics.csv"):
        reproduce.compare(tmp_path, published)


def test_heldout_gap_means_only_over_every_published_seed(capsys):
    heldout_gap = study_script("heldout_gap")
    lp = {f"s/seed_{i}/gen_10": np.full(4, float(i)) for i in (1, 2)}
    lp |= {"base": np.zeros(4), "t/seed_0/gen_10": np.ones(4)}
    means = heldout_gap.setup_means(lp, published={"s/seed_1/gen_10", "t/seed_0/gen_10"})
    assert set(means) == {"s/mean"} and means["s/mean"].tolist() == [1.5] * 4      # t has one seed: no mean
    assert heldout_gap.setup_means(lp, published={"s/seed_0/gen_10"}) == {}        # seed 0's arrays are gone
    assert "no s/mean: no per-article log-likelihoods of s/seed_0/gen_10" in capsys.readouterr().out
