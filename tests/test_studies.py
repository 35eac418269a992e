"""The published study (studies/study/): its STUDY.md tables are what its files say."""

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


def test_update_needs_the_markers_and_keeps_the_file(tmp_path):
    (tmp_path / "STUDY.md").write_text("# a study without the table markers\n")
    with pytest.raises(ConfigError, match="STUDY.md"):
        table.update(tmp_path)
    assert (tmp_path / "STUDY.md").read_text() == "# a study without the table markers\n"
