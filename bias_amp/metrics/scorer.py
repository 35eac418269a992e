"""Everything measured on one model version's synthetic articles: leaning (§4.3), quality index (§4.4),
perplexity (§5.2), and the instrument-free collapse measures (`collapse`). `Scorer(cfg).score(articles)` ->
one row per article; `summarize` -> the metrics.csv values. Each metric can be disabled
(`<metric>.enabled: false` -> NaN column). Models load on the first score() call and stay loaded until
close(). A metric config with a `train:` block (a smoke model trained on the fly) needs its model dir from
`trained[<metric>]()` (the loop passes `bias_amp.classifier.cache.trained_instruments(cfg)`).

Unscorable articles: an article with fewer than MIN_WORDS words (empty or near-empty, as late generations of
a collapsed run produce) gets NaN for every score; it is counted in `n_unscorable` and stays in
`n_articles`. Shares, expected shares and means are over the scorable articles."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from bias_amp import precision
from bias_amp.errors import ConfigError, check
from bias_amp.layout import LEANINGS
from bias_amp.metrics import collapse
from bias_amp.metrics import leaning as leaning_m
from bias_amp.metrics import perplexity as perplexity_m
from bias_amp.metrics import quality as quality_m
from bias_amp.metrics.stats import mean_ci, share_cis, shares

MIN_WORDS = 3            # fewer words (collapse.words) than this: the article is unscorable
COLUMNS = ["id", "label", "n_words", "p_left", "p_center", "p_right", "leaning", "quality", "perplexity",
           *collapse.COLUMNS]


def _enabled(cfg) -> bool:
    return cfg is not None and bool(cfg.get("enabled", True))


def validate(cfg: DictConfig) -> None:
    """Check the leaning, quality and perplexity configs without loading anything (a smoke model's
    training config is checked by bias_amp.classifier.cache.trained_instruments)."""
    for key, module in (("leaning", leaning_m), ("quality", quality_m), ("perplexity", perplexity_m)):
        if _enabled(cfg.get(key)):
            module.validate(cfg[key])


class Scorer:
    def __init__(self, cfg: DictConfig, *, device="cpu", base_model_loader=None,
                 trained: dict[str, Callable[[], str]] | None = None):
        self.cfg, self.device, self.loader, self.trained = cfg, device, base_model_loader, dict(trained or {})
        self.leaning = leaning_m.LeaningClassifier(cfg.leaning, device=device) if _enabled(cfg.leaning) else None
        self.quality = quality_m.QualityDetector(cfg.quality, device=device) if _enabled(cfg.quality) else None
        for key, metric in (("leaning", self.leaning), ("quality", self.quality)):
            if metric is not None and metric.cfg.get("train") is not None:
                check(key in self.trained, f"{key}.train", "a trained model (Scorer(trained=...), see "
                      "bias_amp.classifier.cache.trained_instruments)", "none given")
        self.ppl_cfg = cfg.perplexity if _enabled(cfg.perplexity) else None
        if self.ppl_cfg is not None:                 # the classifiers check their own configs
            perplexity_m.validate(self.ppl_cfg)
            check(self.ppl_cfg.get("model") is not None or base_model_loader is not None, "perplexity.model",
                  "a model name or directory (no base model loader was given)", None)
        self.ppl_model = self.ppl_tok = None
        self._loaded = False

    @property
    def smoke_instruments(self) -> bool:
        """True when the leaning or quality model is a smoke model trained on the fly (not a measurement)."""
        return any(m is not None and m.cfg.get("train") is not None for m in (self.leaning, self.quality))

    def _load(self) -> None:
        for key, metric in (("leaning", self.leaning), ("quality", self.quality)):
            if metric is not None:
                metric.load(self.trained[key]() if metric.cfg.get("train") is not None else None)
        if self.ppl_cfg is not None:
            if self.ppl_cfg.get("model") is None:
                model, tok = self.loader()
            else:
                from bias_amp.models import load_checkpoint, resolve_path

                model, tok = load_checkpoint(resolve_path(self.ppl_cfg.model))
            self.ppl_model, self.ppl_tok = model.to(self.device).eval(), tok
        dtype = precision.DTYPES[precision.of(self.cfg, self.device)]     # the run's precision; scores stay float
        for m in (self.leaning and self.leaning.model, self.quality and self.quality.model, self.ppl_model):
            if m is not None:
                m.to(dtype)
        self._loaded = True

    def score(self, articles: list[dict], sources: list[str] | None = None) -> pd.DataFrame:
        """One row per article (same order) with COLUMNS; unscorable articles get NaN scores. `sources[i]`: the
        text articles[i] continues (its prompts' article), for copied_8gram_share (NaN without)."""
        for i, a in enumerate(articles):
            ok = isinstance(a, dict) and isinstance(a.get("text"), str) and "id" in a and "label" in a
            check(ok, f"articles[{i}]", "a record with id, label and text (str)", type(a).__name__)
        if sources is not None:
            check(len(sources) == len(articles), "sources", f"one text per article ({len(articles)})", len(sources))
        if not self._loaded:
            self._load()
        n_words = np.array([len(collapse.words(a["text"])) for a in articles], dtype=int)
        keep = np.flatnonzero(n_words >= MIN_WORDS)
        texts = [articles[i]["text"] for i in keep]
        out = pd.DataFrame({"id": [str(a["id"]) for a in articles], "label": [a["label"] for a in articles],
                            "n_words": n_words})
        probs = np.full((len(articles), 3), np.nan)
        if self.leaning is not None and len(keep):
            probs[keep] = self.leaning.predict(texts)
        for j, c in enumerate(LEANINGS):
            out[f"p_{c}"] = probs[:, j]
        out["leaning"] = None
        if self.leaning is not None and len(keep):
            out.loc[keep, "leaning"] = leaning_m.argmax_leaning(probs[keep])
        out["quality"] = out["perplexity"] = np.nan
        if self.quality is not None and len(keep):
            out.loc[keep, "quality"] = self.quality.index(texts)
        if self.ppl_cfg is not None and len(keep):
            c = self.ppl_cfg
            out.loc[keep, "perplexity"] = perplexity_m.perplexities(
                self.ppl_model, self.ppl_tok, texts, max_length=c.get("max_length"), stride=c.stride,
                batch_size=c.batch_size, max_tokens=c.get("max_tokens"))
        measures = collapse.table(texts, None if sources is None else [sources[i] for i in keep])
        for col in collapse.COLUMNS:
            out[col] = np.nan
            out.loc[keep, col] = measures[col].to_numpy()
        return out[COLUMNS]

    def close(self) -> None:
        for metric in (self.leaning, self.quality):
            if metric is not None:
                metric.close()
        self.ppl_model = self.ppl_tok = None
        self._loaded = False


def summarize(scores: pd.DataFrame) -> dict:
    """The version's metrics.csv values over its scorable articles: argmax shares (0..1) with bootstrap 95%
    CIs, expected shares (mean probabilities), mean and 95% t-CI of quality and perplexity, the collapse
    measures' means; `n_unscorable` counts the articles without scores (NaN when `n_words` is absent)."""
    missing = [c for c in ("leaning", "quality", "perplexity") if c not in scores.columns]
    if missing:
        raise ConfigError("scores", "columns leaning, quality, perplexity", missing)
    labels = [x for x in scores["leaning"] if isinstance(x, str)]
    sh = shares(labels) if labels else {c: math.nan for c in LEANINGS}
    cis = share_cis(labels)
    unscorable = int((scores["n_words"] < MIN_WORDS).sum()) if "n_words" in scores else math.nan
    out = {"n_articles": int(len(scores)), "n_unscorable": unscorable,
           **{f"share_{c}": float(sh[c]) for c in LEANINGS}}
    for c in LEANINGS:
        out |= {f"share_{c}_ci_low": cis[c][0], f"share_{c}_ci_high": cis[c][1]}
    for c in LEANINGS:
        p = pd.to_numeric(scores[f"p_{c}"], errors="coerce").to_numpy(float) if f"p_{c}" in scores else []
        out[f"expected_{c}"] = float(np.nanmean(p)) if np.isfinite(p).any() else math.nan
    for col in ("quality", "perplexity"):
        m, lo, hi = mean_ci(pd.to_numeric(scores[col], errors="coerce").to_numpy(dtype=float))
        out |= {f"{col}_mean": m, f"{col}_ci_low": lo, f"{col}_ci_high": hi}
    return out | collapse.summary(scores)
