"""Decoding kwargs (conf/decoding/*.yaml `kwargs`): validation, and the plan that picks the fast loop or HF generate."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from dataclasses import dataclass

from bias_amp import compat
from bias_amp.errors import ConfigError, check, check_range

# Controlled by synthesis.block_tokens / new_tokens, or by the one-continuation-per-block contract.
_RESERVED = {"max_new_tokens": "unset (synthesis.new_tokens sets the continuation length)",
             "max_length": "unset (synthesis.new_tokens sets the continuation length)",
             "num_return_sequences": "unset (one continuation per block)",
             "return_dict_in_generate": "unset (synthesize returns text)"}

# Settings the fast loop reproduces, or that cannot change a greedy/sampled continuation.
_HANDLED = {"do_sample", "num_beams", "temperature", "top_k", "top_p", "max_new_tokens", "max_length",
            "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "use_cache",
            "transformers_version", "early_stopping", "length_penalty", "compile_config", "disable_compile",
            "cache_config", "max_cache_len", "num_assistant_tokens", "num_assistant_tokens_schedule",
            "assistant_confidence_threshold", "assistant_lookbehind", "target_lookbehind", "output_attentions",
            "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate",
            "num_return_sequences", "prefill_chunk_size", "generation_kwargs"}
# Settings whose value here means "off"; any other value sends synthesis to HF generate.
_NEUTRAL = {"min_length": 0, "min_new_tokens": 0, "typical_p": 1.0, "repetition_penalty": 1.0,
            "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
            "remove_invalid_values": False, "renormalize_logits": False, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
            "num_beam_groups": 1, "diversity_penalty": 0.0, "guidance_scale": 1.0}


def generate_keys() -> frozenset[str]:
    """Keyword names transformers' GenerationConfig accepts."""
    from transformers import GenerationConfig

    return frozenset(k for k in vars(GenerationConfig()) if not k.startswith("_"))


def as_dict(kwargs) -> dict:
    if kwargs is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(kwargs, DictConfig):
            return OmegaConf.to_container(kwargs, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    check(isinstance(kwargs, Mapping), "decoding.kwargs", "a mapping of generate() arguments", type(kwargs).__name__)
    return dict(kwargs)


class Decoding(dict):
    """Decoding kwargs that have been validated: synthesis functions take them as they are (no second check).
    `validate_decoding` returns one; the loop wraps its config's kwargs, which `validate_run` checked."""


def checked(kwargs) -> Decoding:
    """`kwargs` as a validated `Decoding` (validated here unless it already is one)."""
    return kwargs if isinstance(kwargs, Decoding) else validate_decoding(kwargs)


def validate_decoding(kwargs) -> Decoding:
    """Raise ConfigError (`decoding.kwargs.<key>: ...`) for a kwarg generate() would reject or misuse."""
    kwargs = as_dict(kwargs)
    known = generate_keys()
    for key, value in kwargs.items():
        name = f"decoding.kwargs.{key}"
        if key not in known:
            raise ConfigError(name, "a generate() argument")
        if key in _RESERVED:
            raise ConfigError(name, _RESERVED[key], value)
    if "num_beams" in kwargs:
        check_range(kwargs["num_beams"], "decoding.kwargs.num_beams", lo=1, integer=True)
    if "top_p" in kwargs:
        check_range(kwargs["top_p"], "decoding.kwargs.top_p", lo=0, hi=1, lo_open=True)
    if "temperature" in kwargs:
        check_range(kwargs["temperature"], "decoding.kwargs.temperature", lo=0, lo_open=True)
    if "top_k" in kwargs and kwargs["top_k"] is not None:
        check_range(kwargs["top_k"], "decoding.kwargs.top_k", lo=0, integer=True)
    if "do_sample" in kwargs:
        check(isinstance(kwargs["do_sample"], bool), "decoding.kwargs.do_sample", "true or false", kwargs["do_sample"])
    return Decoding(kwargs)


@dataclass(frozen=True)
class Plan:
    """How to decode: `fast` (own loops: greedy, sampling, or beam search when `beams` > 1) or HF generate; the
    sampling warpers; beam search's length penalty and early stopping."""

    fast: bool
    sample: bool
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    eos: tuple[int, ...] = ()
    pad: int = 0
    why_hf: str = ""
    beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False


def merged_config(model, kwargs: dict):
    """The GenerationConfig generate() would use: kwargs > model.generation_config > global defaults."""
    from transformers import GenerationConfig

    gc = GenerationConfig()
    base = getattr(model, "generation_config", None)
    if base is not None:
        gc.update(**base.to_dict(), defaults_only=True, allow_custom_entries=True)
    gc.update(**compat.default_generation_params(), defaults_only=True)
    unused = gc.update(**copy.deepcopy(kwargs))
    return gc, unused


def plan(model, kwargs: dict, pad_id: int | None) -> Plan:
    """Fast loops when the merged config asks for plain greedy/sampling (temperature, top-k, top-p) or beam search
    and the model is a decoder-only causal LM with full attention; HF generate otherwise (penalties...)."""
    gc, unused = merged_config(model, kwargs)
    eos = gc.eos_token_id
    eos = () if eos is None else tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)
    pad = gc.pad_token_id if gc.pad_token_id is not None else pad_id if pad_id is not None else (eos or (0,))[0]
    common = dict(eos=eos, pad=int(pad), sample=bool(gc.do_sample))
    reason = _hf_reason(model, gc, unused)
    if reason:
        return Plan(fast=False, why_hf=reason, **common)
    if (gc.num_beams or 1) > 1:
        return Plan(fast=True, beams=int(gc.num_beams), length_penalty=float(gc.length_penalty),
                    early_stopping=gc.early_stopping, **common)
    return Plan(fast=True, temperature=float(gc.temperature or 1.0), top_k=int(gc.top_k or 0),
                top_p=float(1.0 if gc.top_p is None else gc.top_p), **common)


def _hf_reason(model, gc, unused: dict) -> str:
    if unused:
        return f"model kwargs {sorted(unused)}"
    if (gc.num_beams or 1) > 1 and gc.do_sample:
        return f"num_beams={gc.num_beams} with do_sample=True (beam sampling)"
    for key, value in vars(gc).items():
        if key.startswith("_") or key in _HANDLED or value is None:
            continue
        if key in _NEUTRAL and value == _NEUTRAL[key]:
            continue
        return f"{key}={value!r}"
    return fast_loop_problem(model)


def fast_loop_problem(model) -> str:
    """Why the fast loop cannot run this model ('' when it can)."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder model"
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    types = set(getattr(text, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"} or getattr(text, "sliding_window", None) or getattr(text, "use_sliding_window", 0):
        return f"attention layer types {sorted(types)} / sliding window"
    params = inspect.signature(model.forward).parameters
    if "position_ids" not in params or not ({"cache", "past_key_values"} & params.keys()):
        return "forward() takes no position_ids / cache"
    return ""

