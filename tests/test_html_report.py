"""html report: report/index.html of a real smoke sweep opened in headless Chromium with the network off
(figures drawn with their traces, no console error, table sort, article picker, series toggles; a
screenshot is kept), plus the page's data: seed bands, CI bands, the paper's overlay, several sweeps,
instrument banner and cards, configs, bad input."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from plotly.offline import get_plotlyjs
from test_paper_scores import write_paper_dir

from bias_amp import analyze, html
from bias_amp.errors import ConfigError
from bias_amp.html import figures, studies
from bias_amp.layout import run_dirs

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _copy_sweep(src: Path, dst: Path) -> Path:
    """A sweep's outputs without checkpoints (the report never reads them)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "wandb"))
    return dst


@pytest.fixture(scope="module")
def sweep(smoke_sweep, tmp_path_factory) -> Path:
    """A copy of the real smoke sweep with its neuron analysis (SWEEP/analysis)."""
    sweep = _copy_sweep(smoke_sweep, tmp_path_factory.mktemp("html") / "smoke")
    analyze.analyze(sweep, analyze.load_config(["plots=false"]))
    return sweep


@pytest.fixture(scope="module")
def page(sweep) -> Path:
    return html.build(sweep, sweep / "report", n_articles=2)


def _metrics(sweep: Path) -> pd.DataFrame:
    return pd.concat([pd.read_csv(r / "metrics.csv") for r in run_dirs(sweep)], ignore_index=True)


def expected_figures(sweep: Path) -> dict[str, int]:
    """Figure id -> number of traces, from the sweep's files: per setup one line (+ one band when its
    single seed has a CI that is not a point) in the line figures, one line per setup and panel in the
    panel figures; the analysis: one heatmap, one box per relationship."""
    m = _metrics(sweep)
    setups = m["setup"].unique()

    def lines(col, lo, hi):
        bands = sum(bool(lo in d and d[lo].notna().all() and (d[hi] > d[lo]).any()) for _, d in m.groupby("setup"))
        return len(setups) + bands

    out = {"right_share": lines("share_right", "share_right_ci_low", "share_right_ci_high"),
           "leaning_shares": 3 * len(setups),
           "quality": lines("quality_mean", "quality_ci_low", "quality_ci_high"),
           "perplexity": lines("perplexity_mean", "perplexity_ci_low", "perplexity_ci_high")}
    ct = [c for c in m.columns if c.startswith("c_t")]
    if ct:
        out["c_t"] = len(ct) * len(setups)
    collapse = [c for c in figures.COLLAPSE if c in m.columns]
    if collapse:
        out["collapse"] = len(collapse) * len(setups)
    out[f"overlap-{sweep.name}"] = 1
    out[f"r-by-layer-{sweep.name}"] = len(pd.read_csv(sweep / "analysis" / "overlap.csv"))
    return out


# --- the page in a real browser ---

@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium / chromedriver not installed (`make install` installs Debian's chromium, chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # the given driver: nothing downloaded
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    yield driver
    driver.quit()


def _screenshot(driver, path: Path) -> Path:
    """The whole page as PNG (beyond the viewport), also copied to $BIAS_AMP_ARTIFACTS when set."""
    import base64

    size = driver.execute_script("return [document.body.scrollWidth, document.body.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 16000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    if os.environ.get("BIAS_AMP_ARTIFACTS"):
        art = Path(os.environ["BIAS_AMP_ARTIFACTS"])
        art.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, art / path.name)
    return path


def test_page_in_headless_chromium(browser, sweep, page, tmp_path):
    browser.get_log("performance")
    browser.get(page.as_uri())
    from selenium.webdriver.support.ui import Select, WebDriverWait

    n_figures = WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body.dataset.plotted"))
    plots = browser.execute_script("""return [...document.querySelectorAll('.js-plotly-plot')].map(d => {
        const box = d.querySelector('.main-svg').getBoundingClientRect();
        return {id: d.id, traces: d.data.length, area: box.width * box.height,
                drawn: d.querySelectorAll('.mlayer > g.trace, .mlayer > g.hm').length,
                marks: [...d.querySelectorAll('.mlayer path, .mlayer image')].filter(e =>
                    (e.getAttribute('d') || e.getAttribute('href') || '').length > 4).length};
    })""")
    assert {p["id"]: p["traces"] for p in plots} == expected_figures(sweep) and int(n_figures) == len(plots)
    for p in plots:  # every trace drawn into a visible SVG, with marks in it
        assert p["drawn"] == p["traces"] and p["marks"] >= p["traces"] and p["area"] > 10_000, p
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    sent = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = {m["params"]["request"]["url"] for m in sent if m["method"] == "Network.requestWillBeSent"}
    assert {u.split(":")[0] for u in urls} <= {"file", "data"}, urls  # nothing fetched from a network

    # the table sorts on click: share_right ascending, then descending
    m = _metrics(sweep)
    col = list(browser.execute_script(
        "return [...document.querySelectorAll('#metrics-table th')].map(th => th.textContent)")).index("share_right")
    read = f"return [...document.querySelectorAll('#metrics-table tbody tr')].map(tr => tr.cells[{col}].dataset.v)"
    th = browser.find_elements("css selector", "#metrics-table th")[col]
    th.click()
    assert [float(v) for v in browser.execute_script(read)] == sorted(m["share_right"])
    th.click()
    assert [float(v) for v in browser.execute_script(read)] == sorted(m["share_right"], reverse=True)
    assert len(browser.execute_script(read)) == len(m)

    # the picker switches articles: only the picked one is shown, with its synthetic text

    picker = Select(browser.find_element("id", "article-picker"))
    keys = [o.get_attribute("value") for o in picker.options]
    assert len(keys) == 2
    shown = "return [...document.querySelectorAll('.trajectory')].filter(s => !s.hidden).map(s => [s.dataset.article, s.innerText])"
    first = browser.execute_script(shown)
    picker.select_by_value(keys[1])
    second = browser.execute_script(shown)
    assert [s[0] for s in first] == [keys[0]] and [s[0] for s in second] == [keys[1]]
    aid = keys[1].split(" · ")[-1]
    run = run_dirs(sweep)[0]
    text = next(a["text"] for a in map(json.loads, (run / "gen_00" / "articles.jsonl").read_text().splitlines())
                if str(a["id"]) == aid)
    assert text.split()[0] in second[0][1] and first[0][1] != second[0][1]

    # a series toggle hides that setup's traces in every figure
    setup = m["setup"].iloc[0]
    browser.find_element("css selector", f".toggles input[value='{setup}']").click()
    hidden = browser.execute_script("""return [...document.querySelectorAll('.js-plotly-plot')].flatMap(d =>
        d.data.filter(t => t.legendgroup === arguments[0]).map(t => t.visible))""", setup)
    assert hidden and set(hidden) == {"legendonly"}
    assert _screenshot(browser, tmp_path / "html_report.png").stat().st_size > 20_000


# --- the page's content ---

def test_page_is_self_contained(page, sweep):
    text = page.read_text()
    # the installed plotly.js embedded once (compressed), whatever the number of figures; nothing linked
    blobs = re.findall(r'<script type="application/octet-stream" id="plotly-js-gz">([^<]+)</script>', text)
    assert len(blobs) == 1 and gzip.decompress(base64.b64decode(blobs[0])).decode() == get_plotlyjs()
    assert "<script src" not in text and "<link" not in text
    assert page.stat().st_size < 3e6  # plotly.min.js alone is 4.9 MB uncompressed
    for run in run_dirs(sweep):  # each run's resolved config is on the page
        cfg = OmegaConf.load(run / "config.yaml")
        assert f"{sweep.name} · {run.parent.name} · {run.name}" in text and f"setup_name: {cfg.setup_name}" in text


def _frame(seeds: dict[int, list[float]], setup="greedy") -> pd.DataFrame:
    rows = [{"setup": setup, "series": setup, "seed": s, "generation": g, "share_right": v}
            for s, vals in seeds.items() for g, v in zip(range(-1, len(vals) - 1), vals, strict=True)]
    return pd.DataFrame(rows)


def _right_share(metrics: pd.DataFrame):
    return figures.metric_figures(metrics)["right_share"][1]


def test_seed_band_is_the_range_over_seeds():
    df = _frame({0: [0.2, 0.4, 0.6], 1: [0.3, 0.5, 0.5], 2: [0.1, 0.6, 0.7]})
    band, line = _right_share(df).data
    assert line.name == "greedy" and band.legendgroup == "greedy" and band.showlegend is False
    np.testing.assert_allclose(line.y, [20, 50, 60])
    np.testing.assert_allclose(band.y, [30, 60, 70, 50, 40, 10])  # max forwards, then min backwards
    assert list(line.customdata) == [3, 3, 3]


def test_single_seed_band_is_the_runs_ci():
    df = _frame({0: [0.2, 0.4]})
    df["share_right_ci_low"], df["share_right_ci_high"] = [0.1, 0.3], [0.35, 0.5]
    band, line = _right_share(df).data
    np.testing.assert_allclose(band.y, [35, 50, 30, 10])
    assert len(_right_share(df.drop(columns=["share_right_ci_low", "share_right_ci_high"])).data) == 1


def test_c_t_columns_are_drawn_as_their_mean_over_seeds():
    df = _frame({0: [0.2, 0.4], 1: [0.3, 0.5]}).assign(c_t=[1.0, 2.0, 3.0, 6.0], c_t_right=[0.1, 0.2, 0.3, 0.4])
    fig = figures.metric_figures(df)["c_t"][1]
    assert [t.name for t in fig.data] == ["greedy", "greedy"] and fig.data[1].showlegend is False
    np.testing.assert_allclose(fig.data[0].y, [2.0, 4.0])
    np.testing.assert_allclose(fig.data[1].y, [0.2, 0.3])


def test_paper_overlay_and_several_sweeps(sweep, tmp_path):
    """Two sweeps on one page are told apart by study name; the paper's setups are dashed, kept as paper-*."""
    a, b = _copy_sweep(sweep, tmp_path / "fp32" / "smoke"), _copy_sweep(sweep, tmp_path / "bf16" / "smoke")
    names = studies.study_names([a, b])
    assert names == ["fp32/smoke", "bf16/smoke"]
    paper = write_paper_dir(tmp_path / "paper_scores")
    shown = [studies.load_study(a, names[0]), studies.load_study(b, names[1]), studies.paper_study(paper)]
    m = studies.combine(shown)
    fig = figures.metric_figures(m)["right_share"][1]
    lines = {t.name: t for t in fig.data if t.showlegend is not False}
    setups = _metrics(sweep)["setup"].unique()
    assert set(lines) == {f"{n} · {s}" for n in names for s in setups} | {"paper-none", "paper-overfit", "paper-center-only"}
    assert {t.line.dash for n, t in lines.items() if n.startswith("paper-")} == {"dash"}
    assert {t.line.dash for n, t in lines.items() if not n.startswith("paper-")} == {"solid"}
    out = html.build([a, b], tmp_path / "report", paper=paper, n_articles=1)
    text = out.read_text()
    assert text.count('class="trajectory"') == 2 and f"{names[1]} · " in text
    n = len(_metrics(sweep))  # the table: every run row of both sweeps, then the paper's rows
    assert [text.count(f'<tr><td data-v="{name}">') for name in names] == [n, n]
    assert text.count('<tr><td data-v="paper">') == len(m[m.study == "paper"])


def test_smoke_banner_and_instrument_card(sweep, tmp_path):
    s = _copy_sweep(sweep, tmp_path / "s")
    run = run_dirs(s)[0]
    m = pd.read_csv(run / "metrics.csv").assign(smoke_instruments=True)
    m.to_csv(run / "metrics.csv", index=False)
    model = tmp_path / "classifier" / "model"
    model.mkdir(parents=True)
    (model.parent / "instrument_card.md").write_text("# Leaning instrument\nmacro-F1 0.71 on held-out outlets\n")
    cfg = OmegaConf.load(run / "config.yaml")
    OmegaConf.update(cfg, "leaning.model", str(model), force_add=True)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    text = html.build(s, tmp_path / "out", n_articles=0).read_text()
    assert "instrument: smoke model trained on the fly" in text and run.parent.name in text
    assert "macro-F1 0.71 on held-out outlets" in text


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="^sweep: expected an existing sweep directory"):
        html.build(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConfigError, match="^sweep: expected .*<setup>/seed_<n>/metrics.csv"):
        html.build(tmp_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="^n_articles"):
        html.build(tmp_path, tmp_path / "out", n_articles=-1)
    assert not (tmp_path / "out").exists()


def test_report_app_compares_studies(sweep, tmp_path):
    from bias_amp import cli, report

    a, b = _copy_sweep(sweep, tmp_path / "a"), _copy_sweep(sweep, tmp_path / "b")
    with pytest.raises(ConfigError, match="^out: expected a directory for the page comparing several sweeps"):
        report.run(cli.compose("report", [f"sweep=[{a},{b}]", "paper=null"]))
    report.run(cli.compose("report", [f"sweep=[{a},{b}]", f"out={tmp_path / 'cmp'}", "paper=null", "n_articles=1"]))
    text = (tmp_path / "cmp" / "index.html").read_text()
    assert all(f'value="{s} · {setup}"' in text for s in ("a", "b") for setup in _metrics(sweep)["setup"].unique())
