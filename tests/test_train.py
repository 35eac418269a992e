import numpy as np
import pytest
import torch
from accelerate import Accelerator
from conftest import SENTENCES
from omegaconf import OmegaConf

from bias_amp import tracking
from bias_amp.train import batch_order, collate, encode, finetune

CFG = dict(max_length=32, unit="truncate", epochs=2, batch_size=4, lr=1e-3, weight_decay=0.01, scheduler="linear",
           warmup_steps=0, grad_accum=1, max_grad_norm=1.0, group_by_length=True, compile=False)


@pytest.fixture()
def accelerator():
    acc = Accelerator(cpu=True)
    yield acc
    tracking.finish(acc)


def test_collate_masks_padding_out_of_the_loss():
    batch = collate([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].sum().item() == 4


def test_length_grouping_covers_every_example_once_and_sorts_within_batches():
    lengths = list(np.random.default_rng(0).integers(1, 100, size=103))
    batches = batch_order(lengths, 8, np.random.default_rng(1), group_by_length=True)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(103))
    assert all(lengths[b[0]] >= lengths[b[-1]] for b in batches)
    assert lengths[batches[0][0]] == max(lengths)


def test_encode_truncates_or_chunks(tiny_tokenizer):
    text = " ".join(SENTENCES[:6])
    n = len(tiny_tokenizer(text).input_ids)
    assert [len(x) for x in encode(tiny_tokenizer, [text], 16, "truncate")] == [16]
    assert sum(len(x) for x in encode(tiny_tokenizer, [text], 16, "chunk")) == n


def test_finetune_lowers_loss_and_reports_the_optimizer(tiny_model, tiny_tokenizer, accelerator):
    texts = SENTENCES[:24]
    batch = collate(encode(tiny_tokenizer, texts, 32), tiny_tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        before = tiny_model(**batch).loss.item()
    cfg = OmegaConf.create(CFG | {"epochs": 5})
    res = finetune(tiny_model, tiny_tokenizer, texts, cfg, accelerator, seed=0)
    with torch.no_grad():
        after = tiny_model(**batch).loss.item()
    assert after < before - 0.5
    assert res.epochs == 5 and res.steps == 5 * 6 and res.examples == 24
    assert res.tokens == 5 * int(batch["attention_mask"].sum())
    assert [g["weight_decay"] for g in res.optimizer] == [0.01, 0.0]
    assert not tiny_model.training


def test_padding_does_not_change_the_loss(tiny_model, tiny_tokenizer):
    a, b = encode(tiny_tokenizer, SENTENCES[:2], 32)
    with torch.no_grad():
        alone = tiny_model(**collate([a], 0, "cpu")).loss
        padded = tiny_model(**collate([a, b[:3]], 0, "cpu"))
        # per-example loss of `a` inside a padded batch equals its loss alone
        logits = padded.logits[0, : len(a) - 1]
        own = torch.nn.functional.cross_entropy(logits, torch.tensor(a[1:]))
    assert torch.allclose(alone, own, atol=1e-5)


def test_training_is_reproducible(tiny_tokenizer, accelerator):
    from bias_amp.models import tiny_lm

    cfg = OmegaConf.create(CFG)
    outs = []
    for _ in range(2):
        m = tiny_lm(tiny_tokenizer, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
        torch.manual_seed(0)
        finetune(m, tiny_tokenizer, SENTENCES[:16], cfg, accelerator, seed=7)
        outs.append(torch.cat([p.flatten() for p in m.parameters()]))
    assert torch.equal(outs[0], outs[1])


def test_attention_auto_trains_eager_on_cpu_and_puts_the_models_back(tiny_tokenizer, accelerator):
    from bias_amp.models import tiny_lm

    params = {}
    for impl in ("auto", "sdpa"):
        m = tiny_lm(tiny_tokenizer, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
        m.set_attn_implementation("sdpa")
        seen = []
        m.register_forward_pre_hook(lambda mod, args, seen=seen: seen.append(mod.config._attn_implementation))
        torch.manual_seed(0)
        finetune(m, tiny_tokenizer, SENTENCES[:16], OmegaConf.create(CFG | {"attention": impl}), accelerator, seed=7)
        assert set(seen) == {"eager" if impl == "auto" else "sdpa"}
        assert m.config._attn_implementation == "sdpa"            # synthesis gets the model as it was
        params[impl] = torch.cat([p.flatten() for p in m.parameters()])
    assert torch.allclose(params["auto"], params["sdpa"], atol=1e-4)   # the same training, another summation order


def test_unknown_attention_is_one_line_naming_the_key():
    from bias_amp.errors import ConfigError
    from bias_amp.train import validate

    cfg = OmegaConf.create(CFG | {"attention": "fast", "memory": "default", "loss_chunk": None, "optimizer_state": "fp32"})
    with pytest.raises(ConfigError, match=r"train\.attention.*one of"):
        validate(cfg)
