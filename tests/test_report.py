"""report: tables equal the run's metrics.csv, every figure is written, trajectories, the CLI and its errors.

`sweep_dir` builds TEST DATA in the documented run layout (docs/ARCHITECTURE.md) from a seeded RNG;
swap it for a real smoke sweep fixture when one exists."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_paper_scores import write_paper_dir

from bias_amp import paper_scores, report
from bias_amp.errors import ConfigError
from bias_amp.metrics.stats import LEANINGS, mean_ci, shares

SETUPS = {"greedy-none": 3, "greedy-preserve": 2}  # setup -> generations (0..n-1) besides the baseline
N_ARTICLES = 12
PNG = b"\x89PNG\r\n\x1a\n"


def write_sweep(root, seed: int = 0):
    """Test data: 2 setups, baseline + a few generations, scores.csv per article, articles.jsonl with
    continuations, metrics.csv computed from the scores; real.jsonl only for greedy-none."""
    rng = np.random.default_rng(seed)
    ids = [f"a{i:03d}" for i in range(N_ARTICLES)]
    labels = [LEANINGS[i % 3] for i in range(N_ARTICLES)]
    for setup, n_gen in SETUPS.items():
        d = root / setup
        d.mkdir(parents=True)
        rows = []
        for gen in range(-1, n_gen):
            version = paper_scores.version_name(gen)
            vdir = d / version
            vdir.mkdir()
            p = rng.dirichlet([1.0, 1.0, 1.0 + gen + 1], size=N_ARTICLES)  # drifting right
            scores = pd.DataFrame({
                "id": ids, "label": labels, "p_left": p[:, 0], "p_center": p[:, 1], "p_right": p[:, 2],
                "leaning": np.asarray(LEANINGS)[p.argmax(1)],
                "quality": rng.normal(2.4 - 0.2 * (gen + 1), 0.3, N_ARTICLES),
                "perplexity": rng.lognormal(np.log(8) - 0.1 * (gen + 1), 0.2, N_ARTICLES)})
            scores.to_csv(vdir / "scores.csv", index=False)
            with open(vdir / "articles.jsonl", "w") as f:
                for aid, lab in zip(ids, labels, strict=True):
                    conts = [f"{setup} {version} {aid} block {b} continuation." for b in range(2)]
                    f.write(json.dumps({"id": aid, "label": lab, "text": " ".join(conts), "continuations": conts}) + "\n")
            sh = shares(scores["leaning"])
            q, p_ = mean_ci(scores["quality"]), mean_ci(scores["perplexity"])
            row = {"setup": setup, "version": version, "generation": gen, "n_articles": N_ARTICLES,
                   **{f"share_{k}": v for k, v in sh.items()},
                   "quality_mean": q[0], "quality_ci_low": q[1], "quality_ci_high": q[2],
                   "perplexity_mean": p_[0], "perplexity_ci_low": p_[1], "perplexity_ci_high": p_[2],
                   "train_loss": np.nan if gen < 0 else 3.0 - 0.1 * gen, "train_tokens_per_s": np.nan,
                   "synth_tokens_per_s": 100.0}
            (vdir / "metrics.json").write_text(json.dumps(row))
            (vdir / "DONE").write_text("")
            rows.append(row)
        pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)
    with open(root / "greedy-none" / "real.jsonl", "w") as f:
        for aid, lab in zip(ids, labels, strict=True):
            f.write(json.dumps({"id": aid, "label": lab, "title": f"Title {aid}", "body": f"Real body of {aid}."}) + "\n")
    return root


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def built(sweep_dir):
    """The default report of the sweep, built once for the module."""
    return report.build(sweep_dir, articles=["a001", "a007"])


def _run_metrics(sweep_dir) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in sorted(sweep_dir.glob("*/metrics.csv"))], ignore_index=True)


def test_writes_every_table_and_figure(sweep_dir, built):
    out = sweep_dir / "report"
    names = {p.name for p in built}
    expected = {"metrics_table.csv", "metrics_table.md", "trajectories.md", "README.md", *report.FIGURES}
    assert names == expected
    for name in report.FIGURES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    readme = (out / "README.md").read_text()
    for n in expected - {"README.md"}:
        assert f"[{n}]({n})" in readme
    assert "fig4_right_share.png" in readme and "Fig. 4" in readme


def test_table_equals_run_metrics(sweep_dir, built):
    table = pd.read_csv(sweep_dir / "report" / "metrics_table.csv")
    run = _run_metrics(sweep_dir)
    assert list(table.columns) == report.TABLE_COLUMNS
    assert len(table) == sum(n + 1 for n in SETUPS.values())
    pd.testing.assert_frame_equal(table, run[report.TABLE_COLUMNS], check_exact=False, rtol=1e-12)
    base = table[table.generation == -1]
    assert list(base.setup) == list(SETUPS) and (base.version == "baseline").all()


def test_markdown_table(sweep_dir, built):
    md = (sweep_dir / "report" / "metrics_table.md").read_text().splitlines()
    run = _run_metrics(sweep_dir).set_index(["setup", "generation"])
    r = run.loc[("greedy-preserve", 1)]
    line = next(x for x in md if x.startswith("| greedy-preserve | 1 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == str(N_ARTICLES)
    assert cells[3:6] == [f"{100 * r[f'share_{k}']:.1f}" for k in LEANINGS]
    assert cells[6] == f"{r.quality_mean:.3f} [{r.quality_ci_low:.3f}, {r.quality_ci_high:.3f}]"
    assert cells[7] == f"{r.perplexity_mean:.2f} [{r.perplexity_ci_low:.2f}, {r.perplexity_ci_high:.2f}]"
    assert any(x.startswith("| greedy-none | base |") for x in md)


def test_per_article_scores_aggregate_to_metrics(sweep_dir):
    """summarize() over scores.csv reproduces each version's metrics.csv row."""
    metrics = report.load_metrics(sweep_dir)
    scores = report.load_scores(sweep_dir, metrics)
    assert len(scores) == N_ARTICLES * len(metrics)
    again = paper_scores.summarize(scores)
    cols = [c for c in report.TABLE_COLUMNS if c not in ("setup", "version")]
    pd.testing.assert_frame_equal(again[cols], metrics[cols], check_dtype=False, rtol=1e-12)


def test_trajectories(sweep_dir, built):
    md = (sweep_dir / "report" / "trajectories.md").read_text()
    assert md.count("## Article ") == 2 and "## Article a007" in md
    s = pd.read_csv(sweep_dir / "greedy-preserve" / "gen_01" / "scores.csv").set_index("id").loc["a007"]
    assert (f"**gen_01** — {s.leaning} (L {s.p_left:.3f} / C {s.p_center:.3f} / R {s.p_right:.3f}), "
            f"quality {s.quality:.3f}") in md
    assert "> greedy-preserve gen_01 a007 block 0 continuation. greedy-preserve gen_01 a007 block 1" in md
    assert "**Original** (center) — *Title a007*" in md and "> Real body of a007." in md
    # greedy-preserve has no real.jsonl: its section starts with the baseline
    section = md.split("## Article a001")[1].split("### greedy-preserve")[1]
    assert "**Original**" not in section.split("**baseline**")[0]


def test_default_articles_are_seeded(sweep_dir):
    scores = report.load_scores(sweep_dir)
    a, b = report.choose_articles(scores, 3, seed=1), report.choose_articles(scores, 3, seed=1)
    assert a == b and len(a) == 3 and set(a) <= set(scores["id"])
    assert report.choose_articles(scores, 100, seed=0) == sorted(scores["id"].unique())


def test_paper_overlay_and_paper_only(sweep_dir, tmp_path):
    paper = write_paper_dir(tmp_path / "paper")
    out = tmp_path / "both"
    names = {p.name for p in report.build(sweep_dir, out, paper=paper, articles=[])}
    assert {"metrics_table.csv", "paper_metrics_table.csv", "paper_metrics_table.md", *report.FIGURES} <= names
    pd.testing.assert_frame_equal(pd.read_csv(out / "paper_metrics_table.csv"),
                                  paper_scores.load_metrics(paper)[report.TABLE_COLUMNS], check_dtype=False)
    only = tmp_path / "only"
    report.main(["--paper", str(paper), "--out", str(only)])
    assert {p.name for p in only.iterdir()} == {"paper_metrics_table.csv", "paper_metrics_table.md", "README.md",
                                               *report.FIGURES}


def test_cli(sweep_dir, tmp_path, capsys):
    report.main([str(sweep_dir), "--out", str(tmp_path / "r"), "--articles", "a002, a003", "--n-articles", "1"])
    assert f"to {tmp_path / 'r'}" in capsys.readouterr().out
    md = (tmp_path / "r" / "trajectories.md").read_text()
    assert "## Article a002" in md and "## Article a003" in md


@pytest.mark.parametrize("argv, message", [
    ([], "error: sweep: expected a sweep directory or --paper DIR"),
    (["/nonexistent/sweep"], "error: sweep: expected an existing sweep directory, got '/nonexistent/sweep'"),
    (["--paper", "/nonexistent/p"], "error: out: expected an output directory (--out) when there is no sweep"),
])
def test_cli_errors(argv, message):
    with pytest.raises(SystemExit) as e:
        report.main(argv)
    assert str(e.value) == message


def test_input_errors(sweep_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^sweep: expected a directory holding <setup>/metrics.csv"):
        report.load_metrics(tmp_path)
    (tmp_path / "s").mkdir()
    pd.DataFrame({"setup": ["s"], "generation": [0]}).to_csv(tmp_path / "s" / "metrics.csv", index=False)
    with pytest.raises(ConfigError, match=r"^s/metrics.csv: expected columns .*missing \['n_articles'"):
        report.load_metrics(tmp_path)
    with pytest.raises(ConfigError, match=r"^articles: expected ids of articles in the sweep, got \['zzz'\]"):
        report.build(sweep_dir, tmp_path / "o", articles=["zzz"])


def test_figures_without_baseline_or_perplexity(sweep_dir, tmp_path):
    """A run with baseline=false and no perplexity still gets every figure."""
    metrics = report.load_metrics(sweep_dir)
    metrics = metrics[metrics.generation >= 0].assign(perplexity_mean=np.nan, perplexity_ci_low=np.nan,
                                                      perplexity_ci_high=np.nan)
    scores = report.load_scores(sweep_dir, metrics).drop(columns="perplexity")
    paths = report.write_figures(tmp_path, metrics, scores)
    assert [p.name for p in paths] == list(report.FIGURES)
    assert all(p.read_bytes().startswith(PNG) for p in paths)
