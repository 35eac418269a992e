"""Block synthesis: block structure, batched decoding equals HF's per-block generate, EOS, seeds, validation."""

import math
from dataclasses import dataclass

import pytest
import torch
from conftest import SENTENCES

from bias_amp.errors import ConfigError
from bias_amp.synth import generate_blocks, split_blocks, synthesize, validate_decoding
from bias_amp.synth.decode import in_nucleus

GREEDY = {"do_sample": False, "num_beams": 1}
NUCLEUS = {"do_sample": True, "top_p": 0.9, "top_k": 0}


@dataclass
class Art:  # attribute access, like bias_amp.data.Article
    id: str
    label: str
    title: str
    body: str
    source: str = "x"


def articles(n=4, sentences=4):
    rows = []
    for i in range(n):
        body = " ".join(SENTENCES[i:i + sentences + i])
        rows.append({"id": f"a{i}", "label": ["left", "center", "right"][i % 3], "title": SENTENCES[i + 1],
                     "body": body, "source": "s"})
    return rows


def naive(model, prompt, new_tokens, eos, **kwargs):
    """The authors' way: one generate call per block, batch 1."""
    ids = torch.tensor([prompt])
    kwargs = {"do_sample": False, **kwargs}
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, pad_token_id=eos,
                         **kwargs)[0, len(prompt):].tolist()
    return out[:out.index(eos)] if eos in out else out


def eos_model(model, eos_id, bias):
    """Untie the LM head and add a bias on EOS: rows stop early (or at once for a large bias)."""
    head = torch.nn.Linear(model.config.n_embd, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[eos_id] = bias
    model.lm_head = head
    return model


def test_split_blocks_title_then_body_chunks(tiny_tokenizer):
    body = " ".join(SENTENCES[:5])
    ids = tiny_tokenizer(body, add_special_tokens=False)["input_ids"]
    blocks = split_blocks(tiny_tokenizer, "Senate vote", body, block_tokens=16)
    assert blocks[0] == tiny_tokenizer("Senate vote", add_special_tokens=False)["input_ids"]
    assert sum(blocks[1:], []) == ids  # one tokenisation of the body, cut in order
    assert [len(b) for b in blocks[1:]] == [16] * (len(ids) // 16) + ([len(ids) % 16] if len(ids) % 16 else [])
    assert split_blocks(tiny_tokenizer, "", body, 16) == blocks[1:]
    assert split_blocks(tiny_tokenizer, "T", "", 16) == blocks[:0] + [tiny_tokenizer("T")["input_ids"]]
    with pytest.raises(ConfigError, match=r"^synthesis.block_tokens: expected an integer in \[1, inf\], got 0"):
        synthesize(None, tiny_tokenizer, articles(1), GREEDY, block_tokens=0)  # checked once, before any model work


def test_synthesize_structure_ids_labels_order(tiny_model, tiny_tokenizer):
    model = eos_model(tiny_model, tiny_tokenizer.eos_token_id, -1e4)  # never stops early
    arts = articles(4)
    arts[1] = Art(**arts[1])  # dataclass records work as well as dicts
    seen = []
    out = synthesize(model, tiny_tokenizer, arts, GREEDY, block_tokens=16, new_tokens=8, batch_size=5,
                     progress=False, on_batch=seen.append)
    assert [o["id"] for o in out] == ["a0", "a1", "a2", "a3"]
    assert [o["label"] for o in out] == ["left", "center", "right", "left"]
    total = 0
    for art, o in zip(articles(4), out, strict=True):
        n_body = len(tiny_tokenizer(art["body"], add_special_tokens=False)["input_ids"])
        assert len(o["continuations"]) == 1 + math.ceil(n_body / 16)
        assert o["new_tokens"] == 8 * len(o["continuations"])
        assert o["text"] == "".join(o["continuations"]) or o["text"].replace(" ", "") == "".join(
            o["continuations"]).replace(" ", "")
        total += len(o["continuations"])
    assert seen[-1]["blocks_done"] == seen[-1]["blocks_total"] == total
    assert seen[-1]["new_tokens"] == 8 * total and len(seen) == math.ceil(total / 5)


def test_paper_block_sizes_with_real_gpt2_tokenizer(gpt2_tokenizer):
    from bias_amp.models import tiny_lm

    model = eos_model(tiny_lm(gpt2_tokenizer, n_layer=1, n_embd=32, n_head=2, n_positions=160).eval(),
                      gpt2_tokenizer.eos_token_id, -1e4)
    body = " ".join(SENTENCES[:12])
    n_body = len(gpt2_tokenizer(body)["input_ids"])
    (o,) = synthesize(model, gpt2_tokenizer, [{"id": 7, "label": "right", "title": "A title", "body": body}],
                      GREEDY, batch_size=4, progress=False)
    assert len(o["continuations"]) == 1 + math.ceil(n_body / 64) and o["new_tokens"] == 64 * len(o["continuations"])
    assert (o["id"], o["label"]) == (7, "right")


def test_batched_greedy_equals_naive_per_block(tiny_model, tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    blocks = [b for a in articles(3) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 12)]
    assert len({len(b) for b in blocks}) > 2  # mixed lengths: left padding is exercised
    got = generate_blocks(tiny_model, blocks, GREEDY, new_tokens=24, batch_size=7, pad_id=eos)
    assert got == [naive(tiny_model, b, 24, eos) for b in blocks]


def attention_calls(monkeypatch) -> list[tuple[int, int, int]]:
    """(query length, mask length, cache length) of every sliced-SDPA call from now on, appended as they happen."""
    from bias_amp.synth import kernels

    seen, sliced = [], kernels._sliced_sdpa

    def spy(module, query, key, value, attention_mask, **kwargs):
        seen.append((query.shape[2], attention_mask.shape[-1], key.shape[2]))
        return sliced(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setattr(kernels, "_sliced_sdpa", spy)
    return seen


def test_sdpa_reads_only_written_cache_positions(tiny_model, tiny_tokenizer, monkeypatch):
    seen = attention_calls(monkeypatch)
    eos = tiny_tokenizer.eos_token_id
    blocks = [b for a in articles(2) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 12)][:4]
    got = generate_blocks(tiny_model, blocks, GREEDY, new_tokens=10, batch_size=4, pad_id=eos)
    assert got == [naive(tiny_model, b, 10, eos) for b in blocks]
    width, layers = max(map(len, blocks)), tiny_model.config.n_layer
    assert [(q, n) for q, n, _ in seen[::layers]] == [(width, width)] + [(1, width + t + 1) for t in range(9)]
    assert {k for *_, k in seen} == {width + 10}  # the static cache itself keeps its full length
    assert tiny_model.config._attn_implementation == "sdpa"  # restored after decoding


def test_prefill_runs_in_position_chunks_and_matches_naive(tiny_model, tiny_tokenizer, monkeypatch):
    from bias_amp.synth import decode

    seen = attention_calls(monkeypatch)
    monkeypatch.setattr(decode, "_PREFILL_ROWS", 4 * 5)  # batch of 4 -> chunks of 5 positions
    eos = tiny_tokenizer.eos_token_id
    blocks = [b for a in articles(2) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 12)][:4]
    width = max(map(len, blocks))
    got = generate_blocks(tiny_model, blocks, GREEDY, new_tokens=6, batch_size=4, pad_id=eos)
    assert got == [naive(tiny_model, b, 6, eos) for b in blocks]
    ends = [*range(5, width, 5), width]
    want = [(e - s, e) for s, e in zip([0, *ends[:-1]], ends, strict=True)] + [(1, width + t + 1) for t in range(5)]
    assert [(q, n) for q, n, _ in seen[::tiny_model.config.n_layer]] == want


def test_packed_weights_take_small_inputs_only_and_are_undone(tiny_model, monkeypatch):
    from bias_amp.synth import kernels

    calls = []
    pointwise = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda x, *a: calls.append(x.shape) or pointwise(x, *a))
    conv, head = tiny_model.transformer.h[0].mlp.c_fc, tiny_model.lm_head  # GPT-2 Conv1D, nn.Linear
    small, big = torch.randn(3, 1, 64), torch.randn(kernels.PACKED_MAX_ROWS + 1, 64)
    want = [conv(small), head(small), conv(big)]
    with torch.inference_mode(), kernels.packed_weights(tiny_model, rows=3) as packed:
        assert packed
        got = [conv(small), head(small), conv(big)]
    assert calls == [(3, 1, 64), (3, 1, 64)]  # the big input stayed on the dense path
    torch.testing.assert_close(got[:2], want[:2], rtol=1e-5, atol=1e-6)
    assert torch.equal(got[2], want[2])
    assert not any("forward" in vars(m) for m in tiny_model.modules())
    with kernels.packed_weights(tiny_model, rows=3, enabled=False) as packed:
        assert not packed and "forward" not in vars(head)
    monkeypatch.setattr(kernels.precision, "cpu_flags", lambda: frozenset({"avx2"}))  # no native bf16: not packed
    assert kernels.packing_problem(tiny_model.to(torch.bfloat16)) == "dtype torch.bfloat16"
    monkeypatch.setattr(kernels.precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert kernels.packing_problem(tiny_model) == ""


def test_eos_stops_a_row_and_matches_naive(tiny_model, tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    model = eos_model(tiny_model, eos, 0.5)  # EOS wins at some steps of some rows only
    blocks = [b for a in articles(3) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 12)]
    got = generate_blocks(model, blocks, GREEDY, new_tokens=24, batch_size=16, pad_id=eos)
    assert got == [naive(model, b, 24, eos) for b in blocks]
    lengths = {len(g) for g in got}
    assert min(lengths) < 24 and max(lengths) == 24 and len(lengths) > 2  # stopped rows left the batch early
    stop = eos_model(tiny_model, eos, 1e4)
    (o,) = synthesize(stop, tiny_tokenizer, articles(1), GREEDY, block_tokens=16, progress=False)
    assert o["new_tokens"] == 0 and o["text"] == "" and set(o["continuations"]) == {""}


def test_llama_architecture_greedy_equals_naive(tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = tiny_tokenizer.eos_token_id
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model = LlamaForCausalLM(config).eval()
    blocks = [b for a in articles(2) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 12)]
    got = generate_blocks(model, blocks, GREEDY, new_tokens=16, batch_size=5, pad_id=eos)
    assert got == [naive(model, b, 16, eos) for b in blocks]
    out = synthesize(model, tiny_tokenizer, articles(2), NUCLEUS, block_tokens=12, new_tokens=8, progress=False)
    assert [len(o["continuations"]) for o in out] == [len(split_blocks(tiny_tokenizer, a["title"], a["body"], 12))
                                                      for a in articles(2)]


def test_eager_attention_mask_format(tiny_model, tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    tiny_model.set_attn_implementation("eager")
    blocks = [b for a in articles(2) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 10)]
    got = generate_blocks(tiny_model, blocks, GREEDY, new_tokens=12, batch_size=6, pad_id=eos)
    assert got == [naive(tiny_model, b, 12, eos) for b in blocks]


def test_nucleus_seeded(tiny_model, tiny_tokenizer):
    def run(seed):
        return synthesize(tiny_model, tiny_tokenizer, articles(2), NUCLEUS, block_tokens=16, new_tokens=16,
                          batch_size=4, seed=seed, progress=False)

    a, b, c = run(1), run(1), run(2)
    assert a == b
    assert [o["text"] for o in a] != [o["text"] for o in c]


def test_nucleus_membership_equals_hf_top_p():
    from transformers.generation.logits_process import TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=g) * 3
    kept = TopPLogitsWarper(0.9)(None, logits.clone()) > float("-inf")
    probs = logits.softmax(-1)
    for tok in range(50):
        mine = in_nucleus(probs, torch.full((64,), tok), 0.9)
        assert torch.equal(mine, kept[:, tok])


def test_nucleus_sampling_distribution_matches_hf(monkeypatch):
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    from bias_amp.synth.decode import Sampler
    from bias_amp.synth.options import Plan

    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0]]).repeat(20000, 1)
    target = TopPLogitsWarper(0.8)(None, TopKLogitsWarper(6)(None, logits[:1] / 0.7)).softmax(-1)[0]
    sampler = Sampler(Plan(fast=True, sample=True, temperature=0.7, top_k=6, top_p=0.8), torch.Generator().manual_seed(3))
    freq = torch.bincount(sampler(logits), minlength=8).float() / len(logits)
    assert freq[target == 0].sum() == 0
    assert torch.allclose(freq, target, atol=0.015)


def no_hf_generate(monkeypatch):
    from bias_amp.synth import decode

    monkeypatch.setattr(decode, "hf_generate", lambda *a, **k: pytest.fail("HF generate ran"))


def test_beam_search_runs_batched_and_matches_naive(tiny_model, tiny_tokenizer, monkeypatch):
    no_hf_generate(monkeypatch)
    eos = tiny_tokenizer.eos_token_id
    model = eos_model(tiny_model, eos, -1e4)
    blocks = [b for a in articles(2) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 16)][:4]
    got = generate_blocks(model, blocks, {"num_beams": 10}, new_tokens=8, batch_size=4, pad_id=eos)
    assert [len(g) for g in got] == [8] * len(blocks)
    assert got == [naive(model, b, 8, eos, num_beams=10) for b in blocks]


@pytest.mark.parametrize("kw, bias", [({"num_beams": 4}, 0.8), ({"num_beams": 3, "length_penalty": 0.3}, 0.5),
                                      ({"num_beams": 5, "early_stopping": True, "length_penalty": 2.0}, 0.5),
                                      ({"num_beams": 4, "early_stopping": "never"}, 1.0)])
def test_beam_search_with_eos_equals_hf_generate_per_block(kw, bias, tiny_model, tiny_tokenizer, monkeypatch):
    """Beams end at EOS at different steps: finished hypotheses, length penalty and the stopping rules are HF's."""
    eos = tiny_tokenizer.eos_token_id
    model = eos_model(tiny_model, eos, bias)
    blocks = [b for a in articles(3) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 12)]
    want = [naive(model, b, 16, eos, **kw) for b in blocks]
    no_hf_generate(monkeypatch)
    assert generate_blocks(model, blocks, kw, new_tokens=16, batch_size=5, pad_id=eos) == want
    assert len({len(w) for w in want}) > 2  # some beams stopped early, at different lengths


def test_beam_search_llama_architecture_equals_hf_generate(tiny_tokenizer, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = tiny_tokenizer.eos_token_id
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model = LlamaForCausalLM(config).eval()
    blocks = [b for a in articles(2) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 12)]
    want = [naive(model, b, 12, eos, num_beams=6) for b in blocks]
    no_hf_generate(monkeypatch)
    assert generate_blocks(model, blocks, {"num_beams": 6}, new_tokens=12, batch_size=4, pad_id=eos) == want


def test_beam_sampling_goes_to_hf_generate(tiny_model):
    from bias_amp.synth.options import plan

    assert plan(tiny_model, {"num_beams": 3, "do_sample": True}, 0).why_hf.startswith("num_beams=3 with do_sample")
    assert plan(tiny_model, {"num_beams": 3}, 0).beams == 3


def test_other_generate_kwargs_pass_through(tiny_model, tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    blocks = [b for a in articles(2) for b in split_blocks(tiny_tokenizer, a["title"], a["body"], 16)][:3]
    kw = {"do_sample": False, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2}
    got = generate_blocks(tiny_model, blocks, kw, new_tokens=10, batch_size=3, pad_id=eos)
    assert got == [naive(tiny_model, b, 10, eos, repetition_penalty=1.5, no_repeat_ngram_size=2) for b in blocks]
    plain = generate_blocks(tiny_model, blocks, GREEDY, new_tokens=10, batch_size=3, pad_id=eos)
    assert got != plain


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"do_sample": False, "beam_width": 3}, r"^decoding.kwargs.beam_width: expected a generate\(\) argument$"),
        ({"num_beams": 0}, r"^decoding.kwargs.num_beams: expected an integer in \[1, inf\], got 0$"),
        ({"num_beams": 2.5}, r"^decoding.kwargs.num_beams: expected an integer"),
        ({"top_p": 0.0}, r"^decoding.kwargs.top_p: expected a number in \(0, 1\], got 0.0$"),
        ({"top_p": 1.5}, r"^decoding.kwargs.top_p: expected a number in \(0, 1\], got 1.5$"),
        ({"temperature": 0}, r"^decoding.kwargs.temperature: expected a number in \(0, inf\], got 0$"),
        ({"top_k": -1}, r"^decoding.kwargs.top_k: expected an integer in \[0, inf\]"),
        ({"do_sample": "yes"}, r"^decoding.kwargs.do_sample: expected true or false"),
        ({"max_new_tokens": 5}, r"^decoding.kwargs.max_new_tokens: expected unset \(synthesis.new_tokens"),
    ],
)
def test_bad_decoding_is_refused_before_model_work(kwargs, message, tiny_tokenizer):
    with pytest.raises(ConfigError, match=message):
        validate_decoding(kwargs)
    with pytest.raises(ConfigError, match=message):  # model=None: nothing touches a model first
        synthesize(None, tiny_tokenizer, articles(1), kwargs, progress=False)


def test_conf_decodings_validate():
    from pathlib import Path

    from omegaconf import OmegaConf

    confs = sorted((Path(__file__).resolve().parents[1] / "conf" / "decoding").glob("*.yaml"))
    assert {p.stem for p in confs} >= {"greedy", "beam", "nucleus"}
    for path in confs:
        validate_decoding(OmegaConf.load(path).kwargs)


def test_fast_gelu_is_bitwise_hf_gelu_new_and_restored(tiny_model):
    from transformers.activations import NewGELUActivation

    from bias_amp.synth.kernels import exact_fast_ops

    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * 4
    act = tiny_model.transformer.h[0].mlp.act
    assert type(act) is NewGELUActivation
    want = act(x)
    with torch.inference_mode(), exact_fast_ops(tiny_model):
        assert "forward" in vars(act) and torch.equal(act(x), want)
    assert "forward" not in vars(act)


def test_threads_option_is_restored(tiny_model, tiny_tokenizer):
    before = torch.get_num_threads()
    synthesize(tiny_model, tiny_tokenizer, articles(1), GREEDY, block_tokens=16, new_tokens=4, threads=1,
               progress=False)
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match=r"^synthesis.threads: expected an integer in \[1, inf\], got 0"):
        synthesize(tiny_model, tiny_tokenizer, articles(1), GREEDY, threads=0, progress=False)


def test_max_blocks_caps_body_blocks(gpt2_tokenizer):
    body = " ".join(["The committee met again on Tuesday to debate the budget."] * 40)
    full = split_blocks(gpt2_tokenizer, "A title", body, 64)
    capped = split_blocks(gpt2_tokenizer, "A title", body, 64, max_blocks=2)
    assert len(full) > 3 and capped == full[:3]
