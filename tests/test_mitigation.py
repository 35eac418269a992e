import pytest
from omegaconf import OmegaConf

from bias_amp.errors import ConfigError
from bias_amp.mitigation import training_set, validate

REAL = [f"real article {i}" for i in range(40)]
SYNTH = [[f"gen{k} article {i}" for i in range(40)] for k in range(4)]


def mit(**kw):
    return OmegaConf.create({"name": "x", "real_fraction": 0.0, "accumulate": False, "window": None, "train": {}} | kw)


def test_generation_zero_trains_on_real_only():
    assert training_set(0, REAL, [], mit(real_fraction=0.5), seed=0).texts == REAL


def test_none_trains_on_previous_synthetic_set():
    ts = training_set(3, REAL, SYNTH, mit(), seed=0)
    assert ts.texts == SYNTH[2] and ts.origin == {"gen_02": 40}


def test_preserve_adds_round_fraction_of_real_fresh_each_round():
    a = training_set(1, REAL, SYNTH, mit(real_fraction=0.1), seed=0)
    b = training_set(2, REAL, SYNTH, mit(real_fraction=0.1), seed=0)
    real_a = [t for t in a.texts if t.startswith("real")]
    real_b = [t for t in b.texts if t.startswith("real")]
    assert len(real_a) == len(real_b) == round(0.1 * len(REAL)) == 4
    assert len(set(real_a)) == 4 and real_a != real_b          # fresh sample each round, no duplicates
    assert a.texts[:40] == SYNTH[0] and a.origin == {"gen_00": 40, "real": 4}
    assert training_set(1, REAL, SYNTH, mit(real_fraction=0.1), seed=0).texts == a.texts   # seeded


def test_accumulate_gives_real_plus_all_earlier_sets_or_a_window():
    ts = training_set(3, REAL, SYNTH, mit(accumulate=True), seed=0)
    assert ts.texts == REAL + SYNTH[0] + SYNTH[1] + SYNTH[2]
    win = training_set(4, REAL, SYNTH, mit(accumulate=True, window=2), seed=0)
    assert win.texts == REAL + SYNTH[2] + SYNTH[3] and win.origin == {"real": 40, "gen_02": 40, "gen_03": 40}


@pytest.mark.parametrize("kw, key", [
    ({"real_fraction": 1.5}, "mitigation.real_fraction"),
    ({"real_fraction": -0.1}, "mitigation.real_fraction"),
    ({"window": 0}, "mitigation.window"),
    ({"accumulate": "yes"}, "mitigation.accumulate"),
    ({"train": {"epochz": 3}}, "mitigation.train.epochz"),
])
def test_bad_mitigation_names_the_key(kw, key):
    with pytest.raises(ConfigError, match=rf"^{key}: expected"):
        validate(mit(**kw), ["epochs", "weight_decay"])
