"""Perplexity: HF-guide sliding windows, exactness against the model's own loss, batch invariance."""

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bias_amp.errors import ConfigError
from bias_amp.metrics.perplexity import perplexities, validate, windows

TEXTS = ["The senate passed the budget bill on Tuesday after a long debate.",
         "Critics said the new tax plan favours the wealthy over working families. " * 3,
         "Supporters argued the border policy would restore order."]


def test_windows_follow_the_hf_guide():
    # 10 tokens, window 4, stride 2: targets 4 new, then 2 at a time; every token scored once
    assert windows(list(range(10)), 4, 2) == [(0, 4, 4), (2, 6, 2), (4, 8, 2), (6, 10, 2)]
    assert windows(list(range(5)), 8, 4) == [(0, 5, 5)]
    assert sum(n for _, _, n in windows(list(range(37)), 8, 3)) == 37


def test_whole_article_window_equals_model_loss(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer(TEXTS[1], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = tiny_model(input_ids=ids, labels=ids).loss.item()
    ppl = perplexities(tiny_model, tiny_tokenizer, [TEXTS[1]], max_length=256, stride=256)
    assert ppl[0] == pytest.approx(math.exp(loss), rel=1e-5)


def test_batching_and_order_do_not_change_values(tiny_model, tiny_tokenizer):
    one = [perplexities(tiny_model, tiny_tokenizer, [t], max_length=16, stride=8)[0] for t in TEXTS]
    batched = perplexities(tiny_model, tiny_tokenizer, TEXTS, max_length=16, stride=8, batch_size=4)
    assert np.allclose(batched, one, rtol=1e-5)
    # a random model: perplexity near the vocabulary size, a shorter context never helps much
    assert all(100 < p < 2000 for p in batched)
    short = perplexities(tiny_model, tiny_tokenizer, TEXTS, max_length=16, stride=8, max_tokens=10)
    assert not np.allclose(short, batched)


def test_too_short_article_is_nan(tiny_model, tiny_tokenizer):
    out = perplexities(tiny_model, tiny_tokenizer, ["", TEXTS[0]], max_length=32, stride=16)
    assert math.isnan(out[0]) and out[1] > 1


def test_validation_messages():
    cfg = OmegaConf.create({"enabled": True, "model": None, "max_length": None, "stride": 512, "max_tokens": None,
                            "batch_size": 8})
    validate(cfg)
    with pytest.raises(ConfigError, match=r"^perplexity.stride: expected an integer in \[1, inf\], got 0"):
        validate(OmegaConf.merge(cfg, {"stride": 0}))
    with pytest.raises(ConfigError, match=r"^perplexity.stride: expected <= max_length=128, got 512"):
        validate(OmegaConf.merge(cfg, {"max_length": 128}))
    with pytest.raises(ConfigError, match=r"^perplexity.model: expected an existing model directory"):
        validate(OmegaConf.merge(cfg, {"model": "./no/such/dir"}))


def test_the_lm_head_runs_on_chunks_of_positions(tiny_model, tiny_tokenizer, monkeypatch):
    """No [batch, length, vocab] logits (SmolLM2: 1.6 GB per batch): the head sees CHUNK positions at a time,
    and the perplexities are those of the whole-logits computation."""
    from bias_amp import memory
    from bias_amp.metrics import perplexity

    whole = perplexities(tiny_model, tiny_tokenizer, TEXTS, max_length=16, stride=8, batch_size=4)
    rows, row_nll = [], memory.row_nll

    def spy(logits, *args, **kwargs):
        rows.append(logits.shape)
        return row_nll(logits, *args, **kwargs)

    monkeypatch.setattr(memory, "row_nll", spy)
    monkeypatch.setattr(perplexity, "CHUNK", 5)
    chunked = perplexities(tiny_model, tiny_tokenizer, TEXTS, max_length=16, stride=8, batch_size=4)
    assert {r[1] for r in rows} == {tiny_model.config.vocab_size}
    assert max(r[0] for r in rows) == 5 and len(rows) > 3
    assert np.allclose(chunked, whole, rtol=1e-6)
