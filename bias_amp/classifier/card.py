"""The trained classifier's results table and instrument card (instrument_card.md + .json beside model/:
data, splits, backbone, recipe, scores on the held-out and random splits, confusion matrix, outlet swap).
Reports find the card in or beside the model dir a run used."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from bias_amp import io


def _f(x) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}" if isinstance(x, float) else str(x)


def _plain(v):
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and np.isnan(v) else v


def verdict(table: pd.DataFrame) -> list[str]:
    """Plain sentences for each backbone trained with both heads: does fine-tuning beat the linear head?"""
    out = []
    for name, g in table.groupby("backbone", sort=False):
        if set(g["head"]) != {"finetune", "linear"}:
            continue
        ft, lin = (g[g["head"] == h]["test_macro_f1"].iloc[0] for h in ("finetune", "linear"))
        beats = "beats" if ft > lin else "does NOT beat"
        out.append(f"{name}: the fine-tuned model {beats} the linear head on the test split "
                   f"(macro-F1 {ft:.4f} vs {lin:.4f}).")
    return out


def results_markdown(table: pd.DataFrame, cfg: DictConfig) -> str:
    cols = [c for c in ("backbone", "head", "valid_macro_f1", "test_macro_f1", "test_outlet_macro_f1",
                        "test_balanced_accuracy", "random_test_macro_f1", "test_accuracy", "best_epoch", "l2")
            if c in table]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(_f(r[c]) for c in cols) + " |\n" for _, r in table.iterrows())
    given = ", ".join(f"{k}: {cfg.split[k]}" for k in ("train", "valid", "test") if cfg.split.get(k))
    split = cfg.split.by + (f"; files {given}" if given else "")
    notes = "".join(f"\n{v}\n" for v in verdict(table))
    return f"# {cfg.task} classifier (split: {split})\n\n" + head + body + notes


def write(out_dir: Path, cfg: DictConfig, parts: dict, data: dict, table: pd.DataFrame, best: dict,
          matrix, classes: list[str]) -> dict:
    """instrument_card.json and .md in out_dir (beside model/)."""
    row = table[(table.backbone == best["backbone"]) & (table["head"] == best["head"])].iloc[0]
    swap = best.get("outlet_swap")
    card = {
        "task": cfg.task, "backbone": best["backbone"], "head": best["head"],
        "data": {"train_file": cfg.split.get("train") or f"data={cfg.data.get('name', 'corpus')}",
                 "test_file": cfg.split.get("test"), "valid_file": cfg.split.get("valid")},
        "splits": {"by": cfg.split.by, "random_test": cfg.split.get("random_test"),
                   "articles": {k: dict(Counter(a["label"] for a in v)) for k, v in parts.items()},
                   "outlets": {k: len({a["source"] for a in v}) for k, v in parts.items()},
                   "examples": {k: len(v) for k, v in data.items()}},
        "recipe": {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg.get(k), DictConfig)
                   else cfg.get(k) for k in ("train", "window", "linear", "mask_outlets", "balance_center",
                                             "text_template", "seed")},
        "scores": {k: _plain(v) for k, v in row.items() if k not in ("backbone", "head")},
        "classes": classes, "confusion_test": None if matrix is None else np.asarray(matrix).tolist(),
        "outlet_swap": None if swap is None else {k: v for k, v in swap.items() if k != "deltas"},
        "test_by_outlet": best.get("by_outlet"),
        "verdict": verdict(table),
    }
    io.write_json(out_dir / "instrument_card.json", card)
    io.write_text(out_dir / "instrument_card.md", card_markdown(card, out_dir))
    return card


def card_markdown(card: dict, out_dir: Path) -> str:
    s = card["scores"]
    lines = [f"# Instrument card: {card['task']} classifier", "",
             f"- backbone: `{card['backbone']}`, head: **{card['head']}**",
             f"- data: train {card['data']['train_file']}; test {card['data']['test_file'] or 'carved from train'}",
             f"- split: by {card['splits']['by']}; articles per part {card['splits']['articles']}; "
             f"outlets per part {card['splits']['outlets']}; examples scored per part (after caps) "
             f"{card['splits']['examples']}",
             f"- recipe: window {card['recipe']['window']}, train {card['recipe']['train']}, "
             f"linear {card['recipe']['linear']}, mask_outlets {card['recipe']['mask_outlets']}", "",
             "| split | macro-F1 | balanced accuracy | accuracy | " + " | ".join(
                 f"recall {c}" for c in card["classes"]) + " |",
             "|---|---|---|---|" + "---|" * len(card["classes"])]
    for part, label in (("test", "test (held out)"), ("random_test", "random (same outlets)")):
        if f"{part}_macro_f1" in s:
            lines.append(f"| {label} | {_f(s[f'{part}_macro_f1'])} | {_f(s[f'{part}_balanced_accuracy'])} | "
                         f"{_f(s[f'{part}_accuracy'])} | " + " | ".join(
                             _f(s.get(f"{part}_recall_{c}")) for c in card["classes"]) + " |")
        if s.get(f"{part}_outlet_macro_f1") is not None:
            lines.append(f"| {label}, every outlet weighted equally | {_f(s[f'{part}_outlet_macro_f1'])} | "
                         f"{_f(s[f'{part}_outlet_balanced_accuracy'])} | – |" + " – |" * len(card["classes"]))
    if card.get("test_by_outlet"):
        cls = card["classes"]
        lines += ["", "Held-out outlets with >= 10 test articles (a large outlet called the wrong side moves the "
                  "test scores by itself):", "", "| outlet | class | articles | accuracy | " + " | ".join(
                      f"predicted {c}" for c in cls) + " |", "|---|---|---|---|" + "---|" * len(cls)]
        lines += [f"| {r['outlet']} | {r['class']} | {r['articles']} | {r['accuracy']:.2f} | " + " | ".join(
            f"{r[f'predicted_{c}']:.2f}" for c in cls) + " |" for r in card["test_by_outlet"]]
    if card["confusion_test"] is not None:
        lines += ["", "Test confusion matrix (rows true, columns predicted: " + ", ".join(card["classes"]) + "):",
                  "", *[f"    {r}" for r in card["confusion_test"]]]
    if card["outlet_swap"] is not None:
        sw = card["outlet_swap"]
        lines += ["", f"Outlet swap: {sw['n']} held-out left/right articles naming their outlet, names swapped for "
                  f"{sw.get('swapped_in')}: mean |Δ p(right)| = {_f(sw['mean_abs_delta_p_right'])} "
                  f"(signed {_f(sw['mean_delta_p_right'])}; goal ≤ 0.05)."]
        if (Path(out_dir) / "outlet_swap.png").is_file():
            lines += ["", "![outlet swap](outlet_swap.png)"]
    lines += [""] + card["verdict"] + ["", "![confusion](confusion.png)", ""]
    return "\n".join(lines)
