"""Text quality index (§4.4): a gibberish detector scores every sentence (clean 3, mild gibberish 2,
word salad 1, noise 0); the article's index is the mean over its sentences. An article without sentences
gets NaN (dropped from the generation's mean and CI). `scoring: label` scores a sentence by its argmax class
(the paper's text); `expected` by sum(p * score) (the authors' code)."""

from __future__ import annotations

import random

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bias_amp.errors import ConfigError, check, check_range
from bias_amp.metrics.sentences import split_sentences
from bias_amp.metrics.seqcls import ClassifierMetric, check_source, id2label

SCORINGS = ("label", "expected")


def validate(cfg: DictConfig) -> None:
    if not cfg.get("enabled", True):
        return
    if cfg.get("train") is None:
        check_source(cfg.get("model"), "quality.model", cfg.get("train_command"))
    labels = cfg.get("labels")
    ok = isinstance(labels, (dict, DictConfig)) and len(labels) > 1 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels.values())
    check(ok, "quality.labels", "a map {model label: numeric score}", labels)
    check(cfg.get("scoring") in SCORINGS, "quality.scoring", f"one of {list(SCORINGS)}", cfg.get("scoring"))
    check_range(cfg.max_length, "quality.max_length", 8, integer=True)
    check_range(cfg.batch_size, "quality.batch_size", 1, integer=True)


def score_vector(names: list[str], labels) -> np.ndarray:
    """The score of each model class, in logit order."""
    m = OmegaConf.to_container(labels) if isinstance(labels, DictConfig) else dict(labels)
    if sorted(m) != sorted(names):
        raise ConfigError("quality.labels", f"keys matching the model's labels {names}", sorted(m))
    return np.array([float(m[n]) for n in names])


def sentence_scores(probs: np.ndarray, scores: np.ndarray, scoring: str) -> np.ndarray:
    probs = np.asarray(probs, dtype=float)
    return scores[probs.argmax(1)] if scoring == "label" else probs @ scores


def article_index(sentence_values: np.ndarray, owners: list[int], n_articles: int) -> np.ndarray:
    """Mean sentence score per article (NaN for articles without sentences)."""
    total = np.bincount(owners, weights=sentence_values, minlength=n_articles)
    count = np.bincount(owners, minlength=n_articles)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class QualityDetector(ClassifierMetric):
    KEY = "quality"
    validate = staticmethod(validate)

    def from_labels(self, names: list[str]) -> np.ndarray:
        return score_vector(names, self.cfg.labels)

    def index(self, texts: list[str]) -> np.ndarray:
        """Quality index per text."""
        sents, owners = [], []
        for i, text in enumerate(texts):
            for s in split_sentences(text):
                sents.append(s)
                owners.append(i)
        if not sents:
            return np.full(len(texts), np.nan)
        probs = self.probabilities(sents, "quality")
        return article_index(sentence_scores(probs, self.mapping, self.cfg.scoring), owners, len(texts))

    def task_accuracy(self, texts: list[str], *, seed: int = 0, max_sentences: int | None = None) -> float:
        """Accuracy on the offline detector's own task: the sentences of `texts`, each in all four classes
        (metrics.corrupt), classified by argmax."""
        from bias_amp.metrics.corrupt import quality_examples

        examples = quality_examples(texts, seed=seed, max_sentences=max_sentences, all_classes=True)
        names = id2label(self.model)
        pred = self.probabilities([t for t, _ in examples], "quality task").argmax(1)
        return float(np.mean([names[p] == c for p, (_, c) in zip(pred, examples, strict=True)]))

    def shuffle_check(self, texts: list[str], *, seed: int = 1) -> dict:
        """Each text against itself with all its words shuffled: the share of texts whose index is higher
        (ties count as not higher) and both mean indices."""
        rng = random.Random(seed)
        shuffled = []
        for text in texts:
            words = text.split()
            rng.shuffle(words)
            shuffled.append(" ".join(words))
        real, mixed = self.index(texts), self.index(shuffled)
        return {"share_real_above_shuffled": float(np.mean(real > mixed)), "mean_index_real": float(np.mean(real)),
                "mean_index_shuffled": float(np.mean(mixed)), "articles": len(texts)}


def offline_checks(detector: QualityDetector, rows: list[dict], *, articles: int = 60, max_sentences: int = 10,
                   task_sentences: int | None = None, seed: int = 1) -> dict:
    """The offline detector's acceptance checks on `articles` articles drawn (seeded) from `rows`
    ({title, text} dicts), each cut to its first `max_sentences` sentences: accuracy on its own four-class
    task (at most `task_sentences` sentences) and the shuffled-words check."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    texts = [" ".join(split_sentences(r["title"] + "\n" + r["text"])[:max_sentences]) for r in rows[-articles:]]
    return {"sentence_accuracy": detector.task_accuracy(texts, max_sentences=task_sentences),
            **detector.shuffle_check(texts)}
