"""What each generation trains on, for every shipped mitigation and the README's example (composed from
the YAML files), and the classifier-guided `select` on hand-made scores."""

import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bias_amp import io
from bias_amp.errors import ConfigError
from bias_amp.layout import LEANINGS
from bias_amp.mitigation import training_set, validate

ROOT = Path(__file__).resolve().parents[1]
N = 30
REAL = [f"real article {i}" for i in range(N)]
LABELS = [LEANINGS[i % 3] for i in range(N)]                 # a balanced corpus: target shares 1/3 each
SYNTH = [[f"gen{k} article {i}" for i in range(N)] for k in range(6)]
# hand-made predicted leanings of each synthetic set: 15 right, 9 center, 6 left (a right-leaning set)
PREDICTED = ["right"] * 15 + ["center"] * 9 + ["left"] * 6
SCORES = [pd.DataFrame({"id": range(N), "leaning": PREDICTED}) for _ in SYNTH]
TRAIN_KEYS, LEANING_ON = ["epochs", "weight_decay"], OmegaConf.create({"enabled": True})


def shipped(name: str, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"mitigation={name}", *overrides]).mitigation


def readme_example(tmp_path):
    """The README's preserve50.yaml, written as a user would, found through hydra.searchpath."""
    block = re.search(r"```yaml\n(# conf/mitigation/preserve50\.yaml.*?)```", (ROOT / "README.md").read_text(), re.S)
    (tmp_path / "mitigation").mkdir()
    (tmp_path / "mitigation" / "preserve50.yaml").write_text(block.group(1))
    return shipped("preserve50", f"hydra.searchpath=[file://{tmp_path}]")


def build(cfg, g, seed=0):
    return training_set(g, REAL, SYNTH[:g], cfg, seed, real_labels=LABELS, scores=SCORES[:g])


def real_part(ts):
    return [t for t in ts.texts if t.startswith("real")]


def expected_origin(name, g):
    last = lambda w: {f"gen_{k:02d}": N for k in range(max(0, g - w), g)}  # noqa: E731
    return {"none": last(1), "overfit": last(1), "preserve": {"real": 3, **last(1)},
            "accumulate": {"real": N, **last(g)}, "preserve50": {"real": 15, **last(3)},
            "rebalance": {f"gen_{g - 1:02d}": 18}, "subsample": {f"gen_{g - 1:02d}": 18}}[name]


@pytest.mark.parametrize("name", ["none", "overfit", "preserve", "accumulate", "rebalance", "subsample", "preserve50"])
@pytest.mark.parametrize("g", [1, 2, 5])
def test_composition_of_every_shipped_mitigation_and_the_readme_example(name, g, tmp_path):
    cfg = readme_example(tmp_path) if name == "preserve50" else shipped(name)
    validate(cfg, TRAIN_KEYS, leaning=LEANING_ON)
    ts = build(cfg, g)
    assert ts.origin == expected_origin(name, g)
    assert len(ts.texts) == sum(ts.origin.values())
    assert len(set(ts.texts)) == len(ts.texts)                        # no article twice
    assert set(real_part(ts)) <= set(REAL) and len(real_part(ts)) == ts.origin.get("real", 0)
    for v, n in ts.origin.items():                                    # each set's texts come from that set
        if v != "real":
            k = int(v[4:])
            assert sum(t.startswith(f"gen{k} ") for t in ts.texts) == n
    # generation 0 is the real corpus, whatever the mitigation
    assert build(cfg, 0).texts == REAL and build(cfg, 0).origin == {"real": N}


def test_real_sample_is_fresh_each_round_and_seeded(tmp_path):
    cfg = readme_example(tmp_path)
    a, b = real_part(build(cfg, 1)), real_part(build(cfg, 2))
    assert len(a) == len(b) == 15 and a != b
    assert real_part(build(cfg, 1)) == a and real_part(build(cfg, 1, seed=1)) != a


def test_half_real_plus_last_two_sets_is_expressible():
    cfg = shipped("none", "mitigation.real_fraction=0.5", "mitigation.accumulate=true", "mitigation.window=2")
    assert build(cfg, 4).origin == {"real": 15, "gen_02": N, "gen_03": N}


def test_rebalance_keeps_the_largest_subset_with_the_real_label_shares():
    ts = build(shipped("rebalance"), 3)
    kept = Counter(PREDICTED[int(t.split()[-1])] for t in ts.texts)
    assert kept == {"left": 6, "center": 6, "right": 6}             # 6 left limit every leaning to 6
    assert ts.texts == build(shipped("rebalance"), 3).texts            # seeded
    assert ts.texts != build(shipped("rebalance"), 3, seed=1).texts    # a random draw within each leaning


def test_subsample_keeps_rebalances_size_drawn_regardless_of_leaning(caplog):
    with caplog.at_level("INFO", logger="bias_amp.mitigation"):
        build(shipped("subsample"), 3)
        build(shipped("rebalance"), 3)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("select")]
    assert "18 at random" in said[0] and "by leaning" not in said[0]     # the run log says what was done
    assert said[1].endswith("by leaning")
    mixes = set()
    for seed in range(20):
        ts = build(shipped("subsample"), 3, seed=seed)
        assert len(ts.texts) == len(build(shipped("rebalance"), 3, seed=seed).texts) == 18
        assert len(set(ts.texts)) == 18 and all(t.startswith("gen2 ") for t in ts.texts)
        mixes.add(tuple(sorted(Counter(PREDICTED[int(t.split()[-1])] for t in ts.texts).items())))
    assert len(mixes) > 5          # leaning shares vary with the draw (rebalance's are always 6 / 6 / 6)
    assert build(shipped("subsample"), 3).texts == build(shipped("subsample"), 3).texts     # seeded
    unscorable = [pd.DataFrame({"leaning": ["right"] * 20 + ["center"] * 4 + [float("nan")] * 6})]
    ts = training_set(1, REAL, SYNTH[:1], shipped("subsample"), 0, real_labels=LABELS, scores=unscorable)
    assert ts.origin == {"gen_00": 8} and all(int(t.split()[-1]) < 24 for t in ts.texts)   # never an unscorable one


def test_rebalance_reads_each_accumulated_set_and_explicit_targets():
    cfg = shipped("rebalance", "mitigation.accumulate=true", "mitigation.window=2", "mitigation.real_fraction=0.1",
                  "mitigation.select.target={center: 0.5, right: 0.5}")
    ts = build(cfg, 4)
    assert ts.origin == {"real": 3, "gen_02": 18, "gen_03": 18}       # 9 center + 9 right from each set
    synth = [t for t in ts.texts if not t.startswith("real")]
    assert Counter(PREDICTED[int(t.split()[-1])] for t in synth) == {"center": 18, "right": 18}


def test_rebalance_without_a_targeted_leaning_matches_the_others_ratios():
    scores = [pd.DataFrame({"leaning": ["right"] * 20 + ["center"] * 4 + [float("nan")] * 6})]
    ts = training_set(1, REAL, SYNTH[:1], shipped("rebalance"), 0, real_labels=LABELS, scores=scores)
    assert ts.origin == {"gen_00": 8}                                  # 4 center + 4 right; unscorable never kept
    with pytest.raises(ConfigError, match=r"^mitigation\.select: expected articles of gen_00 predicted"):
        training_set(1, REAL, SYNTH[:1], shipped("rebalance"), 0, real_labels=LABELS,
                     scores=[pd.DataFrame({"leaning": [float("nan")] * N})])
    with pytest.raises(ConfigError, match=r"^mitigation\.select: expected one score row per article of gen_00"):
        training_set(1, REAL, SYNTH[:1], shipped("rebalance"), 0, real_labels=LABELS, scores=[scores[0][:5]])


@pytest.mark.parametrize("kw, key", [
    ({"real_fraction": 1.5}, "mitigation.real_fraction"),
    ({"real_fraction": -0.1}, "mitigation.real_fraction"),
    ({"window": 2}, "mitigation.window"),                               # a window without accumulate
    ({"accumulate": True, "window": 0}, "mitigation.window"),
    ({"accumulate": "yes"}, "mitigation.accumulate"),
    ({"real_fracton": 0.1}, "mitigation.real_fracton"),
    ({"select": {"by": "topic", "target": "real"}}, "mitigation.select.by"),
    ({"select": {"target": "real"}}, "mitigation.select"),
    ({"select": {"by": "leaning", "target": {"left": 0.5, "center": 0.2}}}, "mitigation.select.target"),
    ({"select": {"by": "leaning", "target": {"far-left": 1.0}}}, "mitigation.select.target"),
    ({"train": {"epochz": 3}}, "mitigation.train.epochz"),
])
def test_bad_mitigation_names_the_key(kw, key):
    cfg = OmegaConf.merge(OmegaConf.to_container(shipped("none")), kw)        # plain: unknown keys too
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: expected"):
        validate(cfg, TRAIN_KEYS, leaning=LEANING_ON)


def test_select_needs_the_leaning_metric():
    with pytest.raises(ConfigError, match=r"^mitigation\.select: expected the leaning metric enabled"):
        validate(shipped("rebalance"), TRAIN_KEYS, leaning=OmegaConf.create({"enabled": False}))


def test_rebalance_runs_in_the_loop_on_the_previous_versions_scores(tmp_path):
    from test_loop import cfg_for

    from bias_amp.loop import run_setup

    run_setup(cfg_for("setup=greedy-rebalance", "generations=2", "baseline=false", "probe.enabled=false",
                      "train.epochs=1", "synthesis.max_blocks=1", "quality.enabled=false", "perplexity.enabled=false"), tmp_path)
    predicted = Counter(pd.read_csv(tmp_path / "gen_00" / "scores.csv").leaning.dropna())
    data = io.read_json(tmp_path / "gen_01" / "train.json")["data"]
    # equal target thirds: each predicted leaning is cut to the rarest one's count
    assert data == {"gen_00": len(predicted) * min(predicted.values())}
