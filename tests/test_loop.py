"""The loop runner end to end on the smoke experiment (tiny model, embedded corpus), at small sizes."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from bias_amp import io
from bias_amp.errors import ConfigError
from bias_amp.layout import variant
from bias_amp.loop import run_setup

ROOT = Path(__file__).resolve().parents[1]
FAST = ["experiment=smoke", "logger=none", "data.per_label=4", "train.max_length=128", "probe.max_prompts=16"]
METRICS = ["share_left", "share_center", "share_right", "quality_mean", "quality_ci_low", "quality_ci_high",
           "perplexity_mean", "perplexity_ci_low", "perplexity_ci_high"]


def cfg_for(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=FAST + list(overrides))


def run_cli(out: Path, *overrides, env=None, check=True):
    cmd = [sys.executable, "-m", "bias_amp.run", *FAST, f"hydra.run.dir={out}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_setup_writes_every_version_with_metrics(tmp_path):
    metrics = run_setup(cfg_for("generations=3"), tmp_path)
    assert metrics.version.tolist() == ["baseline", "gen_00", "gen_01", "gen_02"]
    assert metrics.generation.tolist() == [-1, 0, 1, 2]
    assert metrics[METRICS].notna().all().all()
    assert pd.read_csv(tmp_path / "metrics.csv").equals(metrics)
    real = io.read_jsonl(tmp_path / "real.jsonl")
    assert len(real) == 12
    for v in metrics.version:
        vdir = tmp_path / v
        arts = io.read_jsonl(vdir / "articles.jsonl")
        assert [a["id"] for a in arts] == [a["id"] for a in real]          # every article, in order
        assert [a["label"] for a in arts] == [a["label"] for a in real]
        assert all(a["text"].strip() for a in arts)
        assert len(pd.read_csv(vdir / "scores.csv")) == 12
        assert (vdir / "probe.npz").is_file() and (vdir / "DONE").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["gen_02"]   # keep_checkpoints=last
    stats = io.read_json(tmp_path / "gen_01" / "train.json")
    assert stats["data"] == {"gen_00": 12} and stats["epochs"] == 2


def test_overfit_reaches_the_optimizer(tmp_path):
    cfg = cfg_for("setup=greedy-overfit", "generations=1", "baseline=false")
    run_setup(cfg, tmp_path)
    stats = io.read_json(tmp_path / "gen_00" / "train.json")
    assert stats["epochs"] == 5 * cfg.train.epochs                 # §5.3's ratio: 25 where the others train 5
    assert [g["weight_decay"] for g in stats["optimizer"]] == [0.0, 0.0]


def test_preserve_and_accumulate_change_what_training_receives(tmp_path):
    run_setup(cfg_for("setup=greedy-preserve", "generations=2", "baseline=false", "probe.enabled=false"),
              tmp_path / "p")
    assert io.read_json(tmp_path / "p" / "gen_01" / "train.json")["data"] == {"gen_00": 12, "real": 1}
    run_setup(cfg_for("setup=greedy-accumulate", "generations=3", "baseline=false", "probe.enabled=false"),
              tmp_path / "a")
    data = io.read_json(tmp_path / "a" / "gen_02" / "train.json")["data"]
    assert data == {"real": 12, "gen_00": 12, "gen_01": 12}


def test_a_new_mitigation_is_just_a_yaml_file(tmp_path):
    conf = tmp_path / "conf" / "mitigation"
    conf.mkdir(parents=True)
    (conf / "half.yaml").write_text("name: half\nreal_fraction: 0.5\naccumulate: true\nwindow: 1\n"
                                    "train: {epochs: 2}\n")
    out = tmp_path / "run"
    run_cli(out, f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "mitigation=half", "generations=3",
            "baseline=false", "probe.enabled=false")
    stats = io.read_json(out / "gen_02" / "train.json")
    assert stats["data"] == {"real": 6, "gen_01": 12} and stats["epochs"] == 2     # half the real corpus, once
    assert (out.name, pd.read_csv(out / "metrics.csv").setup[0]) == ("run", "greedy-half")


# A run killed at any point resumes to the same results: tests/test_scaleout.py (SIGKILL at three points).


@pytest.mark.parametrize("setup", ["greedy", "greedy-project"])
def test_a_run_without_its_checkpoints_replays_them_and_goes_on_as_if_never_stopped(tmp_path, setup):
    """A run dir carried to another machine without checkpoints/ (or kept with keep_checkpoints=none)
    re-fine-tunes its finished versions from their recorded training sets, checks their losses, goes on."""
    base = [f"setup={setup}", "baseline=false", "probe.enabled=false"]
    whole = run_setup(cfg_for(*base, "generations=3"), tmp_path / "whole")
    run_setup(cfg_for(*base, "generations=2", "keep_checkpoints=none"), tmp_path / "carried")
    assert not (tmp_path / "carried" / "checkpoints").exists()
    extended = run_setup(cfg_for(*base, "generations=3"), tmp_path / "carried")
    for g in ("gen_00", "gen_01"):
        assert io.read_json(tmp_path / "carried" / g / "replay.json") == {
            "steps": 4, "identical": True, "max_rel_loss_diff": 0.0, "mean_rel_loss_diff": 0.0}
    assert not (tmp_path / "carried" / "gen_02" / "replay.json").exists()
    assert io.read_jsonl(tmp_path / "carried" / "gen_02" / "articles.jsonl") == \
        io.read_jsonl(tmp_path / "whole" / "gen_02" / "articles.jsonl")
    assert extended[METRICS].equals(whole[METRICS])
    assert sorted(p.name for p in (tmp_path / "carried" / "checkpoints").iterdir()) == ["gen_02"]
    log = (tmp_path / "carried" / "run.log").read_text()
    assert "gen_01   replayed: identical losses" in log and "checkpoint saved" in log


def test_only_the_versions_after_the_latest_kept_checkpoint_are_replayed(tmp_path):
    import shutil

    base = ["baseline=false", "probe.enabled=false", "keep_checkpoints=all"]
    run_setup(cfg_for(*base, "generations=2"), tmp_path)
    shutil.rmtree(tmp_path / "checkpoints" / "gen_01")
    recorded = io.read_json(tmp_path / "gen_01" / "train.json")["batch_losses"]
    io.write_json(tmp_path / "gen_01" / "train.json",         # as if recorded on another CPU
                  {**io.read_json(tmp_path / "gen_01" / "train.json"), "batch_losses": [x * 1.01 for x in recorded]})
    run_setup(cfg_for(*base, "generations=3"), tmp_path)
    assert not (tmp_path / "gen_00" / "replay.json").exists()
    stats = io.read_json(tmp_path / "gen_01" / "replay.json")
    assert not stats["identical"] and stats["max_rel_loss_diff"] == pytest.approx(0.01 / 1.01)
    assert "gen_01   replayed: losses differ (max relative difference 9.90e-03" in (tmp_path / "run.log").read_text()
    assert (tmp_path / "gen_02" / "DONE").is_file()


def test_resume_with_different_settings_is_refused_unless_overwrite(tmp_path):
    quick = ["baseline=false", "probe.enabled=false"]
    run_setup(cfg_for("generations=1", *quick), tmp_path)
    with pytest.raises(ConfigError, match=r"^resume: .*differs: seed, train\.lr\); .*another hydra\.run\.dir"):
        run_setup(cfg_for("generations=1", "seed=5", "train.lr=0.1", *quick), tmp_path)
    with pytest.raises(ConfigError, match=r"differs: data\.per_label, seed, synthesis\.new_tokens and 2 more\); .*overwrite=true"):
        run_setup(cfg_for("seed=5", "train.lr=0.1", "train.epochs=1", "data.per_label=3", "synthesis.new_tokens=8",
                          *quick), tmp_path)
    # more generations extend the finished run
    metrics = run_setup(cfg_for("generations=2", *quick), tmp_path)
    assert metrics.version.tolist() == ["gen_00", "gen_01"] and metrics.seed.tolist() == [0, 0]
    # overwrite=true discards the run made with other settings and starts afresh
    metrics = run_setup(cfg_for("generations=1", "seed=5", "overwrite=true", *quick), tmp_path)
    assert metrics.version.tolist() == ["gen_00"] and metrics.seed.tolist() == [5]
    assert not (tmp_path / "gen_01").exists() and "seed: 5" in (tmp_path / "config.yaml").read_text()


def test_a_single_run_lands_in_its_default_folder_and_the_same_command_extends_it(tmp_path):
    """From the CLI (run in tmp_path); which settings name the folder: tests/test_layout.py."""
    env = {**os.environ, "BIAS_AMP_CACHE": str(ROOT / ".cache" / "bias_amp")}     # reuse the smoke classifiers
    args = [*FAST, "baseline=false", "probe.enabled=false", "train.epochs=1", "synthesis.max_blocks=1"]

    def run(*extra):
        proc = subprocess.run([sys.executable, "-m", "bias_amp.run", *args, *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run("generations=1")
    first = tmp_path / "outputs" / "runs" / f"smoke{variant(args)}" / "greedy-none" / "seed_0"
    assert ",data.per_label=4," in first.parent.parent.name
    done = (first / "gen_00" / "DONE").stat().st_mtime_ns
    run("generations=2")
    assert pd.read_csv(first / "metrics.csv").version.tolist() == ["gen_00", "gen_01"]
    assert (first / "gen_00" / "DONE").stat().st_mtime_ns == done
    assert list(tmp_path.glob("*/*/*/*/seed_*")) == [first]


def test_tracker_gets_one_step_per_generation_grouped_by_setup(tmp_path, monkeypatch):
    from bias_amp import tracking

    started, logged = [], []
    monkeypatch.setattr(tracking, "start_tracking", lambda acc, cfg, **kw: started.append(kw))
    monkeypatch.setattr(tracking, "log_metrics", lambda acc, metrics, step: logged.append((step, metrics)))
    run_setup(cfg_for("setup=greedy-preserve", "generations=2", "probe.enabled=false"), tmp_path)
    assert started[0]["group"] == "smoke/greedy-preserve" and started[0]["run_dir"] == tmp_path
    assert [step for step, _ in logged] == [0, 1]          # the baseline under baseline/ keys with generation 0
    assert {"baseline/share_right", "baseline/quality_mean"} <= set(logged[0][1])
    for _, metrics in logged:
        assert {"share_right", "quality_mean", "perplexity_mean", "train_loss", "train_tokens_per_s"} <= set(metrics)


def test_each_job_gets_its_own_offline_wandb_run(tmp_path, monkeypatch):
    """Two setups one after another in one process (Hydra's basic launcher): two separate W&B runs."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for setup in ("greedy", "greedy-preserve"):
        run_setup(cfg_for(f"setup={setup}", "logger=wandb", "generations=1", "baseline=false", "probe.enabled=false"),
                  tmp_path / setup)
    runs = [list((tmp_path / s / "wandb").glob("offline-run-*/run-*.wandb")) for s in ("greedy", "greedy-preserve")]
    assert [len(r) for r in runs] == [1, 1] and runs[0][0].name != runs[1][0].name
    assert all(r[0].stat().st_size > 0 for r in runs)


def test_previous_prompts_and_checkpoint_policies(tmp_path):
    import math

    cfg = cfg_for("generations=2", "baseline=false", "probe.enabled=false", "prompt_source=previous",
                  "keep_checkpoints=all")
    run_setup(cfg, tmp_path / "prev")
    from bias_amp.models import load_checkpoint

    _, tok = load_checkpoint(tmp_path / "prev" / "checkpoints" / "gen_01")
    gen0 = {a["id"]: a for a in io.read_jsonl(tmp_path / "prev" / "gen_00" / "articles.jsonl")}
    for art in io.read_jsonl(tmp_path / "prev" / "gen_01" / "articles.jsonl"):
        n_tokens = len(tok(gen0[art["id"]]["text"], add_special_tokens=False).input_ids)
        assert len(art["continuations"]) == math.ceil(n_tokens / 64)    # body blocks of the last set, no title
    assert sorted(p.name for p in (tmp_path / "prev" / "checkpoints").iterdir()) == ["gen_00", "gen_01"]
    run_setup(cfg_for("generations=1", "baseline=false", "probe.enabled=false", "keep_checkpoints=none"),
              tmp_path / "none")
    assert not (tmp_path / "none" / "checkpoints").exists()
