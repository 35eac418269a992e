"""The fast block-continuation loops: one left-padded batch of prompts, a preallocated KV cache, the causal+padding
mask built once and sliced per step, the prefill in position chunks (CPU), last-position logits only (`_Batch`);
greedy and sampling drop finished rows from the batch (`continue_blocks`), beam search prefills each prompt once
and reorders the cache in place (`beam_blocks`); the kernels they swap in while running are in `kernels.py`.
`hf_generate` is the other path (other logits processors, beam sampling): one batched HF `generate`, the same left
padding.
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


class _Batch:
    """A left-padded batch of prompts on a preallocated KV cache: `prefill()` gives the last prompt position's
    logits, `step(tokens)` feeds one token per row and gives the next; `keep(rows)` selects / repeats / reorders
    rows (finished rows dropped, beams expanded and reordered). Run inside `sliced_attention(model)`."""

    def __init__(self, model, prompts: list[list[int]], new_tokens: int, pad: int, reuse: dict | None, sliced: bool):
        self.model, self.sliced = model, sliced
        device = model.device
        self.ids, self.mask2d = left_pad(prompts, pad, new_tokens, device)
        batch, self.width = self.ids.shape
        self.positions = (self.mask2d.long().cumsum(-1) - 1).clamp_(min=0)
        self.full = _full_mask(model, self.mask2d)
        self.cache_key, self.keep_logits = _forward_kwargs(model)
        self.cache = _fresh_cache(model, batch, self.width + new_tokens, reuse)
        self.at = self.width  # the position the next step writes
        # Logits of the last position only (a tensor index keeps it one matmul, not B mat-vecs), none before the
        # last prefill chunk.
        self.last = torch.tensor([-1], device=device)
        self.none = torch.tensor([], dtype=torch.long, device=device)

    def _forward(self, inputs, start: int, stop: int, logits: bool = True):
        if self.full is None:
            mask = self.mask2d[:, :stop]
        else:  # rows of the new positions; columns up to the current length when attention is sliced
            mask = self.full[:, :, start:stop, :stop] if self.sliced else self.full[:, :, start:stop]
        keep = {"logits_to_keep": self.last if logits else self.none} if self.keep_logits else {}
        out = self.model(input_ids=inputs, attention_mask=mask, position_ids=self.positions[:, start:stop],
                         use_cache=True, **{self.cache_key: self.cache}, **keep)
        return out.logits[:, -1, :].float() if logits else None

    def prefill(self) -> torch.Tensor:
        """On CPU in position chunks of <= _PREFILL_ROWS rows, so that the temporaries are reused by the allocator
        instead of faulted in fresh each layer."""
        batch, width = self.ids.shape
        chunk = max(1, _PREFILL_ROWS // batch) if self.ids.device.type == "cpu" else width
        for start in range(0, width, chunk):
            stop = min(start + chunk, width)
            logits = self._forward(self.ids[:, start:stop], start, stop, logits=stop == width)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.at += 1
        return self._forward(tokens[:, None], self.at - 1, self.at)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep rows `rows` (indices into the current rows; repeats allowed)."""
        self.positions, self.mask2d = self.positions[rows], self.mask2d[rows]
        self.full = self.full[rows] if self.full is not None else None
        compat.compact_cache(self.cache, rows)


@torch.inference_mode()
def continue_blocks(model, prompts: list[list[int]], new_tokens: int, plan: Plan,
                    generator: torch.Generator | None = None, reuse: dict | None = None) -> list[list[int]]:
    """Continue each prompt by up to `new_tokens` tokens in one batch; each row stops at EOS.
    Returns the new token ids per prompt, EOS and anything after it removed. `reuse`: a dict that keeps
    the KV cache between calls with the same shapes."""
    device = model.device
    eos = torch.tensor(plan.eos or [-1], device=device)
    sampler = Sampler(plan, generator)
    with sliced_attention(model) as sliced:
        batch = _Batch(model, prompts, new_tokens, plan.pad, reuse, sliced)
        n = len(prompts)
        out = torch.full((n, new_tokens), plan.pad, dtype=torch.long, device=device)
        rows = torch.arange(n, device=device)  # original row of each row still in the batch
        running = torch.ones(n, dtype=torch.bool, device=device)  # no EOS yet
        logits = batch.prefill()
        for t in range(new_tokens):
            token = sampler(logits)
            out[rows, t] = token
            running &= ~torch.isin(token, eos)
            n_running = int(running.sum()) if t < new_tokens - 1 else 0  # the step's one device sync
            if n_running == 0:
                break
            if n_running <= _COMPACT_AT * len(rows):
                keep = running.nonzero().squeeze(1)
                rows, token, running = rows[keep], token[keep], running[keep]
                batch.keep(keep)
            logits = batch.step(token)
    return [_until_eos(row, plan.eos) for row in out.tolist()]


@torch.inference_mode()
def beam_blocks(model, prompts: list[list[int]], new_tokens: int, plan: Plan) -> list[list[int]]:
    """Beam search with `plan.beams` beams, choosing as HF `generate` does (its own selection steps,
    `compat.BeamSelection`), on the fast loop's batch: each prompt prefilled once and its cache rows then repeated
    per beam (generate prefills every beam), a static cache reordered in place, sliced attention, last-position
    logits only. Returns the best beam's new tokens per prompt, EOS and after removed."""
    k = plan.beams
    with sliced_attention(model) as sliced:
        batch = _Batch(model, prompts, new_tokens, plan.pad, None, sliced)
        logits = batch.prefill()
        expand = torch.arange(len(prompts), device=model.device).repeat_interleave(k)
        batch.keep(expand)
        select = compat.BeamSelection(model, len(prompts), k, batch.width, new_tokens, plan.eos, plan.pad,
                                      plan.length_penalty, plan.early_stopping, model.device)
        spare: dict = {}
        rows = select.step(logits[expand])
        while rows is not None:  # beams reordered within their prompt: masks and positions stay
            compat.compact_cache(batch.cache, rows, spare, written=batch.at)
            rows = select.step(batch.step(select.last_tokens()))
    return [_until_eos(row, plan.eos) for row in select.new_tokens()]


def left_pad(prompts: list[list[int]], pad: int, extra: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts left-padded to the longest: ids [B, W] and the attention mask [B, W + extra] (bool; the `extra`
    positions to be generated are marked real). Every decode path builds its batch here."""
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
