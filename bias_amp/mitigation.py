"""Mitigations as data (§5.3, and `rebalance` beyond the paper): what each generation trains on, built
by one generic path from the keys of conf/mitigation/none.yaml (whose header defines them). Generation
0 always trains on the whole real corpus; generation g >= 1 on
    round(real_fraction * N) distinct real articles (a fresh sample each round)
  + the previous synthetic set, or with `accumulate` every earlier one (the last `window` of them),
    each cut by `select` to the largest subset whose predicted leaning shares equal the target (`by: leaning`),
    or to a subset of that size drawn regardless of leaning (`by: size`: rebalance's size-matched control)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from bias_amp.errors import check, check_range
from bias_amp.layout import LEANINGS, version_name

log = logging.getLogger(__name__)
SELECT_BY = ("leaning", "size")
KEYS = ("name", "real_fraction", "accumulate", "window", "select", "project", "train")  # project: projection.py


@dataclass
class TrainingSet:
    texts: list[str]
    origin: dict[str, int] = field(default_factory=dict)   # "real" / "gen_XX" -> number of texts


def validate(cfg: DictConfig, train_keys, leaning: DictConfig | None = None) -> None:
    """`leaning`: the run's leaning metric config, which `select` needs enabled."""
    for key in cfg:
        check(key in KEYS, f"mitigation.{key}", f"one of {', '.join(KEYS)}", key)
    check(isinstance(cfg.get("name"), str) and cfg.name, "mitigation.name", "a non-empty name", cfg.get("name"))
    check_range(cfg.real_fraction, "mitigation.real_fraction", 0, 1)
    check(isinstance(cfg.accumulate, bool), "mitigation.accumulate", "true or false", cfg.accumulate)
    if cfg.window is not None:
        check(cfg.accumulate, "mitigation.window", "null unless mitigation.accumulate is true (a window counts "
              "accumulated synthetic sets)", cfg.window)
        check_range(cfg.window, "mitigation.window", 1, integer=True)
    select = cfg.get("select")
    if select is not None:
        check(OmegaConf.is_dict(select) and set(select) == {"by", "target"}, "mitigation.select",
              "null or {by: leaning | size, target: real | {left: .., center: .., right: ..}}", select)
        check(select.by in SELECT_BY, "mitigation.select.by", "leaning (match the target's shares) or size (as many "
              "articles as leaning keeps, drawn regardless of leaning)", select.by)
        check(leaning is not None and leaning.get("enabled", True), "mitigation.select",
              "the leaning metric enabled (leaning.enabled: true)", "no leaning scores")
        if select.target != "real":
            target_shares(select.target, [])
    for key in cfg.get("train") or {}:
        check(key in train_keys, f"mitigation.train.{key}", f"a train setting ({', '.join(train_keys)})", key)


def target_shares(target, real_labels: list[str]) -> dict[str, float]:
    """`real`: the real corpus's label shares; else the given shares (leanings left out count 0)."""
    if target == "real":
        check(bool(real_labels), "mitigation.select.target", "real articles' labels for target: real", None)
        counts = Counter(real_labels)
        return {c: counts[c] / len(real_labels) for c in LEANINGS}
    expected = "'real' or shares {left, center, right} in [0, 1] summing to 1"
    ok = OmegaConf.is_dict(target) and set(target) <= set(LEANINGS) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in target.values())
    check(ok and abs(sum(target.values()) - 1) < 1e-6, "mitigation.select.target", expected, target)
    return {c: float(target.get(c, 0)) for c in LEANINGS}


def selection(leanings: list, target: dict[str, float], by: str, rng: np.random.Generator, name: str) -> list[int]:
    """Indices `select` keeps of one synthetic set. by="leaning": the largest subset (drawn at random within each
    leaning) whose leaning shares equal `target`; a targeted leaning with no article cannot be matched, the others
    keep their ratios. by="size": as many indices, drawn at random from the scorable articles whatever their leaning."""
    of = {c: [i for i, x in enumerate(leanings) if x == c] for c in LEANINGS}
    wanted = {c: t for c, t in target.items() if t > 0 and of[c]}
    check(bool(wanted), "mitigation.select", f"articles of {name} predicted as a targeted leaning",
          {c: len(ix) for c, ix in of.items()})
    if len(wanted) < sum(t > 0 for t in target.values()):
        log.warning("select %s: no article predicted %s; matching the other leanings' ratios", name,
                    ", ".join(c for c in target if target[c] > 0 and c not in wanted))
    total = sum(wanted.values())
    n = min(len(of[c]) * total / t for c, t in wanted.items())      # the largest matching set size
    keep = {c: min(len(of[c]), math.floor(n * t / total + 1e-9)) for c, t in wanted.items()}
    counts = {c: len(ix) for c, ix in of.items()}
    if by == "size":
        log.info("select %s: %d at random of %s (the size of leaning's %s)", name, sum(keep.values()), counts, keep)
        return sorted(rng.choice(sorted(i for ix in of.values() for i in ix), size=sum(keep.values()), replace=False))
    log.info("select %s: %s of %s by leaning", name, keep, counts)
    return sorted(i for c, k in keep.items() for i in rng.choice(of[c], size=k, replace=False))


def training_set(generation: int, real_texts: list[str], synthetic: list[list[str]], cfg: DictConfig,
                 seed: int, *, real_labels: list[str] | None = None,
                 scores: list[pd.DataFrame] | None = None) -> TrainingSet:
    """Texts generation `generation` trains on. synthetic[k] = texts of the set generation k produced;
    scores[k] = its scores.csv rows, same order (needed with `select`); real_labels for `target: real`."""
    if generation == 0:
        return TrainingSet(list(real_texts), {"real": len(real_texts)})
    check(len(synthetic) >= generation, "mitigation", f"{generation} earlier synthetic sets", len(synthetic))
    first = (0 if cfg.window is None else max(0, generation - cfg.window)) if cfg.accumulate else generation - 1
    texts, origin = [], {}
    n_real = round(cfg.real_fraction * len(real_texts))
    if n_real:
        rng = np.random.default_rng([seed, generation])     # fresh sample every round, reproducible
        texts += [real_texts[i] for i in sorted(rng.choice(len(real_texts), size=n_real, replace=False))]
        origin["real"] = n_real
    select = cfg.get("select")
    for k in range(first, generation):
        chosen = synthetic[k]
        if select is not None:
            check(scores is not None and len(scores[k]) == len(chosen), "mitigation.select",
                  f"one score row per article of {version_name(k)}", None if scores is None else len(scores[k]))
            target = target_shares(select.target, real_labels or [])
            rng = np.random.default_rng([seed, generation, k])
            chosen = [chosen[i] for i in selection(scores[k]["leaning"].tolist(), target, select.by, rng,
                                                   version_name(k))]
        texts += chosen
        origin[version_name(k)] = len(chosen)
    return TrainingSet(texts, origin)
