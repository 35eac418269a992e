"""Quality index: sentence splitting, the corruptions defining the offline detector's classes, sentence
scoring (label / expected), article means, config and label-map validation."""

import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from bias_amp.errors import ConfigError
from bias_amp.metrics.corrupt import (
    QUALITY_CLASSES,
    garbage,
    mild_gibberish,
    noise,
    quality_examples,
    repetition,
    word_salad,
)
from bias_amp.metrics.quality import article_index, score_vector, sentence_scores, validate
from bias_amp.metrics.sentences import split_sentences

SCORES = {"clean": 3, "mild gibberish": 2, "word salad": 1, "noise": 0}


@pytest.mark.parametrize("text,expected", [
    ("Mr. Smith met Sen. Jones on Jan. 5. They spoke.", ["Mr. Smith met Sen. Jones on Jan. 5.", "They spoke."]),
    ("The U.S. economy grew 3.5 percent. Then it fell.", ["The U.S. economy grew 3.5 percent.", "Then it fell."]),
    ("He moved to the U.S. The move was hard.", ["He moved to the U.S.", "The move was hard."]),
    ("It ended.Next came more.", ["It ended.", "Next came more."]),
    ('"Stop!" she said. "No." He left.', ['"Stop!" she said.', '"No."', "He left."]),
    ('He said "we won." Then he left.', ['He said "we won."', "Then he left."]),
    ("J. K. Rowling wrote it. See No. 5 here.", ["J. K. Rowling wrote it.", "See No. 5 here."]),
    ("Prices rose 2.5% in Jan. and fell in Feb. The traders shrugged.",
     ["Prices rose 2.5% in Jan. and fell in Feb.", "The traders shrugged."]),
    ("Dr. Lee and Gov. Ray met Acme Inc. Officials.", ["Dr. Lee and Gov. Ray met Acme Inc. Officials."]),
    ("Title line\nbody: First one. Second one", ["Title line", "body: First one.", "Second one"]),
    ("", []), ("   \n  ", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_corruptions():
    rng = random.Random(0)
    s = "The senate passed the budget bill on Tuesday after a long debate in the chamber."
    salad = word_salad(s, rng)
    assert salad != s and sorted(salad.split()) == sorted(s.split())
    mild = mild_gibberish(s, rng)
    assert mild != s and abs(len(mild.split()) - len(s.split())) <= 3
    n = noise(s, rng)
    assert len(n) >= len(s) - 1 and not set(n.split()) & set(s.split())
    ex = quality_examples([s, "Short one.", s + " Another sentence follows here now."], seed=0)
    assert [c for _, c in ex] == list(QUALITY_CLASSES[:2])  # 2 distinct sentences of >= 5 words, in turn
    ex = quality_examples([s, "Another sentence follows here now."], seed=0, all_classes=True)
    assert Counter(c for _, c in ex) == {c: 2 for c in QUALITY_CLASSES}


def test_degenerate_corruptions():
    """Repetition and symbol garbage (what collapsed synthetic text looks like) join word salad and noise."""
    from bias_amp.metrics.collapse import measures

    rng = random.Random(0)
    s = "The senate passed the budget bill on Tuesday after a long debate in the chamber."
    for _ in range(20):
        rep = repetition(s, rng)
        assert set(rep.split()) <= set(s.split()) and len(set(rep.split())) <= 3 and len(rep.split()) >= 15
        g = garbage(s, rng)
        assert len(g) >= len(s) - 1 and not set(g.split()) & set(s.split())
        assert measures(g)["compression_ratio"] > measures(s)["compression_ratio"]
    texts = [s, "Critics said the new tax plan favours the wealthy over working families."]
    plain = quality_examples(texts * 20 + [f"Sentence number {i} is here now." for i in range(40)], seed=0,
                             all_classes=True)
    degen = quality_examples(texts * 20 + [f"Sentence number {i} is here now." for i in range(40)], seed=0,
                             all_classes=True, degenerate=True)
    assert [c for _, c in plain] == [c for _, c in degen]        # same classes, same sentences
    salad = [t for t, c in degen if c == "word salad"]
    assert any(len(set(t.split())) <= 3 for t in salad)          # some are repetitions ...
    assert any(len(set(t.split())) > 3 for t in salad)           # ... others shuffled words
    assert any(ord(ch) == 0xFFFD or ch in "}{" for t, c in degen if c == "noise" for ch in t)


def test_sentence_scoring_and_article_means():
    names = ["clean", "mild gibberish", "noise", "word salad"]  # the hub detector's logit order
    scores = score_vector(names, SCORES)
    assert scores.tolist() == [3, 2, 0, 1]
    probs = np.array([[.6, .3, .0, .1], [.1, .2, .3, .4], [.0, .0, 1., .0]])
    assert sentence_scores(probs, scores, "label").tolist() == [3, 1, 0]
    assert sentence_scores(probs, scores, "expected") == pytest.approx([2.5, 1.1, 0.0])
    # articles 0: sentences 0,1; 1: none (NaN); 2: sentence 2
    idx = article_index(np.array([3.0, 1.0, 0.0]), [0, 0, 2], 3)
    assert idx[0] == 2.0 and np.isnan(idx[1]) and idx[2] == 0.0


def _cfg(**kw):
    base = {"enabled": True, "model": "hub/detector", "labels": SCORES, "scoring": "label", "max_length": 64,
            "batch_size": 8}
    return OmegaConf.create(base | kw)


def test_validation_messages():
    validate(_cfg())
    with pytest.raises(ConfigError, match=r"^quality.scoring: expected one of \['label', 'expected'\], got 'mean'"):
        validate(_cfg(scoring="mean"))
    with pytest.raises(ConfigError, match=r"^quality.labels: expected a map \{model label: numeric score\}"):
        validate(_cfg(labels={"clean": "high", "noise": 0}))
    with pytest.raises(ConfigError) as e:
        score_vector(["LABEL_0", "LABEL_1"], SCORES)
    assert str(e.value).startswith("quality.labels: expected keys matching the model's labels ['LABEL_0', 'LABEL_1']")


def _detector(model_dir, max_length=48):
    from bias_amp.metrics.quality import QualityDetector

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf/quality/paper.yaml")
    cfg.model, cfg.max_length = str(model_dir), max_length
    return QualityDetector(cfg).load()


def test_task_accuracy_and_shuffle_check_follow_the_model(tmp_path):
    from bias_amp.metrics.seqcls import id2label, predict_proba
    from bias_amp.models import save_checkpoint, tiny_lm, train_tokenizer

    texts = ["The senate passed the budget bill on Tuesday after a long debate. Critics said the plan favours "
             "the wealthy over working families.", "Supporters argued it would restore order. The vote was close."]
    classes = list(reversed(QUALITY_CLASSES))  # logit order differs from QUALITY_CLASSES: names must be used
    tok = train_tokenizer(texts * 5, 300)
    save_checkpoint(tiny_lm(tok, classes=classes, n_embd=16, n_layer=1, n_positions=48), tok, tmp_path / "det")
    det = _detector(tmp_path / "det")
    examples = quality_examples(texts, seed=3, all_classes=True)
    probs = predict_proba(det.model, det.tok, [t for t, _ in examples], max_length=48)
    names = id2label(det.model)
    assert det.task_accuracy(texts, seed=3) == np.mean([names[i] == c for i, (_, c) in
                                                         zip(probs.argmax(1), examples, strict=True)])
    check = det.shuffle_check(texts, seed=5)
    rng, shuffled = random.Random(5), []
    for t in texts:
        words = t.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    real, mixed = det.index(texts), det.index(shuffled)
    assert check["share_real_above_shuffled"] == np.mean(real > mixed)
    assert check["mean_index_shuffled"] == pytest.approx(mixed.mean()) and check["articles"] == 2


QUALITY_MODEL = Path(os.environ.get("BIAS_AMP_QUALITY_MODEL", Path(__file__).resolve().parents[1] /
                                    "outputs/classifier/quality-bench/model"))


@pytest.mark.skipif(not (QUALITY_MODEL / "config.json").is_file(),
                    reason="no trained offline detector (benchmarks/bench_quality_detector.py, or BIAS_AMP_QUALITY_MODEL)")
def test_trained_detector_meets_its_targets_on_unseen_outlets(shared_dir):
    """Acceptance of the offline gibberish detector on articles of outlets it never saw (valid split)."""
    from bias_amp import io
    from bias_amp.metrics.quality import offline_checks

    checks = offline_checks(_detector(QUALITY_MODEL), io.read_jsonl(shared_dir / "data/allsides/valid.jsonl.gz"),
                            task_sentences=150)
    assert checks["articles"] == 60
    assert checks["sentence_accuracy"] >= 0.90
    assert checks["share_real_above_shuffled"] >= 0.95
