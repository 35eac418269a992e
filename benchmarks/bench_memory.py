"""Peak resident memory (RSS) of one SmolLM2 generation: the README's reduced real-data example
(`model=smollm2 data=allsides data.per_label=10 train.epochs=1 train.max_length=256 synthesis.max_blocks=4
leaning=smoke quality=smoke`), baseline + generation 0 by default.

Each variant is its own subprocess running `python -m bias_amp.run` in-process with the loop's stages wrapped:
at every stage entry and exit the peak RSS so far (VmHWM) is read, credited to the stages open, and reset
(`/proc/self/clear_refs` = 5), so each stage reports its own peak (nested stages count for the outer one too);
the running numbers are also written to <run dir>.stages.json, so a killed run leaves what it measured.
Variants:
  before   the code at --before (a git revision, default: the commit before the memory work), same command;
  default  the working tree, same command, precision=fp32 (what `before` ran);
  lowmem   default + memory=low (conf/memory/low.yaml, bias_amp/memory.py);
  lowmem-bf16  lowmem with precision=bf16 (bf16 copies of the weights while synthesising, scoring, probing).
Two quicker probes of the fine-tuning stage, where the floor is (MODE: a conf/memory option, default or low):
  --floor [MODE]      libraries, + SmolLM2's fp32 weights, + AdamW's moments after one step (16 tokens);
  --train-step MODE   one fine-tuning step of the README's batch shape (8 x 256 tokens) on a random-init Llama of
                      SmolLM2-135M's shape (no GGUF load), with conf/memory/MODE.yaml's train settings.

    .venv/bin/python benchmarks/bench_memory.py --jobs 3                # ~20 min on 2 quiet cores
    .venv/bin/python benchmarks/bench_memory.py --variants lowmem,lowmem-bf16 --jobs 2
    .venv/bin/python benchmarks/bench_memory.py --variants lowmem --cache /tmp/warm   # twice: the 2nd run is warm
    .venv/bin/python benchmarks/bench_memory.py --floor low
    .venv/bin/python benchmarks/bench_memory.py --train-step default; ... --train-step low
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "allsides" / "train.jsonl.gz"
BEFORE = "24858ae"      # the last commit before the memory work
COMMAND = ["model=smollm2", "data=allsides", f"data.path={DATA}", "train.epochs=1",
           "train.max_length=256", "synthesis.max_blocks=4", "leaning=smoke", "quality=smoke", "logger=none"]
VARIANTS = {"before": [], "default": ["precision=fp32"], "lowmem": ["precision=fp32", "memory=low"],
            "lowmem-bf16": ["precision=bf16", "memory=low"]}
MEMORY = ("default", "low")
# (module, attribute, stage): the loop's stages, wrapped by name so any revision's code can be measured
STAGES = [("bias_amp.models", "load_lm", "load model"), ("bias_amp.models", "load_checkpoint", "load model"),
          ("bias_amp.models", "save_checkpoint", "save checkpoint"), ("bias_amp.train", "finetune", "fine-tune"),
          ("bias_amp.loop", "synthesize", "synthesis"), ("bias_amp.metrics.scorer", "Scorer.score", "scoring"),
          ("bias_amp.probes", "probe", "probe")]


def status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1)) / 1024


class Stages:
    """Peak RSS and wall time per stage; time outside every stage is 'other'."""

    def __init__(self, dump: Path):
        self.dump, self.open = dump, []
        self.peak: dict[str, float] = {}
        self.entry: dict[str, float] = {}          # RSS when the stage was first entered
        self.seconds: dict[str, float] = {}
        self.since = time.perf_counter()
        self.mark()

    def mark(self) -> None:
        peak, now = status_mb("VmHWM"), time.perf_counter()
        for name in self.open or ["other"]:
            self.peak[name] = max(self.peak.get(name, 0.0), peak)
        top = self.open[-1] if self.open else "other"
        self.seconds[top] = self.seconds.get(top, 0.0) + now - self.since
        self.since = now
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.dump.write_text(json.dumps({"peak_mb": self.peak, "entry_mb": self.entry, "seconds": self.seconds,
                                              "open": self.open}))

    def wrap(self, fn, name):
        def wrapped(*args, **kwargs):
            self.mark()
            self.entry.setdefault(name, status_mb("VmRSS"))
            self.open.append(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.mark()
                self.open.pop()
        return wrapped


def worker(args) -> None:
    import importlib
    import runpy

    stages = Stages(Path(f"{args.out}.stages.json"))
    for module, attr, name in STAGES:
        obj = importlib.import_module(module)
        owner, _, leaf = attr.rpartition(".")
        if owner:
            obj = getattr(obj, owner)
        setattr(obj, leaf, stages.wrap(getattr(obj, leaf), name))
    sys.argv = ["bias_amp.run", *COMMAND, f"data.per_label={args.per_label}", f"generations={args.generations}",
                *args.overrides,
                f"hydra.run.dir={args.out}"]
    start = time.perf_counter()
    try:
        runpy.run_module("bias_amp.run", run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
    stages.mark()
    print("RESULT " + json.dumps({"peak_mb": stages.peak, "entry_mb": stages.entry, "seconds": stages.seconds,
                                  "wall_s": time.perf_counter() - start}))


def memory_train(mode: str) -> dict:
    """The `train:` settings of conf/memory/<mode>.yaml."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "memory" / f"{mode}.yaml")).get("train", {})


def floor(mode: str) -> None:
    """The resident floor of fine-tuning SmolLM2 (fp32 weights, AdamW), measured step by step in this process:
    libraries, weights, then one optimizer step on a 16-token batch (AdamW's two moments appear, in the dtype of
    conf/memory/<mode>.yaml; gradients are freed in backward by train.memory=low, so the rest is the moments)."""
    import torch
    from omegaconf import OmegaConf

    import bias_amp.loop  # noqa: F401  (the libraries a run imports)
    from bias_amp import memory, models

    rss = {"libraries": status_mb("VmRSS")}
    model, tok = models.load_lm(OmegaConf.load(ROOT / "conf" / "model" / "smollm2.yaml"))
    n = sum(p.numel() for p in model.parameters())
    rss["+ fp32 weights"] = status_mb("VmRSS")
    bf16 = memory_train(mode).get("optimizer_state") == "bf16"
    optimizer = memory.AdamW(model.parameters(), lr=5e-5) if bf16 else torch.optim.AdamW(model.parameters(), lr=5e-5,
                                                                                        fused=True)
    low = memory.LowMemory(model.train(), optimizer, 1.0)
    ids = torch.tensor([tok("The senate voted on the bill after a long debate about the budget.").input_ids[:16]])
    low.backward(lambda: model(input_ids=ids, labels=ids).loss)
    low.close()
    rss[f"+ AdamW moments ({'bf16' if bf16 else 'fp32'}, one step)"] = status_mb("VmRSS")
    print(f"floor: {n / 1e6:.1f} M parameters = {n * 4 / 2**20:.0f} MB fp32 weights, "
          f"{n * (4 if bf16 else 8) / 2**20:.0f} MB AdamW moments")
    for k, v in rss.items():
        print(f"  {k:32s} RSS {v:6.0f} MB")


SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True)


def train_step(memory_mode: str) -> None:
    """Peak RSS of `train.finetune` alone: one optimizer step on the README example's first batch shape
    (8 AllSides articles x 256 tokens, GPT-2 tokenizer) for a random-init Llama of SmolLM2-135M's shape, so no
    GGUF load is needed; `memory_mode` names conf/memory/<mode>.yaml."""
    import torch
    from accelerate import Accelerator
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from bias_amp import train
    from bias_amp.models import set_pad

    tok = set_pad(AutoTokenizer.from_pretrained(ROOT.parent / "shared" / "models" / "gpt2-tokenizer"))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **SMOLLM2))
    with gzip.open(DATA, "rt") as f:
        texts = [f"title: {r['title']}\nbody: {r['text']}" for r in map(json.loads, itertools.islice(f, 8))]
    cfg = OmegaConf.load(ROOT / "conf" / "config.yaml").train
    cfg = OmegaConf.merge(cfg, memory_train(memory_mode), {"epochs": 1, "max_length": 256})
    stages = Stages(Path(tempfile.gettempdir()) / f"bench_memory_train_{memory_mode}.json")
    before = status_mb("VmRSS")
    train.finetune = stages.wrap(train.finetune, "fine-tune")
    res = train.finetune(model, tok, texts, cfg, Accelerator(cpu=True))
    print(f"memory={memory_mode}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
          f"RSS before {before:.0f} MB, fine-tune peak {stages.peak['fine-tune']:.0f} MB, "
          f"{stages.seconds['fine-tune']:.0f} s, loss {res.loss:.6f}, tokens {res.tokens}")


def run_variant(name: str, args, tmp: Path) -> dict:
    cache = args.cache or tmp / f"cache-{name}"          # a fresh cache trains the smoke instruments in the run
    env = dict(os.environ, WANDB_MODE="disabled", BIAS_AMP_CACHE=str(cache), TQDM_DISABLE="1")
    cwd = ROOT
    if name == "before":
        src = tmp / "src-before"
        src.mkdir(exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        cwd = src
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--out", str(tmp / name),
           "--generations", str(args.generations), "--per-label", str(args.per_label), *VARIANTS[name]]
    env["PYTHONPATH"] = str(cwd)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"variant {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    metrics = sorted((tmp / name).rglob("metrics.csv"))
    result["metrics"] = metrics[0].read_text() if metrics else ""
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="before,default,lowmem")
    p.add_argument("--before", default=BEFORE, help="git revision measured as the 'before' variant")
    p.add_argument("--generations", type=int, default=1)
    p.add_argument("--per-label", type=int, default=10, help="data.per_label (README: 10; the batch shapes, which "
                   "set the peaks, are the same from 4 up)")
    p.add_argument("--cache", help="BIAS_AMP_CACHE for every variant (default: a fresh one each, so the smoke "
                   "instruments are trained inside the measured run; a warm one measures every later run)")
    p.add_argument("--jobs", type=int, default=1, help="variants run at once (peaks are per process; times are not)")
    p.add_argument("--floor", nargs="?", const="default", choices=MEMORY,
                   help="only measure the fine-tuning floor (weights + AdamW) under memory=MODE")
    p.add_argument("--train-step", choices=MEMORY, help="only measure one fine-tuning step under memory=MODE")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="extra key=value overrides (worker only)")
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.floor:
        return floor(args.floor)
    if args.train_step:
        return train_step(args.train_step)
    if not DATA.is_file():
        print(f"skipped: {DATA} absent (../shared)")
        return
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("command: python -m bias_amp.run " + " ".join(COMMAND) + f" data.per_label={args.per_label} "
          f"generations={args.generations}")
    names = args.variants.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(names, pool.map(lambda n: run_variant(n, args, Path(tmp)), names), strict=True))
        for name, r in results.items():
            print(f"\n== {name} {' '.join(VARIANTS[name])}: peak {max(r['peak_mb'].values()):.0f} MB, "
                  f"wall {r['wall_s']:.0f} s")
            for stage, mb in sorted(r["peak_mb"].items(), key=lambda kv: -kv[1]):
                entry = r.get("entry_mb", {}).get(stage)
                print(f"  {stage:16s} peak {mb:7.0f} MB  {r['seconds'].get(stage, 0):7.1f} s"
                      + (f"  (RSS {entry:.0f} MB on first entry)" if entry else ""))
            print("  metrics.csv:\n    " + "\n    ".join(r["metrics"].splitlines()))
    ref = "before" if "before" in results else next(iter(results))
    base = max(results[ref]["peak_mb"].values())
    print(f"\npeak RSS vs {ref}: " + ", ".join(f"{n} {max(r['peak_mb'].values()):.0f} MB "
                                              f"({max(r['peak_mb'].values()) / base:.2f}x)" for n, r in results.items()))


if __name__ == "__main__":
    main()
