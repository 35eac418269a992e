"""The run's numeric precision, one top-level key: `precision: fp32 | bf16 | auto`.

`auto` is bf16 where the hardware multiplies bf16 natively (a CPU with AMX or AVX512-BF16, a CUDA device of
compute capability >= 8.0), else fp32. bf16 runs each stage in one of two ways:
- training (`autocast`): bf16 matmuls under torch.autocast; master weights, gradients and optimizer state stay fp32;
- inference — synthesis, scoring, probes (`inference_weights`): the weights are cast to bf16 for the duration (the
  KV cache follows), the fp32 weights kept aside and put back bit for bit afterwards.
Outputs that leave a stage (logits for sampling and losses, probe arrays, scores) are float32 either way."""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
from pathlib import Path

import torch

from bias_amp.errors import check

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "auto")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_CPU_BF16_FLAGS = {"amx_bf16", "avx512_bf16", "bf16"}  # /proc/cpuinfo: x86 AMX / AVX512-BF16, aarch64 BF16


def validate(value) -> None:
    check(value in PRECISIONS, "precision", f"one of {list(PRECISIONS)}", value)


# The per-stage opt-ins `precision` replaced: refused when set to anything but their old neutral value.
_REPLACED = {"train.mixed_precision": (None, "no"), "mitigation.train.mixed_precision": (None, "no"),
             "model.dtype": (None, "float32")}


def validate_config(cfg) -> None:
    """A run config's `precision` (and none of the keys it replaced), checked before any model loads."""
    from omegaconf import OmegaConf

    validate(cfg.get("precision"))
    for key, neutral in _REPLACED.items():
        value = OmegaConf.select(cfg, key)
        check(value in neutral, key, "unset (replaced by the top-level `precision: fp32|bf16|auto`)", value)


@functools.cache
def cpu_info() -> dict[str, str]:
    """The first processor's fields of Linux /proc/cpuinfo ("model name", "flags", ...; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 "flags", aarch64 "Features"; empty off Linux)."""
    info = cpu_info()
    return frozenset(info.get("flags", info.get("Features", "")).split())


def machine(device) -> str:
    """One line naming what a run's numbers depend on (run.log): the processor and its native bf16, torch, threads.
    Same seed, precision, threads and processor give the same numbers; another processor, another draw."""
    device = torch.device(device)
    if device.type == "cuda":
        chip = "{} (compute capability {}.{})".format(torch.cuda.get_device_name(device),
                                                      *torch.cuda.get_device_capability(device))
    else:
        bf16 = ", ".join(sorted(cpu_flags() & _CPU_BF16_FLAGS)) or "no native bf16"
        chip = f"{cpu_info().get('model name') or platform.processor() or 'unknown CPU'} ({bf16})"
    return f"{chip}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def native_bf16(device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return bool(cpu_flags() & _CPU_BF16_FLAGS)
    return False


@functools.cache
def _warn_emulated(device_type: str) -> None:
    log.warning("precision=bf16 on a %s without native bf16: emulated, slow (fp32 is faster here)", device_type)


def resolve(value, device) -> str:
    """'fp32' or 'bf16': `auto` decided for `device`; bf16 without hardware support warns once."""
    validate(value)
    if value == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if value == "bf16" and not native_bf16(device):
        _warn_emulated(torch.device(device).type)
    return value


def of(cfg, device) -> str:
    """The resolved precision of a run config (a config without the key: fp32)."""
    return resolve(cfg.get("precision") or "fp32", device)


def autocast(precision: str, device, cache: bool = True):
    """Training compute: bf16 autocast on the device, or nothing for fp32. `cache=False`: the bf16 copy of a
    weight is made at each use, not kept for the whole forward (memory=low: -0.26 GB on SmolLM2; same values)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16",
                          cache_enabled=cache)


@contextlib.contextmanager
def inference_weights(model, precision: str):
    """Run `model` with its floating-point parameters in the precision's dtype (buffers such as rotary
    frequencies stay as they are); on exit the original tensors are put back (no rounding kept). Yields the model."""
    dtype = DTYPES[precision]
    saved = [(p, p.data) for p in model.parameters() if p.is_floating_point() and p.dtype != dtype]
    try:
        for p, data in saved:
            p.data = data.to(dtype)
        yield model
    finally:
        for p, data in saved:
            p.data = data
