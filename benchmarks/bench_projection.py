"""Step cost of c_t (bias_amp/projection.py): an optimizer step of `train.finetune` plain, with c_t measured
(the grad_hook: two dot products over the parameters), and under mitigation `project` (hard, at the update:
+ two dot products and one axpy; at the gradient: + one axpy). Also the per-generation cost of b̂ (forward and
backward over the probe set) in plain steps. Same texts (the embedded sample corpus), same init, same seed;
variants alternate within each repeat; per-step time = median of steps 2.. (step 1 holds allocations).

    nice .venv/bin/python benchmarks/bench_projection.py                     # tiny (smoke model) and small
    .venv/bin/python benchmarks/bench_projection.py --model gpt2-small --steps 6 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from omegaconf import OmegaConf

from bias_amp import projection, train
from bias_amp.models import tiny_lm, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "bias_amp" / "resources" / "sample_corpus.jsonl"
MODELS = {"tiny": dict(n_layer=2, n_embd=64, n_head=2), "small": dict(n_layer=4, n_embd=256, n_head=4),
          "gpt2-small": dict(n_layer=12, n_embd=768, n_head=12)}
VARIANTS = {"plain": None, "measure": None,
            "project@update": {"form": "hard", "lam": 0.0, "gamma": 1.0, "at": "update", "refresh_every": None},
            "project@gradient": {"form": "hard", "lam": 0.0, "gamma": 1.0, "at": "gradient", "refresh_every": None}}


def config(args, project):
    return OmegaConf.create({
        "projection": {"enabled": True, "probe_per_label": args.probe, "params": "all"},
        "mitigation": {"project": project},
        "train": {"max_length": args.max_length, "epochs": 1, "batch_size": args.batch_size, "lr": 5e-5,
                  "weight_decay": 0.01, "scheduler": "linear", "warmup_steps": 0, "grad_accum": 1,
                  "max_grad_norm": 1.0, "group_by_length": False, "unit": "truncate", "compile": False,
                  "memory": "default"}})


def one(args, tok, texts, probe, variant) -> tuple[float, float, float]:
    """(median seconds per step after step 1, seconds of b̂ in start(), median seconds inside the hooks per
    step: the added work itself, timed directly, so less exposed to the machine's load than the step ratio)."""
    cfg = config(args, VARIANTS[variant])
    model = tiny_lm(tok, n_positions=args.max_length, seed=0, **MODELS[args.model])
    stamps, hook, after, b_seconds, inside = [], None, None, 0.0, []
    if variant != "plain":
        tracker = projection.Tracker(cfg, probe, model)
        t = time.perf_counter()
        tracker.start(model, tok)
        b_seconds = time.perf_counter() - t

        def hook(step, m):
            t = time.perf_counter()
            tracker.before_step(step, m)
            inside.append(time.perf_counter() - t)

        def after(step):
            t = time.perf_counter()
            tracker.after_step(step)
            inside[-1] += time.perf_counter() - t

    def on_step(step):
        after and after(step)
        stamps.append(time.perf_counter())

    train.finetune(model, tok, texts, cfg.train, Accelerator(cpu=args.device == "cpu"), seed=0,
                   grad_hook=hook, on_step=on_step)
    return (statistics.median(b - a for a, b in zip(stamps, stamps[1:], strict=False)), b_seconds,
            statistics.median(inside[1:]) if inside else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(MODELS), action="append")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--probe", type=int, default=16, help="probe articles per leaning (right, left)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    texts = [f"title: {r['title']}\nbody: {r['text']}" for r in rows]
    tok = train_tokenizer(texts, vocab_size=1024)
    probe = {lab: [t for t, r in zip(texts, rows, strict=True) if r["label"] == lab][:args.probe]
             for lab in projection.PROBE_LABELS}
    train_texts = (texts * (1 + args.steps * args.batch_size // len(texts)))[:args.steps * args.batch_size]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, batch {args.batch_size} x <= {args.max_length} tokens, {args.steps} steps, "
          f"probe {args.probe}+{args.probe} articles, {args.repeats} repeats")
    for name in args.model or ["tiny", "small"]:
        args.model = name
        times, hooks = {v: [] for v in VARIANTS}, {v: [] for v in VARIANTS}
        b_times = []
        for r in range(args.repeats):
            for v in (VARIANTS if r % 2 == 0 else reversed(list(VARIANTS))):
                step, b, inside = one(args, tok, train_texts, probe, v)
                times[v].append(step)
                hooks[v].append(inside)
                b_times += [b] if b else []
        plain = statistics.median(times["plain"])
        params = sum(p.numel() for p in tiny_lm(tok, **MODELS[name]).parameters())
        print(f"model {name} ({params / 1e6:.1f} M parameters): plain step {plain * 1e3:.1f} ms; b̂ (per generation) "
              f"{statistics.median(b_times) * 1e3:.0f} ms = {statistics.median(b_times) / plain:.1f} plain steps")
        for v in VARIANTS:
            m = statistics.median(times[v])
            h = statistics.median(hooks[v])
            print(f"  {v:17s} {m * 1e3:8.1f} ms/step  {m / plain:5.2f}x plain; in the hooks {h * 1e3:6.1f} ms/step "
                  f"= {1 + h / plain:.3f}x plain")


if __name__ == "__main__":
    main()
