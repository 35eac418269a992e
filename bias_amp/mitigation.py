"""Mitigations as data (§5.3): what each generation trains on, read by one generic code path.
none: the previous synthetic set; preserve: + round(real_fraction·N) real articles, freshly
sampled each round; accumulate: real + every earlier synthetic set (or the last `window`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from bias_amp.errors import check, check_range


@dataclass
class TrainingSet:
    texts: list[str]
    origin: dict[str, int] = field(default_factory=dict)   # "real" / "gen_XX" -> number of texts


def validate(cfg: DictConfig, train_keys) -> None:
    check(isinstance(cfg.get("name"), str) and cfg.name, "mitigation.name", "a non-empty name", cfg.get("name"))
    check_range(cfg.real_fraction, "mitigation.real_fraction", 0, 1)
    check(isinstance(cfg.accumulate, bool), "mitigation.accumulate", "true or false", cfg.accumulate)
    if cfg.window is not None:
        check_range(cfg.window, "mitigation.window", 1, integer=True)
    for key in cfg.get("train") or {}:
        check(key in train_keys, f"mitigation.train.{key}", f"a train setting ({', '.join(train_keys)})", key)


def training_set(generation: int, real_texts: list[str], synthetic: list[list[str]], cfg: DictConfig,
                 seed: int) -> TrainingSet:
    """Texts generation `generation` trains on. synthetic[k] = texts of the set generation k produced."""
    if generation == 0:
        return TrainingSet(list(real_texts), {"real": len(real_texts)})
    check(len(synthetic) >= generation, "mitigation", f"{generation} earlier synthetic sets", len(synthetic))
    if cfg.accumulate:
        first = 0 if cfg.window is None else max(0, generation - cfg.window)
        chosen = range(first, generation)
    else:
        chosen = [generation - 1]
    texts, origin = [], {}
    if cfg.accumulate:
        texts += real_texts
        origin["real"] = len(real_texts)
    for k in chosen:
        texts += synthetic[k]
        origin[f"gen_{k:02d}"] = len(synthetic[k])
    n_real = round(cfg.real_fraction * len(real_texts))
    if n_real:
        rng = np.random.default_rng([seed, generation])     # fresh sample every round, reproducible
        picked = rng.choice(len(real_texts), size=n_real, replace=False)
        texts += [real_texts[i] for i in sorted(picked)]
        origin["real"] = origin.get("real", 0) + n_real
    return TrainingSet(texts, origin)
