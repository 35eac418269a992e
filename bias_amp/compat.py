"""The one home of every private transformers / torch internal the project uses (the fast decode loop's), with
the versions it was tested on. Nothing falls back silently to a slower path when one of them changes:
`require()` (run once before synthesis) raises naming what changed, and tests/test_compat.py fails."""

from __future__ import annotations

import functools
import inspect

import torch

TESTED = {"torch": ("2.13",), "transformers": ("5.24",)}   # major.minor versions these uses were tested with
_MASK_ARGS = {"config", "inputs_embeds", "attention_mask", "cache", "allow_is_causal_skip"}


# --- transformers: generation defaults, attention choice, masks, the static KV cache ------------------------------
def default_generation_params() -> dict:
    """The defaults generate() fills in when neither the kwargs nor the model's generation_config set a key."""
    from transformers import GenerationConfig

    return GenerationConfig._get_default_generation_params()


def attn_implementation(config) -> str:
    return config._attn_implementation


def set_attn_implementation(config, name: str) -> None:
    """Switch the attention function without the public setter's re-validation of every sub-config."""
    config._attn_implementation = name


def causal_mask(config, inputs_embeds: torch.Tensor, mask2d: torch.Tensor):
    """HF's 4D causal+padding mask for the model's attention (never the is_causal shortcut)."""
    from transformers.masking_utils import create_causal_mask

    return create_causal_mask(config=config, inputs_embeds=inputs_embeds, attention_mask=mask2d, cache=None,
                              allow_is_causal_skip=False)


def sdpa_attention(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def static_cache(config, max_cache_len: int):
    from transformers import StaticCache

    return StaticCache(config=config, max_cache_len=max_cache_len)


def cache_batch_size(cache) -> int | None:
    """Rows the cache's layers hold (None before the first forward)."""
    sizes = {getattr(layer, "batch_size", None) for layer in cache.layers}
    return sizes.pop() if len(sizes) == 1 else None


def rewind_cache(cache) -> None:
    """Write position back to 0; stale entries stay but are masked out and then overwritten."""
    for layer in cache.layers:
        layer.cumulative_length.zero_()


def compact_cache(cache, keep: torch.Tensor) -> None:
    """Keep only the rows `keep` of every initialised layer."""
    for layer in cache.layers:
        if layer.is_initialized:
            layer.keys = layer.keys.index_select(0, keep)
            layer.values = layer.values.index_select(0, keep)
            layer.batch_size = len(keep)


# --- torch: oneDNN linear with a packed weight ----------------------------------------------------------------------
def pack_linear_weight(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """`weight` [out, in] reordered once by oneDNN for inputs of about `rows` rows (fp32 or bf16)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows)


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


# --- the check ------------------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import transformers

    return {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}


def problems() -> list[str]:
    """What no longer works as used here ([] when all is there); each entry names the internal."""
    from transformers import GPT2Config
    from transformers.cache_utils import StaticLayer

    out = []

    def probe(name, fn):
        try:
            if fn() is False:
                out.append(f"{name}: changed")
        except Exception as err:  # noqa: BLE001 - any failure is the finding
            out.append(f"{name}: {type(err).__name__}: {err}")

    probe("GenerationConfig._get_default_generation_params", lambda: isinstance(default_generation_params(), dict))
    probe("PretrainedConfig._attn_implementation",
          lambda: attn_implementation(GPT2Config(attn_implementation="sdpa")) == "sdpa")
    from transformers.masking_utils import create_causal_mask

    probe("masking_utils.create_causal_mask arguments",
          lambda: _MASK_ARGS <= inspect.signature(create_causal_mask).parameters.keys())
    probe("integrations.sdpa_attention.sdpa_attention_forward", lambda: callable(
        __import__("transformers.integrations.sdpa_attention", fromlist=["x"]).sdpa_attention_forward))

    def cache_layer():
        layer = StaticLayer(max_cache_len=4)
        layer.lazy_initialization(torch.zeros(2, 1, 1, 3), torch.zeros(2, 1, 1, 3))
        return (layer.is_initialized and layer.batch_size == 2 and layer.keys.shape == (2, 1, 4, 3)
                and isinstance(layer.cumulative_length, torch.Tensor))

    probe("cache_utils.StaticLayer (keys, values, batch_size, cumulative_length, is_initialized)", cache_layer)
    if torch.backends.mkldnn.is_available():
        def linear():
            x, w = torch.randn(3, 8), torch.randn(5, 8)
            got = packed_linear(x, pack_linear_weight(w, 3), None)
            return torch.allclose(got, x @ w.T, atol=1e-4)

        probe("torch.ops.mkldnn._reorder_linear_weight / _linear_pointwise", linear)
    return out


@functools.cache
def require() -> None:
    """Raise (once per process) when a private internal this project uses has changed."""
    found = problems()
    if found:
        raise RuntimeError(f"private APIs used by bias_amp changed under {versions()} (tested: {TESTED}): "
                           + "; ".join(found))
