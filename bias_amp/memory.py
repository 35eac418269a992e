"""Low-memory fine-tuning (`train.memory: low`, opt-in): the same weights as the plain path, less peak RAM.

- activation checkpointing: each transformer block keeps only its input; its activations are recomputed in
  the backward pass (RNG state restored, so dropout masks repeat): same gradients, ~1 extra forward.
- optimizer step in the backward pass: each parameter is updated (AdamW on that parameter alone) as soon as its
  gradient is complete, then the gradient is freed, so at most one parameter's gradient is held instead of all
  of them (for SmolLM2-135M: 0.54 GB -> 0.11 GB, its tied embedding). Gradient clipping needs the total norm
  before any update: with `max_grad_norm` a first backward pass only measures the norms (each gradient freed at
  once), a second one clips by the same factor `clip_grad_norm_` uses and steps (~1 extra backward).
Needs one process and `grad_accum: 1` (the update happens inside backward)."""

from __future__ import annotations

import torch

from bias_amp.errors import check

MODES = ("default", "low")


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

    def backward(self, loss: torch.Tensor) -> None:
        """Backward + clip + optimizer step, as `backward(); clip_grad_norm_(); step(); zero_grad()`."""
        self.coef = None
        if self.max_norm:
            self.norms = {}
            loss.backward(retain_graph=True)
            norms, self.norms = [self.norms[i] for i in sorted(self.norms)], None   # model.parameters() order
            total = torch.linalg.vector_norm(torch.stack(norms), 2.0)              # as clip_grad_norm_
            self.coef = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
        loss.backward()

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


def validate(cfg, key: str = "train") -> None:
    mode = cfg.get("memory", "default")
    check(mode in MODES, f"{key}.memory", f"one of {list(MODES)}", mode)
    if mode == "low":
        check(cfg.grad_accum == 1, f"{key}.grad_accum", "1 with memory=low (the update happens in backward)",
              cfg.grad_accum)


class LowMemory:
    """`train.memory: low` for one fine-tuning call: activation checkpointing on, the optimizer stepping in
    backward. `backward(loss)` replaces backward + clip + step + zero_grad; `close()` undoes both."""

    def __init__(self, model, optimizer, max_grad_norm: float | None):
        self.model, self.checkpointing = model, False
        if getattr(model, "supports_gradient_checkpointing", False) and not model.is_activation_checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
            self.checkpointing = True
        self.stepper = StepInBackward(model, optimizer, max_grad_norm)
        self.backward = self.stepper.backward

    def close(self) -> None:
        self.stepper.close()
        if self.checkpointing:
            self.model.activation_checkpointing_disable()
