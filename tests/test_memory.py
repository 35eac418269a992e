"""train.memory=low (activation checkpointing + optimizer step in backward) trains the same weights as the plain
path, holds at most one parameter's gradient, and is refused where it cannot apply."""

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from conftest import SENTENCES
from omegaconf import OmegaConf

from bias_amp import memory, tracking
from bias_amp.errors import ConfigError
from bias_amp.models import tiny_lm
from bias_amp.train import finetune
from bias_amp.train import validate as validate_train

CFG = dict(max_length=32, unit="truncate", epochs=2, batch_size=4, lr=1e-3, weight_decay=0.01, scheduler="linear",
           warmup_steps=0, grad_accum=1, max_grad_norm=1.0, group_by_length=True, compile=False)


def trained(tokenizer, precision="fp32", **overrides):
    """A fresh tiny GPT-2 (tied embeddings, dropout on) fine-tuned with CFG | overrides: (state dict, result)."""
    model = tiny_lm(tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=1)
    acc = Accelerator(cpu=True)
    try:
        torch.manual_seed(0)                 # dropout masks: the same RNG stream on both paths
        res = finetune(model, tokenizer, SENTENCES[:20], OmegaConf.create(CFG | overrides), acc, seed=0,
                       precision=precision)
    finally:
        tracking.finish(acc)
    return {k: v.clone() for k, v in model.state_dict().items()}, res, model


@pytest.mark.parametrize("max_grad_norm, precision", [(0.05, "fp32"), (0.0, "fp32"), (0.05, "bf16")])
def test_low_memory_training_gives_the_same_weights(tiny_tokenizer, max_grad_norm, precision):
    """Clipping active on every step / no clipping; bf16 autocast without its weight cache: the same casts."""
    plain, res_plain, _ = trained(tiny_tokenizer, precision, max_grad_norm=max_grad_norm)
    low, res_low, model = trained(tiny_tokenizer, precision, max_grad_norm=max_grad_norm, memory="low")
    assert res_low.steps == res_plain.steps == 10
    assert res_low.loss == res_plain.loss
    assert all(torch.equal(plain[k], low[k]) for k in plain), [k for k in plain if not torch.equal(plain[k], low[k])]
    init = tiny_lm(tiny_tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=1).state_dict()
    assert not torch.equal(init["transformer.h.0.mlp.c_fc.weight"], low["transformer.h.0.mlp.c_fc.weight"])
    # the model is left as it was: no hooks, no checkpointing, no gradients
    assert not model.is_activation_checkpointing
    assert all(p.grad is None and not p._post_accumulate_grad_hooks for p in model.parameters())
    assert not model.get_input_embeddings()._forward_hooks         # transformers' input-grad hook removed


def test_step_in_backward_holds_one_gradient_at_a_time(tiny_tokenizer):
    model = tiny_lm(tiny_tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    held = []
    count = lambda _: held.append(sum(q.grad is not None for q in model.parameters()))  # noqa: E731
    spy = [p.register_post_accumulate_grad_hook(count) for p in model.parameters()]   # runs before the step's hook
    stepper = memory.StepInBackward(model, optimizer, max_grad_norm=None)
    ids = torch.tensor([tiny_tokenizer(SENTENCES[0]).input_ids[:16]])
    stepper.backward(lambda: model(input_ids=ids, labels=ids).loss)
    stepper.close()
    for h in spy:
        h.remove()
    assert len(held) == len(list(model.parameters())) and max(held) == 1
    assert all(p.grad is None for p in model.parameters())
    assert all(len(optimizer.state[p]) for p in model.parameters())   # every parameter was stepped once


@pytest.mark.parametrize("padding_idx", [None, 3])
def test_tied_head_gradient_is_made_last_and_bit_for_bit(tiny_model, tiny_tokenizer, monkeypatch, padding_idx):
    """token_nll on a tied embedding (memory.TiedRows): the same gradients, bit for bit, as the dense embedding
    plus HeadNLL's own weight gradient, but the [vocab, hidden] head gradient is made after every block's."""
    from bias_amp.train import collate

    monkeypatch.setattr(tiny_model.get_input_embeddings(), "padding_idx", padding_idx)
    batch = collate([tiny_tokenizer(s).input_ids[:24] for s in SENTENCES[:5]], tiny_tokenizer.pad_token_id, "cpu")
    labels, params = batch.pop("labels"), list(tiny_model.parameters())
    batch["input_ids"][0, :4] = 3                                          # a padding id (when set), repeated
    hidden = tiny_model.base_model(**batch)[0]
    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100).flatten()
    dense = torch.autograd.grad(memory.HeadNLL.apply(hidden.flatten(0, 1), tiny_model.lm_head.weight, targets, 7)
                                .sum(), params)
    events = []
    made = memory.HeadNLL.grad_weight
    monkeypatch.setattr(memory.HeadNLL, "grad_weight", lambda *a: events.append("head") or made(*a))
    hooks = [p.register_post_accumulate_grad_hook(lambda _: events.append("block"))
             for p in tiny_model.transformer.h.parameters()]
    tiny_model.zero_grad()
    memory.token_nll(tiny_model, batch["input_ids"], batch["attention_mask"], labels, chunk=7).sum().backward()
    for h in hooks:
        h.remove()
    assert events[-1] == "head" and events.count("head") == 1 and events.count("block") == len(hooks)
    assert all(torch.equal(a, p.grad) for a, p in zip(dense, params, strict=True))


@pytest.mark.parametrize("overrides, key", [
    ({"memory": "tiny"}, "train.memory"),
    ({"memory": "low", "grad_accum": 2}, "train.grad_accum"),
])
def test_bad_memory_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key}: expected"):
        validate_train(OmegaConf.create(CFG | {"scheduler": "linear"} | overrides))


def test_probe_runs_the_blocks_without_the_lm_head(tiny_model, tiny_tokenizer):
    """The activations come from the blocks alone: no [batch, length, vocab] logits are made (for SmolLM2's
    probe batch, 32 x 128 x 49,152 floats = 0.8 GB), and they equal the full model's block outputs."""
    from bias_amp.probes import mean_activations

    calls = []
    handle = tiny_model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    prompts = [tiny_tokenizer(s).input_ids for s in SENTENCES[:6]]
    got = mean_activations(tiny_model, tiny_tokenizer, prompts, batch_size=2, max_length=32)
    handle.remove()
    assert calls == []
    with torch.no_grad():
        outs = [tiny_model(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states for p in prompts]
    n_layer = tiny_model.config.n_layer
    ref = torch.stack([torch.cat([h[i + 1][0] for h in outs]).mean(0) for i in range(n_layer - 1)])
    assert torch.allclose(torch.from_numpy(got[:-1]), ref, atol=1e-5)   # the last block's output is before ln_f


@pytest.mark.parametrize("precision, tol", [("fp32", 1e-5), ("bf16", 2e-2)])
def test_token_nll_equals_the_whole_logits_loss_and_its_gradient(tiny_model, tiny_tokenizer, precision, tol):
    """memory.token_nll (train.loss_chunk): per-position NLL and gradients of the whole-logits loss, the head's
    weight (tied to the embedding here) included; under bf16 autocast within bf16's rounding."""
    from bias_amp.precision import autocast
    from bias_amp.train import collate, token_loss_sum

    batch = collate([tiny_tokenizer(s).input_ids[:24] for s in SENTENCES[:5]], tiny_tokenizer.pad_token_id, "cpu")
    labels = batch.pop("labels")
    assert memory.chunkable(tiny_model)
    with autocast(precision, "cpu"):
        whole = token_loss_sum(tiny_model(**batch).logits, labels)
    ref = torch.autograd.grad(whole, list(tiny_model.parameters()))
    with autocast(precision, "cpu"):
        nll = memory.token_nll(tiny_model, batch["input_ids"], batch["attention_mask"], labels, chunk=7)
    assert nll.shape == labels.shape and (nll[labels.roll(-1, 1) == -100] == 0).all() and (nll[:, -1] == 0).all()
    got = torch.autograd.grad(nll.sum(), list(tiny_model.parameters()))
    assert torch.allclose(nll.sum(), whole, rtol=tol)
    assert all(torch.allclose(a, b, rtol=tol, atol=tol * a.abs().max()) for a, b in zip(ref, got, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_loss_is_the_one_call_loss_bit_for_bit(dtype):
    """The head's loss a few rows at a time (memory.LOSS_ROWS, a speed-up) changes no value."""
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(23, 5003, generator=g) * 4).to(dtype)          # 23: not a multiple of LOSS_ROWS
    y = torch.randint(0, 5003, (23,), generator=g)
    y[::5] = -100
    whole = F.cross_entropy(logits.float(), y, ignore_index=-100, reduction="none")
    assert torch.equal(memory.row_nll(logits, y), whole) and (whole[::5] == 0).all()
    assert torch.equal(memory.row_softmax(logits), torch.softmax(logits.float(), -1))


def test_stochastic_rounding_is_unbiased_onto_the_two_neighbours():
    x = torch.full((200_000,), 1 + 2 ** -9)              # a quarter of the way from 1 to the next bf16, 1 + 2^-7
    got = memory.to_bf16_stochastic(x, torch.Generator().manual_seed(0)).float()
    assert set(got.unique().tolist()) == {1.0, 1 + 2 ** -7}
    assert got.mean().item() == pytest.approx(1 + 2 ** -9, abs=2e-5)     # round-to-nearest would give exactly 1


def test_bf16_moments_follow_adamw_where_round_to_nearest_would_stall():
    """The second moment's 0.1% steps are below bf16's resolution past ~0.25: rounded to nearest it stalls
    (v = 1 - 0.999^t under a constant gradient); stochastically rounded it follows torch's AdamW on average."""
    ref, ours = torch.nn.Parameter(torch.zeros(4096)), torch.nn.Parameter(torch.zeros(4096))
    opt_ref = torch.optim.AdamW([ref], lr=1e-3, weight_decay=0.01)
    opt = memory.AdamW([ours], lr=1e-3, weight_decay=0.01, seed=0)
    for _ in range(2000):
        for p, o in ((ref, opt_ref), (ours, opt)):
            p.grad = torch.ones_like(p)
            o.step()
    v = opt.state[ours]["exp_avg_sq"]
    assert v.dtype == torch.bfloat16 and opt.state[ours]["exp_avg"].dtype == torch.bfloat16
    assert v.float().mean().item() == pytest.approx(1 - 0.999 ** 2000, rel=2e-3)      # 0.865; rounded to nearest: 0.25
    # unbiased on average; per element, the rounding noise persists in v (memory 1/(1 - 0.999)): a few % off
    assert ours.mean().item() == pytest.approx(ref.mean().item(), rel=1e-4)
    assert torch.allclose(ours, ref, rtol=0.1)


@pytest.mark.parametrize("precision, overrides", [
    ("fp32", dict(loss_chunk=16)), ("fp32", dict(optimizer_state="bf16")),
    ("fp32", dict(memory="low", loss_chunk=16, optimizer_state="bf16"))])
def test_lean_training_stays_near_the_plain_weights(tiny_tokenizer, precision, overrides):
    plain, res_plain, _ = trained(tiny_tokenizer, precision)
    lean, res_lean, _ = trained(tiny_tokenizer, precision, **overrides)
    assert res_lean.loss == pytest.approx(res_plain.loss, rel=1e-4)
    moved = max((plain[k] - lean[k]).abs().max().item() for k in plain)
    assert 0 < moved < 1e-3                            # 10 steps of lr 1e-3: a different, nearby optimum path


@pytest.mark.parametrize("overrides, key", [({"loss_chunk": 0}, "train.loss_chunk"),
                                            ({"optimizer_state": "int8"}, "train.optimizer_state")])
def test_bad_lean_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key}: expected"):
        validate_train(OmegaConf.create(CFG | overrides))


def test_low_memory_returns_freed_blocks_to_the_os():
    """Under memory=low freed 16 MiB blocks leave the resident set at once; glibc's dynamic threshold serves them
    from the heap after the first frees, and freed heap blocks below live ones stay resident. In a fresh process, as
    run_setup calls return_freed_memory before any model loads: large free chunks an earlier test left in this
    process's heap (a deleted model's weights) would serve the blocks from the heap."""
    import subprocess
    import sys

    code = """
import re, torch
from bias_amp import memory
def rss_mb():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
if not memory.return_freed_memory():
    raise SystemExit(3)
pinned = []
for _ in range(3):                        # 4 blocks of 16 MiB; a small tensor made after them pins the heap's top
    blocks = [torch.ones(4 << 20) for _ in range(4)]
    pinned.append(torch.ones(1000))
    before = rss_mb()
    del blocks
    print(before - rss_mb())              # glibc's default: 64, 32, then 0 MiB given back
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode == 3:
        pytest.skip("not glibc")
    assert run.returncode == 0, run.stderr
    given_back = [float(x) for x in run.stdout.split()]
    assert len(given_back) == 3 and all(x > 48 for x in given_back), run.stdout


def test_trim_gives_freed_heap_pages_back():
    """memory.trim after return_freed_memory: free pages inside glibc's heap (a parsed corpus, freed while
    something allocated after it lives on) go back to the OS."""
    import re

    def rss_mb():
        with open("/proc/self/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024

    if not memory.return_freed_memory():
        pytest.skip("not glibc")
    memory.trim()
    start = rss_mb()
    texts = [f"article {i} " * 60 for i in range(200_000)]     # ~700-byte strings: glibc's heap, not pymalloc
    pin = torch.ones(16)                                      # allocated after them: the heap's top stays in use
    del texts
    freed = rss_mb() - start
    memory.trim()
    assert freed > 50                                          # freed, yet resident
    assert rss_mb() - start < 0.2 * freed, (freed, rss_mb() - start)
    del pin
