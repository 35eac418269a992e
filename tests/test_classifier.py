"""Classifier training (splits, balancing, macro-F1, the saved model dir, the cached smoke models) and the
Scorer end to end with the smoke configs."""

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bias_amp import classifier
from bias_amp.errors import ConfigError
from bias_amp.metrics.scorer import COLUMNS, Scorer, summarize

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _arts():
    return [{"title": f"t{i}", "body": f"b{i}", "label": lab, "source": f"{lab}-{i % 4}"}
            for lab, n in (("left", 40), ("center", 20), ("right", 40)) for i in range(n)]


def test_splits_are_stratified_and_outlet_disjoint():
    tr, va, te = classifier.split_articles(_arts(), "random", [0.7, 0.15, 0.15], seed=0)
    assert [Counter(a["label"] for a in p) for p in (tr, va, te)] == [
        {"left": 28, "center": 14, "right": 28}, {"left": 6, "center": 3, "right": 6},
        {"left": 6, "center": 3, "right": 6}]
    tr, va, te = classifier.split_articles(_arts(), "source", [0.5, 0.25, 0.25], seed=0)
    outlets = [{a["source"] for a in p} for p in (tr, va, te)]
    assert not (outlets[0] & outlets[1] or outlets[0] & outlets[2] or outlets[1] & outlets[2])
    assert all({a["label"] for a in p} == {"left", "center", "right"} for p in (tr, va, te))


def test_center_is_resampled_to_balance():
    out = classifier.balance_center(_arts(), seed=0)
    assert Counter(a["label"] for a in out) == {"left": 40, "center": 40, "right": 40}


def test_macro_f1_and_confusion():
    y, p = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    assert classifier.confusion(y, p, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1: class 0: 2*1/(2+2)=0.5, class 1: 2*2/(3+2)=0.8, class 2: 2*1/(1+2)=2/3
    assert classifier.macro_f1(y, p, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def _compose(name, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_config_validation_messages():
    cfg = _compose("classifier")
    classifier.validate(cfg)
    assert list(cfg.backbones) == ["distilbert-base-uncased", "bert-base-uncased", "albert-base-v2", "roberta-base"]
    with pytest.raises(ConfigError, match=r"^task: expected one of \['leaning', 'quality'\], got 'topic'"):
        classifier.validate(_compose("classifier", "task=topic"))
    with pytest.raises(ConfigError, match=r"^split.by: expected one of \['random', 'source'\], got 'date'"):
        classifier.validate(_compose("classifier", "split.by=date"))
    with pytest.raises(ConfigError, match=r"^split.fractions: expected three positive fractions"):
        classifier.validate(_compose("classifier", "split.fractions=[0.5,0.5]"))
    with pytest.raises(ConfigError, match=r"^split.test: expected null or an existing JSONL file"):
        classifier.validate(_compose("classifier", "split.test=/no/such.jsonl"))


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return _compose("config", "leaning=smoke", "quality=smoke", "model=tiny", f"paths.cache_dir={cache}")


@pytest.fixture(scope="module")
def smoke_leaning(cfg):
    """The leaning smoke model, trained once (cached) on the embedded sample corpus."""
    tcfg = classifier.compose(cfg.leaning.train)
    return classifier.train_cached(tcfg, cfg.paths.cache_dir, "leaning-smoke"), tcfg


def test_smoke_leaning_model_dir(smoke_leaning, cfg):
    path, tcfg = smoke_leaning
    root = path.parent
    assert path.name == "model" and root.name.startswith("leaning-smoke-")
    for f in ("results.csv", "results.md", "confusion.png", "confusion.json", "DONE", "model/model.safetensors",
              "model/tokenizer.json", "model/bias_amp_classifier.json"):
        assert (root / f).is_file(), f
    import pandas as pd

    table = pd.read_csv(root / "results.csv")
    assert table.columns.tolist()[:5] == ["backbone", "valid_macro_f1", "best_epoch", "test_macro_f1",
                                          "test_accuracy"]
    assert table.backbone.tolist() == ["tiny"] and table.test_macro_f1[0] >= 0.6  # framings are learnable
    assert "| tiny |" in (root / "results.md").read_text()
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(path).id2label == {0: "left", 1: "center", 2: "right"}
    # cached: a second call returns the same dir without training again
    stamp = os.stat(path / "model.safetensors").st_mtime_ns
    assert classifier.train_cached(tcfg, cfg.paths.cache_dir, "leaning-smoke") == path
    assert os.stat(path / "model.safetensors").st_mtime_ns == stamp


ARTICLES = [{"id": f"a{i}", "label": lab, "text": text} for i, (lab, text) in enumerate([
    ("left", "Advocates say the tax plan fails working families. Billionaires should pay their fair share."),
    ("center", "Lawmakers debated the budget on Tuesday. The vote is expected next week."),
    ("right", "The plan burdens taxpayers with more spending. Small businesses want lower taxes."),
    ("left", ""),
])]


def test_scorer_end_to_end_with_smoke_configs(cfg):
    from bias_amp.models import load_lm

    scorer = Scorer(cfg, base_model_loader=lambda: load_lm(cfg.model, corpus=[a["text"] for a in ARTICLES] * 5))
    df = scorer.score(ARTICLES)
    assert df.columns.tolist() == COLUMNS == ["id", "label", "p_left", "p_center", "p_right", "leaning",
                                              "quality", "perplexity"]
    assert df.id.tolist() == ["a0", "a1", "a2", "a3"]
    assert np.allclose(df[["p_left", "p_center", "p_right"]].sum(1), 1)
    assert set(df.leaning) <= {"left", "center", "right"}
    q = df.quality.tolist()
    assert all(0 <= x <= 3 for x in q[:3]) and math.isnan(q[3])  # empty article: NaN
    assert all(p > 1 for p in df.perplexity[:3]) and math.isnan(df.perplexity[3])
    s = summarize(df)
    assert s["n_articles"] == 4
    assert s["share_left"] + s["share_center"] + s["share_right"] == pytest.approx(1)
    assert s["quality_ci_low"] <= s["quality_mean"] <= s["quality_ci_high"]
    scorer.close()


def test_scorer_with_disabled_metrics_and_a_saved_dir(cfg, smoke_leaning):
    path, _ = smoke_leaning
    off = OmegaConf.merge(cfg, {"leaning": {"model": str(path), "train": None},
                                "quality": {"enabled": False}, "perplexity": {"enabled": False}})
    df = Scorer(off).score(ARTICLES[:3])
    assert df.quality.isna().all() and df.perplexity.isna().all() and df.leaning.notna().all()
    s = summarize(df)
    assert math.isnan(s["quality_mean"]) and math.isnan(s["perplexity_mean"])
    none = OmegaConf.merge(off, {"leaning": {"enabled": False}})
    s = summarize(Scorer(none).score(ARTICLES[:3]))
    assert math.isnan(s["share_left"]) and s["n_articles"] == 3


def test_scorer_validates_before_loading(cfg):
    with pytest.raises(ConfigError, match=r"^perplexity.model: expected a model name or directory"):
        Scorer(cfg)  # perplexity.model null and no base model loader
    bad = OmegaConf.merge(cfg, {"leaning": {"train": None, "model": "/no/such/classifier"}})
    with pytest.raises(ConfigError, match=r"^leaning.model: expected an existing model directory"):
        Scorer(bad, base_model_loader=lambda: None)
    off = OmegaConf.merge(cfg, {"leaning": {"enabled": False}, "quality": {"enabled": False},
                                "perplexity": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"^articles\[0\]: expected a record with id, label and text"):
        Scorer(off).score([{"id": "x", "label": "left"}])
