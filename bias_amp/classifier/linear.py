"""`head: linear`: a frozen encoder's mean-pooled window embeddings, averaged per article, under a
multinomial logistic regression (class-balanced, features standardized, L2 strength chosen by validation
macro-F1; full-batch L-BFGS in float64). Minutes on all AllSides training articles where fine-tuning takes hours."""

from __future__ import annotations

import logging

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bias_amp.metrics.stats import macro_f1
from bias_amp.metrics.windows import MeanPoolLinear, cut, run_windows
from bias_amp.models import resolve_path

log = logging.getLogger(__name__)


def scoring_window(cfg: DictConfig) -> DictConfig:
    """The classifier's `window`, or the truncation it stands for (one window of train.max_length)."""
    if cfg.get("window") is not None:
        return cfg.window
    return OmegaConf.create({"size": cfg.train.max_length, "stride": cfg.train.max_length, "max_windows": 1,
                             "pool": "logits"})


def load_encoder(name: str):
    from transformers import AutoModel, AutoTokenizer

    path = resolve_path(name)
    return AutoModel.from_pretrained(path, use_safetensors=True).eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def window_embeddings(encoder, tok, texts: list[str], window, batch_size: int, desc: str | None = None):
    """(mean-pooled embedding of every window [n_windows, d], owner article of each window)."""
    from bias_amp.metrics.windows import mean_pool

    wins, owner = cut(tok, texts, window.size, window.stride, window.get("max_windows"))
    fn = lambda enc: mean_pool(encoder(**enc).last_hidden_state, enc["attention_mask"])  # noqa: E731
    return run_windows(fn, tok, wins, batch_size, next(encoder.parameters()).device, desc), owner


def article_mean(rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, rows.shape[1]))
    np.add.at(out, owner, rows)
    return out / np.maximum(np.bincount(owner, minlength=n), 1)[:, None]


def logreg(x: np.ndarray, y: np.ndarray, k: int, l2: float, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, class-balanced loss + l2/2 |W|^2: (W [k, d], b [k])."""
    X, Y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y)
    w_class = torch.as_tensor(len(y) / (k * np.maximum(np.bincount(y, minlength=k), 1)), dtype=torch.float64)
    W = torch.zeros(k, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=iters, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ W.T + b, Y, weight=w_class) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach().numpy(), b.detach().numpy()


def train_linear(name: str, data: dict, classes: list[str], cfg: DictConfig):
    """Embed every part once, fit one regression per `linear.l2`, keep the best on validation. Returns
    (MeanPoolLinear, tokenizer, result {valid_macro_f1, l2, grid}, {part: {pool: probabilities}})."""
    from bias_amp.metrics.windows import pool_rows

    encoder, tok = load_encoder(name)
    window = scoring_window(cfg)
    emb = {k: window_embeddings(encoder, tok, [t for t, _ in v], window, cfg.train.eval_batch_size, f"embed {k}")
           for k, v in data.items()}
    ys = {k: np.array([classes.index(c) for _, c in v]) for k, v in data.items()}
    art = {k: article_mean(*emb[k], len(data[k])) for k in data}
    mu, sd = art["train"].mean(0), art["train"].std(0) + 1e-6
    best, grid = None, []
    for l2 in cfg.linear.l2:
        W, b = logreg((art["train"] - mu) / sd, ys["train"], len(classes), float(l2))
        f1 = macro_f1(ys["valid"], ((art["valid"] - mu) / sd @ W.T + b).argmax(1), len(classes))
        grid.append({"l2": float(l2), "valid_macro_f1": f1})
        log.info("linear %s l2=%g: valid macro-F1 %.4f", name, l2, f1)
        if best is None or f1 > best[0]:
            best = (f1, float(l2), W, b)
    f1, l2, W, b = best
    W_raw, b_raw = W / sd, b - (W / sd) @ mu        # standardization folded into the head
    probs = {k: {pool: pool_rows(emb[k][0] @ W_raw.T + b_raw, emb[k][1], len(data[k]), pool)
                 for pool in ("logits", "probs")} for k in data}
    model = MeanPoolLinear(encoder, torch.tensor(W_raw, dtype=torch.float32),
                           torch.tensor(b_raw, dtype=torch.float32), classes).eval()
    return model, tok, {"valid_macro_f1": f1, "l2": l2, "grid": grid}, probs
