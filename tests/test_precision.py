"""precision: fp32 | bf16 | auto — what auto picks, the one-line errors, and each stage's bf16 mechanics (weights
cast for inference and put back bit for bit; training under autocast with fp32 master weights and AdamW state).
Speed and agreement with fp32 are benchmarks (benchmarks/bench_precision.py, RESULTS.md), not tests."""

import logging
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from conftest import SENTENCES
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bias_amp import io, precision, tracking
from bias_amp.errors import ConfigError
from bias_amp.synth import generate_blocks

ROOT = Path(__file__).resolve().parents[1]
AMX, AVX2 = frozenset({"avx2", "amx_bf16", "avx512_bf16"}), frozenset({"avx2", "fma"})


def test_auto_picks_bf16_only_where_the_cpu_multiplies_it_natively(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: AMX)
    assert precision.resolve("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2)
    assert precision.resolve("auto", "cpu") == "fp32"
    assert precision.resolve("fp32", "cpu") == "fp32"
    assert precision.resolve("auto", "meta") == "fp32"


def test_machine_names_the_processor_its_native_bf16_torch_and_threads(monkeypatch):
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model name": "Test Xeon"})
    monkeypatch.setattr(precision, "cpu_flags", lambda: AMX)
    threads = torch.get_num_threads()
    assert precision.machine("cpu") == f"Test Xeon (amx_bf16, avx512_bf16), torch {torch.__version__}, {threads} threads"
    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2)
    assert precision.machine("cpu").startswith("Test Xeon (no native bf16), torch ")


def test_bf16_without_native_support_runs_and_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2)
    precision._warn_emulated.cache_clear()
    with caplog.at_level(logging.WARNING, logger="bias_amp.precision"):
        assert precision.resolve("bf16", "cpu") == "bf16"
        assert precision.resolve("bf16", "cpu") == "bf16"
    assert [r.getMessage() for r in caplog.records] == [
        "precision=bf16 on a cpu without native bf16: emulated, slow (fp32 is faster here)"]


@pytest.mark.parametrize("overrides, message", [
    (["precision=fp16"], r"^precision: expected one of \['fp32', 'bf16', 'auto'\], got 'fp16'$"),
    (["+train.mixed_precision=bf16"], r"^train.mixed_precision: expected unset \(replaced by the top-level `precision"),
    (["+model.dtype=bfloat16"], r"^model.dtype: expected unset \(replaced by the top-level `precision"),
])
def test_bad_precision_settings_are_one_line_errors_before_any_model(overrides, message):
    from bias_amp.validate import validate_config

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke", "logger=none", *overrides])
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_presets_paper_stays_fp32():
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        assert compose("config", overrides=["experiment=paper"]).precision == "fp32"
        assert compose("config").precision in precision.PRECISIONS


def test_inference_weights_cast_and_restore_bit_for_bit(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    with precision.inference_weights(tiny_model, "bf16") as m:
        assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
        assert m.lm_head.weight is m.transformer.wte.weight                     # still tied
    after = tiny_model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


def test_bf16_synthesis_runs_in_bf16_and_leaves_the_model_fp32(tiny_model, tiny_tokenizer):
    seen = []
    tiny_model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    prompts = [tiny_tokenizer(s)["input_ids"] for s in SENTENCES[:6]]
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    got = generate_blocks(tiny_model, prompts, {"do_sample": False}, new_tokens=8, batch_size=4, precision="bf16")
    assert len(got) == 6 and all(0 < len(g) <= 8 for g in got)
    assert set(seen) == {torch.bfloat16}
    assert all(torch.equal(tiny_model.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(ConfigError, match=r"^precision: expected one of"):
        generate_blocks(tiny_model, prompts, {"do_sample": False}, precision="half")


def test_bf16_fine_tuning_keeps_fp32_master_weights_and_optimizer_state(tiny_model, tiny_tokenizer, monkeypatch):
    from bias_amp.train import finetune

    steps = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        out = real_step(self, *a, **k)
        steps.append({s["exp_avg"].dtype for s in self.state.values()} | {p.dtype for g in self.param_groups
                                                                          for p in g["params"]})
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    seen = []
    tiny_model.lm_head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    cfg = OmegaConf.create(dict(max_length=32, unit="truncate", epochs=3, batch_size=4, lr=1e-3, weight_decay=0.01,
                                scheduler="linear", warmup_steps=0, grad_accum=1, max_grad_norm=1.0,
                                group_by_length=True, compile=False))
    acc = Accelerator(cpu=True)
    try:
        first = finetune(tiny_model, tiny_tokenizer, SENTENCES[:16], OmegaConf.merge(cfg, {"epochs": 1}), acc,
                         precision="bf16")
        last = finetune(tiny_model, tiny_tokenizer, SENTENCES[:16], cfg, acc, precision="bf16")
    finally:
        tracking.finish(acc)
    assert set(seen) == {torch.bfloat16}                  # the LM head ran in bf16 ...
    assert steps and all(s == {torch.float32} for s in steps)   # ... weights and AdamW moments stayed fp32
    assert {p.dtype for p in tiny_model.parameters()} == {torch.float32}
    assert last.loss < first.loss                          # and it learns


def test_bf16_run_records_its_precision(tmp_path, monkeypatch):
    from bias_amp.loop import run_setup

    monkeypatch.setattr(precision, "cpu_flags", lambda: AMX)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke", "logger=none", "data.per_label=2", "generations=1",
                                           "train.max_length=64", "synthesis.new_tokens=8", "probe.max_prompts=8",
                                           "precision=auto"])
    metrics = run_setup(cfg, tmp_path)
    assert metrics.precision.tolist() == ["bf16", "bf16"]
    assert OmegaConf.load(tmp_path / "config.yaml").precision == "bf16"    # auto is recorded as what it ran
    probe = io.read_json(tmp_path / "gen_00" / "metrics.json")
    assert probe["precision"] == "bf16"
