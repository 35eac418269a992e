"""The sweep's schema: version names, run directories, seeds, and where Hydra puts single runs and sweeps."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from bias_amp.layout import is_done, run_dir, run_dirs, seed_for, variant, version_name

CONF = Path(__file__).resolve().parents[1] / "conf"


def hydra_dirs(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg.hydra.run.dir, f"{cfg.hydra.sweep.dir}/{cfg.hydra.sweep.subdir}"


def test_version_names_and_done_markers(tmp_path):
    assert [version_name(g) for g in (-1, 0, 3, 10)] == ["baseline", "gen_00", "gen_03", "gen_10"]
    (tmp_path / "gen_00").mkdir()
    assert not is_done(tmp_path, 0)
    (tmp_path / "gen_00" / "DONE").write_text("")
    assert is_done(tmp_path, 0) and not is_done(tmp_path, -1)


def test_seeds_keep_the_values_of_earlier_runs():
    # loop.py used cfg.seed * 1000 + g (training), + 500 (synthesis RNGs), + process index (decoding)
    assert seed_for(3, 2, "train") == 3002 and seed_for(3, -1, "synthesis") == 3499
    assert seed_for(0, 4, "decode", rank=1) == 5
    with pytest.raises(KeyError):
        seed_for(0, 0, "scoring")


def test_run_dirs_lists_setup_and_seed_folders_only(tmp_path):
    for setup, seed in [("greedy-none", 10), ("beam-none", 0), ("greedy-none", 2)]:
        run_dir(tmp_path, setup, seed).mkdir(parents=True)
    for other in ("report", "analysis", "greedy-none/seed_x", "greedy-none/checkpoints", ".hydra"):
        (tmp_path / other).mkdir(parents=True, exist_ok=True)
    (tmp_path / "beam-none" / "seed_1").write_text("a file, not a run")
    assert [p.relative_to(tmp_path).as_posix() for p in run_dirs(tmp_path)] == [
        "beam-none/seed_0", "greedy-none/seed_2", "greedy-none/seed_10"]
    assert run_dirs(tmp_path / "missing") == []


def test_variant_names_only_results_changing_overrides():
    assert variant(["setup=glob(*)", "experiment=smoke", "seed=1", "generations=4", "logger=none",
                    "logger.mode=offline", "synthesis.threads=2", "hydra.sweep.dir=x", "hydra/launcher=joblib",
                    "overwrite=true"]) == ""
    assert variant(["logger=none", "data.per_label=5", "decoding=beam"]) == "+data.per_label=5"
    assert variant(["train.lr=0.1", "data.per_label=5"]) == variant(["data.per_label=5", "train.lr=0.1"])
    # a sub-key of a path group changes results without changing the setup name
    assert variant(["decoding=beam", "decoding.kwargs.num_beams=5"]) == "+decoding.kwargs.num_beams=5"
    a, b = variant(["data.path=/a/corpus.jsonl"]), variant(["data.path=/b/corpus.jsonl"])
    assert a.startswith("+data.path=corpus.jsonl-") and a != b and "/" not in a + b
    long = variant([f"train.key{i}={i}" for i in range(30)])
    assert len(long) <= 81 and long != variant([f"train.key{i}={i}" for i in range(31)])


def test_single_runs_and_sweeps_have_separate_default_places():
    run, sweep = hydra_dirs("experiment=smoke", "setup=beam", "seed=2", "generations=3")
    assert run == "outputs/runs/smoke/beam-none/seed_2"
    assert sweep == "multirun/smoke/beam-none/seed_2"
    run, sweep = hydra_dirs("experiment=smoke", "data.per_label=5")
    assert run == "outputs/runs/smoke+data.per_label=5/greedy-none/seed_0"
    assert sweep == "multirun/smoke+data.per_label=5/greedy-none/seed_0"
