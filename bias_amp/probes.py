"""Neuron probes (§5.4, App. K): for every output unit of every transformer block (n_layer x hidden,
9,216 for GPT-2 small) a weight value and a mean activation, recorded for the base model and after every
generation on the same fixed probe set.

- activation: forward hooks on each block's output hidden state (block i's output, not HF's
  `hidden_states[i + 1]`, which for the last block is after the final norm), averaged over all
  non-padding tokens of the probe prompts (token-weighted, pooled over prompts; at most `probe.max_prompts`
  prompts, evenly spaced over the given list, see `spread`). Prompts are right-padded,
  so under causal attention a real token never sees padding.
- weight (`probe.weight`): the unit's row of the block's MLP output projection, i.e. the weights that
  write into residual unit j (GPT-2 `mlp.c_proj`, a Conv1D with weight [in, out]: column j; Llama
  `mlp.down_proj`, a Linear with weight [out, in]: row j), reduced by
  `out_proj_mean` (mean), `out_proj_l2` (L2 norm) or `out_proj_abs_mean` (mean of absolute values).

Probing leaves the model as it was: eval mode + no_grad during the pass, hooks removed even on error,
every module's training flag restored, torch RNG state forked and restored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bias_amp.errors import ConfigError, check, check_range
from bias_amp.io import atomic_path

WEIGHTS = ("out_proj_mean", "out_proj_l2", "out_proj_abs_mean")
KEYS = ("weight", "activation")
_BLOCK_PATHS = ("transformer.h", "model.layers", "gpt_neox.layers", "model.decoder.layers")
_OUT_PROJ = ("c_proj", "down_proj", "fc2", "dense_4h_to_h", "fc_out")


def validate(cfg: Mapping) -> None:
    """Check a `probe` config without touching a model."""
    check(cfg.get("weight") in WEIGHTS, "probe.weight", f"one of {list(WEIGHTS)}", cfg.get("weight"))
    check_range(cfg.get("max_prompts"), "probe.max_prompts", 1, integer=True)
    check_range(cfg.get("batch_size"), "probe.batch_size", 1, integer=True)
    check_range(cfg.get("max_length"), "probe.max_length", 1, integer=True)


def blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer block list of a GPT-2 (`transformer.h`) or Llama-style (`model.layers`) model."""
    for path in _BLOCK_PATHS:
        obj = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if isinstance(obj, nn.ModuleList) and len(obj):
            return obj
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not lists:
        raise ConfigError("model", "a GPT-2 or Llama-style model with a list of transformer blocks",
                          type(model).__name__)
    return lists[0]


def out_proj_rows(block: nn.Module, hidden: int) -> torch.Tensor:
    """[hidden, fan_in]: row j holds the MLP output-projection weights writing into residual unit j."""
    mlp = getattr(block, "mlp", None)
    proj = next((getattr(mlp, n) for n in _OUT_PROJ if isinstance(getattr(mlp, n, None), nn.Module)), None)
    if proj is None or getattr(proj, "weight", None) is None:
        raise ConfigError("probe.weight", f"a block with mlp.{{{'|'.join(_OUT_PROJ)}}}", type(block).__name__)
    w = proj.weight.detach()
    if type(proj).__name__ == "Conv1D":   # transformers' GPT-2 Conv1D: weight [in, out]
        w = w.T
    if w.shape[0] != hidden:
        raise ConfigError("probe.weight", f"an output projection with {hidden} output units", tuple(w.shape))
    return w


def weight_values(model: nn.Module, how: str = "out_proj_mean") -> np.ndarray:
    """float32 [n_layer, hidden]: the configured weight reduction per block output unit."""
    check(how in WEIGHTS, "probe.weight", f"one of {list(WEIGHTS)}", how)
    hidden = model.get_input_embeddings().weight.shape[1]
    out = []
    with torch.no_grad():
        for block in blocks(model):
            w = out_proj_rows(block, hidden).double()
            if how == "out_proj_mean":
                v = w.mean(dim=1)
            elif how == "out_proj_l2":
                v = w.norm(dim=1)
            else:
                v = w.abs().mean(dim=1)
            out.append(v.cpu().numpy())
    return np.stack(out).astype(np.float32)


def spread(items: Sequence, k: int | None) -> list:
    """At most k items evenly spaced over the list (first and last included): a probe set that spans the
    whole corpus (e.g. every leaning) rather than its first articles; deterministic."""
    items = list(items)
    if k is None or len(items) <= k:
        return items
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))]


def _token_ids(tokenizer, prompts, max_length: int) -> list[list[int]]:
    ids = []
    for p in prompts:
        if isinstance(p, str):
            p = tokenizer(p, truncation=True, max_length=max_length)["input_ids"]
        ids.append([int(t) for t in p][:max_length])
    return [p for p in ids if p]


def mean_activations(model: nn.Module, tokenizer, prompts, *, batch_size=32, max_length=128,
                     max_prompts=None, desc: str | None = None) -> np.ndarray:
    """float32 [n_layer, hidden]: each block output's mean over the non-padding tokens of `prompts`
    (a progress bar named `desc` when given)."""
    ids = _token_ids(tokenizer, spread(prompts, max_prompts), max_length)
    check(len(ids) > 0, "probe.prompts", "at least one non-empty prompt", 0)
    layers = blocks(model)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else 0
    sums: list[torch.Tensor | None] = [None] * len(layers)
    mask_box: list[torch.Tensor] = []

    def hook(i):
        def fn(_module, _inputs, output):
            h = output[0] if isinstance(output, (tuple, list)) else output
            s = (h.float() * mask_box[0][..., None]).sum(dim=(0, 1)).double().cpu()
            sums[i] = s if sums[i] is None else sums[i] + s
        return fn

    order = sorted(range(len(ids)), key=lambda k: len(ids[k]))   # similar lengths together: less padding
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    training = {m: m.training for m in model.modules()}
    body = getattr(model, "base_model", model)   # the blocks without the LM head: no [batch, length, vocab] logits
    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(layers)]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            n_tokens = 0
            for batch in tqdm(batches, desc=desc, unit="batch", leave=False, disable=desc is None):
                width = max(len(ids[k]) for k in batch)
                x = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, k in enumerate(batch):
                    x[row, :len(ids[k])] = torch.tensor(ids[k])
                    mask[row, :len(ids[k])] = 1
                mask_box[:] = [mask.to(device=device, dtype=torch.float32)]
                body(input_ids=x.to(device), attention_mask=mask.to(device), use_cache=False)
                n_tokens += int(mask.sum())
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.training = flag
    return (torch.stack(sums) / n_tokens).numpy().astype(np.float32)


def probe(model: nn.Module, tokenizer, prompts: Sequence[Sequence[int]] | Sequence[str], cfg: Mapping,
          desc: str | None = None) -> dict[str, np.ndarray]:
    """{"weight", "activation"}: float32 [n_layer, hidden] for one model version. `cfg` is the `probe`
    config (weight, max_prompts, batch_size, max_length); the same prompts must be given every version.
    `desc` names a progress bar over the probe batches (none without it). `cfg` is trusted: `validate` it first
    (the run does, before any model loads)."""
    ids = _token_ids(tokenizer, spread(prompts, cfg["max_prompts"]), cfg["max_length"])
    check(len(ids) > 0, "probe.prompts", "at least one non-empty prompt", 0)
    return {
        "weight": weight_values(model, cfg["weight"]),
        "activation": mean_activations(model, tokenizer, ids, batch_size=cfg["batch_size"],
                                       max_length=cfg["max_length"], desc=desc),
    }


def save_probe(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write {"weight", "activation"} as a compressed .npz, atomically."""
    arrays = {k: np.asarray(arrays[k], dtype=np.float32) for k in KEYS}
    check(arrays["weight"].ndim == 2 and arrays["weight"].shape == arrays["activation"].shape,
          "probe", "weight and activation of one shape [n_layer, hidden]",
          [arrays["weight"].shape, arrays["activation"].shape])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return Path(path)


def load_probe(path: str | Path) -> dict[str, np.ndarray]:
    """{"weight", "activation"}: float32 [n_layer, hidden] from `save_probe`'s file."""
    with np.load(path) as z:
        missing = [k for k in KEYS if k not in z.files]
        check(not missing, str(path), f"a probe file with arrays {list(KEYS)}", z.files)
        return {k: z[k].astype(np.float32) for k in KEYS}
