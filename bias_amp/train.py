"""Fine-tuning (App. B) with Accelerate: causal-LM loss on real tokens only, dynamic padding and
length-grouped batches, so no compute goes to padding. The objective equals HF Trainer's on
examples padded to max_length: padding is masked out of the loss there too."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm.auto import tqdm
from transformers import get_scheduler

from bias_amp import memory
from bias_amp import precision as numeric
from bias_amp.errors import check, check_range

UNITS = ("truncate", "chunk")
ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2", "flex_attention")


@dataclass
class TrainResult:
    loss: float                       # mean loss of the last epoch
    epochs: int                       # epochs actually run
    steps: int                        # optimizer steps
    examples: int
    tokens: int                       # real (non-pad) tokens trained on, all epochs
    seconds: float
    tokens_per_s: float
    optimizer: list[dict] = field(default_factory=list)   # lr / weight_decay per param group, read off the optimizer
    batch_losses: list[float] = field(default_factory=list)  # mean loss of every batch, all epochs, in order

    def to_dict(self) -> dict:
        return asdict(self)


def validate(cfg: DictConfig, key: str = "train") -> None:
    check_range(cfg.epochs, f"{key}.epochs", 1, integer=True)
    check_range(cfg.batch_size, f"{key}.batch_size", 1, integer=True)
    check_range(cfg.grad_accum, f"{key}.grad_accum", 1, integer=True)
    check_range(cfg.max_length, f"{key}.max_length", 2, integer=True)
    check_range(cfg.lr, f"{key}.lr", 0, lo_open=True)
    check_range(cfg.weight_decay, f"{key}.weight_decay", 0)
    check_range(cfg.warmup_steps, f"{key}.warmup_steps", 0, integer=True)
    check(cfg.unit in UNITS, f"{key}.unit", f"one of {list(UNITS)}", cfg.unit)
    check(cfg.get("attention", "auto") in ATTENTION, f"{key}.attention", f"one of {list(ATTENTION)}", cfg.get("attention"))
    memory.validate(cfg, key)


def encode(tokenizer, texts: list[str], max_length: int, unit: str = "truncate") -> list[list[int]]:
    """Token ids per training example: each text truncated to max_length (paper) or cut into windows."""
    out = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        if unit == "truncate":
            out.append(ids[:max_length])
        else:
            out.extend(ids[i:i + max_length] for i in range(0, len(ids), max_length))
    return [ids for ids in out if len(ids) >= 2]


def batch_order(lengths: list[int], batch_size: int, rng: np.random.Generator, group_by_length: bool) -> list[list[int]]:
    """Shuffled batches of indices; with group_by_length, like HF's LengthGroupedSampler: sort within
    random mega-batches of 50 batches, longest batch first (peak memory shows up at once)."""
    idx = rng.permutation(len(lengths))
    if group_by_length:
        mega = 50 * batch_size
        idx = np.concatenate([sorted(idx[i:i + mega], key=lambda j: -lengths[j]) for i in range(0, len(idx), mega)])
    batches = [idx[i:i + batch_size].tolist() for i in range(0, len(idx), batch_size)]
    if group_by_length and len(batches) > 1:
        longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def collate(examples: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example of the batch; padding is masked and ignored by the loss."""
    width = max(map(len, examples))
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, ex in enumerate(examples):
        ids[i, : len(ex)] = torch.tensor(ex)
        mask[i, : len(ex)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over real targets. The labels are shifted left (the last position
    and padding get -100) instead of slicing the logits: no copy of the [batch, length, vocab] logits."""
    shifted = F.pad(labels[:, 1:], (0, 1), value=-100)
    return F.cross_entropy(logits.flatten(0, 1).float(), shifted.flatten(), ignore_index=-100, reduction="sum")


def loss_sum_of(model, inputs: dict, labels: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """token_loss_sum of `model` on a batch; with `chunk` (train.loss_chunk) the LM head runs on that many
    positions at a time (memory.token_nll): no [batch, length, vocab] logits, another summation order."""
    if chunk and memory.chunkable(model):
        return memory.token_nll(model, inputs["input_ids"], inputs["attention_mask"], labels, chunk).sum()
    return token_loss_sum(model(**inputs).logits, labels)


@contextlib.contextmanager
def attention(model, cfg: DictConfig, device):
    """Fine-tune with train.attention; the model's own is put back on exit. `auto`:
    transformers' eager attention on a CPU, where torch's SDPA trains slower (its flash backward, and its math path
    under dropout: benchmarks/RESULTS.md), the model's own elsewhere."""
    value = cfg.get("attention", "auto")
    value = ("eager" if torch.device(device).type == "cpu" else None) if value == "auto" else value
    own = model.config._attn_implementation
    if value is not None and value != own:
        model.set_attn_implementation(value)
    try:
        yield model
    finally:
        if model.config._attn_implementation != own:
            model.set_attn_implementation(own)


def param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (biases and norms excluded), as HF Trainer does."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() or "ln_" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def finetune(model, tokenizer, texts: list[str], cfg: DictConfig, accelerator, *, seed: int = 0,
             desc: str = "fine-tune", on_step=None, grad_hook=None, precision: str = "fp32") -> TrainResult:
    """Train `model` in place on `texts`; returns what happened, read off the optimizer and the loop.
    `precision` bf16: the forward runs under bf16 autocast; weights, gradients and AdamW state stay fp32."""
    with attention(model, cfg, accelerator.device):
        return _finetune(model, tokenizer, texts, cfg, accelerator, seed, desc, on_step, grad_hook, precision)


def _finetune(model, tokenizer, texts, cfg, accelerator, seed, desc, on_step, grad_hook, precision) -> TrainResult:
    examples = encode(tokenizer, texts, cfg.max_length, cfg.unit)
    check(len(examples) > 0, "train.texts", "at least one text of two or more tokens", len(texts))
    rng = np.random.default_rng(seed)
    world, rank = accelerator.num_processes, accelerator.process_index
    per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total_steps = math.ceil(per_epoch / cfg.grad_accum) * cfg.epochs
    # fused AdamW (HF Trainer's default too): one kernel, no foreach temporaries the size of the parameters
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in model.parameters())
    if cfg.get("optimizer_state", "fp32") == "bf16":      # bf16 moments, stochastically rounded (memory.py)
        optimizer = memory.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, seed=seed)
    else:
        optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=fused)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    low = None                           # train.memory=low: checkpointing + optimizer step in backward (memory.py)
    if cfg.get("memory", "default") == "low":
        check(world == 1, "train.memory", "default under several processes (low steps inside backward)", "low")
        low = memory.LowMemory(model, getattr(optimizer, "optimizer", optimizer), cfg.max_grad_norm)
    chunk = cfg.get("loss_chunk")
    check(world == 1 or not chunk, "train.loss_chunk", "null under several processes (the head runs unwrapped)", chunk)
    forward = torch.compile(model) if cfg.get("compile") else model
    model.train()
    lengths = [len(e) for e in examples]
    tokens, steps, start, batch_losses = 0, 0, time.perf_counter(), []
    bar = tqdm(total=per_epoch * cfg.epochs, desc=desc, disable=not accelerator.is_main_process, leave=False)
    for epoch in range(cfg.epochs):
        sums, counts = [], []           # per-batch loss sums stay on the device: no host sync per step
        for i, batch in enumerate(batch_order(lengths, cfg.batch_size, rng, cfg.group_by_length)):
            # A batch is split across processes; the loss is normalised by the whole batch's target
            # tokens, so any number of processes computes the single-process gradient.
            targets = sum(lengths[j] - 1 for j in batch)
            local = batch[rank::world] or batch[:1]
            weight = 1.0 if batch[rank::world] else 0.0
            inputs = collate([examples[j] for j in local], tokenizer.pad_token_id, accelerator.device)
            labels = inputs.pop("labels")
            def compute(inputs=inputs, labels=labels, weight=weight):
                with numeric.autocast(precision, accelerator.device, cache=low is None):
                    return loss_sum_of(forward, inputs, labels, chunk) * weight

            def scaled(loss, targets=targets):
                return loss * world / (targets * cfg.grad_accum)  # DDP averages over processes

            if low is None:
                loss_sum = compute()
                accelerator.backward(scaled(loss_sum))
            else:
                loss_sum = low.backward(compute, scaled)  # also clips and steps
            if (i + 1) % cfg.grad_accum == 0 or i + 1 == per_epoch:
                if grad_hook is not None:        # (step, model): may read or change the gradients (projection.py)
                    grad_hook(steps + 1, model)
                if cfg.max_grad_norm and low is None:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                if low is None:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                if on_step is not None:
                    on_step(steps)
            sums.append(loss_sum.detach())
            counts.append(targets)
            tokens += sum(lengths[j] for j in batch)
            bar.update()
            if i % 16 == 0 or i + 1 == per_epoch:   # every step's loss is kept; the bar shows some
                bar.set_postfix(epoch=epoch, loss=f"{accelerator.reduce(sums[-1], 'sum').item() / targets:.3f}")
        losses = (accelerator.reduce(torch.stack(sums), "sum").cpu().double() / torch.tensor(counts)).tolist()
        batch_losses += losses
    bar.close()
    seconds = time.perf_counter() - start
    groups = [{"lr": g["initial_lr"] if "initial_lr" in g else g["lr"], "weight_decay": g["weight_decay"],
               "params": len(g["params"])} for g in optimizer.param_groups]
    accelerator.unwrap_model(model, keep_fp32_wrapper=False).eval()
    if low is not None:
        low.close()
    accelerator.free_memory()            # drop Accelerate's references: nothing accumulates across generations
    return TrainResult(loss=float(np.mean(losses)), epochs=epoch + 1, steps=steps, examples=len(examples),
                       tokens=tokens, seconds=seconds, tokens_per_s=tokens / max(seconds, 1e-9), optimizer=groups,
                       batch_losses=batch_losses)
