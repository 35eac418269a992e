"""Political leaning of articles (§4.3): any HF sequence classifier + a label map
(model label name -> left|center|right). Per article p_left, p_center, p_right and the argmax leaning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bias_amp.errors import ConfigError, check, check_range
from bias_amp.layout import LEANINGS
from bias_amp.metrics import outlets, windows
from bias_amp.metrics.seqcls import ClassifierMetric, check_source
from bias_amp.models import resolve_path


def label_map(cfg_labels) -> dict[str, str] | None:
    """The configured map (None = `auto`: the model's own label names must be the leanings)."""
    if cfg_labels in (None, "auto"):
        return None
    return dict(OmegaConf.to_container(cfg_labels) if isinstance(cfg_labels, DictConfig) else cfg_labels)


def validate(cfg: DictConfig) -> None:
    """Check the `leaning` config without loading the model."""
    if not cfg.get("enabled", True):
        return
    if cfg.get("train") is None:
        check_source(cfg.get("model"), "leaning.model", cfg.get("train_command"))
    labels = cfg.get("labels")
    check(labels in (None, "auto") or isinstance(labels, (dict, DictConfig)), "leaning.labels",
          "'auto' or a map {model label: left|center|right}", labels)
    m = label_map(labels)
    if m is not None:
        check(sorted(m.values()) == sorted(LEANINGS), "leaning.labels",
              "values covering exactly left, center and right once each", m)
    check_range(cfg.max_length, "leaning.max_length", 8, integer=True)
    check_range(cfg.batch_size, "leaning.batch_size", 1, integer=True)
    windows.validate(cfg.get("window"), "leaning.window")
    local = Path(resolve_path(cfg.model)) / "config.json" if cfg.get("train") is None else None
    if local is not None and local.is_file():     # a local model: its label names are known without loading it
        id2 = json.loads(local.read_text()).get("id2label") or {}
        leaning_columns([id2[k] for k in sorted(id2, key=int)], labels)
        windows.resolve(cfg.get("window"), local.parent, "leaning.window")      # `model`: its window.json exists


def leaning_columns(names: list[str], labels) -> list[int]:
    """Indices of the model's classes for (left, center, right). ConfigError when the map does not match."""
    m = label_map(labels) or {n: n for n in names}
    if sorted(m) != sorted(names) or sorted(m.values()) != sorted(LEANINGS):
        raise ConfigError("leaning.labels", f"keys matching the model's labels {names}", sorted(m))
    inverse = {v: k for k, v in m.items()}
    return [names.index(inverse[c]) for c in LEANINGS]


def argmax_leaning(probs: np.ndarray) -> list[str]:
    """Leaning per row of [n, 3] probabilities in (left, center, right) order; ties go to the first."""
    probs = np.asarray(probs, dtype=float)
    return [LEANINGS[i] for i in probs.argmax(1)] if len(probs) else []


class LeaningClassifier(ClassifierMetric):
    KEY = "leaning"
    validate = staticmethod(validate)

    def from_labels(self, names: list[str]) -> list[int]:
        return leaning_columns(names, self.cfg.labels)

    def load(self, model_path: str | None = None):
        super().load(model_path)
        names = Path(resolve_path(model_path or self.cfg.model)) / outlets.MASK_FILE
        self.masked = json.loads(names.read_text()) if names.is_file() else []   # an outlet-masked model
        return self

    def predict(self, texts: list[str]) -> np.ndarray:
        """[n, 3] probabilities in (left, center, right) order."""
        return self.probabilities(outlets.mask(texts, self.masked), "leaning")[:, self.mapping]
