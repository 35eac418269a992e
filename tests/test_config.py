"""Every YAML under conf/ composes, and every run config passes validation (torchtune style)."""

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from bias_amp.data import validate as validate_data
from bias_amp.errors import ConfigError
from bias_amp.models import resolve_path
from bias_amp.validate import validate_config

CONF = Path(__file__).resolve().parents[1] / "conf"
ROOTS = sorted(p.stem for p in CONF.glob("*.yaml"))


@pytest.fixture(autouse=True)
def clean_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def compose_cfg(root="config", overrides=()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(root, overrides=list(overrides), return_hydra_config=True)


def group_options():
    """(root, group, option) for every option file of every group a root config uses."""
    out = []
    for root in ROOTS:
        for group in compose_cfg(root).hydra.runtime.choices:
            for f in sorted((CONF / group).glob("*.yaml")) if (CONF / group).is_dir() else []:
                out.append((root, group, f.stem))
    return out


def test_every_yaml_file_is_composed_by_some_root():
    covered = {CONF / f"{r}.yaml" for r in ROOTS} | {CONF / g / f"{o}.yaml" for _, g, o in group_options()}
    assert set(CONF.rglob("*.yaml")) <= covered


def stand_in_corpus(cfg, tmp_path) -> str:
    """A two-row file in the shape the data config expects (its columns, labels and format)."""
    cols, label = cfg.data.columns, next(iter(cfg.data.labels))
    row = {cols.text: "Body text.", cols.title: "A title", cols.label: label}
    if cfg.data.path.endswith((".csv", ".csv.gz")) or cfg.data.format == "csv":
        path = tmp_path / "corpus.csv"
        pd.DataFrame([row, row]).to_csv(path, index=False)
    else:
        path = tmp_path / "corpus.jsonl"
        path.write_text("\n".join(json.dumps({**row, **({cols.id: str(i)} if cols.get("id") else {})})
                                   for i in range(2)))
    return str(path)


@pytest.mark.parametrize("root, group, option", group_options())
def test_group_option_composes_and_validates(root, group, option, tmp_path):
    cfg = compose_cfg(root, [f"{group}={option}"])
    assert cfg.hydra.runtime.choices[group] == option
    if root == "config":
        if not cfg.data.hub and not Path(resolve_path(cfg.data.path)).exists():   # user-supplied corpus
            cfg = compose_cfg(root, [f"{group}={option}", f"data.path={stand_in_corpus(cfg, tmp_path)}"])
        untrained = [m for m in ("leaning", "quality")     # an offline instrument (e.g. experiment=study's) not
                     if cfg[m].get("train_command") and not Path(resolve_path(cfg[m].model)).is_dir()]   # trained yet
        if untrained:
            hint = cfg[untrained[0]].train_command
            with pytest.raises(ConfigError, match=rf"^{untrained[0]}.model: .*\(train it with `{hint}`\)"):
                validate_config(cfg)
            return
        validate_config(cfg)
        validate_data(cfg.data)          # the run checks the corpus as it reads it (validate_run)


@pytest.mark.parametrize("setup, decoding, mitigation", [
    ("greedy", "greedy", "none"), ("beam", "beam", "none"), ("nucleus", "nucleus", "none"),
    ("greedy-overfit", "greedy", "overfit"), ("greedy-preserve", "greedy", "preserve"),
    ("greedy-accumulate", "greedy", "accumulate"),
])
def test_setups_are_the_papers_six(setup, decoding, mitigation):
    cfg = compose_cfg("config", [f"setup={setup}"])
    assert (cfg.decoding.name, cfg.mitigation.name) == (decoding, mitigation)
    assert cfg.setup_name == f"{decoding}-{mitigation}"


def test_paper_experiment_is_app_b():
    cfg = compose_cfg("config", ["experiment=paper"])
    assert cfg.model.path == "gpt2" and cfg.data.per_label == 506 and cfg.generations == 11
    t = cfg.train
    assert (t.max_length, t.epochs, t.batch_size, t.lr, t.weight_decay) == (512, 5, 8, 5e-5, 0.01)
    assert (cfg.synthesis.block_tokens, cfg.synthesis.new_tokens) == (64, 64)
    assert dict(cfg.decoding.kwargs) == {"do_sample": False, "num_beams": 1}
    overfit = compose_cfg("config", ["experiment=paper", "setup=greedy-overfit"]).mitigation.train
    assert (overfit.epochs, overfit.weight_decay) == (25, 0.0)
    assert compose_cfg("config", ["experiment=paper", "setup=beam"]).decoding.kwargs.num_beams == 10
    nucleus = compose_cfg("config", ["experiment=paper", "setup=nucleus"]).decoding.kwargs
    assert (nucleus.top_p, nucleus.top_k, nucleus.do_sample) == (0.9, 0, True)


def test_smoke_experiment_is_offline():
    cfg = compose_cfg("config", ["experiment=smoke"])
    assert cfg.model.kind == "tiny" and cfg.hydra.runtime.choices.data == "sample"
    validate_config(cfg)
