"""Train every backbone x head of a classifier config, write the Table 1 results, the confusion figure, the
best model (an HF dir: safetensors + tokenizer, id2label = class names, usable as `leaning.model=<dir>` /
`quality.model=<dir>`) and its instrument card (card.py)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from bias_amp import io
from bias_amp.classifier.fit import by_outlet, fit, load_backbone, scores, short_name
from bias_amp.classifier.splits import (
    SPLITS,
    example_outlets,
    leaning_texts,
    make_examples,
    make_parts,
    outlet_names,
)
from bias_amp.errors import check, check_range
from bias_amp.layout import LEANINGS
from bias_amp.metrics import windows
from bias_amp.metrics.corrupt import QUALITY_CLASSES
from bias_amp.metrics.seqcls import predict_proba
from bias_amp.models import save_checkpoint

log = logging.getLogger(__name__)
TASKS = {"leaning": LEANINGS, "quality": QUALITY_CLASSES}
HEADS = ("finetune", "linear")
TESTS = ("test", "random_test")      # test: the held-out part (unseen outlets with split.by=source)


def validate(cfg: DictConfig) -> None:
    check(cfg.get("task") in TASKS, "task", f"one of {list(TASKS)}", cfg.get("task"))
    check(bool(cfg.get("backbones")) and all(isinstance(b, str) for b in cfg.backbones), "backbones",
          "a non-empty list of hub names, local dirs, pkg:// paths or 'tiny'", cfg.get("backbones"))
    heads = list(cfg.get("heads") or [])
    check(bool(heads) and set(heads) <= set(HEADS) and len(set(heads)) == len(heads), "heads",
          f"a non-empty list of distinct {list(HEADS)}", heads)
    check(not ("linear" in heads and "tiny" in cfg.backbones), "backbones",
          "pretrained encoders for head linear ('tiny' is random)", list(cfg.backbones))
    check(cfg.split.by in SPLITS, "split.by", f"one of {list(SPLITS)}", cfg.split.by)
    fr = list(cfg.split.fractions)
    check(len(fr) == 3 and all(f > 0 for f in fr) and abs(sum(fr) - 1) < 1e-6, "split.fractions",
          "three positive fractions (train, valid, test) summing to 1", fr)
    rt = cfg.split.get("random_test")
    check(rt is None or (isinstance(rt, float) and 0 < rt < 1), "split.random_test", "null or a fraction in (0, 1)", rt)
    for part in ("train", "valid", "test"):
        p = cfg.split.get(part)
        check(p is None or Path(p).is_file(), f"split.{part}", "null or an existing JSONL file", p)
    t = cfg.train
    check_range(t.lr, "train.lr", 0, lo_open=True)
    check_range(t.batch_size, "train.batch_size", 1, integer=True)
    check_range(t.epochs, "train.epochs", 1, integer=True)
    check_range(t.max_length, "train.max_length", 8, integer=True)
    check_range(t.weight_decay, "train.weight_decay", 0)
    for key in ("max_examples", "max_eval_examples"):
        check(t.get(key) is None or (isinstance(t[key], int) and t[key] > 0), f"train.{key}",
              "null or a positive integer", t.get(key))
    windows.validate(cfg.get("window"), "window")
    l2 = list((cfg.get("linear") or {}).get("l2") or [])
    check("linear" not in heads or (bool(l2) and all(isinstance(v, (int, float)) and v >= 0 for v in l2)),
          "linear.l2", "a non-empty list of L2 strengths >= 0", l2)
    check(not cfg.get("mask_outlets") or cfg.task == "leaning", "mask_outlets", "false for task quality",
          cfg.get("mask_outlets"))


def _train_one(name: str, head: str, data: dict, classes: list[str], cfg: DictConfig):
    """(model, tok, result, {part: probabilities}) of one backbone x head."""
    if head == "linear":
        from bias_amp.classifier.linear import train_linear

        model, tok, res, probs = train_linear(name, data, classes, cfg)
        pool = cfg.window.pool if cfg.get("window") is not None else "logits"
        return model, tok, {**res, "best_epoch": None, "pools": probs}, {k: v[pool] for k, v in probs.items()}
    model, tok = load_backbone(name, classes, [x for x, _ in data["train"]], cfg, cfg.seed)
    res = fit(model, tok, data, classes, cfg, cfg.seed, desc=short_name(name))
    probs = {k: predict_proba(model, tok, [t for t, _ in data[k]], max_length=cfg.train.max_length,
                              batch_size=cfg.train.eval_batch_size, window=cfg.get("window"))
             for k in TESTS if k in data}
    return model, tok, res, probs


def run(cfg: DictConfig, out_dir: str | Path) -> pd.DataFrame:
    """Train every backbone x head, write the table, the confusion figure, the outlet-swap measurement
    (leaning), the best model (out_dir/model, by validation macro-F1) and the instrument card."""
    from bias_amp import plots
    from bias_amp.classifier import card

    validate(cfg)
    out_dir = Path(out_dir)
    classes = list(TASKS[cfg.task])
    parts = make_parts(cfg, cfg.seed)
    data = make_examples(cfg, cfg.seed, parts)
    outlets = example_outlets(cfg, parts, cfg.seed) if cfg.task == "leaning" else {}
    log.info("examples: %s", {k: dict(Counter(c for _, c in v)) for k, v in data.items()})
    rows, matrices, best = [], {}, None
    for name in cfg.backbones:
        for head in cfg.heads:
            model, tok, res, probs = _train_one(name, head, data, classes, cfg)
            row = {"backbone": name, "head": head, "valid_macro_f1": res["valid_macro_f1"],
                   "best_epoch": res["best_epoch"]}
            for part in (k for k in TESTS if k in data):
                ev = scores(data[part], probs[part], classes, outlets.get(part))
                row |= {f"{part}_{k}": ev[k] for k in ("macro_f1", "accuracy", "balanced_accuracy",
                                                      "outlet_macro_f1", "outlet_balanced_accuracy") if k in ev}
                row |= {f"{part}_recall_{c}": r for c, r in ev["recall"].items()}
                if part == "test":
                    matrices[f"{short_name(name)} {head}"] = ev["confusion"]
            for pool, p in res.get("pools", {}).get("test", {}).items():   # linear: both poolings, free
                row[f"test_macro_f1_pool_{pool}"] = scores(data["test"], p, classes)["macro_f1"]
            if res.get("l2") is not None:
                row["l2"] = res["l2"]
            rows.append(row | {f"n_{k}": len(v) for k, v in data.items()})
            if best is None or res["valid_macro_f1"] > best["valid_macro_f1"]:
                best = {"valid_macro_f1": res["valid_macro_f1"], "backbone": name, "head": head,
                        "key": f"{short_name(name)} {head}"}
                save_checkpoint(model, tok, out_dir / "model")
                if cfg.get("window") is not None:     # what `window: model` scores with (metrics.windows)
                    io.write_json(out_dir / "model" / windows.WINDOW_FILE, OmegaConf.to_container(cfg.window))
                swap = _outlet_swap(model, tok, parts, cfg) if cfg.task == "leaning" else None
                best["outlet_swap"] = swap
                best["by_outlet"] = by_outlet(data["test"], probs["test"], classes, outlets["test"]) \
                    if "test" in outlets else None
            del model
    table = pd.DataFrame(rows)
    masked = outlet_names(cfg, parts) if cfg.task == "leaning" else []
    if masked:
        io.write_json(out_dir / "model" / "outlets.json", masked)
    io.write_csv(out_dir / "results.csv", table)
    io.write_text(out_dir / "results.md", card.results_markdown(table, cfg))
    io.write_json(out_dir / "confusion.json", {k: v.tolist() for k, v in matrices.items()} | {"classes": classes})
    plots.save(plots.fig_confusion(matrices, classes), out_dir / "confusion.png")
    if best.get("outlet_swap") and best["outlet_swap"]["n"]:
        plots.save(plots.fig_outlet_swap(best["outlet_swap"]["deltas"]), out_dir / "outlet_swap.png")
    io.write_json(out_dir / "model" / "bias_amp_classifier.json",
                  {"task": cfg.task, "backbone": best["backbone"], "head": best["head"],
                   "config": OmegaConf.to_container(cfg, resolve=True)})
    card.write(out_dir, cfg, parts, data, table, best, matrices.get(best["key"]), classes)
    return table


def _outlet_swap(model, tok, parts: dict, cfg: DictConfig) -> dict:
    from bias_amp.classifier.shortcuts import outlet_swap

    masked = outlet_names(cfg, parts)

    def predict(texts):
        return predict_proba(model, tok, texts, max_length=cfg.train.max_length,
                             batch_size=cfg.train.eval_batch_size, window=cfg.get("window"))

    return outlet_swap(predict, parts["test"], parts["train"], lambda recs: leaning_texts(cfg, recs, masked),
                       cap=cfg.train.get("max_eval_examples"), seed=cfg.seed)
