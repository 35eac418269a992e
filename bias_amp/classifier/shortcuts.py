"""Outlet shortcut measurement: held-out left and right articles that name their own outlet (bylines,
"(CNN) —"), scored as they are and with those names swapped for the training pool's most frequent outlet
of the other side; the mean absolute change in p(right) is the shortcut (goal <= 0.05)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np

from bias_amp.metrics.outlets import pattern, swap, variants

OTHER_SIDE = {"left": "right", "right": "left"}


def other_outlets(train: list[dict]) -> dict[str, str]:
    """{label: the shortest name variant of the most frequent training outlet of the other side}."""
    out = {}
    for label, other in OTHER_SIDE.items():
        counts = Counter(a["source"] for a in train if a["label"] == other)
        if counts:
            out[label] = min(variants(counts.most_common(1)[0][0]) or {counts.most_common(1)[0][0]}, key=len)
    return out


def outlet_swap(predict, records: list[dict], train: list[dict], to_text, *, cap: int | None = None,
                seed: int = 0) -> dict:
    """`predict(texts) -> [n, 3]` (left, center, right) probabilities; `to_text(records) -> texts` (the
    classifier's input, masking included). Returns the mean |Δ p(right)|, the signed mean, n and deltas."""
    targets = other_outlets(train)
    named = [a for a in records if a["label"] in targets
             and (p := pattern(variants(a["source"]))) is not None and p.search(a["title"] + "\n" + a["body"])]
    if cap and len(named) > cap:
        named = random.Random(seed).sample(named, cap)
    if not named:
        return {"n": 0, "mean_abs_delta_p_right": float("nan"), "mean_delta_p_right": float("nan"), "deltas": {}}
    swapped = [{**a, "title": swap(a["title"], a["source"], targets[a["label"]]),
                "body": swap(a["body"], a["source"], targets[a["label"]])} for a in named]
    before, after = predict(to_text(named))[:, 2], predict(to_text(swapped))[:, 2]
    delta = after - before
    return {"n": len(named), "mean_abs_delta_p_right": float(np.abs(delta).mean()),
            "mean_delta_p_right": float(delta.mean()), "swapped_in": targets,
            "deltas": {lab: delta[[a["label"] == lab for a in named]].tolist() for lab in targets}}
