"""experiment=study (conf/experiment/study.yaml): the paper's structure at workstation scale, its corpus drawn
from outlets outside the leaning classifier's training file, and one run dir per setup x seed."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bias_amp import data
from bias_amp.errors import ConfigError
from bias_amp.validate import validate_config

CONF = Path(__file__).resolve().parents[1] / "conf"
SETUPS = sorted(p.stem for p in (CONF / "setup").glob("*.yaml"))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "allsides"


def study(*overrides, hydra=False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=study", *overrides], return_hydra_config=hydra)
    GlobalHydra.instance().clear()
    return cfg


@pytest.mark.parametrize("setup", SETUPS)
def test_every_setup_composes_validates_and_keeps_the_papers_structure(setup):
    cfg = study(f"setup={setup}", "seed=1")
    assert (cfg.leaning.name, cfg.quality.name) == ("offline", "offline")   # trained by `python -m bias_amp.instruments`
    validate_config(study(f"setup={setup}", "seed=1", "leaning=smoke", "quality=smoke"))   # the checks before any load
    assert cfg.model.name == "smollm2" and cfg.data.name == "allsides"
    assert cfg.generations == 11 and cfg.baseline and cfg.prompt_source == "real" and cfg.init_from == "previous"
    assert cfg.synthesis.block_tokens == 64 and cfg.synthesis.new_tokens == 64
    epochs = OmegaConf.merge(cfg.train, cfg.mitigation.train)
    name = cfg.mitigation.name
    if name == "overfit":                                         # §5.3: 5x the epochs (paper 25 vs 5), no weight decay
        assert epochs.epochs == 5 * cfg.train.epochs and epochs.weight_decay == 0.0
    else:
        assert epochs.epochs == cfg.train.epochs
    assert cfg.mitigation.real_fraction == {"preserve": 0.1, "accumulate": 1.0}.get(name, 0.0)
    assert cfg.mitigation.accumulate == (name == "accumulate")


@pytest.mark.parametrize("setup,seed", [("greedy", 0), ("greedy-preserve", 2), ("beam", 1)])
def test_a_seed_sweep_lays_out_one_folder_per_setup_and_seed(setup, seed):
    cfg = study(f"setup={setup}", f"seed={seed}", hydra=True)
    name = f"{cfg.decoding.name}-{cfg.mitigation.name}"
    assert f"{cfg.hydra.sweep.dir}/{cfg.hydra.sweep.subdir}" == f"multirun/study/{name}/seed_{seed}"
    assert cfg.hydra.run.dir == f"outputs/runs/study/{name}/seed_{seed}"   # the one-setup reproduction


def test_bad_source_filter_is_one_line_before_any_model_loads(tmp_path):
    corpus = tmp_path / "corpus.jsonl"                         # a stand-in: the check must not need ../shared
    corpus.write_text('{"id": "1", "title": "t", "body": "b", "label": "left", "source": "HuffPost"}\n')
    cfg = study("data.exclude_sources=HuffPost", f"data.path={corpus}")
    with pytest.raises(ConfigError, match=r"data.exclude_sources: expected a list of outlet names"):
        data.validate(cfg.data)


@pytest.mark.skipif(not (SHARED / "valid.jsonl.gz").is_file(), reason="../shared AllSides copy absent")
def test_the_corpus_is_balanced_and_from_outlets_the_classifier_never_saw():
    cfg = study("seed=1")
    corpus = data.load_corpus(cfg.data, seed=1)
    train_outlets = {a.source for a in data.read_articles(OmegaConf.merge(
        cfg.data, {"path": str(SHARED / "train.jsonl.gz"), "exclude_sources": None}))}
    assert [sum(a.label == lab for a in corpus) for lab in ("left", "center", "right")] == [cfg.data.per_label] * 3
    assert not {a.source for a in corpus} & train_outlets
    assert set(cfg.data.exclude_sources) <= train_outlets        # the list names real training outlets
    probes = data.held_out(cfg.data, 1, cfg.projection.probe_per_label, ["right", "left"])   # b̂'s probe set
    assert len(probes) == 2 * cfg.projection.probe_per_label and not {a.id for a in probes} & {a.id for a in corpus}
    assert not {a.source for a in probes} & train_outlets


def test_untrained_offline_instruments_are_one_line_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BIAS_AMP_CACHE", str(tmp_path))          # an empty cache: nothing trained
    with pytest.raises(ConfigError, match=r"leaning.model: expected an existing model directory \(train it with "
                                          r"`python -m bias_amp.instruments`\)"):
        validate_config(study())
