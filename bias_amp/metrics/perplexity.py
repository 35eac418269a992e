"""Perplexity of each article under a fixed reference model (§5.2), with the sliding window of HF's
perplexity guide: windows of `max_length` tokens (default: the model's context) moved by `stride`; each
window scores only the tokens not scored before, conditioned on up to max_length - stride earlier tokens.
Articles are tokenised without special tokens; the first token has no prediction, so an article of n
tokens scores n - 1 (fewer than 2 tokens: NaN). `max_tokens` truncates articles first (null = whole)."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from bias_amp import memory
from bias_amp.errors import check, check_range
from bias_amp.metrics.seqcls import check_source

# The LM head runs on this many positions at a time (memory.token_nll): no [batch, window, vocab] logits (SmolLM2,
# 8 x 1,024 positions: 1.6 GB in fp32), and half the time in bf16. The cross-entropy runs over the vocabulary as
# its last dimension: over dim 1 of [batch, vocab, length] (as before 2026-12-01) torch's CPU kernel was 14x
# further from fp64 (per-token error 2.8e-4 vs 1.9e-5 nats; perplexities 1e-4 lower, relatively).
CHUNK = 512


def validate(cfg: DictConfig) -> None:
    if not cfg.get("enabled", True):
        return
    if cfg.get("model") is not None:
        check_source(cfg.model, "perplexity.model")
    check_range(cfg.stride, "perplexity.stride", 1, integer=True)
    for key in ("max_length", "max_tokens"):
        check(cfg.get(key) is None or (isinstance(cfg[key], int) and cfg[key] >= 2), f"perplexity.{key}",
              "null or an integer >= 2", cfg.get(key))
    if cfg.get("max_length") is not None:
        check(cfg.stride <= cfg.max_length, "perplexity.stride", f"<= max_length={cfg.max_length}", cfg.stride)
    check_range(cfg.batch_size, "perplexity.batch_size", 1, integer=True)


def context_length(model) -> int:
    c = model.config
    return int(getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None) or 1024)


def windows(ids: list[int], max_length: int, stride: int):
    """(begin, end, n_new) per window, as in HF's guide: targets are the last n_new tokens of ids[begin:end]."""
    prev_end, out = 0, []
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        out.append((begin, end, end - prev_end))
        prev_end = end
        if end == len(ids):
            break
    return out


@torch.no_grad()
def perplexities(model, tok, texts: list[str], *, max_length: int | None = None, stride: int = 512,
                 batch_size: int = 8, max_tokens: int | None = None) -> np.ndarray:
    """exp(mean token NLL) per text."""
    model.eval()
    device = next(model.parameters()).device
    max_length = min(max_length or context_length(model), context_length(model))
    stride = min(stride, max_length)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    items = []  # (article, input ids, number of targets at the end)
    for a, text in enumerate(texts):
        ids = tok(text, add_special_tokens=False)["input_ids"][:max_tokens]
        if len(ids) >= 2:
            items += [(a, ids[b:e], n) for b, e, n in windows(ids, max_length, stride)]
    nll, count = np.zeros(len(texts)), np.zeros(len(texts))
    items.sort(key=lambda it: len(it[1]))
    for s in tqdm(range(0, len(items), batch_size), desc="perplexity", leave=False,
                  disable=len(items) <= batch_size):
        batch = items[s:s + batch_size]
        width = max(len(ids) for _, ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (_, ids, n) in enumerate(batch):
            input_ids[r, :len(ids)] = torch.tensor(ids)
            mask[r, :len(ids)] = 1
            labels[r, len(ids) - n:len(ids)] = torch.tensor(ids[len(ids) - n:])
        labels[:, 0] = -100  # the first token of an article (or of any window) is never a target
        input_ids, mask, labels = input_ids.to(device), mask.to(device), labels.to(device)
        if memory.chunkable(model):
            token = memory.token_nll(model, input_ids, mask, labels, CHUNK)[:, :-1]
        else:
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
            token = memory.row_nll(logits.flatten(0, 1), labels[:, 1:].flatten()).view(labels[:, 1:].shape)
        loss = token.sum(1).cpu().numpy()
        n_targets = (labels[:, 1:] != -100).sum(1).cpu().numpy()
        for r, (a, _, _) in enumerate(batch):
            nll[a] += loss[r]
            count[a] += n_targets[r]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.exp(nll / np.maximum(count, 1)), np.nan)
