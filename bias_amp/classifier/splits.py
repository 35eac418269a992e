"""The classifier's examples: articles read, split (stratified by label; `random` or outlet-disjoint
`source`), the center class rebalanced, and for the quality task turned into corrupted sentences."""

from __future__ import annotations

import random
from collections import Counter

from omegaconf import DictConfig, OmegaConf

from bias_amp.errors import check
from bias_amp.metrics.corrupt import quality_examples

SPLITS = ("random", "source")


def _record(a) -> dict:
    return {"title": a.title, "body": a.body, "label": a.label, "source": a.source}


def _record_text(rec: dict, template: str) -> str:
    return template.format(title=rec["title"], body=rec["body"])


def _read_split_file(cfg: DictConfig, path: str) -> list[dict]:
    """Every article of a split file, read with the `data` config's reader and maps (no sampling)."""
    from bias_amp.data import read_articles

    data = OmegaConf.merge(cfg.data, {"path": str(path), "hub": None, "per_label": None, "format": "auto"})
    return [_record(a) for a in read_articles(data)]


def load_articles(cfg: DictConfig, seed: int) -> list[dict]:
    """The classifier's pool of articles: `split.train` if given, else the `data` corpus (load_corpus)."""
    if cfg.split.get("train"):
        return _read_split_file(cfg, cfg.split.train)
    from bias_amp.data import load_corpus

    return [_record(a) for a in load_corpus(cfg.data, seed)]


def split_articles(arts: list[dict], by: str, fractions, seed: int) -> tuple[list, list, list]:
    """Stratified by label: `random` splits articles, `source` splits outlets (outlet-disjoint parts)."""
    rng = random.Random(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in sorted({a["label"] for a in arts}):
        group = [a for a in arts if a["label"] == label]
        if by == "random":
            rng.shuffle(group)
            units = [[a] for a in group]
        else:
            sources = sorted({a["source"] for a in group})
            rng.shuffle(sources)
            units = [[a for a in group if a["source"] == s] for s in sources]
        cum, n = 0, len(group)
        for unit in units:
            k = 0 if cum < fractions[0] * n else 1 if cum < (fractions[0] + fractions[1]) * n else 2
            parts[k].extend(unit)
            cum += len(unit)
    return parts


def balance_center(train: list[dict], seed: int) -> list[dict]:
    """Resample the center class to the mean size of left and right (with replacement when upsampling)."""
    rng = random.Random(seed)
    counts = Counter(a["label"] for a in train)
    target = round((counts["left"] + counts["right"]) / 2)
    center = [a for a in train if a["label"] == "center"]
    if not center or target == len(center):
        return train
    pick = rng.choices(center, k=target) if target > len(center) else rng.sample(center, target)
    return [a for a in train if a["label"] != "center"] + pick


def make_parts(cfg: DictConfig, seed: int) -> dict[str, list[dict]]:
    """{'train'|'valid'|'test'[|'random_test']: article records}. `split.random_test` (a fraction): a random
    part of the training articles held out as a same-outlets test beside an outlet-disjoint one."""
    arts = load_articles(cfg, seed)
    fr = list(cfg.split.fractions)
    given = {p: _read_split_file(cfg, cfg.split[p]) for p in ("valid", "test") if cfg.split.get(p)}
    if "test" in given and "valid" not in given:
        fr = [fr[0] / (fr[0] + fr[1]), 1 - fr[0] / (fr[0] + fr[1]), 0.0]
    tr, va, te = split_articles(arts, cfg.split.by, fr, seed)
    parts = {"train": tr, "valid": given.get("valid", va), "test": given.get("test", te)}
    if "valid" in given and "test" not in given:
        parts["train"], parts["test"] = tr + va, te
    if cfg.split.get("random_test"):
        f = cfg.split.random_test
        parts["train"], _, parts["random_test"] = split_articles(parts["train"], "random", [1 - f, 0.0, f], seed)
    if cfg.task == "leaning" and cfg.balance_center:
        parts["train"] = balance_center(parts["train"], seed)
    return parts


def outlet_names(cfg: DictConfig, parts: dict[str, list[dict]]) -> list[str]:
    """The names masked when `mask_outlets`: every variant of the training pool's outlets (train + valid)."""
    from bias_amp.metrics.outlets import all_names

    return all_names(a["source"] for k in ("train", "valid") for a in parts[k]) if cfg.get("mask_outlets") else []


def leaning_texts(cfg: DictConfig, records: list[dict], masked: list[str]) -> list[str]:
    from bias_amp.metrics.outlets import mask

    return mask([_record_text(a, cfg.text_template) for a in records], masked)


def make_examples(cfg: DictConfig, seed: int, parts: dict | None = None) -> dict[str, list[tuple[str, str]]]:
    """{part: [(text, class)]} for the task (parts: make_parts); articles are split before sentences are
    drawn, so the quality task's held-out sentences come from unseen articles."""
    parts = make_parts(cfg, seed) if parts is None else parts
    if cfg.task == "leaning":
        masked = outlet_names(cfg, parts)
        out = {k: list(zip(leaning_texts(cfg, v, masked), [a["label"] for a in v], strict=True))
               for k, v in parts.items()}
    else:
        per = 4 if cfg.quality.all_classes else 1  # examples per sentence; cap sentences before corrupting
        out = {k: quality_examples([_record_text(a, cfg.text_template) for a in v], seed=seed + i,
                                   min_words=cfg.quality.min_words, all_classes=cfg.quality.all_classes,
                                   degenerate=cfg.quality.get("degenerate", False),
                                   max_sentences=-(-_cap(cfg, k) // per) if _cap(cfg, k) else None)
               for i, (k, v) in enumerate(parts.items())}
    for k, keep in _kept(cfg, {k: len(v) for k, v in out.items()}, seed).items():
        out[k] = [out[k][i] for i in keep]
    for k, v in out.items():
        check(len(v) > 0, f"split.{k}", "a non-empty part (more data or other fractions)", 0)
    return out


def _kept(cfg: DictConfig, sizes: dict[str, int], seed: int) -> dict[str, list[int]]:
    """Indices of the examples kept per part: optional fixed random subsets (`train.max_examples`,
    `train.max_eval_examples`; long benchmarks on few cores), drawn in part order from one seeded stream."""
    rng, out = random.Random(seed), {}
    for k, n in sizes.items():
        cap = _cap(cfg, k)
        out[k] = rng.sample(range(n), cap) if cap and n > cap else list(range(n))
    return out


def _cap(cfg: DictConfig, part: str) -> int | None:
    return cfg.train.get("max_examples") if part == "train" else cfg.train.get("max_eval_examples")


def example_outlets(cfg: DictConfig, parts: dict[str, list[dict]], seed: int) -> dict[str, list[str]]:
    """The outlet of every leaning example of make_examples(cfg, seed, parts), in its order."""
    return {k: [parts[k][i]["source"] for i in keep]
            for k, keep in _kept(cfg, {k: len(v) for k, v in parts.items()}, seed).items()}
