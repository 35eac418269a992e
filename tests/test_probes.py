import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bias_amp.errors import ConfigError
from bias_amp.probes import load_probe, probe, save_probe, spread, validate

CONF = Path(__file__).resolve().parents[1] / "conf" / "probe"
CFG = dict(weight="out_proj_mean", max_prompts=64, batch_size=3, max_length=40)
TEXTS = [
    "The senate passed the budget bill on Tuesday.",
    "Critics said the tax plan favours the wealthy over working families and small towns alike.",
    "The governor announced new climate rules.",
    "Economists expect inflation to cool.",
    "Local officials met with residents to discuss school funding and safety after the storm.",
]


@pytest.fixture()
def tiny_llama(tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=tiny_tokenizer.pad_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return LlamaForCausalLM(cfg).eval()


def _ids(tok):
    return [tok(t)["input_ids"] for t in TEXTS]


def _manual_activation(model, ids):
    """Token-weighted mean of each block output, one unpadded prompt at a time, the final norm removed so
    that HF's last hidden state is the last block's raw output."""
    m = copy.deepcopy(model)
    if hasattr(m, "transformer"):
        m.transformer.ln_f = nn.Identity()
    else:
        m.model.norm = nn.Identity()
    states = []
    with torch.no_grad():
        for p in ids:
            hs = m(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states
            states.append(torch.stack([h[0] for h in hs[1:]]))          # [n_layer, len, hidden]
    return torch.cat(states, dim=1).double().mean(dim=1).numpy()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_activation_is_mean_block_output_over_real_tokens(arch, tiny_model, tiny_llama, tiny_tokenizer):
    model = tiny_model if arch == "gpt2" else tiny_llama
    ids = _ids(tiny_tokenizer)
    assert len({len(p) for p in ids}) > 1                               # batches really contain padding
    out = probe(model, tiny_tokenizer, ids, CFG)
    n_layer, hidden = model.config.num_hidden_layers, model.config.hidden_size
    assert out["weight"].shape == out["activation"].shape == (n_layer, hidden)
    assert out["weight"].dtype == out["activation"].dtype == np.float32
    np.testing.assert_allclose(out["activation"], _manual_activation(model, ids), rtol=1e-4, atol=1e-5)
    # text prompts tokenised inside give the same numbers; batch size does not matter
    again = probe(model, tiny_tokenizer, TEXTS, {**CFG, "batch_size": 1})
    np.testing.assert_allclose(again["activation"], out["activation"], rtol=1e-4, atol=1e-5)


def test_last_block_is_hooked_before_the_final_norm(tiny_model, tiny_tokenizer):
    ids = _ids(tiny_tokenizer)
    out = probe(tiny_model, tiny_tokenizer, ids, CFG)
    with torch.no_grad():
        hs = [tiny_model(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states for p in ids]
    after_ln_f = torch.cat([h[-1][0] for h in hs]).mean(0).numpy()
    before_last = torch.cat([h[-2][0] for h in hs]).mean(0).numpy()
    np.testing.assert_allclose(out["activation"][0], before_last, rtol=1e-4, atol=1e-5)
    assert not np.allclose(out["activation"][-1], after_ln_f, atol=1e-3)


def test_padding_is_excluded(tiny_model, tiny_tokenizer):
    ids = _ids(tiny_tokenizer)
    base = probe(tiny_model, tiny_tokenizer, ids, CFG)["activation"]
    tiny_tokenizer_pad = tiny_tokenizer.pad_token_id
    try:   # a different pad id must not change anything (padded positions are masked out of the mean)
        tiny_tokenizer.pad_token_id = 5
        other = probe(tiny_model, tiny_tokenizer, ids, CFG)["activation"]
    finally:
        tiny_tokenizer.pad_token_id = tiny_tokenizer_pad
    np.testing.assert_allclose(other, base, rtol=1e-5, atol=1e-6)
    # max_prompts caps the probe set at prompts evenly spaced over the list (first and last kept)
    two = probe(tiny_model, tiny_tokenizer, ids, {**CFG, "max_prompts": 2})["activation"]
    np.testing.assert_allclose(two, _manual_activation(tiny_model, [ids[0], ids[-1]]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(two, base, atol=1e-3)
    assert spread(range(10), 4) == [0, 3, 6, 9] and spread(range(3), 5) == [0, 1, 2]


@pytest.mark.parametrize("how", ["out_proj_mean", "out_proj_l2", "out_proj_abs_mean"])
def test_weight_is_the_units_output_projection_row(how, tiny_model, tiny_llama, tiny_tokenizer):
    red = {"out_proj_mean": lambda w: w.mean(-1), "out_proj_l2": lambda w: w.norm(dim=-1),
           "out_proj_abs_mean": lambda w: w.abs().mean(-1)}[how]
    cfg = {**CFG, "weight": how}
    gpt = probe(tiny_model, tiny_tokenizer, TEXTS, cfg)["weight"]
    # GPT-2 Conv1D weight is [in=4*hidden, out=hidden]: unit j's row is column j
    want = np.stack([red(b.mlp.c_proj.weight.detach().T).numpy() for b in tiny_model.transformer.h])
    np.testing.assert_allclose(gpt, want, rtol=1e-5, atol=1e-7)
    llama = probe(tiny_llama, tiny_tokenizer, TEXTS, cfg)["weight"]
    want = np.stack([red(b.mlp.down_proj.weight.detach()).numpy() for b in tiny_llama.model.layers])
    np.testing.assert_allclose(llama, want, rtol=1e-5, atol=1e-7)


def test_probing_leaves_model_and_rng_untouched(tiny_model, tiny_tokenizer):
    x = torch.tensor([_ids(tiny_tokenizer)[1]])
    tiny_model.train()
    params = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    tiny_model.eval()
    with torch.no_grad():
        logits = tiny_model(input_ids=x).logits.clone()
    tiny_model.train()
    tiny_model.transformer.h[0].eval()                                  # a mixed state survives too
    flags = {n: m.training for n, m in tiny_model.named_modules()}
    rng = torch.get_rng_state()
    probe(tiny_model, tiny_tokenizer, TEXTS, CFG)
    assert torch.equal(torch.get_rng_state(), rng)
    assert {n: m.training for n, m in tiny_model.named_modules()} == flags
    assert all(not b._forward_hooks for b in tiny_model.transformer.h)
    assert all(torch.equal(params[k], v) for k, v in tiny_model.state_dict().items())
    tiny_model.eval()
    with torch.no_grad():
        assert torch.equal(tiny_model(input_ids=x).logits, logits)


def test_hooks_removed_and_mode_restored_on_error(tiny_model, tiny_tokenizer):
    tiny_model.train()
    with pytest.raises(IndexError):
        probe(tiny_model, tiny_tokenizer, [[1, 2, 10**6]], CFG)           # token id beyond the vocabulary
    assert tiny_model.training and all(m.training for m in tiny_model.modules())
    assert all(not b._forward_hooks for b in tiny_model.transformer.h)


def test_save_load_roundtrip_is_atomic(tmp_path):
    arrays = {"weight": np.arange(12, dtype=np.float64).reshape(3, 4), "activation": -np.ones((3, 4))}
    path = save_probe(tmp_path / "gen_00" / "probe.npz", arrays)
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["probe.npz"]
    got = load_probe(path)
    assert got["weight"].dtype == np.float32
    np.testing.assert_array_equal(got["weight"], arrays["weight"])
    np.testing.assert_array_equal(got["activation"], arrays["activation"])
    np.savez(tmp_path / "bad.npz", weight=np.ones((2, 2)))
    with pytest.raises(ConfigError, match="expected a probe file with arrays"):
        load_probe(tmp_path / "bad.npz")


def test_probe_configs():
    default = OmegaConf.load(CONF / "default.yaml")
    validate(default)
    assert default.enabled is True and OmegaConf.load(CONF / "none.yaml").enabled is False
    with pytest.raises(ConfigError, match=r"^probe.weight: expected one of"):
        validate({**CFG, "weight": "rows"})
    with pytest.raises(ConfigError, match=r"^probe.max_prompts: expected an integer"):
        validate({**CFG, "max_prompts": 0})
    with pytest.raises(ConfigError, match=r"^probe.prompts: expected at least one non-empty prompt"):
        probe(None, None, [[]], CFG)
