"""Classifier training (splits, balancing, macro-F1, the saved model dir, the cached smoke models, their
determinism) and the Scorer end to end with the smoke configs (unscorable articles, collapse measures)."""

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bias_amp.classifier import cache, splits
from bias_amp.classifier.run import validate
from bias_amp.errors import ConfigError
from bias_amp.metrics.scorer import COLUMNS, Scorer, summarize
from bias_amp.metrics.stats import confusion, macro_f1

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _arts():
    return [{"title": f"t{i}", "body": f"b{i}", "label": lab, "source": f"{lab}-{i % 4}"}
            for lab, n in (("left", 40), ("center", 20), ("right", 40)) for i in range(n)]


def test_splits_are_stratified_and_outlet_disjoint():
    tr, va, te = splits.split_articles(_arts(), "random", [0.7, 0.15, 0.15], seed=0)
    assert [Counter(a["label"] for a in p) for p in (tr, va, te)] == [
        {"left": 28, "center": 14, "right": 28}, {"left": 6, "center": 3, "right": 6},
        {"left": 6, "center": 3, "right": 6}]
    tr, va, te = splits.split_articles(_arts(), "source", [0.5, 0.25, 0.25], seed=0)
    outlets = [{a["source"] for a in p} for p in (tr, va, te)]
    assert not (outlets[0] & outlets[1] or outlets[0] & outlets[2] or outlets[1] & outlets[2])
    assert all({a["label"] for a in p} == {"left", "center", "right"} for p in (tr, va, te))


def test_center_is_resampled_to_balance():
    out = splits.balance_center(_arts(), seed=0)
    assert Counter(a["label"] for a in out) == {"left": 40, "center": 40, "right": 40}


def test_macro_f1_and_confusion():
    y, p = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    assert confusion(y, p, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1: class 0: 2*1/(2+2)=0.5, class 1: 2*2/(3+2)=0.8, class 2: 2*1/(1+2)=2/3
    assert macro_f1(y, p, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert macro_f1(y, p, 3, np.ones(6)) == macro_f1(y, p, 3)
    # weight 2 on the first example: class 0 F1 = 2*2/(3+3), classes 1 and 2 as before
    assert macro_f1(y, p, 3, [2, 1, 1, 1, 1, 1]) == pytest.approx((2 / 3 + 0.8 + 2 / 3) / 3)


def test_scores_weigh_every_outlet_the_same():
    """A large left outlet called right sinks the raw scores; weighted by outlet it counts as one outlet."""
    from bias_amp.classifier.fit import by_outlet, scores

    classes = ["left", "center", "right"]
    truth = ["left"] * 90 + ["left"] * 10 + ["center"] * 10 + ["right"] * 10
    outlets = ["Big"] * 90 + ["L"] * 10 + ["C"] * 10 + ["R"] * 10
    pred = [2] * 90 + [0] * 10 + [1] * 10 + [2] * 10
    data, probs = [("", c) for c in truth], np.eye(3)[pred]
    ev = scores(data, probs, classes, outlets)
    assert ev["macro_f1"] == pytest.approx((2 * 10 / 110 + 1 + 2 * 10 / 110) / 3)
    assert ev["balanced_accuracy"] == pytest.approx((0.1 + 1 + 1) / 3)
    # by outlet: left has 2 outlets (weight 1 each; half right), center 1, right 1 (+ Big's weight 1 as false right)
    assert ev["outlet_balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert ev["outlet_macro_f1"] == pytest.approx((2 * 1 / 3 + 1 + 2 * 1 / 3) / 3)
    assert "outlet_macro_f1" not in scores(data, probs, classes)
    rows = by_outlet(data, probs, classes, outlets)
    assert [(r["outlet"], r["class"], r["articles"], r["accuracy"], r["predicted_right"]) for r in rows] == [
        ("Big", "left", 90, 0.0, 1.0), ("L", "left", 10, 1.0, 0.0), ("C", "center", 10, 1.0, 0.0),
        ("R", "right", 10, 1.0, 1.0)]
    assert by_outlet(data, probs, classes, outlets, min_articles=11) == rows[:1]


def test_example_outlets_follow_the_capped_examples():
    cfg = OmegaConf.create({"task": "leaning", "mask_outlets": False, "text_template": "{title}|{body}",
                            "train": {"max_examples": 30, "max_eval_examples": 7}})
    arts = [{**a, "title": f"{a['label']}{i}"} for i, a in enumerate(_arts())]
    parts = dict(zip(("train", "valid", "test"), splits.split_articles(arts, "source", [0.5, 0.25, 0.25], seed=0),
                     strict=True))
    data, outlets = splits.make_examples(cfg, 3, parts), splits.example_outlets(cfg, parts, 3)
    assert {k: len(v) for k, v in data.items()} == {"train": 30, "valid": 7, "test": 7}
    by_title = {f"{a['title']}|{a['body']}": a["source"] for a in arts}
    assert all([by_title[t] for t, _ in data[k]] == outlets[k] for k in data)


def _compose(name, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_config_validation_messages():
    cfg = _compose("classifier")
    validate(cfg)
    assert list(cfg.backbones) == ["distilbert-base-uncased", "bert-base-uncased", "albert-base-v2", "roberta-base"]
    with pytest.raises(ConfigError, match=r"^task: expected one of \['leaning', 'quality'\], got 'topic'"):
        validate(_compose("classifier", "task=topic"))
    with pytest.raises(ConfigError, match=r"^split.by: expected one of \['random', 'source'\], got 'date'"):
        validate(_compose("classifier", "split.by=date"))
    with pytest.raises(ConfigError, match=r"^split.fractions: expected three positive fractions"):
        validate(_compose("classifier", "split.fractions=[0.5,0.5]"))
    with pytest.raises(ConfigError, match=r"^split.test: expected null or an existing JSONL file"):
        validate(_compose("classifier", "split.test=/no/such.jsonl"))


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return _compose("config", "leaning=smoke", "quality=smoke", "model=tiny", f"paths.cache_dir={cache}")


@pytest.fixture(scope="module")
def smoke_leaning(cfg):
    """The leaning smoke model, trained once (cached) on the embedded sample corpus."""
    tcfg = cache.compose(cfg.leaning.train)
    return cache.train_cached(tcfg, cfg.paths.cache_dir, "leaning-smoke"), tcfg


def test_smoke_leaning_model_dir(smoke_leaning, cfg):
    path, tcfg = smoke_leaning
    root = path.parent
    assert path.name == "model" and root.name.startswith("leaning-smoke-")
    for f in ("results.csv", "results.md", "confusion.png", "confusion.json", "DONE", "model/model.safetensors",
              "model/tokenizer.json", "model/bias_amp_classifier.json"):
        assert (root / f).is_file(), f
    import pandas as pd

    table = pd.read_csv(root / "results.csv")
    assert table.columns.tolist()[:7] == ["backbone", "head", "valid_macro_f1", "best_epoch", "test_macro_f1",
                                          "test_accuracy", "test_balanced_accuracy"]
    assert table["head"].tolist() == ["finetune"] and (root / "instrument_card.md").is_file()
    assert 0 <= table.test_outlet_macro_f1[0] <= 1    # the sample corpus's test articles name their outlets
    assert "every outlet weighted equally" in (root / "instrument_card.md").read_text()
    assert table.backbone.tolist() == ["tiny"] and table.test_macro_f1[0] >= 0.6  # framings are learnable
    assert "| tiny |" in (root / "results.md").read_text()
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(path).id2label == {0: "left", 1: "center", 2: "right"}
    # cached: a second call returns the same dir without training again
    stamp = os.stat(path / "model.safetensors").st_mtime_ns
    assert cache.train_cached(tcfg, cfg.paths.cache_dir, "leaning-smoke") == path
    assert os.stat(path / "model.safetensors").st_mtime_ns == stamp


ARTICLES = [{"id": f"a{i}", "label": lab, "text": text} for i, (lab, text) in enumerate([
    ("left", "Advocates say the tax plan fails working families. Billionaires should pay their fair share."),
    ("center", "Lawmakers debated the budget on Tuesday. The vote is expected next week."),
    ("right", "The plan burdens taxpayers with more spending. Small businesses want lower taxes."),
    ("left", ""),
    ("right", "Taxes ."),            # near-empty: 2 words (MIN_WORDS = 3)
])]


def _weights(model_dir: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(model_dir / "model.safetensors")


def test_smoke_training_is_deterministic(cfg, tmp_path):
    """Same config -> same model bits, trained twice into two empty caches (the WordPiece tokenizer it used
    to train ordered its alphabet differently on every call), on different thread counts."""
    import torch

    tcfg = cache.compose(OmegaConf.merge(cfg.leaning.train, {"train": {"epochs": 2}}))
    threads = torch.get_num_threads()
    try:
        first = cache.train_cached(tcfg, tmp_path / "a", "leaning-smoke")
        torch.set_num_threads(2)
        second = cache.train_cached(tcfg, tmp_path / "b", "leaning-smoke")
    finally:
        torch.set_num_threads(threads)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    a, b = _weights(first), _weights(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _scorer(cfg, **kw):
    from bias_amp.models import load_lm

    return Scorer(cfg, base_model_loader=lambda: load_lm(cfg.model, corpus=[a["text"] for a in ARTICLES] * 5),
                  trained=cache.trained_instruments(cfg), **kw)


def test_scorer_end_to_end_with_smoke_configs(cfg):
    scorer = _scorer(cfg)
    assert scorer.smoke_instruments
    sources = [ARTICLES[0]["text"]] * 5            # what each continued: all copy article 0's text, or nothing
    df = scorer.score(ARTICLES, sources)
    assert df.columns.tolist() == COLUMNS == [
        "id", "label", "n_words", "p_left", "p_center", "p_right", "leaning", "quality", "perplexity",
        "distinct_1", "distinct_2", "repeated_4gram_share", "compression_ratio", "copied_8gram_share"]
    assert df.copied_8gram_share.tolist()[:3] == [1, 0, 0]
    assert df.id.tolist() == ["a0", "a1", "a2", "a3", "a4"] and df.n_words.tolist()[3:] == [0, 2]
    ok = df.iloc[:3]
    assert np.allclose(ok[["p_left", "p_center", "p_right"]].sum(1), 1)
    assert set(ok.leaning) <= {"left", "center", "right"}
    assert all(0 <= x <= 3 for x in ok.quality) and all(p > 1 for p in ok.perplexity)
    assert (ok.distinct_1 > 0.8).all() and (ok.repeated_4gram_share == 0).all()
    bad = df.iloc[3:]     # empty and near-empty: every score NaN, nothing dropped
    assert bad.drop(columns=["id", "label", "n_words", "leaning"]).isna().all().all() and bad.leaning.isna().all()
    s = summarize(df)
    assert (s["n_articles"], s["n_unscorable"]) == (5, 2)
    assert s["share_left"] + s["share_center"] + s["share_right"] == pytest.approx(1)   # over the 3 scorable
    assert s["expected_left"] == pytest.approx(ok.p_left.mean())
    assert s["expected_left"] + s["expected_center"] + s["expected_right"] == pytest.approx(1)
    for c in ("left", "center", "right"):
        assert s[f"share_{c}_ci_low"] <= s[f"share_{c}"] <= s[f"share_{c}_ci_high"]
    assert s["quality_ci_low"] <= s["quality_mean"] <= s["quality_ci_high"]
    assert s["distinct_1"] == pytest.approx(ok.distinct_1.mean()) and s["copied_8gram_share"] == pytest.approx(1 / 3)
    scorer.close()


def test_smoke_quality_detector_scores_degenerate_text_below_real_text(cfg):
    """Collapsed output ("with with with", "}}}}ananan", U+FFFD runs) does not pass as clean text."""
    from bias_amp.metrics.quality import QualityDetector

    det = QualityDetector(cfg.quality).load(cache.trained_instruments(cfg)["quality"]())
    real = det.index([a["text"] for a in ARTICLES[:3]])
    garbage = det.index(["with " * 40, "}}}}ananan" * 8, "\ufffd" * 60, "the the the the the the the the the"])
    assert garbage.max() < real.min() and garbage.max() < 3


def test_scorer_with_disabled_metrics_and_a_saved_dir(cfg, smoke_leaning):
    path, _ = smoke_leaning
    off = OmegaConf.merge(cfg, {"leaning": {"model": str(path), "train": None},
                                "quality": {"enabled": False}, "perplexity": {"enabled": False}})
    scorer = Scorer(off)
    assert not scorer.smoke_instruments     # a saved classifier dir is not trained on the fly
    df = scorer.score(ARTICLES[:3])
    assert df.quality.isna().all() and df.perplexity.isna().all() and df.leaning.notna().all()
    s = summarize(df)
    assert math.isnan(s["quality_mean"]) and math.isnan(s["perplexity_mean"]) and s["n_unscorable"] == 0
    none = OmegaConf.merge(off, {"leaning": {"enabled": False}})
    df = Scorer(none).score(ARTICLES[:3])
    assert df.distinct_1.notna().all()      # the collapse measures need no instrument
    assert df.copied_8gram_share.isna().all()   # ... but the copied share needs what the articles continued
    s = summarize(df)
    assert math.isnan(s["share_left"]) and math.isnan(s["share_left_ci_low"]) and math.isnan(s["expected_left"])
    assert s["n_articles"] == 3
    s = summarize(Scorer(off).score(ARTICLES[3:]))        # a version of unscorable articles only: no crash
    assert (s["n_articles"], s["n_unscorable"]) == (2, 2) and math.isnan(s["share_left"])
    assert math.isnan(s["distinct_1"]) and math.isnan(s["quality_mean"])


def test_scorer_validates_before_loading(cfg):
    with pytest.raises(ConfigError, match=r"^perplexity.model: expected a model name or directory"):
        Scorer(cfg, trained=cache.trained_instruments(cfg))  # perplexity.model null and no base model loader
    with pytest.raises(ConfigError, match=r"^leaning.train: expected a trained model"):
        Scorer(cfg, base_model_loader=lambda: None)          # a smoke config without its trained model
    bad = OmegaConf.merge(cfg, {"leaning": {"train": None, "model": "/no/such/classifier"}})
    with pytest.raises(ConfigError, match=r"^leaning.model: expected an existing model directory"):
        Scorer(bad, base_model_loader=lambda: None)
    with pytest.raises(ConfigError, match=r"^quality.train.task: expected 'quality', got 'leaning'"):
        cache.trained_instruments(OmegaConf.merge(cfg, {"quality": {"train": {"task": "leaning"}}}))
    off = OmegaConf.merge(cfg, {"leaning": {"enabled": False}, "quality": {"enabled": False},
                                "perplexity": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"^articles\[0\]: expected a record with id, label and text"):
        Scorer(off).score([{"id": "x", "label": "left"}])
    with pytest.raises(ConfigError, match=r"^sources: expected one text per article \(3\), got 2"):
        Scorer(off).score(ARTICLES[:3], ["a", "b"])


def test_metrics_package_does_not_import_the_trainer():
    """metrics/ is imported by the trainer, never the other way round (the dependency is inverted)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "bias_amp" / "metrics"
    imported = {(p.name, n.module if isinstance(n, ast.ImportFrom) else a.name)
                for p in root.glob("*.py") for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in (n.names if isinstance(n, ast.Import) else [None])}
    assert ("scorer.py", "bias_amp.metrics.stats") in imported       # the walk sees imports
    assert not [i for i in imported if str(i[1]).startswith("bias_amp.classifier")]


def test_classifier_cli_runs_as_a_module():
    """`python -m bias_amp.classifier` is the package's __main__: bad input ends in one line (exit 2);
    `run`, which it calls, is exercised by the smoke fixture above."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bias_amp.classifier", "task=topic"], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("error: task: expected one of ['leaning', 'quality']")
