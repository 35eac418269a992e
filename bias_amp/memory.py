"""Low-memory fine-tuning (`train.memory: low`, opt-in): the same weights as the plain path, less peak RAM.

- activation checkpointing: each transformer block keeps only its input; its activations are recomputed in
  the backward pass (RNG state restored, so dropout masks repeat): same gradients, ~1 extra forward.
- optimizer step in the backward pass: each parameter is updated (AdamW on that parameter alone) as soon as its
  gradient is complete, then the gradient is freed, so at most one parameter's gradient is held instead of all
  of them (for SmolLM2-135M: 0.54 GB -> 0.11 GB, its tied embedding). Gradient clipping needs the total norm
  before any update: with `max_grad_norm` a first forward + backward pass only measures the norms (each gradient
  freed at once), a second one clips by the same factor `clip_grad_norm_` uses and steps (~1 extra step).
- freed memory returned: glibc's threshold for serving an allocation by mmap rises (up to 32 MiB) as large blocks
  are freed, and blocks below it stay resident after free: ~0.9 GB of a SmolLM2 step's freed activations. Under
  `memory=low` the threshold is fixed at 128 KiB for the process (`return_freed_memory`), so blocks that large go
  back to the OS when freed (a page fault per reuse: a few % slower; 1 MiB kept ~20 MiB more at a SmolLM2 step's
  peak and ~140 MiB of free heap after fine-tuning).
- a tied input embedding (`token_nll`, `TiedRows`): the LM head's [vocab, hidden] weight gradient is made at the
  end of backward, not held while the blocks run backward (bit for bit; -86 MiB at a SmolLM2 step's peak).
Needs one process and `grad_accum: 1` (the update happens inside backward).

Two more savings change results in the last bits or beyond, so each is its own key (the `memory=low` group sets all):
- `train.loss_chunk` (`token_nll`, `HeadNLL`): the LM head and its cross-entropy run on `chunk` positions at a time
  (remade in backward), never on the whole [batch, length, vocab] logits; another summation order of the loss.
- `train.optimizer_state: bf16` (`AdamW`): AdamW's two moments stored in bf16 with stochastic rounding (unbiased,
  so the second moment's 0.1% updates are not rounded away), computed in fp32: half the optimizer memory."""

from __future__ import annotations

import ctypes
import gc
import math

import torch
import torch.nn.functional as F

from bias_amp.errors import check, check_range

MODES = ("default", "low")
STATES = ("fp32", "bf16")
ROWS = 4096                      # HeadNLL's bf16 weight gradient is made this many vocabulary rows at a time
SLICE = 1 << 20                  # AdamW(bf16 state) works in fp32 on this many elements at a time
MMAP_THRESHOLD = 1 << 17         # bytes: glibc serves (and returns) allocations this large by mmap under memory=low
# The head's fp32 log-softmax / softmax runs on this many rows of [rows, vocab] logits at a time, so the fp32 copy
# stays in cache: bit for bit the values of one call over all rows, 6x faster on a CPU (512 x 49,152 bf16 logits,
# one core: 23 vs 153 ms).
LOSS_ROWS = 4


_returning = False                # return_freed_memory() succeeded in this process


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD for this process (module docstring); False without glibc."""
    global _returning
    try:
        _returning = bool(ctypes.CDLL("libc.so.6").mallopt(-3, MMAP_THRESHOLD))     # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        _returning = False
    return _returning


def trim() -> None:
    """Between stages: collect garbage; after return_freed_memory also `malloc_trim`, which gives the free pages
    inside glibc's heap back to the OS (reading a corpus leaves ~160 MB of them)."""
    gc.collect()
    if _returning:
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def chunkable(model) -> bool:
    """The LM head can run apart from the blocks: logits = h @ Wᵀ (a bias-free linear head), no scaling or
    softcapping."""
    c, head = model.config, model.get_output_embeddings()
    return (isinstance(head, torch.nn.Linear) and head.bias is None and model.base_model is not model
            and getattr(c, "final_logit_softcapping", None) is None and getattr(c, "logit_scale", None) is None)


class HeadNLL(torch.autograd.Function):
    """NLL per row of softmax(h Wᵀ) at targets y (-100: 0), `chunk` rows at a time. Forward keeps no logits;
    backward remakes each chunk's and adds its Wᵀ-gradient into one buffer (no [vocab, hidden] temporary per
    chunk). Matmuls in the autocast dtype when autocast is on (as nn.Linear under it), else in h's dtype.
    With `tied` (the TiedRows of the same weight) the Wᵀ-gradient is made later, by TiedRows' backward at the
    very end of the backward pass, so that [vocab, hidden] buffer is not held while the blocks run backward."""

    @staticmethod
    def forward(ctx, h, weight, y, chunk, tied=None):
        dev = h.device.type
        ctx.dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
        ctx.chunk, ctx.tied = chunk, tied
        ctx.save_for_backward(h, weight, y)
        w = weight.to(ctx.dtype)
        return torch.cat([row_nll(h[s:s + chunk].to(ctx.dtype) @ w.t(), y[s:s + chunk]) for s in range(0, len(y), chunk)])

    @staticmethod
    def backward(ctx, grad_out):
        h, weight, y = ctx.saved_tensors
        w, chunk = weight.to(ctx.dtype), ctx.chunk
        grad_h, grad_w = torch.empty_like(h), None if ctx.tied else torch.zeros_like(weight)
        for s, hc, d in HeadNLL.dlogits(h, w, y, grad_out, chunk):
            grad_h[s:s + chunk] = (d.to(ctx.dtype) @ w).to(h.dtype)
            if grad_w is not None:
                HeadNLL.add_grad_weight(grad_w, d, hc)
        if ctx.tied:
            ctx.tied.head = lambda: HeadNLL.grad_weight(h, weight, y, grad_out, chunk, ctx.dtype)
        return grad_h, grad_w, None, None, None

    @staticmethod
    def dlogits(h, w, y, grad_out, chunk):
        """(start, h chunk, d loss / d logits) per chunk: softmax - onehot, times the rows' upstream gradient."""
        for s in range(0, len(y), chunk):
            hc, yc = h[s:s + chunk].to(w.dtype), y[s:s + chunk]
            d = row_softmax(hc @ w.t())
            keep = yc != -100
            d[keep, yc[keep]] -= 1
            yield s, hc, d.mul_((grad_out[s:s + chunk] * keep)[:, None])

    @staticmethod
    def add_grad_weight(grad_w, d, hc):
        """grad_w += dᵀ hc in hc's dtype, with no [vocab, hidden] temporary."""
        if grad_w.dtype == hc.dtype:
            grad_w.addmm_(d.t().to(hc.dtype), hc)
        else:                 # fp32 master weight, bf16 compute: a [ROWS, hidden] product at a time
            dt = d.t().to(hc.dtype)
            for r in range(0, len(grad_w), ROWS):
                grad_w[r:r + ROWS].add_(dt[r:r + ROWS] @ hc)

    @staticmethod
    def grad_weight(h, weight, y, grad_out, chunk, dtype):
        grad_w = torch.zeros_like(weight)
        for _, hc, d in HeadNLL.dlogits(h, weight.to(dtype), y, grad_out, chunk):
            HeadNLL.add_grad_weight(grad_w, d, hc)
        return grad_w


def row_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy(logits.float(), y, ignore_index=-100, reduction="none"), LOSS_ROWS rows at a time."""
    out = torch.empty(len(y), dtype=torch.float32, device=logits.device)
    for s in range(0, len(y), LOSS_ROWS):
        out[s:s + LOSS_ROWS] = F.cross_entropy(logits[s:s + LOSS_ROWS].float(), y[s:s + LOSS_ROWS],
                                               ignore_index=-100, reduction="none")
    return out


def row_softmax(logits: torch.Tensor) -> torch.Tensor:
    """torch.softmax(logits.float(), -1), LOSS_ROWS rows at a time."""
    out = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    for s in range(0, len(logits), LOSS_ROWS):
        out[s:s + LOSS_ROWS] = torch.softmax(logits[s:s + LOSS_ROWS].float(), -1)
    return out


class TiedRows(torch.autograd.Function):
    """embedding(ids, weight) for an input embedding tied to the LM head (token_nll). Its weight gradient is one
    row per distinct id (padding excluded, as nn.Embedding), summed in the order the dense backward sums them,
    added into the head's gradient that HeadNLL left to be made here: bit for bit the dense result, with one
    [vocab, hidden] buffer that exists only at the end of the backward pass."""

    @staticmethod
    def forward(ctx, ids, weight, padding_idx):
        ctx.save_for_backward(ids)
        ctx.padding_idx, ctx.shape, ctx.head = padding_idx, weight.shape, None
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx, grad):
        (ids,) = ctx.saved_tensors
        ids, rows = ids.reshape(-1), grad.reshape(-1, grad.shape[-1])
        if ctx.padding_idx is not None:
            keep = ids != ctx.padding_idx
            ids, rows = ids[keep], rows[keep]
        distinct, where = torch.unique(ids, return_inverse=True)
        sums = rows.new_zeros(len(distinct), rows.shape[1]).index_add_(0, where, rows)
        dense = ctx.head() if ctx.head else sums.new_zeros(ctx.shape)      # no head linked: the rows alone
        return None, dense.index_put_((distinct,), sums, accumulate=True), None


def tied(model) -> bool:
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    return isinstance(emb, torch.nn.Embedding) and head is not None and emb.weight is head.weight


def token_nll(model, input_ids, attention_mask, labels, chunk: int) -> torch.Tensor:
    """Next-token NLL per position, [batch, length] (position t predicts labels[:, t + 1]; 0 where that is -100
    and at the last position), from the LM head on `chunk` positions at a time (HeadNLL): never the whole
    [batch, length, vocab] logits, in forward or backward. A tied input embedding runs as TiedRows."""
    weight, link = model.get_output_embeddings().weight, None
    if tied(model) and torch.is_grad_enabled() and weight.requires_grad:
        embeds = TiedRows.apply(input_ids, weight, model.get_input_embeddings().padding_idx)
        link = embeds.grad_fn
        hidden = model.base_model(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False)[0]
    else:
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]
    targets = F.pad(labels[:, 1:], (0, 1), value=-100)
    nll = HeadNLL.apply(hidden.flatten(0, 1), weight, targets.flatten(), chunk, link)
    return nll.view_as(targets)


def to_bf16_stochastic(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """fp32 -> bf16 rounded up or down at random, in proportion to the distance (E[result] = x)."""
    noise = torch.randint(0, 1 << 16, x.shape, dtype=torch.int32, device=x.device, generator=generator)
    return ((x.view(torch.int32) + noise) & -65536).view(torch.float32).to(torch.bfloat16)


class AdamW(torch.optim.Optimizer):
    """torch.optim.AdamW's update (decoupled weight decay, bias correction, no amsgrad) with bf16 moments,
    stochastically rounded from a generator seeded with `seed`; the update itself is computed in fp32."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                 seed: int = 0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p, dtype=torch.bfloat16),
                                 exp_avg_sq=torch.zeros_like(p, dtype=torch.bfloat16))
                state["step"] += 1
                t = state["step"]
                size, root = lr / (1 - b1 ** t), math.sqrt(1 - b2 ** t)
                w, g = p.view(-1), p.grad.view(-1)
                m_all, v_all = state["exp_avg"].view(-1), state["exp_avg_sq"].view(-1)
                for s in range(0, w.numel(), SLICE):
                    gs, ws = g[s:s + SLICE].float(), w[s:s + SLICE]
                    m = m_all[s:s + SLICE].float().lerp_(gs, 1 - b1)
                    v = v_all[s:s + SLICE].float().mul_(b2).addcmul_(gs, gs, value=1 - b2)
                    ws.mul_(1 - lr * wd).addcdiv_(m, v.sqrt().div_(root).add_(eps), value=-size)
                    m_all[s:s + SLICE] = to_bf16_stochastic(m, self.generator)
                    v_all[s:s + SLICE] = to_bf16_stochastic(v, self.generator)


class StepInBackward:
    """Per-parameter AdamW steps from post-accumulate-grad hooks (cf. torchtune's optimizer_in_bwd)."""

    def __init__(self, model, optimizer, max_grad_norm: float | None):
        self.optimizer, self.max_norm = optimizer, max_grad_norm
        self.order = {p: i for i, p in enumerate(p for p in model.parameters() if p.requires_grad)}
        self.norms: dict[int, torch.Tensor] | None = None
        self.coef: torch.Tensor | None = None
        self.hooks = [p.register_post_accumulate_grad_hook(self._hook) for p in self.order]

    def _hook(self, p: torch.Tensor) -> None:
        if self.norms is not None:                        # measuring pass: keep the norm, drop the gradient
            self.norms[self.order[p]] = torch.linalg.vector_norm(p.grad, 2.0)
        else:
            if self.coef is not None:
                p.grad.mul_(self.coef)
            self.optimizer.step()                         # AdamW skips parameters without a gradient
        p.grad = None

    def backward(self, compute, scaled=lambda loss: loss) -> torch.Tensor:
        """Backward of `scaled(compute())` + clip + optimizer step, as `backward(); clip_grad_norm_(); step();
        zero_grad()`; returns compute()'s loss. Under clipping the forward runs twice (the first pass's RNG state
        restored: the same dropout masks): a graph retained between two backward passes would keep every
        activation that checkpointing recomputes, undoing it."""
        self.coef = None
        if self.max_norm:
            self.norms = {}
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
                scaled(compute()).backward()
            norms, self.norms = [self.norms[i] for i in sorted(self.norms)], None   # model.parameters() order
            total = torch.linalg.vector_norm(torch.stack(norms), 2.0)              # as clip_grad_norm_
            self.coef = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
        loss = compute()
        scaled(loss).backward()
        return loss

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


def validate(cfg, key: str = "train") -> None:
    mode = cfg.get("memory", "default")
    check(mode in MODES, f"{key}.memory", f"one of {list(MODES)}", mode)
    if cfg.get("loss_chunk") is not None:
        check_range(cfg.loss_chunk, f"{key}.loss_chunk", 1, integer=True)
    state = cfg.get("optimizer_state", "fp32")
    check(state in STATES, f"{key}.optimizer_state", f"one of {list(STATES)}", state)
    if mode == "low":
        check(cfg.grad_accum == 1, f"{key}.grad_accum", "1 with memory=low (the update happens in backward)",
              cfg.grad_accum)


class LowMemory:
    """`train.memory: low` for one fine-tuning call: activation checkpointing on, the optimizer stepping in
    backward. `backward(compute, scaled)` replaces backward + clip + step + zero_grad; `close()` undoes both."""

    def __init__(self, model, optimizer, max_grad_norm: float | None):
        self.model, self.checkpointing = model, False
        return_freed_memory()
        if getattr(model, "supports_gradient_checkpointing", False) and not model.is_activation_checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
            self.checkpointing = True
        self.stepper = StepInBackward(model, optimizer, max_grad_norm)
        self.backward = self.stepper.backward

    def close(self) -> None:
        self.stepper.close()
        if self.checkpointing:
            self.model.activation_checkpointing_disable()
            self.model.disable_input_require_grads()     # the hook enable added (transformers leaves it)
