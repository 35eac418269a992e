"""Experiment tracking: W&B through Accelerate's tracker API, and `run.log` (per-stage wall times) in
the run dir. W&B never fails a run: without a reachable server it logs offline, and any tracker error
degrades to a warning. A run dir keeps one W&B run: its id is stored in `wandb_id` and every resume or
extension logs into that same run (offline: one `wandb/offline-run-*-<id>` folder per job, all synced
into the one run by `wandb sync`)."""

from __future__ import annotations

import contextlib
import logging
import netrc
import numbers
import os
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # accelerate (and torch) load only when a run needs them
    from accelerate import Accelerator

log = logging.getLogger(__name__)

WANDB_ID = "wandb_id"    # the run dir's W&B run id, written when its first W&B run opens
RUN_LOG = "run.log"      # per-stage wall times; under Hydra also the job log (named after the app, bias_amp.run)
ROW_KEYS = ("setup", "seed", "version", "generation")   # a metrics row's identity: the run config / the step
MODES = ("auto", "online", "offline", "disabled")


def validate(logger_cfg: DictConfig | None) -> None:
    """Check a `logger` config (before any model loads): a typo must not silently turn tracking off."""
    from bias_amp.errors import check

    if logger_cfg is None:
        return
    check(logger_cfg.get("name") in ("wandb", "none"), "logger", "wandb or none", logger_cfg.get("name"))
    if logger_cfg.name == "wandb":
        check(logger_cfg.get("mode", "auto") in MODES, "logger.mode", f"one of {list(MODES)}", logger_cfg.get("mode"))
        check(isinstance(logger_cfg.get("project"), str) and logger_cfg.project.strip() != "", "logger.project",
              "a W&B project name", logger_cfg.get("project"))


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


def run_id(run_dir: Path) -> str:
    """The run dir's W&B id: read from `wandb_id`, or created (random, written atomically) on first use."""
    from bias_amp import io

    path = Path(run_dir) / WANDB_ID
    if path.is_file() and (rid := path.read_text(encoding="utf-8").strip()):
        return rid
    rid = secrets.token_hex(8)
    io.write_text(path, rid + "\n")
    return rid


def start_tracking(accelerator: Accelerator, logger_cfg: DictConfig | None, *, name: str, group: str,
                   config: DictConfig | dict, run_dir: Path, resume: bool = False) -> None:
    """Open one tracker run (W&B: project/group/name, files under run_dir/wandb). `resume`: the run dir's
    one W&B run (id in `run_dir/wandb_id`), continued by every later job; else a new run each call."""
    if logger_cfg is None or logger_cfg.get("name") != "wandb":
        return
    mode = wandb_mode(logger_cfg.get("mode", "auto"))
    if mode == "disabled":
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config
    init = {"group": group, "name": name, "dir": str(run_dir), "job_type": logger_cfg.get("job_type", "run"),
            "mode": mode, "settings": {"silent": True}}
    if resume:
        init.update(id=run_id(run_dir), resume="allow")
    if logger_cfg.get("entity"):
        init["entity"] = logger_cfg.entity
    try:
        accelerator.init_trackers(logger_cfg.project, config=cfg, init_kwargs={"wandb": init})
    except Exception as err:  # a tracker must never fail a run
        log.warning("W&B unavailable (%s); continuing without tracking", str(err).splitlines()[0])
        accelerator.trackers = []


def study_name(cfg: DictConfig) -> str:
    """The sweep folder's name, `<experiment_name><variant>` (e.g. `smoke+data.per_label=5`): under Hydra the
    variant comes from the command line's overrides (layout.variant), so runs of other settings never share
    a W&B group."""
    from hydra.core.hydra_config import HydraConfig

    from bias_amp.layout import variant

    return cfg.experiment_name + (variant(HydraConfig.get().overrides.task) if HydraConfig.initialized() else "")


def start_run(accelerator: Accelerator, cfg: DictConfig, run_dir: Path, todo: list[str]) -> None:
    """A loop job that will compute the versions `todo`: note them in run.log and open (or continue) the
    run dir's one W&B run, grouped `<study>/<setup_name>` (study_name), named `<setup_name>/seed_<seed>`."""
    from bias_amp import precision  # torch: only once a run starts

    note(run_dir, f"start    {cfg.setup_name} seed {cfg.seed}: {' '.join(todo)}")
    note(run_dir, f"machine  {precision.machine(accelerator.device)}, precision {cfg.precision}")
    start_tracking(accelerator, cfg.logger, name=f"{cfg.setup_name}/seed_{cfg.seed}",
                   group=f"{study_name(cfg)}/{cfg.setup_name}", config=cfg, run_dir=run_dir, resume=True)


def log_metrics(accelerator: Accelerator, metrics: dict, step: int) -> None:
    try:
        accelerator.log({k: v for k, v in metrics.items() if v is not None}, step=step)
    except Exception as err:
        log.warning("tracker log failed (%s)", err)


def log_version(accelerator: Accelerator, row: dict, run_dir: Path) -> None:
    """One version's metrics row: numbers at step = generation; text and flags (precision, smoke_instruments)
    go to the run config. The baseline is logged with generation 0 (step 0, under `baseline/` keys), read
    back from its metrics.json: W&B drops a step below the current one, so a run resumed after logging the
    baseline alone at step 0 could never log generation 0."""
    from bias_amp.io import read_json
    from bias_amp.layout import version_name

    g = int(row["generation"])
    if g < 0:
        return
    scalars, labels = _split(row)
    baseline = Path(run_dir) / version_name(-1) / "metrics.json"
    if g == 0 and baseline.is_file():
        scalars.update({f"baseline/{k}": v for k, v in _split(read_json(baseline))[0].items()})
    if labels:
        try:
            for tracker in accelerator.trackers:
                tracker.store_init_configuration(labels)
        except Exception as err:
            log.warning("tracker config update failed (%s)", err)
    log_metrics(accelerator, scalars, step=g)


def _split(row: dict) -> tuple[dict, dict]:
    """(numbers, text and flags) of a metrics row, without its identity keys and missing values."""
    values = {k: v.item() if hasattr(v, "item") else v for k, v in row.items() if k not in ROW_KEYS and v is not None}
    scalars = {k: v for k, v in values.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}
    return scalars, {k: v for k, v in values.items() if k not in scalars}


@contextlib.contextmanager
def stage(run_dir: Path, version: str, name: str, enabled: bool = True) -> Iterator[None]:
    """Time one stage of one version (train, synthesis, scoring, probe) into `run_dir/run.log`; a stage
    that raises is logged as failed. One appended line each (append is atomic enough for a log). What the
    stage freed is collected (memory.trim: under memory=low also given back to the OS)."""
    start, status = time.perf_counter(), "failed"
    try:
        yield
        status = "done"
    finally:
        from bias_amp import memory

        memory.trim()
        if enabled:
            note(run_dir, f"{version:<8} {name:<10} {time.perf_counter() - start:8.1f}s {status}")


def note(run_dir: Path, text: str) -> None:
    """One line in the log and in `run_dir/run.log`. Under Hydra that file is already the job's log (a
    handler of the root logger writes it, same format); otherwise the line is appended with a time stamp."""
    log.info(text)
    path = (Path(run_dir) / RUN_LOG).resolve()
    if any(Path(getattr(h, "baseFilename", "")) == path for h in logging.getLogger().handlers):
        return
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{stamp} {text}\n")


def finish(accelerator: Accelerator | None) -> None:
    """End tracker runs and reset Accelerate's singletons, so the next multirun job starts clean. A W&B run's
    files are complete on return: `run.finish()` leaves the writing to W&B's service process, which is only
    waited for at exit (an atexit hook, unreliable in a joblib launcher's worker), so it is torn down here."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    if accelerator is not None:
        runs = [t.run for t in getattr(accelerator, "trackers", []) if t.name == "wandb" and getattr(t, "run", None)]
        try:
            accelerator.end_training()
            if runs:
                import wandb

                wandb.teardown()
        except Exception as err:
            log.warning("tracker finish failed (%s)", err)
        for run in runs:
            if run.settings.mode == "offline":
                log.info("W&B run %s logged offline; upload it with: wandb sync %s", run.id, run.settings.sync_dir)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()
