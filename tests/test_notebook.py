"""notebooks/analysis.ipynb executes headless on a sweep (kernel = this interpreter) and renders its figures."""

from __future__ import annotations

import pytest
from conftest import ROOT
from test_paper_scores import write_paper_dir
from test_report import N_SCORED, write_sweep

from bias_amp.plots import SMOKE_BANNER

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


def test_notebook_executes(tmp_path, jupyter_kernel, monkeypatch):
    """Two seeds of greedy-none, smoke instruments and collapse columns, the paper overlaid."""
    sweep = write_sweep(tmp_path / "sweep", smoke=True, collapse=True)
    monkeypatch.setenv("BIAS_AMP_SWEEP", str(sweep))
    monkeypatch.setenv("BIAS_AMP_PAPER", str(write_paper_dir(tmp_path / "paper")))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    nbclient.NotebookClient(nb, kernel_name=jupyter_kernel, timeout=180,
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert f"{sweep}: setups ['greedy-none', 'greedy-preserve'], 3 runs, {N_SCORED} scored articles" in text
    assert f"paper: {tmp_path / 'paper'}" in text
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 7  # Fig. 3, 4 (two), 5, 8, 11, collapse
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert f"# {SMOKE_BANNER}" in markdown and "| greedy-none | 1 | 2 | 12 |" in markdown
    assert "# Article trajectories" in markdown and "### greedy-none, seed 1" in markdown
