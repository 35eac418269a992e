"""Scale-out and crash safety: Accelerate multi-process, Hydra launchers, SIGKILL at any point."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from bias_amp import io

ROOT = Path(__file__).resolve().parents[1]
FAST = ["experiment=smoke", "logger=none", "data.per_label=3", "train.max_length=96", "probe.max_prompts=8",
        "synthesis.new_tokens=16"]
VOLATILE = ["train_tokens_per_s", "synth_tokens_per_s"]


def run(args, env=None, check=True, prefix=(sys.executable, "-m", "bias_amp.run")):
    proc = subprocess.run([*prefix, *FAST, *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def same_results(a: Path, b: Path, versions):
    ma, mb = (pd.read_csv(d / "metrics.csv").drop(columns=VOLATILE) for d in (a, b))
    pd.testing.assert_frame_equal(ma, mb, check_exact=False, rtol=1e-6)
    for v in versions:
        assert io.read_jsonl(a / v / "articles.jsonl") == io.read_jsonl(b / v / "articles.jsonl"), v


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "greedy-none"
    run([f"hydra.run.dir={out}", "generations=3"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train", "synthesis", "metrics"])
def test_sigkill_then_rerun_completes_with_the_same_results(tmp_path, reference, stage):
    out = tmp_path / "greedy-none"
    killed = run([f"hydra.run.dir={out}", "generations=3"], env={"BIAS_AMP_KILL_AT": f"gen_01:{stage}"},
                 check=False)
    assert killed.returncode == -9
    assert (out / "gen_00" / "DONE").is_file() and not (out / "gen_01" / "DONE").exists()
    finished = (out / "gen_00" / "DONE").stat().st_mtime_ns
    assert not list(out.rglob("*.tmp"))                       # nothing half-written is left as a real file
    run([f"hydra.run.dir={out}", "generations=3"])
    assert (out / "gen_00" / "DONE").stat().st_mtime_ns == finished   # gen_00 was not redone
    same_results(reference, out, ["baseline", "gen_00", "gen_01", "gen_02"])


@pytest.mark.slow
def test_two_processes_give_the_single_process_artifacts(tmp_path, reference):
    out = tmp_path / "greedy-none"
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "-m", "bias_amp.run"]
    run([f"hydra.run.dir={out}", "generations=3"], prefix=accelerate)
    same_results(reference, out, ["baseline", "gen_00", "gen_01", "gen_02"])


@pytest.mark.slow
def test_joblib_launcher_runs_setups_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    run(["setup=greedy,greedy-preserve", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
         f"hydra.sweep.dir={sweep}", "generations=2", "baseline=false"],
        prefix=(sys.executable, "-m", "bias_amp.run", "--multirun"))
    for setup in ("greedy-none", "greedy-preserve"):
        m = pd.read_csv(sweep / setup / "seed_0" / "metrics.csv")
        assert m.version.tolist() == ["gen_00", "gen_01"] and (m.setup == setup).all()


def test_slurm_launcher_config_composes_for_the_paper_sweep():
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", ["experiment=paper", "hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.timeout_min >= 600 and launcher.mem_gb >= 32
    assert launcher.array_parallelism == 6


def test_unwritable_output_dir_is_a_one_line_error(tmp_path):
    from test_loop import cfg_for

    from bias_amp.errors import ConfigError
    from bias_amp.loop import run_setup

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"^hydra\.run\.dir: expected a writable output directory, got .*file/run"):
        run_setup(cfg_for("generations=1"), blocker / "run")


def test_write_errors_end_the_cli_with_one_line(capsys):
    from bias_amp.cli import one_line_errors

    with pytest.raises(SystemExit) as exit_info, one_line_errors():
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/gen_03/articles.jsonl")
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 3 and len(err) == 1
    assert err[0].startswith("error: cannot write /runs/gen_03/articles.jsonl: No space left on device")


def test_disk_full_keeps_earlier_generations(tmp_path, monkeypatch):
    from test_loop import cfg_for

    from bias_amp import loop

    real_write = io.write_jsonl

    def full_disk(path, rows):
        if Path(path).parent.name == "gen_01":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, rows)

    monkeypatch.setattr(io, "write_jsonl", full_disk)
    cfg = cfg_for("generations=2", "baseline=false", "probe.enabled=false")
    with pytest.raises(OSError, match="No space left"):
        loop.run_setup(cfg, tmp_path)
    assert (tmp_path / "gen_00" / "DONE").is_file() and len(pd.read_csv(tmp_path / "metrics.csv")) == 1
    monkeypatch.setattr(io, "write_jsonl", real_write)
    assert loop.run_setup(cfg, tmp_path).version.tolist() == ["gen_00", "gen_01"]
