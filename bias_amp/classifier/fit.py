"""Backbones and fine-tuning of a sequence classifier: a hub / local / pkg:// backbone with a fresh head, or
`tiny` (the project's one tiny-model factory, `models.tiny_lm`, with a classification head); AdamW with
`train.param_groups`' weight-decay rule, linear decay, a weighted random sampler; best epoch by validation
macro-F1."""

from __future__ import annotations

import copy
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from bias_amp.metrics.seqcls import predict_proba
from bias_amp.metrics.stats import confusion, macro_f1
from bias_amp.models import resolve_path

log = logging.getLogger(__name__)


def load_backbone(name: str, classes, texts: list[str], cfg: DictConfig, seed: int):
    """(model, tokenizer) with a fresh classification head over `classes`. `tiny`: a random GPT-2 with a
    byte-level BPE tokenizer trained on `texts` (both deterministic)."""
    if name == "tiny":
        from bias_amp.models import tiny_lm, train_tokenizer

        tiny = dict(cfg.tiny)
        tok = train_tokenizer(texts, tiny.pop("vocab_size"))
        tok.model_max_length = cfg.train.max_length
        return tiny_lm(tok, classes=classes, n_positions=cfg.train.max_length, seed=seed, **tiny), tok
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_path(name)
    tok = AutoTokenizer.from_pretrained(path)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)}, ignore_mismatched_sizes=True)
    return model, tok


def short_name(name: str) -> str:
    """A backbone's display name: the package of pkg://pkg/sub, else the last path part."""
    return name[6:].split("/")[0] if name.startswith("pkg://") else Path(name).name


def _recall(cm: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(1)


def scores(data, probs: np.ndarray, classes, outlets: list[str] | None = None) -> dict:
    """Macro-F1, accuracy, balanced accuracy (mean per-class recall), per-class recall and the confusion
    matrix [true, predicted] of `probs` against the classes of `data` ([(text, class)]). With `outlets` (one
    per example) also `outlet_macro_f1` and `outlet_balanced_accuracy`: every outlet weighs the same (each
    article 1 / its outlet's articles), so one large outlet cannot stand for its whole class."""
    y = np.array([classes.index(c) for _, c in data])
    pred = probs.argmax(1)
    cm = confusion(y, pred, len(classes))
    recall = _recall(cm)
    out = {"macro_f1": macro_f1(y, pred, len(classes)), "accuracy": float((pred == y).mean()),
           "balanced_accuracy": float(np.nanmean(recall)), "recall": dict(zip(classes, map(float, recall), strict=True)),
           "confusion": cm}
    if outlets is not None:
        n = Counter(outlets)
        w = np.array([1 / n[o] for o in outlets])
        out |= {"outlet_macro_f1": macro_f1(y, pred, len(classes), w),
                "outlet_balanced_accuracy": float(np.nanmean(_recall(confusion(y, pred, len(classes), w))))}
    return out


def by_outlet(data, probs: np.ndarray, classes, outlets: list[str], min_articles: int = 10) -> list[dict]:
    """One row per outlet with >= `min_articles` examples, largest first: its class, articles, accuracy and
    the share predicted as each class (does the classifier call a whole outlet the wrong side?)."""
    pred, rows = probs.argmax(1), []
    for outlet, k in Counter(outlets).most_common():
        if k < min_articles:
            break
        idx = [i for i, o in enumerate(outlets) if o == outlet]
        truth = Counter(data[i][1] for i in idx).most_common(1)[0][0]
        share = np.bincount(pred[idx], minlength=len(classes)) / k
        rows.append({"outlet": outlet, "class": truth, "articles": k,
                     "accuracy": float(np.mean([classes[pred[i]] == data[i][1] for i in idx]))}
                    | {f"predicted_{c}": float(share[j]) for j, c in enumerate(classes)})
    return rows


def evaluate(model, tok, data, classes, cfg, window=None) -> dict:
    probs = predict_proba(model, tok, [t for t, _ in data], max_length=cfg.train.max_length,
                          batch_size=cfg.train.eval_batch_size, window=window)
    return scores(data, probs, classes)


def fit(model, tok, data: dict, classes, cfg: DictConfig, seed: int, desc: str = "train") -> dict:
    """Fine-tune in place; restores the best epoch by validation macro-F1. Returns its metrics."""
    from transformers import get_linear_schedule_with_warmup

    from bias_amp.train import param_groups

    t = cfg.train
    torch.manual_seed(seed)
    y = [classes.index(c) for _, c in data["train"]]
    counts = Counter(y)
    weights = torch.tensor([1.0 / counts[c] for c in y], dtype=torch.double)
    gen = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.WeightedRandomSampler(weights, len(y), replacement=True, generator=gen)
    texts = [x for x, _ in data["train"]]

    def collate(idx):
        enc = tok([texts[i] for i in idx], truncation=True, max_length=t.max_length, padding=True,
                  return_tensors="pt")
        enc["labels"] = torch.tensor([y[i] for i in idx])
        return enc

    loader = torch.utils.data.DataLoader(list(sampler), batch_size=t.batch_size, collate_fn=collate)
    opt = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr)
    sched = get_linear_schedule_with_warmup(opt, t.warmup_steps, t.epochs * len(loader))
    best, history = None, []
    for epoch in range(1, t.epochs + 1):
        model.train()
        losses = []
        for batch in tqdm(loader, desc=f"{desc} epoch {epoch}/{t.epochs}", leave=False):
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad()
            losses.append(loss.item())
        ev = evaluate(model, tok, data["valid"], classes, cfg)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "valid_macro_f1": ev["macro_f1"]})
        log.info("%s epoch %d: loss %.4f valid macro-F1 %.4f", desc, epoch, history[-1]["train_loss"],
                 ev["macro_f1"])
        if best is None or ev["macro_f1"] > best["valid_macro_f1"]:
            best = {"valid_macro_f1": ev["macro_f1"], "best_epoch": epoch,
                    "state": copy.deepcopy(model.state_dict())}
    model.load_state_dict(best.pop("state"))
    model.eval()
    return {**best, "history": history}
