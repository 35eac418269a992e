"""The one home of every private transformers / torch internal the project uses (the fast decode loop's), with
the versions it was tested on. Nothing falls back silently to a slower path when one of them changes:
`require()` (run once before synthesis) raises naming what changed, and tests/test_compat.py fails."""

from __future__ import annotations

import functools
import inspect

import torch

TESTED = {"torch": ("2.13",), "transformers": ("5.24", "5.25")}   # major.minor versions these uses were tested with
_MASK_ARGS = {"config", "inputs_embeds", "attention_mask", "cache", "allow_is_causal_skip"}


# --- transformers: generation defaults, attention choice, masks, the static KV cache ------------------------------
def default_generation_params() -> dict:
    """The defaults generate() fills in when neither the kwargs nor the model's generation_config set a key."""
    from transformers import GenerationConfig

    return GenerationConfig._get_default_generation_params()


def attn_implementation(config) -> str:
    return config._attn_implementation


def set_attn_implementation(config, name: str) -> None:
    """Switch the attention function without the public setter's re-validation of every sub-config."""
    config._attn_implementation = name


def causal_mask(config, inputs_embeds: torch.Tensor, mask2d: torch.Tensor):
    """HF's 4D causal+padding mask for the model's attention (never the is_causal shortcut)."""
    from transformers.masking_utils import create_causal_mask

    return create_causal_mask(config=config, inputs_embeds=inputs_embeds, attention_mask=mask2d, cache=None,
                              allow_is_causal_skip=False)


def sdpa_attention(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def static_cache(config, max_cache_len: int):
    from transformers import StaticCache

    return StaticCache(config=config, max_cache_len=max_cache_len)


def cache_batch_size(cache) -> int | None:
    """Rows the cache's layers hold (None before the first forward)."""
    sizes = {getattr(layer, "batch_size", None) for layer in cache.layers}
    return sizes.pop() if len(sizes) == 1 else None


def rewind_cache(cache) -> None:
    """Write position back to 0; stale entries stay but are masked out and then overwritten."""
    for layer in cache.layers:
        layer.cumulative_length.zero_()


def compact_cache(cache, keep: torch.Tensor, spare: dict | None = None, written: int | None = None) -> None:
    """Keep only the rows `keep` (indices; repeats allowed) of every initialised layer. `spare`: a dict the caller
    keeps between calls; when the row count stays the same the rows are gathered into its buffers and the old
    ones kept there for the next call (a beam reorder every step, without allocating the cache anew); then
    `written` positions are copied, the rest left stale (masked out, or rewritten before they are read)."""
    for i, layer in enumerate(cache.layers):
        if not layer.is_initialized:
            continue
        for name in ("keys", "values"):
            old = getattr(layer, name)
            buf = spare.get((i, name)) if spare is not None else None
            if buf is None or buf.shape[0] != len(keep) or buf.shape[1:] != old.shape[1:]:
                buf, written_here = old.new_empty((len(keep), *old.shape[1:])), None
            else:
                written_here = written
            torch.index_select(old[:, :, :written_here], 0, keep, out=buf[:, :, :written_here])
            setattr(layer, name, buf)
            if spare is not None:
                spare[(i, name)] = old
        layer.batch_size = len(keep)


# --- torch: oneDNN linear with a packed weight ----------------------------------------------------------------------
def pack_linear_weight(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """`weight` [out, in] reordered once by oneDNN for inputs of about `rows` rows (fp32 or bf16)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows)


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


# --- transformers: beam search's selection (GenerationMixin._beam_search, steps b-g) ---------------------------------
_BEAM_HELPERS = {  # the private steps of GenerationMixin._beam_search that BeamSelection calls, and their arguments
    "_get_top_k_continuations": {"accumulated_log_probs", "running_sequences", "running_beam_indices", "cur_len",
                                 "decoder_prompt_len", "do_sample", "beams_to_keep", "num_beams", "batch_size"},
    "_get_running_beams_for_next_iteration": {"topk_log_probs", "topk_running_sequences", "topk_running_beam_indices",
                                              "next_token_hits_stopping_criteria", "num_beams"},
    "_update_finished_beams": {"sequences", "topk_running_sequences", "beam_scores", "topk_log_probs", "beam_indices",
                               "topk_running_beam_indices", "is_early_stop_heuristic_unsatisfied", "is_sent_finished",
                               "next_token_hits_stopping_criteria", "top_num_beam_mask", "num_beams", "cur_len",
                               "decoder_prompt_len", "length_penalty", "early_stopping"},
    "_check_early_stop_heuristic": {"is_early_stop_heuristic_unsatisfied", "running_beam_scores", "beam_scores",
                                    "is_sent_finished", "cur_len", "max_length", "decoder_prompt_len",
                                    "early_stopping", "length_penalty"},
    "_beam_search_has_unfinished_sequences": {"is_early_stop_heuristic_unsatisfied", "is_sent_finished",
                                              "next_token_hits_stopping_criteria", "early_stopping"},
}


class BeamSelection:
    """transformers' beam search, one step at a time, for a caller that runs the model itself: the same private
    helpers `_beam_search` calls, on the same state (scores of the running and finished beams, the sequences
    [batch, beams, prompt + new]), so the tokens are those `generate(num_beams=...)` picks from the same logits.
    Stopping: EOS, or `new_tokens` tokens (generate's two criteria here). `step(logits)` takes the last-position
    logits [batch * beams, vocab] and returns the row of the previous step each row continues (the cache's
    reorder), or None when the search is over; `new_tokens()` then gives each prompt's best beam."""

    def __init__(self, model, batch: int, beams: int, prompt_len: int, new_tokens: int, eos: tuple[int, ...],
                 pad: int, length_penalty: float, early_stopping, device):
        self.m, self.b, self.k, self.prompt = model, batch, beams, prompt_len
        self.length, self.lp, self.early = prompt_len + new_tokens, length_penalty, early_stopping
        self.eos = torch.tensor(eos or [-1], device=device)
        self.keep = max(2, 1 + len(eos)) * beams
        self.top_mask = torch.arange(self.keep, device=device) < beams
        self.running = torch.full((batch, beams, self.length), pad, dtype=torch.long, device=device)
        self.done = self.running.clone()
        self.running_scores = torch.zeros(batch, beams, device=device)
        self.running_scores[:, 1:] = -1e9
        self.scores = torch.full((batch, beams), -1e9, device=device)
        self.finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)
        self.improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
        self.running_idx = torch.full((batch, beams, new_tokens), -1, dtype=torch.int32, device=device)
        self.done_idx = self.running_idx.clone()
        self.cur = prompt_len

    def step(self, logits: torch.Tensor) -> torch.Tensor | None:
        m, b, k, cur = self.m, self.b, self.k, self.cur
        log_probs = torch.log_softmax(logits.float(), -1).view(b, k, -1) + self.running_scores[:, :, None]
        top_lp, top_seq, top_idx = m._get_top_k_continuations(
            accumulated_log_probs=log_probs.view(b, -1), running_sequences=self.running,
            running_beam_indices=self.running_idx, cur_len=cur, decoder_prompt_len=self.prompt, do_sample=False,
            beams_to_keep=self.keep, num_beams=k, batch_size=b)
        hits = torch.isin(top_seq[:, :, cur], self.eos) | (cur + 1 >= self.length)
        self.running, self.running_scores, self.running_idx = m._get_running_beams_for_next_iteration(
            topk_log_probs=top_lp, topk_running_sequences=top_seq, topk_running_beam_indices=top_idx,
            next_token_hits_stopping_criteria=hits, num_beams=k)
        self.done, self.scores, self.done_idx, self.finished = m._update_finished_beams(
            sequences=self.done, topk_running_sequences=top_seq, beam_scores=self.scores, topk_log_probs=top_lp,
            beam_indices=self.done_idx, topk_running_beam_indices=top_idx,
            is_early_stop_heuristic_unsatisfied=self.improvable, is_sent_finished=self.finished,
            next_token_hits_stopping_criteria=hits, top_num_beam_mask=self.top_mask, num_beams=k, cur_len=cur,
            decoder_prompt_len=self.prompt, length_penalty=self.lp, early_stopping=self.early)
        rows = self.running_idx[..., cur - self.prompt].reshape(-1)
        self.cur = cur = cur + 1
        self.improvable = m._check_early_stop_heuristic(
            is_early_stop_heuristic_unsatisfied=self.improvable, running_beam_scores=self.running_scores,
            beam_scores=self.scores, is_sent_finished=self.finished, cur_len=cur, max_length=self.length,
            decoder_prompt_len=self.prompt, early_stopping=self.early, length_penalty=self.lp)
        going = m._beam_search_has_unfinished_sequences(self.improvable, self.finished, hits, self.early)
        return rows.long() if bool(going) else None

    def last_tokens(self) -> torch.Tensor:
        """[batch * beams] the token each running beam ends in (the next forward's input)."""
        return self.running[:, :, self.cur - 1].reshape(-1)

    def new_tokens(self) -> list[list[int]]:
        """Each prompt's best beam after the prompt (generate's `sequences[:, prompt:]`, untrimmed)."""
        generated = int((self.done_idx[:, 0] + 1).bool().sum(-1).max())
        return self.done[:, 0, self.prompt:self.prompt + generated].tolist()


# --- the check ------------------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import transformers

    return {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}


def problems() -> list[str]:
    """What no longer works as used here ([] when all is there); each entry names the internal."""
    from transformers import GPT2Config
    from transformers.cache_utils import StaticLayer

    out = []

    def probe(name, fn):
        try:
            if fn() is False:
                out.append(f"{name}: changed")
        except Exception as err:  # noqa: BLE001 - any failure is the finding
            out.append(f"{name}: {type(err).__name__}: {err}")

    probe("GenerationConfig._get_default_generation_params", lambda: isinstance(default_generation_params(), dict))
    probe("PretrainedConfig._attn_implementation",
          lambda: attn_implementation(GPT2Config(attn_implementation="sdpa")) == "sdpa")
    from transformers.masking_utils import create_causal_mask

    probe("masking_utils.create_causal_mask arguments",
          lambda: _MASK_ARGS <= inspect.signature(create_causal_mask).parameters.keys())
    probe("integrations.sdpa_attention.sdpa_attention_forward", lambda: callable(
        __import__("transformers.integrations.sdpa_attention", fromlist=["x"]).sdpa_attention_forward))

    def cache_layer():
        layer = StaticLayer(max_cache_len=4)
        layer.lazy_initialization(torch.zeros(2, 1, 1, 3), torch.zeros(2, 1, 1, 3))
        return (layer.is_initialized and layer.batch_size == 2 and layer.keys.shape == (2, 1, 4, 3)
                and isinstance(layer.cumulative_length, torch.Tensor))

    probe("cache_utils.StaticLayer (keys, values, batch_size, cumulative_length, is_initialized)", cache_layer)
    from transformers import GenerationMixin

    for name, args in _BEAM_HELPERS.items():
        probe(f"GenerationMixin.{name} arguments",
              lambda name=name, args=args: args <= inspect.signature(getattr(GenerationMixin, name)).parameters.keys())
    if torch.backends.mkldnn.is_available():
        def linear():
            x, w = torch.randn(3, 8), torch.randn(5, 8)
            got = packed_linear(x, pack_linear_weight(w, 3), None)
            return torch.allclose(got, x @ w.T, atol=1e-4)

        probe("torch.ops.mkldnn._reorder_linear_weight / _linear_pointwise", linear)
    return out


@functools.cache
def require() -> None:
    """Raise (once per process) when a private internal this project uses has changed."""
    found = problems()
    if found:
        raise RuntimeError(f"private APIs used by bias_amp changed under {versions()} (tested: {TESTED}): "
                           + "; ".join(found))
