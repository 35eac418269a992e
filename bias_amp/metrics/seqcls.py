"""Sequence-classifier plumbing shared by the leaning classifier and the gibberish detector:
safe loading (safetensors only, no remote code unless asked) and batched class probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bias_amp.errors import ConfigError, check
from bias_amp.models import _looks_local, resolve_path


def check_source(path: str | None, key: str, hint: str | None = None) -> None:
    """A hub name or an existing local dir (checked without loading); `hint` says how to make a missing one."""
    check(isinstance(path, str) and bool(path), key, "a hub name or a local model directory", path)
    try:
        local = resolve_path(path)
    except ConfigError as e:
        raise ConfigError(key, e.expected, path) from None
    if _looks_local(local):
        check(Path(local).expanduser().is_dir(), key,
              "an existing model directory" + (f" (train it with `{hint}`)" if hint else ""), path)


def load_classifier(path: str, *, trust_remote_code: bool = False, device="cpu"):
    """(model, tokenizer) of a sequence classifier: hub name, local dir (also a `head: linear` dir) or pkg://."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bias_amp.metrics.windows import HEAD_FILE, MeanPoolLinear

    path = resolve_path(path)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if (Path(path) / HEAD_FILE).is_file():
        return MeanPoolLinear.from_pretrained(path).to(device).eval(), tok
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True,
                                                               trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tok


def id2label(model) -> list[str]:
    """The model's class names in logit order."""
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


@torch.no_grad()
def predict_proba(model, tok, texts: list[str], *, max_length: int, batch_size: int = 32,
                  desc: str | None = None, window=None) -> np.ndarray:
    """Softmax probabilities [len(texts), num_labels], texts truncated to `max_length` tokens, or with a
    `window` config the whole text (metrics.windows). Batches are built from length-sorted texts (less
    padding); rows come back in input order."""
    if window is not None:
        from bias_amp.metrics.windows import window_proba

        return window_proba(model, tok, texts, window, batch_size, desc)
    model.eval()
    device = next(model.parameters()).device
    limit = tok.model_max_length if tok.model_max_length and tok.model_max_length < 1e6 else max_length
    max_length = min(max_length, limit)
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float64)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    starts = range(0, len(texts), batch_size)
    for s in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 2, leave=False):
        idx = order[s:s + batch_size]
        enc = tok([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                  return_tensors="pt").to(device)
        logits = model(**enc).logits.float()
        out[idx] = torch.softmax(logits, -1).cpu().numpy()
    return out


class ClassifierMetric:
    """A sequence classifier behind a metric config (`model`, `labels`, `max_length`, `batch_size`,
    `trust_remote_code`), loaded lazily; `model_path` overrides cfg.model (e.g. a cached smoke model).
    Subclasses map the model's label names in `from_labels` and validate their config in `validate`; KEY is
    their config key (leaning, quality)."""

    KEY = "classifier"

    @staticmethod
    def validate(cfg) -> None:
        """Check the metric's config without loading the model (subclasses)."""

    def __init__(self, cfg, *, device="cpu"):
        self.validate(cfg)
        self.cfg, self.device, self.model, self.tok, self.mapping = cfg, device, None, None, None

    def from_labels(self, names: list[str]):
        raise NotImplementedError

    def load(self, model_path: str | None = None):
        from bias_amp.metrics import windows

        path = model_path or self.cfg.model
        self.model, self.tok = load_classifier(path, device=self.device,
                                               trust_remote_code=bool(self.cfg.get("trust_remote_code", False)))
        self.mapping = self.from_labels(id2label(self.model))
        self.window = windows.resolve(self.cfg.get("window"), resolve_path(path), f"{self.KEY}.window")
        return self

    def probabilities(self, texts: list[str], desc: str) -> np.ndarray:
        return predict_proba(self.model, self.tok, texts, max_length=self.cfg.max_length,
                             batch_size=self.cfg.batch_size, desc=desc, window=self.window)

    def close(self):
        self.model = self.tok = None
