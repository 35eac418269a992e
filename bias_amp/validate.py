"""Everything about a run that can be wrong is checked here, once, before any model loads; the functions
that run afterwards trust the config."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bias_amp import data, hub, io, mitigation, models, precision, probes, projection, synth, tracking, train
from bias_amp.errors import ConfigError, check, check_range
from bias_amp.layout import RESUMABLE
from bias_amp.metrics import scorer

# (synthesis.batch_size is not in layout.RESUMABLE: nucleus sampling draws per batch.)
SHOWN_KEYS = 3           # a refused resume names at most this many differing keys
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
    for key in ("synthesis.packed_weights", "overwrite"):
        check(isinstance(OmegaConf.select(cfg, key), bool), key, "true or false", OmegaConf.select(cfg, key))
    train.validate(cfg.train)
    mitigation.validate(cfg.mitigation, list(cfg.train.keys()), leaning=cfg.get("leaning"))
    train.validate(OmegaConf.merge(cfg.train, cfg.mitigation.train), key="mitigation.train")
    projection.validate(cfg)
    synth.validate_decoding(dict(cfg.decoding.kwargs))
    models.validate(cfg.model)
    precision.validate_config(cfg)
    scorer.validate(cfg)                                # leaning, quality, perplexity
    tracking.validate(cfg.get("logger"))
    if cfg.probe.enabled:
        probes.validate(cfg.probe)


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


def differing(old: DictConfig, new: DictConfig) -> list[str]:
    """Keys whose results-affecting values differ; changed values first, then keys only one side has."""
    old, new = comparable(old), comparable(new)
    both = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    return both + sorted(old.keys() ^ new.keys())


def check_output_dir(cfg: DictConfig, out: Path, write: bool = True) -> None:
    """Writable, and either holding no finished version or made with the same settings (then it resumes);
    overwrite=true empties a run dir made with other settings. config.yaml is (re)written last."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError("hydra.run.dir", "a writable output directory", f"{out} ({err.strerror})") from None
    saved = out / "config.yaml"
    finished = any(out.glob("*/DONE"))            # a dir without a finished version has nothing to keep
    diff = differing(OmegaConf.load(saved), cfg) if finished and saved.is_file() else []
    if diff and not cfg.overwrite:
        more = f" and {len(diff) - SHOWN_KEYS} more" if len(diff) > SHOWN_KEYS else ""
        raise ConfigError("resume", f"the settings of the run already in {out} (differs: "
                          f"{', '.join(diff[:SHOWN_KEYS])}{more}); to start fresh give another hydra.run.dir / "
                          "hydra.sweep.dir, or overwrite=true to discard that run", None)
    if diff and write:
        for p in out.iterdir():                   # keep Hydra's .hydra/ and the log of this very run
            if p.name != ".hydra" and p.suffix != ".log":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    if write:
        io.write_text(saved, OmegaConf.to_yaml(cfg, resolve=True))


def validate_run(cfg: DictConfig, out: Path, write: bool = True) -> list[data.Article]:
    """The config, the corpus (read and checked article by article: the one data check), the hub-named
    models, then the output dir; returns the corpus. config.yaml is written only once all of these passed."""
    validate_config(cfg)
    real = data.load_corpus(cfg.data, seed=cfg.seed)
    hub.check_models(cfg)
    check_output_dir(cfg, Path(out), write)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return real
