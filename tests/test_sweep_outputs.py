"""analyze, report and the notebook on a real smoke sweep made by the loop runner."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from bias_amp import analyze, io, report
from bias_amp.layout import run_dir, run_dirs
from bias_amp.metrics.collapse import copied_share, words
from bias_amp.metrics.scorer import MIN_WORDS
from bias_amp.probes import load_probe

PNG = b"\x89PNG\r\n\x1a\n"


def run_metrics(sweep):
    return pd.concat([pd.read_csv(d / "metrics.csv") for d in run_dirs(sweep)], ignore_index=True)


def test_sweep_has_every_version_with_all_metric_columns(smoke_sweep):
    assert [d.relative_to(smoke_sweep).as_posix() for d in run_dirs(smoke_sweep)] == [
        "greedy-none/seed_0", "greedy-preserve/seed_0"]                  # one run dir per setup and seed
    metrics = run_metrics(smoke_sweep)
    assert (metrics.seed == 0).all()
    assert sorted(metrics.setup.unique()) == ["greedy-none", "greedy-preserve"]
    assert metrics.groupby("setup").version.apply(list).tolist() == [["baseline"] + [f"gen_0{g}" for g in range(4)]] * 2
    cols = [c for c in report.TABLE_COLUMNS if c not in ("setup", "version")]
    assert metrics[cols].notna().all().all()
    assert np.allclose(metrics[["share_left", "share_center", "share_right"]].sum(axis=1), 1.0)
    # the copied share is each article's 8-grams found in the article its prompts came from (real ones here)
    run = run_dir(smoke_sweep, "greedy-none", 0)
    real = {r["id"]: f"{r['title']}\n{r['body']}" for r in io.read_jsonl(run / "real.jsonl")}
    arts = [a for a in io.read_jsonl(run / "gen_00" / "articles.jsonl") if len(words(a["text"])) >= MIN_WORDS]
    expect = np.nanmean([copied_share(a["text"], real[a["id"]]) for a in arts])
    assert metrics.copied_8gram_share.between(0, 1).all() and metrics.copied_8gram_share.iat[1] == pytest.approx(expect)


def test_study_copying_script_recomputes_what_the_loop_records(smoke_sweep):
    """studies/study/copying.py, for runs that predate the column, gives each version's recorded value."""
    from conftest import study_script

    copying = study_script("copying")
    run = run_dir(smoke_sweep, "greedy-none", 0)
    rows = pd.DataFrame(copying.run_rows(run))
    recorded = pd.read_csv(run / "metrics.csv")
    assert rows.version.tolist() == recorded.version.tolist()
    assert np.allclose(rows.copied_8gram_share, recorded.copied_8gram_share, equal_nan=True)
    assert (rows.n_articles == recorded.n_articles).all()


def test_jobs_sharing_a_process_do_not_leak_state(smoke_sweep, tmp_path):
    """greedy-preserve ran second in the sweep's one process; run alone it gives the same results."""
    import subprocess

    from conftest import ROOT, SMOKE_SWEEP

    alone = tmp_path / "greedy-preserve"
    swept = run_dir(smoke_sweep, "greedy-preserve", 0)
    proc = subprocess.run([sys.executable, "-m", "bias_amp.run", "setup=greedy-preserve", *SMOKE_SWEEP,
                           f"hydra.run.dir={alone}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    volatile = ["train_tokens_per_s", "synth_tokens_per_s"]
    pd.testing.assert_frame_equal(pd.read_csv(alone / "metrics.csv").drop(columns=volatile),
                                  pd.read_csv(swept / "metrics.csv").drop(columns=volatile))
    for v in ("baseline", "gen_03"):
        assert (alone / v / "articles.jsonl").read_text() == (swept / v / "articles.jsonl").read_text()


def test_report_tables_equal_the_run_metrics(smoke_sweep, tmp_path):
    written = {p.name for p in report.build(smoke_sweep, out=tmp_path / "report")}
    assert {"metrics_table.csv", "metrics_table.md", "trajectories.md", *report.FIGURES} <= written
    for name in report.FIGURES:
        assert (tmp_path / "report" / name).read_bytes().startswith(PNG), name
    table = pd.read_csv(tmp_path / "report" / "metrics_table.csv")
    pd.testing.assert_frame_equal(table, run_metrics(smoke_sweep)[report.TABLE_COLUMNS], check_exact=False,
                                  rtol=1e-12)
    assert "**Original**" in (tmp_path / "report" / "trajectories.md").read_text()   # real.jsonl is used


def test_analyze_writes_every_output_and_matches_the_probes(smoke_sweep, tmp_path):
    cfg = analyze.load_config([f"out_dir={tmp_path / 'analysis'}", "maxlags=0"])
    paths = analyze.analyze(smoke_sweep, cfg)
    for key in ("neurons", "overlap", "overlap_md", "summary"):
        assert paths[key].is_file()
    assert any(p.suffix == ".png" and p.read_bytes().startswith(PNG) for p in paths.values())
    summary = json.loads(paths["summary"].read_text())
    probe = load_probe(run_dir(smoke_sweep, "greedy-none", 0) / "gen_00" / "probe.npz")
    assert summary["neurons"] == probe["weight"].size and summary["versions"] == 8 and summary["observations"] == 6
    # one neuron's Pearson r (first differences within setups) recomputed from the raw files
    neurons = pd.read_csv(paths["neurons"])
    row = neurons[(neurons.relationship == "activation_right") & (neurons.layer == 1) & (neurons.unit == 5)].iloc[0]
    dx, dy = [], []
    for setup in ("greedy-none", "greedy-preserve"):
        m = pd.read_csv(run_dir(smoke_sweep, setup, 0) / "metrics.csv").query("generation >= 0")
        x = [load_probe(run_dir(smoke_sweep, setup, 0) / v / "probe.npz")["activation"][1, 5] for v in m.version]
        dx += list(np.diff(x))
        dy += list(np.diff(m.share_right))
    if np.std(dy) > 0 and np.std(dx) > 0:
        assert row.r == pytest.approx(np.corrcoef(dx, dy)[0, 1], abs=1e-6)


def test_notebook_executes_on_the_sweep(smoke_sweep, tmp_path, monkeypatch, jupyter_kernel):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from conftest import ROOT

    monkeypatch.setenv("BIAS_AMP_SWEEP", str(smoke_sweep))
    monkeypatch.setenv("BIAS_AMP_PAPER", "none")   # no overlay (an explicit missing folder is an error)
    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    nbclient.NotebookClient(nb, kernel_name=jupyter_kernel, timeout=300,
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) >= 5
    assert "greedy-preserve" in "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
