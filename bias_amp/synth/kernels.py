"""Kernels the decode loop swaps in on the model while it runs, each undone on exit:
- `exact_fast_ops`: GPT-2's gelu_new in place (same bits, 2 allocations instead of 8);
- `sliced_attention`: SDPA over the written cache positions only (same bits);
- `packed_weights`: on CPU in float32 (or bf16 where the CPU has native bf16), the decode steps' matmuls through
  oneDNN with weights packed once. Same maths, another summation order: logits differ in the last bits from
  MKL's, so a near-tie can pick another token. `synthesis.packed_weights: false` keeps MKL's bits.
The private torch / transformers calls behind these live in `bias_amp.compat`."""

from __future__ import annotations

import contextlib
import math

import torch

from bias_amp import compat, precision

PACKED_MAX_ROWS = 512  # inputs of at most this many rows (decode steps) take the packed weights; MKL is as fast above


def _new_gelu_inplace(x: torch.Tensor) -> torch.Tensor:
    """HF's NewGELUActivation (GPT-2's gelu_new), bitwise equal, with 2 allocations instead of 8."""
    y = torch.pow(x, 3.0)
    y.mul_(0.044715).add_(x).mul_(math.sqrt(2.0 / math.pi)).tanh_().add_(1.0)
    return y.mul_(0.5 * x)


@contextlib.contextmanager
def exact_fast_ops(model):
    """Swap GPT-2's 8-pass gelu_new for the in-place version above (same bits) while decoding."""
    from transformers.activations import NewGELUActivation

    swapped = [m for m in model.modules() if type(m) is NewGELUActivation]
    for m in swapped:
        m.forward = _new_gelu_inplace
    try:
        yield
    finally:
        for m in swapped:
            del m.forward


SLICED_SDPA = "bias_amp_sliced_sdpa"


def _sliced_sdpa(module, query, key, value, attention_mask, **kwargs):
    """HF's SDPA over the first `attention_mask.shape[-1]` cache positions: the loop cuts its masks at the current
    length, so the unwritten tail of the static cache is not read at all (it was masked out anyway)."""
    n = key.shape[2] if attention_mask is None else attention_mask.shape[-1]
    return compat.sdpa_attention(module, query, key[:, :, :n], value[:, :, :n], attention_mask, **kwargs)


@contextlib.contextmanager
def sliced_attention(model):
    """Run an SDPA model with `_sliced_sdpa` (yields True), anything else unchanged (yields False)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    config = model.config
    if compat.attn_implementation(config) != "sdpa":
        yield False
        return
    AttentionInterface.register(SLICED_SDPA, _sliced_sdpa)
    AttentionMaskInterface.register(SLICED_SDPA, sdpa_mask)
    compat.set_attn_implementation(config, SLICED_SDPA)
    try:
        yield True
    finally:
        compat.set_attn_implementation(config, "sdpa")


def packing_problem(model) -> str:
    """Why `packed_weights` would leave this model alone ('' when it packs)."""
    if model.device.type != "cpu":
        return f"device {model.device.type}"
    if model.dtype != torch.float32 and not (model.dtype == torch.bfloat16 and precision.native_bf16("cpu")):
        return f"dtype {model.dtype}"
    if not torch.backends.mkldnn.is_available():
        return "no oneDNN in this torch build"
    return ""


def _packed_linears(model):
    """(module, weight as [out, in]) of every plain nn.Linear and GPT-2 Conv1D; subclasses (LoRA...) are left alone."""
    from transformers.pytorch_utils import Conv1D

    for m in model.modules():
        if type(m) is torch.nn.Linear:
            yield m, m.weight.detach()
        elif type(m) is Conv1D:
            yield m, m.weight.detach().t().contiguous()


@contextlib.contextmanager
def packed_weights(model, rows: int, enabled: bool = True):
    """Run small-input Linear / Conv1D calls through oneDNN with weights packed once for `rows`-row inputs
    (fp32: 1.1-1.7x MKL's rate at decode shapes on AVX2, most for the LM head; bf16 on AMX: see RESULTS.md).
    Yields whether it packed; costs one extra copy of the weights while active."""
    if not enabled or packing_problem(model):
        yield False
        return
    swapped = []
    for module, weight in _packed_linears(model):
        packed = compat.pack_linear_weight(weight, rows)
        bias = None if module.bias is None else module.bias.detach()

        def forward(x, packed=packed, bias=bias, dense=module.forward):
            if x.numel() > PACKED_MAX_ROWS * x.shape[-1]:
                return dense(x)
            return compat.packed_linear(x, packed, bias)

        module.forward = forward
        swapped.append(module)
    try:
        yield True
    finally:
        for module in swapped:
            del module.forward
