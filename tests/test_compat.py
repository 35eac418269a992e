"""The private torch / transformers internals the fast decoder relies on (bias_amp.compat) still work as used.
A supported version that changes one of them fails here, loudly, instead of synthesis falling back to a slower path."""

import pytest
import torch

from bias_amp import compat


def test_every_private_internal_still_works_as_used():
    assert compat.problems() == []


def test_tested_versions_are_written_down_and_include_the_installed_ones():
    installed = {k: ".".join(v.split(".")[:2]) for k, v in compat.versions().items()}
    assert set(compat.TESTED) == {"torch", "transformers"}
    for lib, version in installed.items():
        assert version in compat.TESTED[lib], f"{lib} {version} not in compat.TESTED: run this file, then add it"


def test_a_changed_internal_stops_synthesis_with_its_name(monkeypatch, tiny_model):
    from bias_amp.synth import generate_blocks

    def removed(*_):
        raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_reorder_linear_weight'")

    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", removed)
    compat.require.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"changed under .*tested: .*_reorder_linear_weight"):
            generate_blocks(tiny_model, [[1, 2, 3]], {"do_sample": False}, new_tokens=2)
    finally:
        compat.require.cache_clear()


def test_cache_helpers_rewind_and_compact(tiny_model):
    cache = compat.static_cache(tiny_model.config, 8)
    assert compat.cache_batch_size(cache) is None
    with torch.inference_mode():
        tiny_model(input_ids=torch.tensor([[1, 2], [3, 4], [5, 6]]), cache=cache, use_cache=True)
    assert compat.cache_batch_size(cache) == 3
    compat.compact_cache(cache, torch.tensor([0, 2]))
    assert compat.cache_batch_size(cache) == 2 and cache.layers[0].keys.shape[0] == 2
    compat.rewind_cache(cache)
    assert int(cache.layers[0].cumulative_length) == 0


def test_cache_reorder_into_spare_buffers_copies_the_written_positions(tiny_model):
    cache = compat.static_cache(tiny_model.config, 8)
    with torch.inference_mode():
        tiny_model(input_ids=torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]]), cache=cache, use_cache=True)
        first, before = cache.layers[0].keys, cache.layers[0].keys.clone()
        spare, cycle = {}, torch.tensor([1, 2, 0])
        compat.compact_cache(cache, cycle, spare, written=3)  # first call: a fresh buffer, every position copied
        assert torch.equal(cache.layers[0].keys, before[cycle]) and spare[(0, "keys")] is first
        compat.compact_cache(cache, cycle, spare, written=2)  # back into the first buffer: positions 0-1 only
    keys = cache.layers[0].keys
    assert keys is first and torch.equal(keys[:, :, :2], before[cycle][cycle][:, :, :2])
    assert torch.equal(keys[:, :, 2:], before[:, :, 2:])  # not copied: the buffer's old rows, stale
