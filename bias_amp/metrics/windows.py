"""Whole-article input: an article's tokens cut into windows (`size` tokens with special tokens, a new
window every `stride` tokens, at most `max_windows`), each window run through the model and the windows
pooled into one row per article: `pool: logits` (mean logits, then softmax) or `probs` (mean probabilities).
The paper truncates instead (first `max_length` tokens = one window). `MeanPoolLinear`: a frozen encoder's
mean-pooled token states under a linear head (the `head: linear` classifier), loadable like any HF dir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from bias_amp.errors import check, check_range

POOLS = ("logits", "probs")
HEAD_FILE = "linear_head.safetensors"
WINDOW_FILE = "window.json"      # beside a model trained on windows: the window it was trained with
FROM_MODEL = "model"


def validate(window, key: str) -> None:
    """A `window` config: null (truncate), {size, stride, max_windows, pool}, or `model` (as the model dir's
    window.json says: the window its trainer used)."""
    if window is None or window == FROM_MODEL:
        return
    check(hasattr(window, "get"), key, f"null, '{FROM_MODEL}' or {{size, stride, max_windows, pool}}", window)
    check_range(window.get("size"), f"{key}.size", 8, integer=True)
    check_range(window.get("stride"), f"{key}.stride", 1, window.get("size"), integer=True)
    mw = window.get("max_windows")
    check(mw is None or (isinstance(mw, int) and mw > 0), f"{key}.max_windows", "null or a positive integer", mw)
    check(window.get("pool") in POOLS, f"{key}.pool", f"one of {list(POOLS)}", window.get("pool"))


def cut(tok, texts: list[str], size: int, stride: int, max_windows: int | None = None):
    """Token windows of every text: (list of token-id lists with special tokens, owner index per window).
    The tokenizer's overflow does the cutting (its `stride` is the overlap: window body - our stride)."""
    body = max(1, size - tok.num_special_tokens_to_add(pair=False))
    enc = tok(list(texts), truncation=True, max_length=size, stride=max(0, body - stride),
              return_overflowing_tokens=True, verbose=False)
    wins, owner, seen = [], [], {}
    for ids, i in zip(enc["input_ids"], enc["overflow_to_sample_mapping"], strict=True):
        seen[i] = seen.get(i, 0) + 1
        if max_windows is None or seen[i] <= max_windows:
            wins.append(ids or [tok.pad_token_id if tok.pad_token_id is not None else 0])   # an empty text
            owner.append(i)
    return wins, np.array(owner, dtype=int)


@torch.no_grad()
def run_windows(fn, tok, wins: list[list[int]], batch_size: int, device, desc: str | None = None) -> np.ndarray:
    """`fn(batch) -> [b, k]` over all windows (length-sorted batches, rows back in window order)."""
    order = sorted(range(len(wins)), key=lambda i: len(wins[i]))
    out = None
    starts = range(0, len(wins), batch_size)
    for s in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 2, leave=False):
        idx = order[s:s + batch_size]
        enc = tok.pad({"input_ids": [wins[i] for i in idx]}, return_tensors="pt").to(device)
        rows = fn(enc).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(wins), rows.shape[1]), dtype=np.float64)
        out[idx] = rows
    return out


def pool_rows(rows: np.ndarray, owner: np.ndarray, n: int, pool: str = "logits") -> np.ndarray:
    """Per-article probabilities from per-window logits: mean logits -> softmax, or mean of softmaxes."""
    if pool == "probs":
        rows = _softmax(rows)
    mean = np.zeros((n, rows.shape[1]))
    np.add.at(mean, owner, rows)
    mean /= np.maximum(np.bincount(owner, minlength=n), 1)[:, None]
    return _softmax(mean) if pool == "logits" else mean


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@torch.no_grad()
def window_proba(model, tok, texts: list[str], window, batch_size: int, desc: str | None = None) -> np.ndarray:
    """Whole-article class probabilities [len(texts), num_labels] (windows pooled by `window.pool`)."""
    model.eval()
    wins, owner = cut(tok, texts, window.size, window.stride, window.get("max_windows"))
    logits = run_windows(lambda enc: model(**enc).logits, tok, wins, batch_size,
                         next(model.parameters()).device, desc)
    return pool_rows(logits, owner, len(texts), window.pool)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


class MeanPoolLinear(torch.nn.Module):
    """logits = W · mean-pooled last hidden states + b over a frozen encoder; `config` carries id2label."""

    def __init__(self, encoder, weight: torch.Tensor, bias: torch.Tensor, classes: list[str]):
        super().__init__()
        self.encoder, self.head = encoder, torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight), self.head.bias.copy_(bias)
        cfg = encoder.config
        cfg.id2label, cfg.label2id = dict(enumerate(classes)), {c: i for i, c in enumerate(classes)}
        self.config = cfg

    def embed(self, input_ids, attention_mask, **kw):
        return mean_pool(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                         attention_mask)

    def forward(self, input_ids, attention_mask, **kw):
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=self.head(self.embed(input_ids, attention_mask)))

    def save_pretrained(self, path, **kw) -> None:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(path, safe_serialization=True)
        save_file({"weight": self.head.weight.detach().contiguous(), "bias": self.head.bias.detach().contiguous()},
                  str(Path(path) / HEAD_FILE))

    @classmethod
    def from_pretrained(cls, path) -> MeanPoolLinear:
        from safetensors.torch import load_file
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(path, use_safetensors=True)
        head = load_file(str(Path(path) / HEAD_FILE))
        id2 = json.loads((Path(path) / "config.json").read_text())["id2label"]
        return cls(encoder, head["weight"], head["bias"], [id2[k] for k in sorted(id2, key=int)])


def resolve(window, model_dir, key: str):
    """The window to score with: `model` reads model_dir/window.json (ConfigError when absent), else as given."""
    if window != FROM_MODEL:
        return window
    path = Path(model_dir) / WINDOW_FILE
    check(path.is_file(), key, f"a model trained on windows ({WINDOW_FILE} in {model_dir})", window)
    return OmegaConf.create(json.loads(path.read_text()))
