"""c_t (Eq. 1) on a planted case where the bias direction is known, the `project` mitigation, its config
checks, the held-out probe set, and c_t in a real run's train.json / metrics.csv."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from bias_amp import io, projection, train
from bias_amp.data import held_out, load_corpus
from bias_amp.errors import ConfigError
from bias_amp.models import tiny_lm, train_tokenizer

RIGHT = ["Lower taxes and secure borders protect freedom and the family business.",
         "Cut regulation, back the police, defend the border and the free market.",
         "Border security and tax cuts keep the economy strong and families free."]
LEFT = ["Climate action and union wages protect workers and public health care.",
        "Expand health care, raise the minimum wage, act on climate and equity.",
        "Public schools, union jobs and climate justice lift working families."]
CORPUS = RIGHT + LEFT


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS * 4, vocab_size=300)


def cfg(project=None, **train_kw):
    return OmegaConf.create({
        "projection": {"enabled": True, "probe_per_label": 3, "params": "all"},
        "mitigation": {"project": project},
        "train": {"max_length": 32, "epochs": 6, "batch_size": 3, "lr": 3e-3, "weight_decay": 0.0,
                  "scheduler": "constant", "warmup_steps": 0, "grad_accum": 1, "max_grad_norm": 1.0,
                  "group_by_length": False, "unit": "truncate", "compile": False, "memory": "default", **train_kw},
    })


def planted(tok, texts, project=None):
    """Fine-tune a fresh tiny model on `texts`; probe = held-out right/left sentences of the same styles."""
    from accelerate import Accelerator

    c = cfg(project)
    model = tiny_lm(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
    tracker = projection.Tracker(c, {"right": RIGHT, "left": LEFT}, model)
    tracker.start(model, tok)
    result = train.finetune(model, tok, texts * 4, c.train, Accelerator(cpu=True), seed=0,
                            grad_hook=tracker.before_step, on_step=tracker.after_step)
    return tracker.finish(), result


@pytest.fixture(scope="module")
def plain(tok):
    """Unprojected fine-tuning on right-only and on left-only text: (c_t summary, TrainResult) each."""
    return {"right": planted(tok, RIGHT), "left": planted(tok, LEFT)}


def test_right_only_text_gives_negative_c_t_and_left_only_positive(plain):
    (right, _), (left, _) = plain["right"], plain["left"]
    assert right["c_t_mean"] < 0 < left["c_t_mean"]
    assert right["c_t_negative_share"] > 0.8 and left["c_t_negative_share"] < 0.2
    # the sign convention: a negative c_t moves the weights along b̂ (towards right-leaning text)
    assert right["c_t_bias_component"] > 0 > left["c_t_bias_component"]
    assert right["c_t_cos_update"] > 0 > left["c_t_cos_update"]
    # the classifier-free leaning: training on right-only text raises the preference for the right probes
    assert right["c_t_logp_gap_start"] == pytest.approx(left["c_t_logp_gap_start"])   # the same start model
    assert right["c_t_logp_gap_end"] > right["c_t_logp_gap_start"] > left["c_t_logp_gap_end"]
    assert len(right["steps"]["c_t"]) == len(right["steps"]["cos"]) == 6 * 4
    assert all(-1 <= x <= 1 for x in right["steps"]["cos"])


@pytest.mark.parametrize("form", ["hard", "soft"])
def test_project_keeps_the_biased_component_near_zero_while_the_loss_falls(tok, plain, form):
    unprojected, plain_result = plain["right"]
    project = {"form": form, "lam": 0.0, "gamma": 50.0, "at": "update", "refresh_every": None}
    kept, result = planted(tok, RIGHT, project)
    assert kept["c_t_mean"] < 0                            # the gradient still pushes right ...
    bound = 0.02 * unprojected["c_t_bias_component"]       # ... but the weights barely move along b̂
    assert abs(kept["c_t_bias_component"]) <= bound, (kept["c_t_bias_component"], unprojected["c_t_bias_component"])
    assert result.loss < 0.9 * first_epoch_loss(tok)       # and the model still learns the text
    assert result.loss == pytest.approx(plain_result.loss, rel=0.5)


def first_epoch_loss(tok):
    """The loss of a one-epoch run: what 'the loss still falls' is measured against."""
    from accelerate import Accelerator

    model = tiny_lm(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
    return train.finetune(model, tok, RIGHT * 4, cfg(epochs=1).train, Accelerator(cpu=True), seed=0).loss


def test_gradient_form_projects_the_gradient_itself(tok):
    """at: gradient: the gradient the optimizer sees has no negative component along b̂ (clipping and AdamW
    come after; README "Bias projection" reports how much AdamW's scaling leaks back)."""
    from accelerate import Accelerator

    c = cfg({"form": "hard", "lam": 0.0, "gamma": 1.0, "at": "gradient", "refresh_every": 2})
    model = tiny_lm(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
    tracker = projection.Tracker(c, {"right": RIGHT, "left": LEFT}, model)
    tracker.start(model, tok)
    seen = []

    def hook(step, m):
        tracker.before_step(step, m)
        seen.append(projection.dot([p.grad for p in tracker.params], tracker.b).item())

    train.finetune(model, tok, RIGHT * 4, c.train, Accelerator(cpu=True), seed=0, grad_hook=hook)
    out = tracker.finish()
    assert min(out["steps"]["c_t"]) < 0 and min(seen) >= -1e-6
    assert out["refreshes"] == (len(seen) - 1) // 2        # b̂ recomputed before steps 3, 5, ...


def test_dot_is_the_float64_inner_product_of_the_weight_lists():
    g = torch.Generator().manual_seed(0)
    shapes = [(4096, 96), (96, 96), (96,), ()]          # matrices, a norm's vector, a scalar
    xs = [torch.randn(s, generator=g) for s in shapes]
    ys = [torch.randn(s, generator=g) for s in shapes]
    terms = [x.double() * y.double() for x, y in zip(xs, ys, strict=True)]
    got = projection.dot(xs, ys)
    assert got.dtype == torch.float64
    assert abs(got.item() - sum(t.sum() for t in terms).item()) <= 1e-6 * sum(t.abs().sum() for t in terms)


def test_soft_form_is_the_closed_form_penalty():
    soft = OmegaConf.create({"form": "soft", "lam": 0.25, "gamma": 1.5})
    c = torch.tensor([-2.0, 3.0])
    kept = c - projection.coefficient(c, soft)
    assert kept.tolist() == pytest.approx([-2.0 / 4, 3.0 / 0.5])
    assert (c - projection.coefficient(c, OmegaConf.create({"form": "hard"}))).tolist() == [0.0, 3.0]


@pytest.mark.parametrize("override, message", [
    ({"projection": {"enabled": "yes"}}, r"projection\.enabled: expected auto, true or false"),
    ({"projection": {"params": "attn"}}, r"projection\.params: expected one of \['all', 'mlp'\]"),
    ({"mitigation": {"project": {"form": "soft", "lam": 0.5}}}, r"mitigation\.project\.lam: expected a number in \[0, 0\.5\)"),
    ({"mitigation": {"project": {"at": "adam"}}}, r"mitigation\.project\.at: expected one of"),
    ({"mitigation": {"project": {"refresh_every": 0}}}, r"mitigation\.project\.refresh_every: expected an integer"),
    ({"mitigation": {"project": {"tau": 1}}}, r"mitigation\.project\.tau: expected one of form"),
    ({"mitigation": {"project": {}}, "projection": {"enabled": False}}, r"projection\.enabled: expected auto or true"),
    ({"mitigation": {"project": {}}, "train": {"memory": "low"}}, r"train\.memory: expected default with mitigation"),
])
def test_bad_projection_config_is_one_line_naming_the_key(override, message):
    base = cfg({"form": "hard", "lam": 0.0, "gamma": 1.0, "at": "update", "refresh_every": None})
    bad = OmegaConf.merge(base, override)
    with pytest.raises(ConfigError, match=r"^" + message) as err:
        projection.validate(bad)
    assert "\n" not in str(err.value)


def corpus_cfg(tmp_path, per_label):
    rows = [{"id": f"{lab}{i}", "title": f"t{i}", "text": f"{lab} article number {i}", "label": lab}
            for lab in ("left", "center", "right") for i in range(5)]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return OmegaConf.create({"name": "t", "path": str(path), "hub": None, "split": "train", "format": "auto",
                             "columns": {"text": "text", "title": "title", "label": "label", "id": "id",
                                         "source": None},
                             "labels": {"left": "left", "center": "center", "right": "right"},
                             "drop_unmapped": False, "drop_empty": False, "csv_bad_lines": "error",
                             "per_label": per_label, "template": "{title}\n{body}"})


def test_probe_articles_are_never_training_articles(tmp_path):
    data = corpus_cfg(tmp_path, per_label=3)
    trained = {a.id for a in load_corpus(data, seed=4)}
    probe = held_out(data, 4, 2, ("right", "left"))
    assert [a.label for a in probe] == ["right", "right", "left", "left"]
    assert not trained & {a.id for a in probe}
    assert [a.id for a in held_out(data, 4, 2, ("right", "left"))] == [a.id for a in probe]   # fixed set
    with pytest.raises(ConfigError, match=re.escape("projection.probe_per_label: expected at most 2 (the 'right'")):
        held_out(data, 4, 3, ("right", "left"))


def test_auto_measures_only_when_articles_are_held_out(tmp_path):
    run = cfg()
    run.data = corpus_cfg(tmp_path, per_label=None)          # every article trains: none left to probe with
    run.seed, run.projection.enabled, run.projection.probe_per_label = 0, "auto", 2
    assert projection.probe_set(run) is None
    run.projection.enabled = True
    with pytest.raises(ConfigError, match=r"^projection\.probe_per_label: expected at most 0"):
        projection.probe_set(run)
    run.data.per_label = 3
    probe = projection.probe_set(run)
    assert [len(probe["right"]), len(probe["left"])] == [2, 2] and probe["right"][0].startswith("t")


def test_a_project_run_writes_c_t_to_train_json_and_metrics(tmp_path):
    from test_loop import cfg_for

    from bias_amp.loop import run_setup

    metrics = run_setup(cfg_for("setup=greedy-project", "generations=1", "baseline=false", "probe.enabled=false",
                                "projection.probe_per_label=4", "synthesis.new_tokens=8"), tmp_path)
    cols = ["c_t_mean", "c_t_negative_share", "c_t_cos_mean", "c_t_cos_update", "c_t_bias_component", "c_t_b_norm",
            "c_t_logp_gap_start", "c_t_logp_gap_end"]
    assert metrics[cols].notna().all().all() and metrics.setup.tolist() == ["greedy-project"]
    stats = io.read_json(tmp_path / "gen_00" / "train.json")
    assert len(stats["projection"]["steps"]["c_t"]) == stats["steps"] > 0
    assert stats["projection"]["c_t_cos_update"] <= 1e-6     # hard, at the update: no step moves along +b̂
    assert metrics.c_t_mean[0] == pytest.approx(stats["projection"]["c_t_mean"])


def test_analysis_recovers_a_planted_c_t_slope_with_its_uncertainty(tmp_path):
    """Δ right share = −2 · mean c_t + noise in every run: summary.json's c_t slope and CIs find it."""
    from test_analyze import _cfg, make_sweep

    from bias_amp.analyze import analyze

    sweep = make_sweep(tmp_path / "sweep", n_setups=3, n_gen=6, hidden=4)
    rng = np.random.default_rng(1)
    for path in sweep.glob("*/seed_*/metrics.csv"):
        df = pd.read_csv(path).sort_values("generation")
        df["c_t_mean"] = -df.share_right.diff() / 2 + rng.normal(0, 1e-4, len(df))
        df.loc[df.generation < 0, "c_t_mean"] = np.nan                     # the baseline is not trained
        df.to_csv(path, index=False)
    analyze(sweep, _cfg(plots="false"))
    c_t = io.read_json(sweep / "analysis" / "summary.json")["c_t"]
    assert c_t["n_pairs"] == 3 * 6 and c_t["n_runs"] == 3                 # gen_00 pairs with the baseline
    assert c_t["slope_t_ci"][0] < -2 < c_t["slope_t_ci"][1] and c_t["slope"] == pytest.approx(-2, abs=0.05)
    assert c_t["slope_boot_ci"][0] < -2 < c_t["slope_boot_ci"][1] and c_t["r"] < -0.99
    assert [r["setup"] for r in c_t["by_setup"]] == ["setup0", "setup1", "setup2"]
    assert f"slope {c_t['slope']:.4g} (t 95% CI" in (sweep / "analysis" / "c_t.md").read_text()


def test_no_c_t_columns_no_association():
    runs = pd.DataFrame({"setup": "a", "seed": 0, "generation": [-1, 0, 1, 2], "share_right": [0.1, 0.2, 0.3, 0.4]})
    assert projection.pairs(runs).empty and projection.association(runs) is None


def test_report_figure_puts_c_t_above_the_change_in_right_share():
    from bias_amp import plots, report

    metrics = pd.DataFrame({"setup": ["greedy"] * 6 + ["greedy-project"] * 3, "seed": [0, 0, 0, 1, 1, 1, 0, 0, 0],
                            "generation": [-1, 0, 1] * 3, "share_right": [.1, .2, .4, .1, .3, .4, .1, .1, .1],
                            "c_t_mean": [np.nan, -1, -2, np.nan, -3, -2, np.nan, 0.5, 0.0]})
    summary = report.aggregate(metrics)
    assert plots.has_c_t(summary) and not plots.has_c_t(summary.drop(columns="c_t_mean"))
    fig = plots.fig_c_t(summary)
    top, bottom = fig.axes[0], fig.axes[1]
    ys = {line.get_label(): line.get_ydata().tolist() for line in top.lines if not line.get_label().startswith("_")}
    assert ys == {"greedy": [-2.0, -2.0], "greedy-project": [0.5, 0.0]}          # mean over seeds
    deltas = {line.get_label(): line.get_ydata().tolist() for line in bottom.lines
              if not line.get_label().startswith("_")}
    assert deltas["greedy"] == pytest.approx([15.0, 15.0]) and deltas["greedy-project"] == pytest.approx([0.0, 0.0])
