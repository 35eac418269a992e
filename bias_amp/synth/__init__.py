"""Block synthesis (paper §4.2, App. B): an article is cut into a title block and 64-token body blocks; each block
is continued by 64 new tokens; the synthetic article is the decoded concatenation of the continuations.

Blocks from all articles are batched (sorted by length, left-padded) and continued by an own decode loop for greedy
and sampling (`decode.py`), or by HF `generate` for anything else (beam search, penalties...). Outputs follow the
model's dtype and device: bf16 is opt-in through the model config (`model.dtype`), never switched on here."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch
from tqdm.auto import tqdm

from bias_amp.errors import check, check_range
from bias_amp.synth.decode import continue_blocks
from bias_amp.synth.kernels import exact_fast_ops, packed_weights
from bias_amp.synth.options import Plan, as_dict, plan, validate_decoding

__all__ = ["split_blocks", "synthesize", "validate_decoding", "generate_blocks"]


def split_blocks(tokenizer, title: str, body: str, block_tokens: int = 64, max_blocks: int | None = None
                 ) -> list[list[int]]:
    """[title ids] + the body's ids (one tokenisation) cut into consecutive `block_tokens` chunks (last may be
    shorter), at most `max_blocks` body blocks. An empty title gives no title block, an empty body no body blocks."""
    check_range(block_tokens, "synthesis.block_tokens", lo=1, integer=True)
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


def generate_blocks(model, prompts: list[list[int]], decoding: dict, *, new_tokens: int = 64, batch_size: int = 32,
                    seed: int = 0, pad_id: int | None = None, progress: bool = False,
                    on_batch: Callable[[dict], None] | None = None, threads: int | None = None,
                    packed: bool = True) -> list[list[int]]:
    """New token ids continuing each prompt (EOS and after removed), in input order. Batches of `batch_size`
    prompts of similar length. `threads`: torch intra-op threads while decoding (None: leave as is; on a
    shared CPU, 1 thread per process is often fastest). `packed`: CPU float32 decode steps through oneDNN with
    packed weights (`kernels.packed_weights`: faster, rounding differs from MKL's)."""
    decoding = as_dict(decoding)
    validate_decoding(decoding)
    check_range(new_tokens, "synthesis.new_tokens", lo=1, integer=True)
    check_range(batch_size, "synthesis.batch_size", lo=1, integer=True)
    if threads is not None:
        check_range(threads, "synthesis.threads", lo=1, integer=True)
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
    try:
        rows = max(1, min(batch_size, len(prompts))) * int(decoding.get("num_beams") or 1)  # packing hint: rows per step
        with exact_fast_ops(model), packed_weights(model, rows, packed and bool(prompts)):
            for lo in range(0, len(order), batch_size):
                idx = order[lo:lo + batch_size]
                batch = [prompts[i] for i in idx]
                if how.fast:
                    new = continue_blocks(model, batch, new_tokens, how, generator, reuse)
                else:
                    new = _hf_generate(model, batch, new_tokens, how, decoding, seed + lo)
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


@torch.inference_mode()
def _hf_generate(model, prompts, new_tokens: int, how: Plan, decoding: dict, seed: int) -> list[list[int]]:
    """One batched HF `generate` call (left padding); for beam search and non-default logits processors."""
    from bias_amp.synth.decode import _until_eos

    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), how.pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    kwargs = {"pad_token_id": how.pad, **decoding, "max_new_tokens": new_tokens}
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), **kwargs)
    return [_until_eos(row, how.eos) for row in out[:, width:].tolist()]


def synthesize(model, tokenizer, articles, decoding: dict, *, block_tokens: int = 64, new_tokens: int = 64,
               max_blocks: int | None = None, batch_size: int = 32, seed: int = 0, progress: bool = True,
               on_batch: Callable[[dict], None] | None = None, threads: int | None = None,
               packed: bool = True) -> list[dict]:
    """Synthetic articles, in input order: {"id", "label", "text", "continuations", "new_tokens"}.

    `decoding`: generate() kwargs (conf/decoding/*.yaml `kwargs`), validated before any model work.
    `on_batch(info)` runs after each batch; info = {blocks_done, blocks_total, new_tokens, seconds}.
    `threads`: torch intra-op threads while decoding (None: unchanged). `packed`: see `generate_blocks`.
    Sampling is reproducible for the same seed and batch_size."""
    decoding = as_dict(decoding)
    validate_decoding(decoding)
    check_range(block_tokens, "synthesis.block_tokens", lo=1, integer=True)
    articles = list(articles)
    for i, article in enumerate(articles):
        for key in ("id", "label"):
            check(_field(article, key) is not None, f"articles[{i}].{key}", "a value", None)
    blocks = [split_blocks(tokenizer, _field(a, "title"), _field(a, "body"), block_tokens, max_blocks) for a in articles]
    flat = [b for bs in blocks for b in bs]
    new = generate_blocks(model, flat, decoding, new_tokens=new_tokens, batch_size=batch_size, seed=seed,
                          pad_id=tokenizer.pad_token_id, progress=progress, on_batch=on_batch, threads=threads,
                          packed=packed)
    out, pos = [], 0
    for article, bs in zip(articles, blocks, strict=True):
        conts, pos = new[pos:pos + len(bs)], pos + len(bs)
        out.append({"id": _field(article, "id"), "label": _field(article, "label"),
                    "text": tokenizer.decode([t for c in conts for t in c], skip_special_tokens=True),
                    "continuations": [tokenizer.decode(c, skip_special_tokens=True) for c in conts],
                    "new_tokens": sum(map(len, conts))})
    return out
