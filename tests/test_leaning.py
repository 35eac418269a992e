"""Leaning: label maps (validation, permutation), argmax aggregation on the paper's published scores,
scoring through a saved classifier dir (`leaning.model=<dir>`)."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from bias_amp.errors import ConfigError
from bias_amp.metrics.leaning import LeaningClassifier, argmax_leaning, leaning_columns, validate
from bias_amp.metrics.scorer import summarize

PAPER_MAP = {"LABEL_0": "right", "LABEL_1": "left", "LABEL_2": "center"}
NAMES = ["LABEL_0", "LABEL_1", "LABEL_2"]
# model-order probabilities of 8 articles; argmax classes: 0,0,0,1,2,2,2,2
PROBS = np.array([[.7, .2, .1], [.5, .4, .1], [.6, .1, .3], [.1, .8, .1],
                  [.1, .2, .7], [.2, .2, .6], [.0, .1, .9], [.3, .3, .4]])


def _summary(probs_model_order, names, labels):
    probs = probs_model_order[:, leaning_columns(names, labels)]
    df = pd.DataFrame({"leaning": argmax_leaning(probs), "quality": np.nan, "perplexity": np.nan})
    return summarize(df)


def test_permuting_the_label_map_permutes_the_shares():
    s = _summary(PROBS, NAMES, PAPER_MAP)
    assert (s["share_right"], s["share_left"], s["share_center"]) == (3 / 8, 1 / 8, 4 / 8)
    perm = {"LABEL_0": "left", "LABEL_1": "center", "LABEL_2": "right"}
    s = _summary(PROBS, NAMES, perm)
    assert (s["share_left"], s["share_center"], s["share_right"]) == (3 / 8, 1 / 8, 4 / 8)


def _cfg(**kw):
    base = {"enabled": True, "model": "some/hub-model", "labels": PAPER_MAP, "max_length": 500, "batch_size": 4}
    return OmegaConf.create(base | kw)


def test_validation_messages():
    validate(_cfg())
    with pytest.raises(ConfigError, match=r"^leaning.labels: expected values covering exactly left, center"):
        validate(_cfg(labels={"LABEL_0": "right", "LABEL_1": "left", "LABEL_2": "left"}))
    with pytest.raises(ConfigError, match=r"^leaning.model: expected an existing model directory"):
        validate(_cfg(model="/nonexistent/classifier"))
    with pytest.raises(ConfigError, match=r"^leaning.max_length: expected an integer in \[8, inf\]"):
        validate(_cfg(max_length=0))
    validate(_cfg(model="/nonexistent", enabled=False))  # disabled: nothing checked
    with pytest.raises(ConfigError) as e:
        leaning_columns(["left", "center", "right"], PAPER_MAP)
    assert str(e.value) == ("leaning.labels: expected keys matching the model's labels ['left', 'center', "
                            "'right'], got ['LABEL_0', 'LABEL_1', 'LABEL_2']")
    with pytest.raises(ConfigError, match="keys matching the model's labels"):
        leaning_columns(NAMES, "auto")  # auto needs leaning names


def _paper_scores(df):
    """The published Left/Center/Right scores -> the loop's score columns -> summarize (the loop's path)."""
    probs = df[["Left_Score", "Center_Score", "Right_Score"]].to_numpy()
    scores = pd.DataFrame({"p_left": probs[:, 0], "p_center": probs[:, 1], "p_right": probs[:, 2],
                           "leaning": argmax_leaning(probs), "quality": np.nan, "perplexity": np.nan})
    return summarize(scores)


def test_aggregation_on_the_papers_published_scores(shared_dir):
    root = shared_dir / "reference" / "paper_scores"
    if not (root / "GPT2_Bias_Performance.csv").is_file():
        pytest.skip("paper scores absent")
    s = _paper_scores(pd.read_csv(root / "GPT2_Bias_Performance.csv"))
    assert s["n_articles"] == 1518
    assert (round(100 * s["share_left"], 1), round(100 * s["share_center"], 1),
            round(100 * s["share_right"], 1)) == (5.3, 47.9, 46.8)
    syn = pd.read_csv(root / "Synthetic_Bias_Performance.csv")
    s0 = _paper_scores(syn[syn["Generation"] == 1])  # the file's Generation 1 = the paper's generation 0
    assert round(100 * s0["share_right"], 1) == 54.4
    peak = max(range(1, 12), key=lambda g: _paper_scores(syn[syn["Generation"] == g])["share_right"])
    assert (peak - 1, round(100 * _paper_scores(syn[syn["Generation"] == peak])["share_right"], 1)) == (6, 67.5)


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    """A tiny random GPT-2 classifier saved as an HF dir with id2label = leanings; its head is scaled and the
    final norm's bias centred on the test sentences' last-token states, so their argmax classes differ."""
    import torch

    from bias_amp.models import save_checkpoint, tiny_lm, train_tokenizer
    from tests.conftest import SENTENCES

    tok = train_tokenizer(SENTENCES, 300)
    model = tiny_lm(tok, classes=["left", "center", "right"], n_positions=64, seed=3).eval()
    with torch.no_grad():
        model.score.weight.mul_(300.0)
        last = torch.stack([model.transformer(**tok(t, return_tensors="pt")).last_hidden_state[0, -1]
                            for t in SENTENCES[:6]])
        model.transformer.ln_f.bias.sub_(last.mean(0))
    path = tmp_path_factory.mktemp("clf") / "model"
    save_checkpoint(model, tok, path)
    return str(path)


def test_saved_classifier_dir_scores_and_map_permutes(saved_classifier):
    from tests.conftest import SENTENCES

    texts = SENTENCES[:6]
    cfg = _cfg(model=saved_classifier, labels="auto", max_length=64)
    auto = LeaningClassifier(cfg).load().predict(texts)
    assert auto.shape == (6, 3) and np.allclose(auto.sum(1), 1)
    explicit = LeaningClassifier(_cfg(model=saved_classifier, max_length=64,
                                      labels={"left": "left", "center": "center", "right": "right"}))
    assert np.array_equal(explicit.load().predict(texts), auto)
    rotated = {"left": "center", "center": "right", "right": "left"}  # model's left is called center, ...
    rot = LeaningClassifier(_cfg(model=saved_classifier, labels=rotated, max_length=64)).load().predict(texts)
    assert np.array_equal(rot, auto[:, [2, 0, 1]])
    a, r = argmax_leaning(auto), argmax_leaning(rot)
    assert [rotated[x] for x in a] == r
    assert len(set(a)) >= 2  # the scaled head separates inputs: the permutation is not vacuous
    with pytest.raises(ConfigError, match=r"^leaning.labels: expected keys matching the model's labels"):
        LeaningClassifier(_cfg(model=saved_classifier, max_length=64)).load()


def test_whole_article_windows_reduce_to_truncation_and_see_the_tail(saved_classifier):
    """One window of max_length tokens is the paper's truncation; more windows also read what comes after."""
    from tests.conftest import SENTENCES

    base = _cfg(model=saved_classifier, labels="auto", max_length=16)
    one = _cfg(model=saved_classifier, labels="auto", max_length=16,
               window={"size": 16, "stride": 16, "max_windows": 1, "pool": "logits"})
    texts = [" ".join(SENTENCES[i:i + 4]) for i in range(4)]
    trunc = LeaningClassifier(base).load().predict(texts)
    assert np.allclose(LeaningClassifier(one).load().predict(texts), trunc, atol=1e-6)
    whole = LeaningClassifier(_cfg(model=saved_classifier, labels="auto", max_length=16,
                                   window={"size": 16, "stride": 8, "max_windows": None, "pool": "probs"}))
    assert not np.allclose(whole.load().predict(texts), trunc, atol=1e-3)
