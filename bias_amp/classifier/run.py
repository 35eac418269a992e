"""Train every backbone of a classifier config, write the Table 1 results, the confusion figure and the
best model (an HF dir: safetensors + tokenizer, id2label = class names, usable as `leaning.model=<dir>` /
`quality.model=<dir>`)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from bias_amp import io
from bias_amp.classifier.fit import evaluate, fit, load_backbone, short_name
from bias_amp.classifier.splits import SPLITS, make_examples
from bias_amp.errors import check, check_range
from bias_amp.layout import LEANINGS
from bias_amp.metrics.corrupt import QUALITY_CLASSES
from bias_amp.models import save_checkpoint

log = logging.getLogger(__name__)
TASKS = {"leaning": LEANINGS, "quality": QUALITY_CLASSES}


def validate(cfg: DictConfig) -> None:
    check(cfg.get("task") in TASKS, "task", f"one of {list(TASKS)}", cfg.get("task"))
    check(bool(cfg.get("backbones")) and all(isinstance(b, str) for b in cfg.backbones), "backbones",
          "a non-empty list of hub names, local dirs, pkg:// paths or 'tiny'", cfg.get("backbones"))
    check(cfg.split.by in SPLITS, "split.by", f"one of {list(SPLITS)}", cfg.split.by)
    fr = list(cfg.split.fractions)
    check(len(fr) == 3 and all(f > 0 for f in fr) and abs(sum(fr) - 1) < 1e-6, "split.fractions",
          "three positive fractions (train, valid, test) summing to 1", fr)
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


def run(cfg: DictConfig, out_dir: str | Path) -> pd.DataFrame:
    """Train every backbone, write the table, the confusion figure and the best model (out_dir/model)."""
    from bias_amp import plots

    validate(cfg)
    out_dir = Path(out_dir)
    classes = list(TASKS[cfg.task])
    data = make_examples(cfg, cfg.seed)
    log.info("examples: %s", {k: dict(Counter(c for _, c in v)) for k, v in data.items()})
    rows, matrices, best = [], {}, None
    for name in cfg.backbones:
        model, tok = load_backbone(name, classes, [x for x, _ in data["train"]], cfg, cfg.seed)
        res = fit(model, tok, data, classes, cfg, cfg.seed, desc=short_name(name))
        test = evaluate(model, tok, data["test"], classes, cfg)
        matrices[name] = test["confusion"]
        rows.append({"backbone": name, "valid_macro_f1": res["valid_macro_f1"], "best_epoch": res["best_epoch"],
                     "test_macro_f1": test["macro_f1"], "test_accuracy": test["accuracy"],
                     "n_train": len(data["train"]), "n_valid": len(data["valid"]), "n_test": len(data["test"])})
        if best is None or res["valid_macro_f1"] > best[0]:
            best = (res["valid_macro_f1"], name)
            save_checkpoint(model, tok, out_dir / "model")
        del model
    table = pd.DataFrame(rows)
    io.write_csv(out_dir / "results.csv", table)
    io.write_text(out_dir / "results.md", _markdown(table, cfg))
    io.write_json(out_dir / "confusion.json", {k: v.tolist() for k, v in matrices.items()} | {"classes": classes})
    plots.save(plots.fig_confusion({short_name(k): v for k, v in matrices.items()}, classes), out_dir / "confusion.png")
    io.write_json(out_dir / "model" / "bias_amp_classifier.json",
                  {"task": cfg.task, "backbone": best[1], "config": OmegaConf.to_container(cfg, resolve=True)})
    return table


def _markdown(table: pd.DataFrame, cfg) -> str:
    head = "| backbone | valid macro-F1 | test macro-F1 | test accuracy | best epoch |\n|---|---|---|---|---|\n"
    body = "".join(f"| {r.backbone} | {r.valid_macro_f1:.4f} | {r.test_macro_f1:.4f} | {r.test_accuracy:.4f} "
                   f"| {r.best_epoch} |\n" for r in table.itertuples())
    given = ", ".join(f"{k}: {cfg.split[k]}" for k in ("train", "valid", "test") if cfg.split.get(k))
    split = cfg.split.by + (f"; files {given}" if given else "")
    return f"# {cfg.task} classifier (split: {split})\n\n" + head + body
