"""The fast block-continuation loop: one left-padded batch of prompts, a preallocated KV cache, the causal+padding
mask built once and sliced per step, the prefill in position chunks (CPU), last-position logits only, finished rows
dropped from the batch; the kernels it swaps in while running are in `kernels.py`. `hf_generate` is the other path
(beam search, other logits processors): one batched HF `generate`, the same left padding.
Greedy picks the argmax like HF; sampling applies HF's temperature -> top-k -> top-p warpers (same distribution)."""

from __future__ import annotations

import inspect

import torch

from bias_amp import compat
from bias_amp.synth.kernels import sliced_attention
from bias_amp.synth.options import Plan

_COMPACT_AT = 0.75  # drop finished rows once at most this share of the batch is still running
_PREFILL_ROWS = 2048  # rows (batch x positions) per prefill chunk


def _forward_kwargs(model) -> tuple[str, bool]:
    params = inspect.signature(model.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def _full_mask(model, mask2d: torch.Tensor):
    """[B, 1, L, L] causal+padding mask in the format of the model's attention (bool for SDPA, additive
    float for eager), or None when the attention wants HF's own 2D handling (flash attention...)."""
    batch, length = mask2d.shape
    probe = torch.empty(batch, length, 1, dtype=model.dtype, device=mask2d.device)
    mask = compat.causal_mask(model.config, probe, mask2d)
    return mask if isinstance(mask, torch.Tensor) and mask.dim() == 4 else None


class Sampler:
    """Next token from last-position logits [B, V] (float32), as HF's greedy / multinomial sampling would pick it.
    Top-p uses rejection: draw from the (temperature, top-k) distribution, keep the draw when it lies in the
    nucleus (HF's rule: drop tokens whose ascending cumulative probability is <= 1 - top_p), else redraw.
    That is exactly sampling from the renormalised nucleus, with no sort over the vocabulary."""

    def __init__(self, plan: Plan, generator: torch.Generator | None):
        self.plan, self.generator = plan, generator

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.plan
        if not p.sample:
            return logits.argmax(-1)
        if p.temperature != 1.0:
            logits = logits / p.temperature
        if p.top_k:
            kth = torch.topk(logits, min(p.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(-1)
        tokens = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        if p.top_p >= 1.0:
            return tokens
        rows = torch.arange(len(tokens), device=tokens.device)
        while True:
            bad = ~in_nucleus(probs, tokens, p.top_p)
            if not bad.any():
                return tokens
            redo = rows[bad]
            tokens[redo] = torch.multinomial(probs[redo], 1, generator=self.generator).squeeze(1)


def in_nucleus(probs: torch.Tensor, tokens: torch.Tensor, top_p: float) -> torch.Tensor:
    """Whether each row's token survives HF's TopPLogitsWarper: the mass of tokens no more likely than it
    (itself included) exceeds 1 - top_p. The most likely token always survives (HF keeps at least one)."""
    chosen = probs.gather(1, tokens[:, None])
    mass_below = torch.where(probs <= chosen, probs, 0.0).sum(-1)
    return (mass_below > 1 - top_p) | (chosen.squeeze(1) >= probs.max(-1).values)


def _fresh_cache(model, batch: int, total: int, reuse: dict | None):
    """A StaticCache for `batch` rows of `total` positions; the previous one when shapes allow (stale entries
    beyond the current position are masked out, positions before it are rewritten by the prefill)."""
    old = reuse.get("cache") if reuse is not None else None
    if old is not None and reuse.get("shape") == (batch, total) and compat.cache_batch_size(old) == batch:
        compat.rewind_cache(old)
        return old
    cache = compat.static_cache(model.config, total)
    if reuse is not None:
        reuse.update(cache=cache, shape=(batch, total))
    return cache


@torch.inference_mode()
def continue_blocks(model, prompts: list[list[int]], new_tokens: int, plan: Plan,
                    generator: torch.Generator | None = None, reuse: dict | None = None) -> list[list[int]]:
    """Continue each prompt by up to `new_tokens` tokens in one batch; each row stops at EOS.
    Returns the new token ids per prompt, EOS and anything after it removed. `reuse`: a dict that keeps
    the KV cache between calls with the same shapes."""
    device = model.device
    ids, mask2d = left_pad(prompts, plan.pad, new_tokens, device)
    batch, width = ids.shape
    total = width + new_tokens
    positions = (mask2d.long().cumsum(-1) - 1).clamp_(min=0)
    full = _full_mask(model, mask2d)
    cache_key, keep_logits = _forward_kwargs(model)
    cache = _fresh_cache(model, batch, total, reuse)
    eos = torch.tensor(plan.eos or [-1], device=device)
    sampler = Sampler(plan, generator)

    # Logits of the last position only (a tensor index keeps it one matmul, not B mat-vecs), none before the last
    # prefill chunk. On CPU the prefill runs in position chunks of <= _PREFILL_ROWS rows, so that its temporaries
    # are reused by the allocator instead of faulted in fresh each layer.
    last, none = torch.tensor([-1], device=device), torch.tensor([], dtype=torch.long, device=device)
    chunk = max(1, _PREFILL_ROWS // batch) if device.type == "cpu" else width

    def step(inputs, start, stop, logits=True):
        if full is None:
            mask = mask2d[:, :stop]
        else:  # rows of the new positions; columns up to the current length when attention is sliced
            mask = full[:, :, start:stop, :stop] if sliced else full[:, :, start:stop]
        keep = {"logits_to_keep": last if logits else none} if keep_logits else {}
        out = model(input_ids=inputs, attention_mask=mask, position_ids=positions[:, start:stop],
                    use_cache=True, **{cache_key: cache}, **keep)
        return out.logits[:, -1, :].float() if logits else None

    with sliced_attention(model) as sliced:
        out = torch.full((batch, new_tokens), plan.pad, dtype=torch.long, device=device)
        rows = torch.arange(batch, device=device)  # original row of each row still in the batch
        running = torch.ones(batch, dtype=torch.bool, device=device)  # no EOS yet
        for start in range(0, width, chunk):
            stop = min(start + chunk, width)
            logits = step(ids[:, start:stop], start, stop, logits=stop == width)
        for t in range(new_tokens):
            token = sampler(logits)
            out[rows, t] = token
            running &= ~torch.isin(token, eos)
            n_running = int(running.sum()) if t < new_tokens - 1 else 0  # the step's one device sync
            if n_running == 0:
                break
            if n_running <= _COMPACT_AT * len(rows):
                keep = running.nonzero().squeeze(1)
                rows, token, positions, mask2d = rows[keep], token[keep], positions[keep], mask2d[keep]
                running = running[keep]
                full = full[keep] if full is not None else None
                compat.compact_cache(cache, keep)
            logits = step(token[:, None], width + t, width + t + 1)
    return [_until_eos(row, plan.eos) for row in out.tolist()]


def left_pad(prompts: list[list[int]], pad: int, extra: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts left-padded to the longest: ids [B, W] and the attention mask [B, W + extra] (bool; the `extra`
    positions to be generated are marked real). Both decode paths build their batch here."""
    batch, width = len(prompts), max(map(len, prompts))
    ids = torch.full((batch, width), pad, dtype=torch.long)
    mask = torch.ones((batch, width + extra), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, :width - len(prompt)] = False
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def hf_generate(model, prompts: list[list[int]], new_tokens: int, plan: Plan, decoding: dict, seed: int
                ) -> list[list[int]]:
    """One batched HF `generate` call (left padding); for beam search and non-default logits processors."""
    ids, mask = left_pad(prompts, plan.pad, 0, model.device)
    kwargs = {"pad_token_id": plan.pad, **decoding, "max_new_tokens": new_tokens}
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids, attention_mask=mask.long(), **kwargs)
    return [_until_eos(row, plan.eos) for row in out[:, ids.shape[1]:].tolist()]


def _until_eos(tokens: list[int], eos: tuple[int, ...]) -> list[int]:
    for i, tok in enumerate(tokens):
        if tok in eos:
            return tokens[:i]
    return tokens
