"""Train the political-leaning classifier (§4.3) or the offline gibberish detector (§4.4):
`python -m bias_amp.classifier [task=leaning|quality] [backbones=[...]] [split.by=source] ...`.
Each backbone is fine-tuned (AdamW, linear decay, weighted random sampler); the best epoch by validation
macro-F1 is kept; the best backbone is saved as an HF dir (safetensors + tokenizer, id2label = class names)
usable as `leaning.model=<dir>` / `quality.model=<dir>`. Writes results.csv/.md (Table 1) and confusion.png."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import random
from collections import Counter
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from bias_amp import io
from bias_amp.errors import check, check_range
from bias_amp.metrics.corrupt import QUALITY_CLASSES, quality_examples
from bias_amp.metrics.seqcls import predict_proba
from bias_amp.metrics.stats import LEANINGS
from bias_amp.models import resolve_path

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[1] / "conf"
TASKS = {"leaning": LEANINGS, "quality": QUALITY_CLASSES}
SPLITS = ("random", "source")


# ---------------------------------------------------------------- config and data
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


def make_examples(cfg: DictConfig, seed: int) -> dict[str, list[tuple[str, str]]]:
    """{'train'|'valid'|'test': [(text, class)]} for the task; articles are split before sentences are
    drawn, so the quality task's held-out sentences come from unseen articles."""
    arts = load_articles(cfg, seed)
    fr = list(cfg.split.fractions)
    given = {p: _read_split_file(cfg, cfg.split[p]) for p in ("valid", "test") if cfg.split.get(p)}
    if "test" in given and "valid" not in given:
        fr = [fr[0] / (fr[0] + fr[1]), 1 - fr[0] / (fr[0] + fr[1]), 0.0]
    tr, va, te = split_articles(arts, cfg.split.by, fr, seed)
    parts = {"train": tr, "valid": given.get("valid", va), "test": given.get("test", te)}
    if "valid" in given and "test" not in given:
        parts["train"], parts["test"] = tr + va, te
    if cfg.task == "leaning":
        if cfg.balance_center:
            parts["train"] = balance_center(parts["train"], seed)
        out = {k: [(_record_text(a, cfg.text_template), a["label"]) for a in v] for k, v in parts.items()}
    else:
        caps = {"train": cfg.train.get("max_examples"), "valid": cfg.train.get("max_eval_examples"),
                "test": cfg.train.get("max_eval_examples")}
        per = 4 if cfg.quality.all_classes else 1  # examples per sentence; cap sentences before corrupting
        out = {k: quality_examples([_record_text(a, cfg.text_template) for a in v], seed=seed + i,
                                   min_words=cfg.quality.min_words, all_classes=cfg.quality.all_classes,
                                   max_sentences=-(-caps[k] // per) if caps[k] else None)
               for i, (k, v) in enumerate(parts.items())}
    rng = random.Random(seed)  # optional fixed random subsets (long benchmarks on few cores)
    for k, cap in (("train", cfg.train.get("max_examples")), ("valid", cfg.train.get("max_eval_examples")),
                   ("test", cfg.train.get("max_eval_examples"))):
        if cap and len(out[k]) > cap:
            out[k] = rng.sample(out[k], cap)
    for k, v in out.items():
        check(len(v) > 0, f"split.{k}", "a non-empty part (more data or other fractions)", 0)
    return out


# ---------------------------------------------------------------- backbones and training
def tiny_backbone(texts: list[str], classes, *, vocab_size=2000, hidden=64, layers=2, heads=2,
                  max_length=512, seed=0):
    """A randomly initialised small BERT with a WordPiece tokenizer trained on `texts` (tests, smoke)."""
    from tokenizers import BertWordPieceTokenizer, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    wp._tokenizer.post_processor = processors.BertProcessing(("[SEP]", wp.token_to_id("[SEP]")),
                                                             ("[CLS]", wp.token_to_id("[CLS]")))
    tok = PreTrainedTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                  model_max_length=max_length)
    config = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden,
                        max_position_embeddings=max_length, pad_token_id=tok.pad_token_id,
                        id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BertForSequenceClassification(config), tok


def load_backbone(name: str, classes, texts: list[str], cfg: DictConfig, seed: int):
    """(model, tokenizer) with a fresh classification head over `classes`."""
    if name == "tiny":
        return tiny_backbone(texts, classes, max_length=cfg.train.max_length, seed=seed, **cfg.tiny)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_path(name)
    tok = AutoTokenizer.from_pretrained(path)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)}, ignore_mismatched_sizes=True)
    return model, tok


def _short(name: str) -> str:
    """A backbone's display name: the package of pkg://pkg/sub, else the last path part."""
    return name[6:].split("/")[0] if name.startswith("pkg://") else Path(name).name


def macro_f1(y_true, y_pred, n: int) -> float:
    """Unweighted mean over classes of F1 (a class absent from both truth and prediction counts as 0)."""
    cm = confusion(y_true, y_pred, n)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def confusion(y_true, y_pred, n: int) -> np.ndarray:
    """Counts [true, predicted]."""
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def evaluate(model, tok, data, classes, cfg) -> dict:
    probs = predict_proba(model, tok, [t for t, _ in data], max_length=cfg.train.max_length,
                          batch_size=cfg.train.eval_batch_size)
    y = np.array([classes.index(c) for _, c in data])
    pred = probs.argmax(1)
    return {"macro_f1": macro_f1(y, pred, len(classes)), "accuracy": float((pred == y).mean()),
            "confusion": confusion(y, pred, len(classes))}


def fit(model, tok, data: dict, classes, cfg: DictConfig, seed: int, desc: str = "train") -> dict:
    """Fine-tune in place; restores the best epoch by validation macro-F1. Returns its metrics."""
    from transformers import get_linear_schedule_with_warmup

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
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm", "norm"))]
    rest = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm", "norm"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=t.lr)
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


# ---------------------------------------------------------------- the run
def save_model(model, tok, path: Path) -> Path:
    from bias_amp.models import save_checkpoint

    save_checkpoint(model, tok, path)
    return Path(path)


def confusion_figure(matrices: dict[str, np.ndarray], classes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.8), squeeze=False)
    for ax, (name, cm) in zip(axes[0], matrices.items(), strict=True):
        sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax,
                    xticklabels=classes, yticklabels=classes)
        ax.set(title=_short(name), xlabel="predicted", ylabel="true")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def run(cfg: DictConfig, out_dir: str | Path) -> pd.DataFrame:
    """Train every backbone, write the table, the confusion figure and the best model (out_dir/model)."""
    validate(cfg)
    out_dir = Path(out_dir)
    classes = list(TASKS[cfg.task])
    data = make_examples(cfg, cfg.seed)
    log.info("examples: %s", {k: dict(Counter(c for _, c in v)) for k, v in data.items()})
    rows, matrices, best = [], {}, None
    for name in cfg.backbones:
        model, tok = load_backbone(name, classes, [x for x, _ in data["train"]], cfg, cfg.seed)
        res = fit(model, tok, data, classes, cfg, cfg.seed, desc=_short(name))
        test = evaluate(model, tok, data["test"], classes, cfg)
        matrices[name] = test["confusion"]
        rows.append({"backbone": name, "valid_macro_f1": res["valid_macro_f1"], "best_epoch": res["best_epoch"],
                     "test_macro_f1": test["macro_f1"], "test_accuracy": test["accuracy"],
                     "n_train": len(data["train"]), "n_valid": len(data["valid"]), "n_test": len(data["test"])})
        if best is None or res["valid_macro_f1"] > best[0]:
            best = (res["valid_macro_f1"], name)
            save_model(model, tok, out_dir / "model")
        del model
    table = pd.DataFrame(rows)
    io.write_csv(out_dir / "results.csv", table)
    io.write_text(out_dir / "results.md", _markdown(table, cfg))
    io.write_json(out_dir / "confusion.json", {k: v.tolist() for k, v in matrices.items()} | {"classes": classes})
    confusion_figure(matrices, classes, out_dir / "confusion.png")
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


def compose(overrides: DictConfig | dict) -> DictConfig:
    """conf/classifier.yaml (its values, not its defaults list) merged with `overrides` (which must carry
    `data`): the training config of a metric's smoke model."""
    base = OmegaConf.load(CONF / "classifier.yaml")
    for key in ("defaults", "hydra"):
        base.pop(key, None)
    cfg = OmegaConf.merge(base, overrides)
    check(cfg.get("data") is not None, "train.data", "a data config (e.g. defaults: /data@train.data: sample)", None)
    validate(cfg)
    return cfg


def train_cached(cfg: DictConfig, cache_dir: str | Path, name: str) -> Path:
    """The saved model of `run(cfg)`, trained once under `cache_dir/<name>-<hash of cfg>` (fcntl lock:
    parallel jobs wait for the first one instead of training again)."""
    spec = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    root = Path(cache_dir) / f"{name}-{digest}"
    model = root / "model"
    if (model / "config.json").is_file() and (root / "DONE").is_file():
        return model
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / "DONE").is_file():
                log.info("training the %s classifier once into %s", name, root)
                run(cfg, root)
                io.write_text(root / "DONE", spec + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return model


@hydra.main(version_base="1.3", config_path="../conf", config_name="classifier")
def main(cfg: DictConfig) -> None:
    from bias_amp.cli import one_line_errors

    with one_line_errors():
        validate(cfg)
        table = run(cfg, cfg.out_dir)
    print(table.to_string(index=False))
    print(f"best model: {Path(cfg.out_dir, 'model').resolve()}")


if __name__ == "__main__":
    main()
