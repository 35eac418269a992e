"""Everything measured on one model version's synthetic articles: leaning (§4.3), quality index (§4.4),
perplexity (§5.2). `Scorer(cfg).score(articles)` -> one row per article; `summarize` -> the metrics.csv
values. Each metric can be disabled (`<metric>.enabled: false` -> NaN column). Models load on the first
score() call and stay loaded until close(). A metric config with a `train:` block (smoke) trains its small
classifier once, cached under `${paths.cache_dir}/<leaning|quality>-<name>-<hash>`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from bias_amp.errors import ConfigError, check
from bias_amp.metrics import leaning as leaning_m
from bias_amp.metrics import perplexity as perplexity_m
from bias_amp.metrics import quality as quality_m
from bias_amp.metrics.stats import LEANINGS, mean_ci, shares

COLUMNS = ["id", "label", "p_left", "p_center", "p_right", "leaning", "quality", "perplexity"]


def _enabled(cfg) -> bool:
    return cfg is not None and bool(cfg.get("enabled", True))


class Scorer:
    def __init__(self, cfg: DictConfig, *, device="cpu", base_model_loader=None):
        self.cfg, self.device, self.loader = cfg, device, base_model_loader
        self.cache_dir = cfg.paths.cache_dir
        self.leaning = leaning_m.LeaningClassifier(cfg.leaning, device=device) if _enabled(cfg.leaning) else None
        self.quality = quality_m.QualityDetector(cfg.quality, device=device) if _enabled(cfg.quality) else None
        self.train_cfgs = {}
        for key, metric in (("leaning", self.leaning), ("quality", self.quality)):
            if metric is not None and metric.cfg.get("train") is not None:
                from bias_amp.classifier import compose

                tcfg = compose(metric.cfg.train)
                check(tcfg.task == key, f"{key}.train.task", repr(key), tcfg.task)
                self.train_cfgs[key] = tcfg
        self.ppl_cfg = cfg.perplexity if _enabled(cfg.perplexity) else None
        if self.ppl_cfg is not None:
            perplexity_m.validate(self.ppl_cfg)
            check(self.ppl_cfg.get("model") is not None or base_model_loader is not None, "perplexity.model",
                  "a model name or directory (no base model loader was given)", None)
        self.ppl_model = self.ppl_tok = None
        self._loaded = False

    def _load(self) -> None:
        from bias_amp.classifier import train_cached

        for key, metric in (("leaning", self.leaning), ("quality", self.quality)):
            if metric is not None:
                path = None
                if key in self.train_cfgs:
                    path = str(train_cached(self.train_cfgs[key], self.cache_dir, f"{key}-{metric.cfg.name}"))
                metric.load(path)
        if self.ppl_cfg is not None:
            if self.ppl_cfg.get("model") is None:
                model, tok = self.loader()
            else:
                from bias_amp.models import load_checkpoint, resolve_path

                model, tok = load_checkpoint(resolve_path(self.ppl_cfg.model))
            self.ppl_model, self.ppl_tok = model.to(self.device).eval(), tok
        self._loaded = True

    def score(self, articles: list[dict]) -> pd.DataFrame:
        """One row per article (same order) with COLUMNS."""
        for i, a in enumerate(articles):
            ok = isinstance(a, dict) and isinstance(a.get("text"), str) and "id" in a and "label" in a
            check(ok, f"articles[{i}]", "a record with id, label and text (str)", type(a).__name__)
        if not self._loaded:
            self._load()
        n, texts = len(articles), [a["text"] for a in articles]
        out = pd.DataFrame({"id": [str(a["id"]) for a in articles], "label": [a["label"] for a in articles]})
        probs = self.leaning.predict(texts) if self.leaning is not None and n else np.full((n, 3), np.nan)
        for j, c in enumerate(LEANINGS):
            out[f"p_{c}"] = probs[:, j]
        out["leaning"] = leaning_m.argmax_leaning(probs) if self.leaning is not None else None
        out["quality"] = self.quality.index(texts) if self.quality is not None and n else np.nan
        if self.ppl_cfg is not None and n:
            c = self.ppl_cfg
            out["perplexity"] = perplexity_m.perplexities(
                self.ppl_model, self.ppl_tok, texts, max_length=c.get("max_length"), stride=c.stride,
                batch_size=c.batch_size, max_tokens=c.get("max_tokens"))
        else:
            out["perplexity"] = np.nan
        return out[COLUMNS]

    def close(self) -> None:
        for metric in (self.leaning, self.quality):
            if metric is not None:
                metric.close()
        self.ppl_model = self.ppl_tok = None
        self._loaded = False


def summarize(scores: pd.DataFrame) -> dict:
    """The version's metrics.csv values: shares (0..1) over articles with a leaning, mean and 95% t-CI."""
    missing = [c for c in ("leaning", "quality", "perplexity") if c not in scores.columns]
    if missing:
        raise ConfigError("scores", "columns leaning, quality, perplexity", missing)
    labels = [x for x in scores["leaning"] if isinstance(x, str)]
    sh = shares(labels) if labels else {c: math.nan for c in LEANINGS}
    out = {"n_articles": int(len(scores)), **{f"share_{c}": float(sh[c]) for c in LEANINGS}}
    for col in ("quality", "perplexity"):
        m, lo, hi = mean_ci(pd.to_numeric(scores[col], errors="coerce").to_numpy(dtype=float))
        out |= {f"{col}_mean": m, f"{col}_ci_low": lo, f"{col}_ci_high": hi}
    return out
