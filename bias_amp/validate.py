"""Everything about a run that can be wrong is checked here, before any model loads."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bias_amp import data, io, mitigation, models, synth, train
from bias_amp.errors import ConfigError, check, check_range

# Settings that may change between a run and its resume without changing results.
# (synthesis.batch_size is not one: nucleus sampling draws per batch.)
RESUMABLE = ("logger", "paths", "keep_checkpoints", "generations", "synthesis.threads", "experiment_name")
CHOICES = {"init_from": ("previous", "base"), "prompt_source": ("real", "previous"),
           "keep_checkpoints": ("last", "all", "none")}


def validate_config(cfg: DictConfig) -> None:
    check_range(cfg.generations, "generations", 1, integer=True)
    check_range(cfg.seed, "seed", 0, integer=True)
    for key, allowed in CHOICES.items():
        check(cfg[key] in allowed, key, f"one of {list(allowed)}", cfg[key])
    for key in ("block_tokens", "new_tokens", "batch_size"):
        check_range(cfg.synthesis[key], f"synthesis.{key}", 1, integer=True)
    for key in ("threads", "max_articles", "max_blocks"):       # optional caps
        if cfg.synthesis[key] is not None:
            check_range(cfg.synthesis[key], f"synthesis.{key}", 1, integer=True)
    check(isinstance(cfg.synthesis.packed_weights, bool), "synthesis.packed_weights", "true or false",
          cfg.synthesis.packed_weights)
    train.validate(cfg.train)
    mitigation.validate(cfg.mitigation, list(cfg.train.keys()), leaning=cfg.get("leaning"))
    train.validate(OmegaConf.merge(cfg.train, cfg.mitigation.train), key="mitigation.train")
    synth.validate_decoding(dict(cfg.decoding.kwargs))
    models.validate(cfg.model)
    data.validate(cfg.data)


def comparable(cfg: DictConfig) -> dict:
    flat = {}

    def walk(node, prefix=""):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if any(key == r or key.startswith(r + ".") for r in RESUMABLE):
                continue
            walk(v, key + ".") if isinstance(v, dict) else flat.__setitem__(key, v)

    walk(OmegaConf.to_container(cfg, resolve=True))
    return flat


def check_output_dir(cfg: DictConfig, out: Path, write: bool = True) -> None:
    """Writable, and either new or made by a run with the same settings (then it resumes)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError("hydra.run.dir", "a writable output directory", f"{out} ({err.strerror})") from None
    saved = out / "config.yaml"
    if saved.is_file():
        old, new = comparable(OmegaConf.load(saved)), comparable(cfg)
        diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if diff:
            raise ConfigError("resume", f"the settings of the run already in {out} (differs: {', '.join(diff)})",
                              None)
    if write:
        io.write_text(saved, OmegaConf.to_yaml(cfg, resolve=True))


def validate_run(cfg: DictConfig, out: Path, write: bool = True) -> None:
    validate_config(cfg)
    check_output_dir(cfg, Path(out), write)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
