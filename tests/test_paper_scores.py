"""paper_scores: the published per-article files -> the per-generation metrics schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bias_amp import paper_scores
from bias_amp.errors import ConfigError

# Test data in the release's format: per generation, articles whose argmax is known.
FAKE_LEANINGS = {1: ["left", "right", "right", "center"], 2: ["right", "right", "right", "center"]}
FAKE_GPT2 = ["left", "center", "center", "right"]


def _probs(leaning: str, rng) -> list[float]:
    p = rng.dirichlet([1, 1, 1]) * 0.4
    p[["left", "center", "right"].index(leaning)] += 0.6
    return list(p)


def write_paper_dir(root, seed: int = 0):
    """A tiny release: Synthetic (bias, quality, perplexity), Overfitting (bias), base GPT-2, and a
    Center-Leaning-Only file with the extra Generation 0."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = [(g, i + 1, *_probs(lab, rng)) for g, labs in FAKE_LEANINGS.items() for i, lab in enumerate(labs)]
    cols = ["Generation", "Article_ID", "Left_Score", "Center_Score", "Right_Score"]
    for name in ("Synthetic", "Overfitting"):
        pd.DataFrame(rows, columns=cols).to_csv(root / f"{name}_Bias_Performance.csv", index=False)
    clo = [(g - 1, i, *p) for g, i, *p in rows]  # Generation 0, 1
    pd.DataFrame(clo, columns=cols).to_csv(root / "Synthetic_Center-Leaning-Only_Bias_Performance.csv", index=False)
    gens = [g for g, labs in FAKE_LEANINGS.items() for _ in labs]
    pd.DataFrame({"Generation": gens, "GibberishLevel": 2.5 - 0.5 * np.array(gens) + rng.normal(0, 0.1, len(gens))}
                 ).to_csv(root / "Synthetic_Generation_Quality.csv", index=False)
    pd.DataFrame({"Generation": gens, "Perplexity": 8.0 / np.array(gens) + rng.uniform(0, 1, len(gens))}
                 ).to_csv(root / "Synthetic_Perplexity.csv", index=False)
    gpt2 = [("GPT-2", i + 1, *_probs(lab, rng)) for i, lab in enumerate(FAKE_GPT2)]
    pd.DataFrame(gpt2, columns=["Model", *cols[1:]]).to_csv(root / "GPT2_Bias_Performance.csv", index=False)
    return root


@pytest.fixture()
def paper_dir(tmp_path):
    return write_paper_dir(tmp_path / "paper_scores")


def test_generation_mapping_and_shares(paper_dir):
    m = paper_scores.load_metrics(paper_dir)
    none = m[m.setup == "paper-none"].set_index("generation")
    # file Generation 1 is the paper's Generation 0; base GPT-2 is the baseline row
    assert list(none.index) == [-1, 0, 1]
    assert list(none["version"]) == ["baseline", "gen_00", "gen_01"]
    assert none.loc[0, ["share_left", "share_center", "share_right"]].tolist() == [0.25, 0.25, 0.5]
    assert none.loc[1, "share_right"] == 0.75
    assert none.loc[-1, ["share_left", "share_center", "share_right"]].tolist() == [0.25, 0.5, 0.25]
    assert none.loc[-1, "n_articles"] == 4 and np.isnan(none.loc[-1, "quality_mean"])
    # quality and perplexity: mean and t-interval of the generation's rows
    q = pd.read_csv(paper_dir / "Synthetic_Generation_Quality.csv")
    g1 = q[q.Generation == 2]["GibberishLevel"].to_numpy()
    half = 3.182446305284263 * g1.std(ddof=1) / 2  # t(0.975, df=3) * sem, n = 4
    assert none.loc[1, "quality_mean"] == pytest.approx(g1.mean())
    assert none.loc[1, "quality_ci_high"] - none.loc[1, "quality_mean"] == pytest.approx(half)
    ppl = pd.read_csv(paper_dir / "Synthetic_Perplexity.csv")
    assert none.loc[0, "perplexity_mean"] == pytest.approx(ppl[ppl.Generation == 1]["Perplexity"].mean())
    # Overfitting: no quality file -> NaN; it shares base GPT-2 as its baseline
    over = m[m.setup == "paper-overfit"].set_index("generation")
    assert over["quality_mean"].isna().all() and -1 in over.index
    # Center-Leaning-Only's Generation 0 becomes its baseline; no GPT-2 row added there
    clo = m[m.setup == "paper-center-only"].set_index("generation")
    assert list(clo.index) == [-1, 0]
    assert clo.loc[-1, "share_right"] == 0.5
    assert list(m.columns) == paper_scores.METRIC_COLUMNS


def test_articles_schema(paper_dir):
    a = paper_scores.load_articles(paper_dir)
    assert list(a.columns) == paper_scores.SCORE_COLUMNS
    g0 = a[(a.setup == "paper-none") & (a.generation == 0)]
    assert g0["leaning"].tolist() == FAKE_LEANINGS[1]
    assert g0["id"].tolist() == ["1", "2", "3", "4"]
    assert g0["quality"].notna().all() and g0["perplexity"].notna().all()


def test_bad_paper_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"^paper: expected a directory with the paper's score CSVs"):
        paper_scores.load_metrics(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"^paper: expected a directory holding \*_Bias_Performance.csv"):
        paper_scores.load_metrics(tmp_path)
    pd.DataFrame({"Generation": [1], "Article_ID": [1]}).to_csv(tmp_path / "Synthetic_Bias_Performance.csv")
    with pytest.raises(ConfigError, match=r"^paper_scores.Synthetic_Bias_Performance.csv: expected columns"):
        paper_scores.load_metrics(tmp_path)


# --- the real release (../shared): the paper's headline numbers ---

@pytest.fixture(scope="module")
def published(request):
    from conftest import SHARED

    path = SHARED / "reference" / "paper_scores"
    if not path.is_dir():
        pytest.skip("../shared/reference/paper_scores is absent")
    return paper_scores.load_metrics(path)


def test_no_mitigation_right_share_matches_fig4(published):
    none = published[published.setup == "paper-none"].set_index("generation")
    right = (100 * none["share_right"]).round(1)
    assert right[0] == 54.4
    assert right[6] == 67.5
    assert right.idxmax() == 6  # the peak
    assert list(none.index) == list(range(-1, 11))
    assert (none.loc[0:, "n_articles"] == 1518).all()


def test_base_gpt2_leaning(published):
    base = published[(published.setup == "paper-none") & (published.generation == -1)].iloc[0]
    assert [round(100 * base[f"share_{k}"], 1) for k in ("left", "center", "right")] == [5.3, 47.9, 46.8]


def test_published_setups(published):
    assert set(published.setup) == set(paper_scores.SETUPS.values())
    ppl = published[published.setup == "paper-none"].set_index("generation")["perplexity_mean"]
    assert ppl[0] > ppl[10] > 0  # perplexity falls across generations (Fig. 11)
