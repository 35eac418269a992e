"""notebooks/analysis.ipynb executes headless on a sweep (kernel = this interpreter) and renders its figures."""

from __future__ import annotations

import pytest
from conftest import ROOT
from test_paper_scores import write_paper_dir
from test_report import write_sweep

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("nb_sweep"))


def test_notebook_executes(sweep_dir, jupyter_kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("BIAS_AMP_SWEEP", str(sweep_dir))
    monkeypatch.setenv("BIAS_AMP_PAPER", str(write_paper_dir(tmp_path / "paper")))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    nbclient.NotebookClient(nb, kernel_name=jupyter_kernel, timeout=180,
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert f"{sweep_dir}: setups ['greedy-none', 'greedy-preserve'], 84 scored articles" in text
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 6  # Fig. 3, 4 (two), 5, 8, 11
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "| greedy-preserve | 1 | 12 |" in markdown and "# Article trajectories" in markdown
