"""What a W&B dashboard shows after `wandb sync`, read back from the offline run files of a small real run;
run.log's per-stage wall times; probe progress."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bias_amp import precision, tracking
from bias_amp.layout import run_dir
from bias_amp.loop import run_setup

ROOT = Path(__file__).resolve().parents[1]
TINY = ["experiment=smoke", "logger=wandb", "logger.mode=offline", "data.per_label=2", "train.max_length=64",
        "synthesis.new_tokens=8", "synthesis.max_blocks=1", "probe.max_prompts=8"]


def cfg_for(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=TINY + list(overrides))


def run_tracked(caplog, out: Path, *overrides) -> pd.DataFrame:
    """run_setup, asserting the tracker never degraded to a warning (init, log or finish failing)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bias_amp.tracking"):
        metrics = run_setup(cfg_for(*overrides), out)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    return metrics


def records(path: Path):
    """The protobuf records of a `.wandb` transaction log (LevelDB log format: 7-byte file header, 32 KiB
    blocks, each record chunk = crc32 (4) + length (2) + type (1: full, 2: first, 3: middle, 4: last))."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw, block = path.read_bytes(), 32768
    assert raw[:4] == b":W&B", raw[:7]
    pos, buf = 7, b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:               # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        buf, pos = buf + raw[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def offline_run(path: Path) -> dict:
    """id, group, name, config and {step: {key: value}} history of one offline run folder's log."""
    run = {"config": {}, "history": {}}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.update(id=rec.run.run_id, group=rec.run.run_group, name=rec.run.display_name,
                       project=rec.run.project)
            run["config"].update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in rec.history.item}
            step = items.pop("_step")
            assert step > max(run["history"], default=-1), "W&B drops a step that is not above the last one"
            run["history"][step] = {k: v for k, v in items.items() if not k.startswith("_")}
    logs = path.parent / "logs" / "debug-internal.log"
    assert "id" in run, f"no run record in {path}: {logs.read_text()[-2000:] if logs.is_file() else 'no log'}"
    return run


def offline_runs(out: Path) -> list[dict]:
    """Every offline run folder under the run dir, oldest first (what `wandb sync` uploads, in order)."""
    return [offline_run(p) for p in sorted(out.glob("wandb/offline-run-*/run-*.wandb"))]


def test_one_offline_wandb_run_per_run_dir_continued_when_resumed_or_extended(tmp_path, caplog, monkeypatch):
    from bias_amp import train

    pytest.importorskip("wandb")
    out = run_dir(tmp_path / "sweep", "greedy-none", 0)
    finetune = train.finetune

    def preempted(*args, **kwargs):
        raise RuntimeError("preempted")
    monkeypatch.setattr(train, "finetune", preempted)                   # killed while training gen_00
    with pytest.raises(RuntimeError, match="preempted"):
        run_tracked(caplog, out, "setup=greedy", "generations=2")
    [killed] = offline_runs(out)
    assert killed["id"] == (out / "wandb_id").read_text().strip() and killed["history"] == {}

    monkeypatch.setattr(train, "finetune", finetune)
    metrics = run_tracked(caplog, out, "setup=greedy", "generations=2")   # resumed: the same W&B run
    run = offline_runs(out)[1]
    assert run["id"] == killed["id"]
    assert (run["project"], run["group"], run["name"]) == ("bias-amp", "smoke/greedy-none", "greedy-none/seed_0")
    resolved = OmegaConf.to_container(OmegaConf.load(out / "config.yaml"), resolve=True)
    assert {k: run["config"][k] for k in resolved} == resolved           # the resolved config, attached
    assert sorted(run["history"]) == [0, 1]                                # step = generation
    for row in metrics.to_dict("records"):
        g, prefix = row["generation"], "baseline/" if row["generation"] < 0 else ""
        logged = run["history"][max(g, 0)]                                # the baseline with generation 0
        for key in ("share_right", "quality_mean", "perplexity_mean"):
            assert logged[prefix + key] == pytest.approx(row[key])
        for key, value in row.items():                                   # every other column too (c_t, …)
            if key in tracking.ROW_KEYS or pd.isna(value):
                continue
            if isinstance(value, str) or isinstance(value, bool):        # precision, smoke_instruments
                assert run["config"][key] == value
            else:
                assert logged[prefix + key] == pytest.approx(value), key
    assert "train_loss" in run["history"][1] and "baseline/train_loss" not in run["history"][0]

    run_tracked(caplog, out, "setup=greedy", "generations=3")            # extended: the same W&B run
    assert offline_runs(out)[:2] == [killed, run]
    extended = offline_runs(out)[2]
    assert extended["id"] == run["id"] and extended["group"] == run["group"]
    assert sorted(extended["history"]) == [2] and extended["config"]["generations"] == 3
    assert extended["history"][2]["share_right"] == pytest.approx(pd.read_csv(out / "metrics.csv").share_right.iloc[-1])

    run_tracked(caplog, out, "setup=greedy", "generations=3")            # nothing to do: no new run
    assert len(offline_runs(out)) == 3

    other = run_dir(tmp_path / "sweep", "greedy-none", 1)                  # another seed: its own run, same group
    run_tracked(caplog, other, "setup=greedy", "seed=1", "generations=1", "baseline=false", "probe.enabled=false")
    [seed1] = offline_runs(other)
    assert (seed1["group"], seed1["name"]) == ("smoke/greedy-none", "greedy-none/seed_1")
    assert seed1["id"] != run["id"] and sorted(seed1["history"]) == [0]

    log = [line.split()[1:] for line in (out / "run.log").read_text().splitlines()]
    assert [line[1:] for line in log if line[0] == "start"] == [
        ["greedy-none", "seed", "0:", "baseline", "gen_00", "gen_01"], ["greedy-none", "seed", "0:", "gen_00", "gen_01"],
        ["greedy-none", "seed", "0:", "gen_02"]]
    machine = [" ".join(line[1:]) for line in log if line[0] == "machine"]   # one line after each start
    assert machine == [f"{precision.machine('cpu')}, precision fp32"] * 3
    stages = [[line[0], line[1], line[3]] for line in log if line[0] not in ("start", "machine") and line[1] != "projection"]
    done = [[v, s, "done"] for v, ss in [("baseline", ("synthesis", "scoring", "probe"))] for s in ss]
    done += [[f"gen_0{g}", s, "done"] for g in range(3) for s in ("train", "synthesis", "scoring", "probe", "checkpoint")]
    assert stages == done[:3] + [["gen_00", "train", "failed"]] + done[3:]    # (projection: c_t's, when measured)
    assert all(float(line[2].rstrip("s")) >= 0 for line in log if line[0] not in ("start", "machine"))


def test_group_names_the_sweep_folder_so_other_settings_never_share_it():
    from hydra.core.hydra_config import HydraConfig

    import bias_amp.run  # noqa: F401  (registers the resolver of the sweep folder's name)

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke", "setup=beam", "data.per_label=5", "logger=none"],
                      return_hydra_config=True)
    try:
        HydraConfig.instance().set_config(cfg)
        assert tracking.study_name(cfg) == "smoke+data.per_label=5" == Path(cfg.hydra.sweep.dir).name
    finally:
        HydraConfig.instance().cfg = None
    assert tracking.study_name(cfg) == "smoke"                           # called without Hydra


def test_no_tracker_run_for_a_start_that_fails(tmp_path, monkeypatch):
    from bias_amp import models
    from bias_amp.errors import ConfigError

    pytest.importorskip("wandb")
    with pytest.raises(ConfigError):                                     # refused by validation
        run_setup(cfg_for("generations=0"), tmp_path / "a")

    def broken(*args, **kwargs):
        raise OSError("truncated safetensors file")
    monkeypatch.setattr(models, "load_lm", broken)                      # fails after validation
    with pytest.raises(OSError, match="truncated"):
        run_setup(cfg_for(), tmp_path / "b")
    for out in (tmp_path / "a", tmp_path / "b"):
        assert not (out / "wandb").exists() and not (out / tracking.WANDB_ID).exists()
        assert not (out / tracking.RUN_LOG).exists()


@pytest.mark.parametrize("override, key", [("logger.mode=ofline", "logger.mode"), ("logger.project=", "logger.project")])
def test_a_bad_logger_setting_is_refused_before_any_model_loads(tmp_path, monkeypatch, override, key):
    from bias_amp import models
    from bias_amp.errors import ConfigError

    monkeypatch.setattr(models, "load_lm", lambda *a, **k: pytest.fail("a model loaded"))
    with pytest.raises(ConfigError) as err:
        run_setup(cfg_for(override), tmp_path)
    assert str(err.value).startswith(key)


def test_a_failed_stage_is_logged_as_failed(tmp_path):
    with pytest.raises(RuntimeError), tracking.stage(tmp_path, "gen_03", "train"):
        raise RuntimeError("out of memory")
    with tracking.stage(tmp_path, "gen_03", "synthesis", enabled=False):
        pass
    [line] = (tmp_path / tracking.RUN_LOG).read_text().splitlines()
    assert line.split()[1:3] == ["gen_03", "train"] and line.endswith("failed")


def test_under_hydra_stage_lines_go_through_the_job_log_once(tmp_path):
    """Hydra's job log of `python -m bias_amp.run` is the run dir's run.log: one line per stage, its format."""
    handler = logging.FileHandler(tmp_path / tracking.RUN_LOG)
    handler.setFormatter(logging.Formatter("[%(name)s][%(levelname)s] - %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with tracking.stage(tmp_path, "gen_00", "train"):
            pass
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
    [line] = (tmp_path / tracking.RUN_LOG).read_text().splitlines()
    assert line.startswith("[bias_amp.tracking][INFO] - gen_00   train ") and line.endswith("s done")


def test_probe_shows_progress_when_named(tiny_model, tiny_tokenizer, capsys):
    from bias_amp import probes

    cfg = {"weight": "out_proj_mean", "max_prompts": 8, "batch_size": 2, "max_length": 32}
    prompts = ["The senate passed the bill.", "Critics said the plan favours the wealthy.", "Rates stay high."]
    probes.probe(tiny_model, tiny_tokenizer, prompts, cfg)
    assert "probe" not in capsys.readouterr().err
    probes.probe(tiny_model, tiny_tokenizer, prompts, cfg, desc="greedy gen_00 probe")
    assert "greedy gen_00 probe" in capsys.readouterr().err
