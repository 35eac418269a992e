"""Block synthesis (paper §4.2, App. B): an article is cut into a title block and 64-token body blocks; each block
is continued by 64 new tokens; the synthetic article is the decoded concatenation of the continuations.

Blocks from all articles are batched (sorted by length, left-padded) and continued by own decode loops for greedy,
sampling and beam search (`decode.py`), or by HF `generate` for anything else (penalties, beam sampling...), both in
`decode.py`; `options.py` validates the decoding kwargs and plans which path runs. `precision` (the run's
`precision` key) casts the weights, and so the KV cache, for the call (`bias_amp.precision`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

import torch
from tqdm.auto import tqdm

from bias_amp import compat
from bias_amp import precision as numeric
from bias_amp.errors import check, check_range
from bias_amp.synth.decode import beam_blocks, continue_blocks, hf_generate
from bias_amp.synth.kernels import exact_fast_ops, packed_weights
from bias_amp.synth.options import Decoding, checked, plan, validate_decoding

__all__ = ["split_blocks", "synthesize", "validate_decoding", "generate_blocks", "Decoding"]


def split_blocks(tokenizer, title: str, body: str, block_tokens: int = 64, max_blocks: int | None = None
                 ) -> list[list[int]]:
    """[title ids] + the body's ids (one tokenisation) cut into consecutive `block_tokens` chunks (last may be
    shorter), at most `max_blocks` body blocks. An empty title gives no title block, an empty body no body blocks.
    `block_tokens` is trusted (checked once by `synthesize` / the run's validation)."""
    blocks = []
    if title and title.strip():
        blocks.append(tokenizer(title, add_special_tokens=False, verbose=False)["input_ids"])
    if body and body.strip():
        ids = tokenizer(body, add_special_tokens=False, verbose=False)["input_ids"]
        blocks += [ids[i:i + block_tokens] for i in range(0, len(ids), block_tokens)][:max_blocks]
    return [b for b in blocks if b]


def _field(article, key: str):
    value = article.get(key) if isinstance(article, Mapping) else getattr(article, key, None)
    return "" if value is None and key in ("title", "body") else value


def _check_args(decoding, new_tokens: int, batch_size: int, threads: int | None, precision: str | None) -> Decoding:
    """The one check of a synthesis call's settings (the run checks the same keys in validate.py first)."""
    check_range(new_tokens, "synthesis.new_tokens", lo=1, integer=True)
    check_range(batch_size, "synthesis.batch_size", lo=1, integer=True)
    if threads is not None:
        check_range(threads, "synthesis.threads", lo=1, integer=True)
    if precision is not None:
        numeric.validate(precision)
    return checked(decoding)


def generate_blocks(model, prompts: list[list[int]], decoding: dict, *, new_tokens: int = 64, batch_size: int = 32,
                    seed: int = 0, pad_id: int | None = None, progress: bool = False,
                    on_batch: Callable[[dict], None] | None = None, threads: int | None = None,
                    packed: bool = True, precision: str | None = None) -> list[list[int]]:
    """New token ids continuing each prompt (EOS and after removed), in input order. Batches of `batch_size`
    prompts of similar length. `threads`: torch intra-op threads while decoding (None: leave as is; on a
    shared CPU, 1 thread per process is often fastest). `packed`: CPU decode steps through oneDNN with packed
    weights (`kernels.packed_weights`: faster, rounding differs from MKL's). `precision`: fp32 | bf16 | auto, the
    weights (and so the KV cache) cast for the call and restored after (None: the model's own dtype)."""
    decoding = _check_args(decoding, new_tokens, batch_size, threads, precision)
    return _generate(model, prompts, decoding, new_tokens, batch_size, seed, pad_id, progress, on_batch, threads,
                     packed, precision)


def _generate(model, prompts, decoding: Decoding, new_tokens, batch_size, seed, pad_id, progress, on_batch, threads,
              packed, precision) -> list[list[int]]:
    compat.require()
    how = plan(model, decoding, pad_id)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    results: list[list[int] | None] = [None] * len(prompts)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    was_training, old_threads, reuse = model.training, torch.get_num_threads(), {}
    model.eval()
    if threads is not None:
        torch.set_num_threads(threads)
    done = produced = 0
    start = time.perf_counter()
    bar = tqdm(total=len(prompts), desc="synthesis blocks", unit="block", disable=not progress)
    cast = (numeric.inference_weights(model, numeric.resolve(precision, model.device)) if precision
            else contextlib.nullcontext())
    try:
        rows = max(1, min(batch_size, len(prompts))) * int(decoding.get("num_beams") or 1)  # packing hint: rows per step
        with cast, exact_fast_ops(model), packed_weights(model, rows, packed and bool(prompts)):
            for lo in range(0, len(order), batch_size):
                idx = order[lo:lo + batch_size]
                batch = [prompts[i] for i in idx]
                if how.fast and how.beams > 1:
                    new = beam_blocks(model, batch, new_tokens, how)
                elif how.fast:
                    new = continue_blocks(model, batch, new_tokens, how, generator, reuse)
                else:
                    new = hf_generate(model, batch, new_tokens, how, decoding, seed + lo)
                for i, tokens in zip(idx, new, strict=True):
                    results[i] = tokens
                done, produced = done + len(idx), produced + sum(map(len, new))
                bar.update(len(idx))
                bar.set_postfix(tok_s=f"{produced / max(time.perf_counter() - start, 1e-9):.0f}")
                if on_batch is not None:
                    on_batch({"blocks_done": done, "blocks_total": len(prompts), "new_tokens": produced,
                              "seconds": time.perf_counter() - start})
    finally:
        bar.close()
        model.train(was_training)
        torch.set_num_threads(old_threads)
    return results


def synthesize(model, tokenizer, articles, decoding: dict, *, block_tokens: int = 64, new_tokens: int = 64,
               max_blocks: int | None = None, batch_size: int = 32, seed: int = 0, progress: bool = True,
               on_batch: Callable[[dict], None] | None = None, threads: int | None = None,
               packed: bool = True, precision: str | None = None) -> list[dict]:
    """Synthetic articles, in input order: {"id", "label", "text", "continuations", "new_tokens"}.

    `decoding`: generate() kwargs (conf/decoding/*.yaml `kwargs`), validated before any model work (once: a
    `Decoding` from validate_decoding is trusted). `on_batch(info)` runs after each batch; info = {blocks_done,
    blocks_total, new_tokens, seconds}. `threads`, `packed`, `precision`: see `generate_blocks`.
    Sampling is reproducible for the same seed and batch_size."""
    decoding = _check_args(decoding, new_tokens, batch_size, threads, precision)
    check_range(block_tokens, "synthesis.block_tokens", lo=1, integer=True)
    articles = list(articles)
    for i, article in enumerate(articles):
        for key in ("id", "label"):
            check(_field(article, key) is not None, f"articles[{i}].{key}", "a value", None)
    blocks = [split_blocks(tokenizer, _field(a, "title"), _field(a, "body"), block_tokens, max_blocks) for a in articles]
    flat = [b for bs in blocks for b in bs]
    new = _generate(model, flat, decoding, new_tokens, batch_size, seed, tokenizer.pad_token_id, progress, on_batch,
                    threads, packed, precision)
    out, pos = [], 0
    for article, bs in zip(articles, blocks, strict=True):
        conts, pos = new[pos:pos + len(bs)], pos + len(bs)
        out.append({"id": _field(article, "id"), "label": _field(article, "label"),
                    "text": tokenizer.decode([t for c in conts for t in c], skip_special_tokens=True),
                    "continuations": [tokenizer.decode(c, skip_special_tokens=True) for c in conts],
                    "new_tokens": sum(map(len, conts))})
    return out
