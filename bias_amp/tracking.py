"""Experiment tracking through Accelerate's tracker API. W&B never fails a run: without a
reachable server it logs offline, and any tracker error degrades to a warning."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # accelerate (and torch) load only when a run needs them
    from accelerate import Accelerator

log = logging.getLogger(__name__)


def wandb_mode(requested: str) -> str:
    """`auto` -> online when a key and the server are there, else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        has_key = bool(os.environ.get("WANDB_API_KEY")) or bool(netrc.netrc().authenticators(host))
    except (OSError, netrc.NetrcParseError):
        has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        return "offline"
    try:
        socket.create_connection((host, 443), timeout=2).close()
        return "online"
    except OSError:
        return "offline"


def make_accelerator(logger_cfg: DictConfig | None, **kwargs) -> Accelerator:
    from accelerate import Accelerator

    use_wandb = logger_cfg is not None and logger_cfg.get("name") == "wandb"
    return Accelerator(log_with="wandb" if use_wandb else None, **kwargs)


def start_tracking(accelerator: Accelerator, logger_cfg: DictConfig | None, *, name: str, group: str,
                   config: DictConfig | dict, run_dir: Path) -> None:
    """Open one tracker run (W&B: project/group/name, files under run_dir)."""
    if logger_cfg is None or logger_cfg.get("name") != "wandb":
        return
    os.environ["WANDB_MODE"] = wandb_mode(logger_cfg.get("mode", "auto"))
    os.environ.setdefault("WANDB_SILENT", "true")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config
    init = {"group": group, "name": name, "dir": str(run_dir), "job_type": logger_cfg.get("job_type", "run")}
    if logger_cfg.get("entity"):
        init["entity"] = logger_cfg.entity
    try:
        accelerator.init_trackers(logger_cfg.project, config=cfg, init_kwargs={"wandb": init})
    except Exception as err:  # a tracker must never fail a run
        log.warning("W&B unavailable (%s); continuing without tracking", str(err).splitlines()[0])
        accelerator.trackers = []


def log_metrics(accelerator: Accelerator, metrics: dict, step: int) -> None:
    try:
        accelerator.log({k: v for k, v in metrics.items() if v is not None}, step=step)
    except Exception as err:
        log.warning("tracker log failed (%s)", err)


def finish(accelerator: Accelerator | None) -> None:
    """End tracker runs and reset Accelerate's singletons, so the next multirun job starts clean."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    if accelerator is not None:
        try:
            accelerator.end_training()
        except Exception as err:
            log.warning("tracker finish failed (%s)", err)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()
