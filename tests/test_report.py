"""report: tables equal the runs' metrics.csv, seeds aggregate to mean and band, every figure is written,
the smoke banner, trajectories, the paper overlay, the Hydra app and its errors.

`write_sweep` builds TEST DATA in the documented run layout (SWEEP/<setup>/seed_<n>/, docs/ARCHITECTURE.md)
from a seeded RNG."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from test_paper_scores import write_paper_dir

from bias_amp import cli, paper_scores, plots, report
from bias_amp.errors import ConfigError
from bias_amp.layout import LEANINGS, version_name
from bias_amp.metrics.stats import mean_ci, shares

SETUPS = {"greedy-none": (3, (0, 1)), "greedy-preserve": (2, (0,))}  # setup -> (generations besides the baseline, seeds)
N_ARTICLES = 12
N_SCORED = N_ARTICLES * (4 * 2 + 3)
PNG = b"\x89PNG\r\n\x1a\n"


def write_sweep(root, seed: int = 0, smoke: bool | None = None, collapse: bool = False):
    """Test data: 2 setups (greedy-none with seeds 0 and 1), baseline + a few generations, scores.csv per
    article, articles.jsonl with continuations, metrics.csv computed from the scores, config.yaml naming the
    decoding rule; real.jsonl only for greedy-none. `smoke` adds the smoke_instruments column, `collapse`
    the collapse measures."""
    rng = np.random.default_rng(seed)
    ids = [f"a{i:03d}" for i in range(N_ARTICLES)]
    labels = [LEANINGS[i % 3] for i in range(N_ARTICLES)]
    for setup, (n_gen, seeds) in SETUPS.items():
        for s in seeds:
            d = root / setup / f"seed_{s}"
            d.mkdir(parents=True)
            (d / "config.yaml").write_text(f"seed: {s}\ndecoding:\n  name: greedy\n")
            rows = []
            for gen in range(-1, n_gen):
                version = version_name(gen)
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
                        conts = [f"{setup} s{s} {version} {aid} block {b} continuation." for b in range(2)]
                        f.write(json.dumps({"id": aid, "label": lab, "text": " ".join(conts),
                                            "continuations": conts}) + "\n")
                sh = shares(scores["leaning"])
                q, p_ = mean_ci(scores["quality"]), mean_ci(scores["perplexity"])
                row = {"setup": setup, "seed": s, "version": version, "generation": gen, "n_articles": N_ARTICLES,
                       **{f"share_{k}": v for k, v in sh.items()},
                       **{f"share_{k}_ci_{e}": v + d_ for k, v in sh.items() for e, d_ in (("low", -0.1), ("high", 0.1))},
                       "quality_mean": q[0], "quality_ci_low": q[1], "quality_ci_high": q[2],
                       "perplexity_mean": p_[0], "perplexity_ci_low": p_[1], "perplexity_ci_high": p_[2],
                       "train_loss": np.nan if gen < 0 else 3.0 - 0.1 * gen, "train_tokens_per_s": np.nan,
                       "synth_tokens_per_s": 100.0}
                if smoke is not None:
                    row["smoke_instruments"] = smoke
                if collapse:
                    row |= {c: 0.5 - 0.02 * gen + 0.01 * s for c in plots.COLLAPSE}
                (vdir / "metrics.json").write_text(json.dumps(row))
                (vdir / "DONE").write_text("")
                rows.append(row)
            pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)
    with open(root / "greedy-none" / "seed_0" / "real.jsonl", "w") as f:
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
    return pd.concat([pd.read_csv(p) for p in sorted(sweep_dir.glob("*/seed_*/metrics.csv"))], ignore_index=True)


def test_writes_every_table_and_figure(sweep_dir, built):
    out = sweep_dir / "report"
    names = {p.name for p in built}
    expected = {"summary_table.csv", "summary_table.md", "metrics_table.csv", "metrics_table.md", "trajectories.md",
                "trend.csv", "trend.md", "README.md", "index.html", *report.FIGURES}
    assert names == expected                                   # no collapse columns: no fig_collapse.png
    for name in report.FIGURES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    readme = (out / "README.md").read_text()
    for n in expected - {"README.md"}:
        assert f"[{n}]({n})" in readme
    assert "Fig. 4" in readme and plots.SMOKE_BANNER not in readme


def test_table_equals_run_metrics(sweep_dir, built):
    table = pd.read_csv(sweep_dir / "report" / "metrics_table.csv")
    run = _run_metrics(sweep_dir)
    assert list(table.columns) == report.TABLE_COLUMNS
    assert len(table) == 4 * 2 + 3
    pd.testing.assert_frame_equal(table, run[report.TABLE_COLUMNS], check_exact=False, rtol=1e-12)
    base = table[table.generation == -1]
    assert list(zip(base.setup, base.seed, strict=True)) == [("greedy-none", 0), ("greedy-none", 1), ("greedy-preserve", 0)]


def test_seeds_aggregate_to_mean_and_band(sweep_dir, built):
    """Two seeds: the mean and the min-max band over seeds; one seed: its value and its 95% CI."""
    summary = pd.read_csv(sweep_dir / "report" / "summary_table.csv").set_index(["setup", "generation"])
    run = _run_metrics(sweep_dir).set_index(["setup", "seed", "generation"])
    assert len(summary) == 4 + 3
    two = summary.loc[("greedy-none", 1)]
    vals = [run.loc[("greedy-none", s, 1)] for s in (0, 1)]
    assert two.n_seeds == 2 and two.version == "gen_01"
    for col in ("share_right", "quality_mean", "perplexity_mean", "train_loss"):
        assert two[col] == pytest.approx(np.mean([v[col] for v in vals]), rel=1e-12)
    for col in ("share_right", "quality_mean"):
        assert (two[f"{col}_band_low"], two[f"{col}_band_high"]) == pytest.approx(
            (min(v[col] for v in vals), max(v[col] for v in vals)), rel=1e-12)
    one, r = summary.loc[("greedy-preserve", 0)], run.loc[("greedy-preserve", 0, 0)]
    assert one.n_seeds == 1 and one.share_right == pytest.approx(r.share_right)
    assert (one.share_right_band_low, one.quality_mean_band_high) == pytest.approx(
        (r.share_right_ci_low, r.quality_ci_high))
    md = (sweep_dir / "report" / "summary_table.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| greedy-none | 1 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "2" and cells[3] == str(N_ARTICLES)
    assert cells[6] == f"{100 * two.share_right:.1f} [{100 * two.share_right_band_low:.1f}, " \
                       f"{100 * two.share_right_band_high:.1f}]"


def test_markdown_table(sweep_dir, built):
    md = (sweep_dir / "report" / "metrics_table.md").read_text().splitlines()
    r = _run_metrics(sweep_dir).set_index(["setup", "seed", "generation"]).loc[("greedy-none", 1, 1)]
    line = next(x for x in md if x.startswith("| greedy-none | 1 | 1 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == str(N_ARTICLES)
    assert cells[4:7] == [f"{100 * r[f'share_{k}']:.1f}" for k in LEANINGS]
    assert cells[7] == f"{r.quality_mean:.3f} [{r.quality_ci_low:.3f}, {r.quality_ci_high:.3f}]"
    assert cells[8] == f"{r.perplexity_mean:.2f} [{r.perplexity_ci_low:.2f}, {r.perplexity_ci_high:.2f}]"
    assert any(x.startswith("| greedy-preserve | 0 | base |") for x in md)


def test_per_article_scores_aggregate_to_metrics(sweep_dir):
    """summarize() over scores.csv reproduces each version's metrics.csv row."""
    metrics = report.load_metrics(sweep_dir)
    scores = report.load_scores(sweep_dir, metrics)
    assert len(scores) == N_SCORED and set(scores.seed) == {0, 1}
    again = paper_scores.summarize(scores.assign(setup=scores.setup + "/" + scores.seed.astype(str)))
    cols = [c for c in report.TABLE_COLUMNS if c not in ("setup", "version", "seed")]
    pd.testing.assert_frame_equal(again[cols], metrics[cols], check_dtype=False, rtol=1e-12)


def test_trajectories(sweep_dir, built):
    md = (sweep_dir / "report" / "trajectories.md").read_text()
    assert md.count("## Article ") == 2 and "## Article a007" in md
    assert md.count("### greedy-none, seed 1") == 2
    s = pd.read_csv(sweep_dir / "greedy-preserve" / "seed_0" / "gen_01" / "scores.csv").set_index("id").loc["a007"]
    assert (f"**gen_01** — {s.leaning} (L {s.p_left:.3f} / C {s.p_center:.3f} / R {s.p_right:.3f}), "
            f"quality {s.quality:.3f}") in md
    assert "> greedy-none s1 gen_01 a007 block 0 continuation. greedy-none s1 gen_01 a007 block 1" in md
    assert "**Original** (center) — *Title a007*" in md and "> Real body of a007." in md
    # greedy-preserve has no real.jsonl: its section starts with the baseline
    section = md.split("## Article a001")[1].split("### greedy-preserve, seed 0")[1]
    assert "**Original**" not in section.split("**baseline**")[0]


def test_published_sweep_keeps_its_trajectories(sweep_dir, built, tmp_path):
    """A published sweep keeps 3 sample articles per version: rebuilding its report keeps the trajectories.md
    built where the runs ran (and lists it), rather than one of placeholders."""
    published = tmp_path / "published"
    shutil.copytree(sweep_dir, published)
    for f in published.glob("*/seed_*/*/articles.jsonl"):
        f.with_name("articles.sample.jsonl").write_text("".join(f.read_text().splitlines(True)[:3]))
        f.unlink()
    before = (published / "report" / "trajectories.md").read_bytes()
    written = report.build(published)
    assert (published / "report" / "trajectories.md").read_bytes() == before
    assert published / "report" / "trajectories.md" not in written
    assert "- [trajectories.md](trajectories.md)" in (published / "report" / "README.md").read_text()
    (published / "report" / "trajectories.md").unlink()
    report.build(published)
    assert not (published / "report" / "trajectories.md").exists()


def test_default_articles_are_seeded(sweep_dir):
    scores = report.load_scores(sweep_dir)
    a, b = report.choose_articles(scores, 3, seed=1), report.choose_articles(scores, 3, seed=1)
    assert a == b and len(a) == 3 and set(a) <= set(scores["id"])
    assert report.choose_articles(scores, 100, seed=0) == sorted(scores["id"].unique())


def test_smoke_banner_and_collapse_figure(tmp_path, monkeypatch):
    """Smoke instruments: the banner heads the index, every markdown table, the trajectories and every
    figure but the instrument-free fig_collapse.png, which is drawn when the collapse columns exist."""
    sweep = write_sweep(tmp_path / "smoke", smoke=True, collapse=True)
    titles = {}
    save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: (titles.__setitem__(path.name, fig.get_suptitle()),
                                                          save(fig, path)))
    names = {p.name for p in report.build(sweep, articles=["a001"])}
    assert report.COLLAPSE_FIGURE in names and (sweep / "report" / report.COLLAPSE_FIGURE).read_bytes().startswith(PNG)
    assert {n for n, t in titles.items() if t == plots.SMOKE_BANNER} == set(report.FIGURES)
    assert "instrument-free" in titles[report.COLLAPSE_FIGURE]
    for name in ("README.md", "summary_table.md", "metrics_table.md", "trajectories.md"):
        assert (sweep / "report" / name).read_text().splitlines()[0].endswith(f"{plots.SMOKE_BANNER}**") or \
            (sweep / "report" / name).read_text().startswith(f"# {plots.SMOKE_BANNER}"), name
    assert pd.read_csv(sweep / "report" / "summary_table.csv").smoke_instruments.all()
    summary = report.aggregate(report.load_metrics(sweep))
    assert summary.loc[summary.setup == "greedy-none", "distinct_1_band_high"].iat[1] == pytest.approx(0.5 + 0.01)
    md = report.markdown_summary(summary.assign(n_unscorable=[2] + [0] * (len(summary) - 1)))
    assert "| greedy-none | base | 2 | 12 (2 unscorable) |" in md and "| greedy-none | 0 | 2 | 12 |" in md


def test_paper_overlay_and_paper_only(sweep_dir, tmp_path):
    paper = write_paper_dir(tmp_path / "paper")
    out = tmp_path / "both"
    cfg = cli.compose("report", [f"sweep={sweep_dir}", f"out={out}", f"paper={paper}", "articles=[]"])
    names = {p.name for p in report.run(cfg)}
    assert {"metrics_table.csv", "paper_metrics_table.csv", "paper_metrics_table.md", *report.FIGURES} <= names
    pd.testing.assert_frame_equal(pd.read_csv(out / "paper_metrics_table.csv"),
                                  paper_scores.load_metrics(paper).reindex(columns=report.TABLE_COLUMNS),
                                  check_dtype=False)
    only = tmp_path / "only"
    report.run(cli.compose("report", [f"paper={paper}", f"out={only}"]))
    assert {p.name for p in only.iterdir()} == {"paper_metrics_table.csv", "paper_metrics_table.md", "README.md",
                                               "trend.csv", "trend.md", "index.html", *report.FIGURES}
    trend = pd.read_csv(only / "trend.csv")                # the paper's own runs get the trend test too
    assert set(trend.setup) == set(paper_scores.load_metrics(paper).setup)


def test_paper_default_is_shared_when_present(tmp_path, monkeypatch):
    """paper=auto (the default of report and notebook) overlays ../shared's scores when they exist."""
    assert cli.compose("report").paper == "auto"
    monkeypatch.setattr(report, "PAPER_AUTO", tmp_path / "absent")
    assert report.resolve_paper("auto") is None
    monkeypatch.setattr(report, "PAPER_AUTO", tmp_path)
    assert report.resolve_paper("auto") == tmp_path and report.resolve_paper(None) is None
    assert report.resolve_paper("null") is None and report.resolve_paper(str(tmp_path)) == tmp_path
    with pytest.raises(ConfigError, match=r"^paper: expected a directory of the paper's score CSVs, auto or null"):
        report.resolve_paper(tmp_path / "nope")


def _app(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bias_amp.report", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_positional_sweep_and_one_line_errors(sweep_dir, tmp_path):
    p = _app(str(sweep_dir), f"out={tmp_path / 'r'}", "articles=[a002,a003]", "paper=null")
    assert p.returncode == 0, p.stderr
    assert f"to {tmp_path / 'r'}" in p.stdout and not (tmp_path / "r" / "paper_metrics_table.csv").exists()
    md = (tmp_path / "r" / "trajectories.md").read_text()
    assert "## Article a002" in md and "## Article a003" in md
    assert not list(tmp_path.glob("*.log")) and not (ROOT / "report.log").exists()
    p = _app(cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
    assert p.stderr.startswith("error: sweep: expected a sweep directory (SWEEP or sweep=DIR), or paper=DIR out=DIR")
    for args, message in [(["sweep=/nonexistent/sweep"], r"^sweep: expected an existing sweep directory, got '/nonexistent/sweep'"),
                          (["paper=/nonexistent/p"], r"^paper: expected a directory of the paper's score CSVs"),
                          ([f"sweep={sweep_dir}", "n_articles=-1"], r"^n_articles: expected an integer in \[0, inf\]"),
                          ([f"sweep={sweep_dir}", "articles=a001"], r"^articles: expected a list of article ids or null")]:
        with pytest.raises(ConfigError, match=message):
            report.run(cli.compose("report", args))


def test_sweep_argument_shim():
    argv = ["prog", "multirun/smoke", "paper=null"]
    cli.sweep_argument(argv)
    assert argv == ["prog", "sweep=multirun/smoke", "paper=null"]
    argv = ["prog", "multirun/a", "multirun/b", "out=cmp"]
    cli.sweep_argument(argv)
    assert argv == ["prog", "sweep=[multirun/a,multirun/b]", "out=cmp"]
    for argv in (["prog", "sweep=x"], ["prog", "-m", "x"], ["prog"]):
        before = list(argv)
        cli.sweep_argument(argv)
        assert argv == before


def test_input_errors(sweep_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^sweep: expected a directory holding <setup>/seed_<n>/metrics.csv"):
        report.load_metrics(tmp_path)
    (tmp_path / "s" / "seed_3").mkdir(parents=True)
    pd.DataFrame({"setup": ["s"], "generation": [0]}).to_csv(tmp_path / "s" / "seed_3" / "metrics.csv", index=False)
    with pytest.raises(ConfigError, match=r"^s/seed_3/metrics.csv: expected columns .*missing \['n_articles'"):
        report.load_metrics(tmp_path)
    with pytest.raises(ConfigError, match=r"^articles: expected ids of articles in the sweep, got \['zzz'\]"):
        report.build(sweep_dir, tmp_path / "o", articles=["zzz"])
    assert not (tmp_path / "o").exists()


def test_figures_without_baseline_or_perplexity(sweep_dir, tmp_path):
    """A run with baseline=false and no perplexity still gets every figure."""
    metrics = report.load_metrics(sweep_dir)
    metrics = metrics[metrics.generation >= 0].assign(perplexity_mean=np.nan, perplexity_ci_low=np.nan,
                                                      perplexity_ci_high=np.nan)
    scores = report.load_scores(sweep_dir, metrics).drop(columns="perplexity")
    paths = report.write_figures(tmp_path, report.aggregate(metrics), scores)
    assert [p.name for p in paths] == list(report.FIGURES)
    assert all(p.read_bytes().startswith(PNG) for p in paths)


def test_figures_keep_every_setup_visible_and_axes_honest(sweep_dir):
    """#12/#13: coinciding curves stay visible (own marker, size, dash, x offset); Fig. 3 names the base model
    under its decoding rule; legends sit outside the panels; quality axes span 0 (noise) .. 3 (clean); each
    Fig. 8 panel shows only the versions it has."""
    metrics = report.load_metrics(sweep_dir)
    summary = report.aggregate(metrics.assign(share_right=0.0, share_right_ci_low=0.0, share_right_ci_high=0.0))
    ax = plots.fig_right_share(summary).axes[0]
    a, b = ax.lines[:2]
    assert (a.get_marker(), a.get_markersize()) != (b.get_marker(), b.get_markersize()) and a.get_linestyle() != b.get_linestyle()
    assert not np.allclose(a.get_xdata()[:3], b.get_xdata()[:3])           # dodged along x
    assert ax.get_legend() is not None and ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1 - 1

    labels = [t.get_text() for t in plots.fig_baseline_leaning(summary).axes[0].get_xticklabels()]
    assert labels == ["base model,\ngreedy decoding"]                     # both setups share the greedy base model
    shares = plots.fig_leaning_shares(summary)
    assert len(shares.legends) == 1 and all(x.get_legend() is None for x in shares.axes)

    quality = plots.fig_quality(summary).axes[0]
    assert quality.get_ylim()[0] <= 0 and quality.get_ylim()[1] >= 3
    assert [t.get_text() for t in quality.get_yticklabels()] == ["0 noise", "1 word salad", "2 mild gibberish", "3 clean"]

    scores = report.load_scores(sweep_dir, metrics)
    scores = scores[(scores.setup == "greedy-none") | (scores.generation >= 0)]  # greedy-preserve: no baseline
    panels = [x for x in plots.fig_quality_distribution(scores).axes if x.get_visible()]
    assert [[t.get_text() for t in x.get_xticklabels()] for x in panels] == [["base", "0", "1", "2"], ["0", "1"]]


def test_several_sweeps_get_their_reports_and_one_comparison_page(tmp_path):
    a, b = write_sweep(tmp_path / "fp32"), write_sweep(tmp_path / "bf16", seed=1)
    with pytest.raises(ConfigError, match=r"^out: expected a directory for the page comparing several sweeps"):
        report.run(cli.compose("report", [f"sweep=[{a},{b}]", "paper=null"]))
    written = report.run(cli.compose("report", [f"sweep=[{a},{b}]", f"out={tmp_path / 'cmp'}", "paper=null"]))
    assert (a / "report" / "index.html").is_file() and (b / "report" / "index.html").is_file()
    page = (tmp_path / "cmp" / "index.html").read_text()
    assert written[-1] == tmp_path / "cmp" / "index.html"
    assert "fp32 · greedy-none" in page and "bf16 · greedy-none" in page     # both studies' curves, named
