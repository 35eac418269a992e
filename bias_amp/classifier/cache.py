"""Smoke metric models trained on the fly, once per training config: `trained_instruments(cfg)` gives the
loop's Scorer, for each enabled metric with a `train:` block, a function returning the saved model dir
(trained under `${paths.cache_dir}/<metric>-<name>-<hash>` at first call, file-locked).
Deterministic: the same config gives the same model bits in any process, on any number of threads (the
tiny backbone's tokenizer is byte-level BPE, whose training is deterministic, unlike WordPiece's alphabet
order; training runs on one thread; seeds, data order and dropout follow `seed`)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bias_amp import io
from bias_amp.classifier.run import run, validate
from bias_amp.errors import check

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[2] / "conf"
RECIPE = 2   # part of the cache key: bump when the training code changes what a config trains
METRICS = ("leaning", "quality")


def compose(overrides: DictConfig | dict) -> DictConfig:
    """conf/classifier.yaml (its values, not its defaults list) merged with `overrides` (which must carry
    `data`): the training config of a metric's smoke model."""
    base = OmegaConf.load(CONF / "classifier.yaml")
    for key in ("defaults", "hydra"):
        base.pop(key, None)
    cfg = OmegaConf.merge(base, overrides)
    check(cfg.get("data") is not None, "train.data", "a data config (e.g. defaults: /data@train.data: sample)", None)
    validate(cfg)
    return cfg


def train_cached(cfg: DictConfig, cache_dir: str | Path, name: str) -> Path:
    """The saved model of `run(cfg)`, trained once under `cache_dir/<name>-<hash of cfg>` (fcntl lock:
    parallel jobs wait for the first one instead of training again)."""
    spec = json.dumps({"recipe": RECIPE, **OmegaConf.to_container(cfg, resolve=True)}, sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    root = Path(cache_dir) / f"{name}-{digest}"
    model = root / "model"
    if (model / "config.json").is_file() and (root / "DONE").is_file():
        return model
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        threads = torch.get_num_threads()
        try:
            if not (root / "DONE").is_file():
                log.info("training the %s classifier once into %s", name, root)
                torch.set_num_threads(1)     # summation order independent of the machine's cores
                run(cfg, root)
                io.write_text(root / "DONE", spec + "\n")
        finally:
            torch.set_num_threads(threads)
            fcntl.flock(lock, fcntl.LOCK_UN)
    return model


def trained_instruments(cfg: DictConfig) -> dict[str, Callable[[], str]]:
    """{metric: () -> model dir} for each enabled leaning / quality config with a `train:` block; the
    training configs are composed and validated now (before any model loads), trained at first call."""
    out = {}
    for key in METRICS:
        mcfg = cfg.get(key)
        if mcfg is None or not mcfg.get("enabled", True) or mcfg.get("train") is None:
            continue
        tcfg = compose(mcfg.train)
        check(tcfg.task == key, f"{key}.train.task", repr(key), tcfg.task)
        name = f"{key}-{mcfg.name}"
        out[key] = lambda tcfg=tcfg, name=name: str(train_cached(tcfg, cfg.paths.cache_dir, name))
    return out
