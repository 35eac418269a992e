"""Fine-tuning speed: `bias_amp.train.finetune` (dynamic padding, length-grouped batches) vs HF `Trainer` set up
like the authors' release (examples padded to max_length 512, `DataCollatorForLanguageModeling(mlm=False)`, EOS as
pad, lr 5e-5, weight decay 0.01, linear schedule), on the SAME examples, same init, same objective.

Examples (--examples): `articles` = AllSides articles from ../shared ("title: ...\\nbody: ...", our training unit;
truncated to 512 tokens), `lines` = their non-empty lines (what `load_dataset("text")` makes of a text file holding
those articles), `sample` = the embedded sample corpus (short invented articles). Without ../shared, `articles`
and `lines` fall back to the sample corpus (said so in the output).
Model: `gpt2-small` (12 x 768, random init) or `tiny` (2 x 128), the real GPT-2 tokenizer (../shared/models).

Each (side, repeat) is its own subprocess, so peak memory is per side (CPU: getrusage ru_maxrss; GPU:
torch.cuda.max_memory_allocated); sides alternate (ours, hf, hf, ours, ...) so load swings hit both; medians.
Throughput = real (non-pad) tokens per second after the first optimizer step (per-step time stamps; step 1 holds
allocations and CUDA/BLAS warm-up), and over the whole call from texts (tokenising, Trainer/optimizer set-up and
step 1 included on both sides). Roofline = matmul rate measured in each worker (same threads, dtype, device) /
(6 x parameters) tokens/s.
Objective check: the first batch's loss, same examples, same init, eval mode, by both paths (ours:
`bias_amp.train.token_loss_sum` / target tokens; HF: `Trainer.compute_loss` on the padded collator's batch).

    nice .venv/bin/python benchmarks/bench_train.py                            # ~10 min on 2 busy cores
    nice .venv/bin/python benchmarks/bench_train.py --examples lines --model tiny --steps 8
    .venv/bin/python benchmarks/bench_train.py --device cuda --batch-size 8 --steps 16   # benchmarks/gpu.sh
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ALLSIDES = SHARED / "data" / "allsides" / "train.jsonl.gz"
TOKENIZER = SHARED / "models" / "gpt2-tokenizer"
SAMPLE = ROOT / "bias_amp" / "resources" / "sample_corpus.jsonl"
MODELS = {"gpt2-small": dict(n_layer=12, n_embd=768, n_head=12), "tiny": dict(n_layer=2, n_embd=128, n_head=2)}
TEMPLATE = "title: {title}\nbody: {body}"


def tokenizer():
    from transformers import AutoTokenizer

    from bias_amp.models import set_pad

    if not TOKENIZER.is_dir():
        print(f"skipped: the GPT-2 tokenizer is not at {TOKENIZER} (../shared absent)")
        sys.exit(0)
    return set_pad(AutoTokenizer.from_pretrained(TOKENIZER))


def model(args, tok):
    from bias_amp.models import tiny_lm

    return tiny_lm(tok, n_positions=1024, seed=args.seed, **MODELS[args.model])


def examples(args, tok) -> tuple[list[str], str]:
    """steps x batch_size texts (seeded) and where they came from."""
    import numpy as np

    n = args.steps * args.batch_size
    rng = np.random.default_rng(args.seed)
    kind = args.examples
    if kind != "sample" and ALLSIDES.is_file():
        with gzip.open(ALLSIDES, "rt") as f:
            recs = [json.loads(line) for line in f]
        arts = [TEMPLATE.format(title=recs[i]["title"], body=recs[i]["text"]) for i in rng.permutation(len(recs))]
        where = f"AllSides train ({ALLSIDES})"
    else:
        if kind != "sample":
            print(f"note: {ALLSIDES} absent: using the embedded sample corpus instead")
        recs = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
        arts = [TEMPLATE.format(title=recs[i]["title"], body=recs[i]["text"]) for i in rng.permutation(len(recs))]
        where = "the embedded sample corpus"
    if kind == "lines":
        pool = [ln for a in arts[: 4 * n] for ln in a.splitlines() if ln.strip()]
        pool = [pool[i] for i in rng.permutation(len(pool))]
        texts = [t for t in pool if len(tok(t).input_ids) >= 2][:n]
    else:
        texts = arts[:n]
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} examples available, {n} needed (steps x batch size)")
    return texts, where


def matmul_gflops(device: str, seconds: float = 1.0) -> float:
    """fp32 GFLOP/s of a GPT-2-MLP-shaped matmul (1024 x 768 @ 768 x 3072), this process's threads."""
    import torch

    a, b = torch.randn(1024, 768, device=device), torch.randn(768, 3072, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
        if n % 8 == 0:
            sync()
    sync()
    return 2 * 1024 * 768 * 3072 * n / (time.perf_counter() - t0) / 1e9


def hf_dataset(tok, texts, max_length):
    from datasets import Dataset

    ds = Dataset.from_dict({"text": texts})
    return ds.map(lambda b: tok(b["text"], truncation=True, max_length=max_length, padding="max_length"),
                  batched=True, remove_columns=["text"])


def hf_trainer(m, tok, texts, args, out_dir, collator):
    from transformers import Trainer, TrainingArguments

    targs = TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=args.batch_size, max_steps=args.steps, num_train_epochs=1,
        learning_rate=5e-5, weight_decay=0.01, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0,
        save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True, seed=args.seed,
        use_cpu=args.device == "cpu", dataloader_num_workers=0)
    return Trainer(model=m, args=targs, train_dataset=hf_dataset(tok, texts, args.max_length), data_collator=collator)


def our_cfg(args):
    from omegaconf import OmegaConf

    return OmegaConf.create(dict(max_length=args.max_length, unit="truncate", epochs=1, batch_size=args.batch_size,
                                 lr=5e-5, weight_decay=0.01, scheduler="linear", warmup_steps=0, grad_accum=1,
                                 max_grad_norm=1.0, group_by_length=True, compile=False))


class CountingCollator:
    """The authors' collator, counting real (attention-mask) and computed (padded) tokens per batch."""

    def __init__(self, tok):
        from transformers import DataCollatorForLanguageModeling

        self.inner, self.real, self.computed = DataCollatorForLanguageModeling(tok, mlm=False), [], []

    def __call__(self, features):
        batch = self.inner(features)
        self.real.append(int(batch["attention_mask"].sum()))
        self.computed.append(batch["input_ids"].numel())
        return batch


def steady(stamps: list[float], per_step: list[int]) -> float:
    """Tokens/s after the first optimizer step (warm-up: allocations, CUDA/BLAS init) to the last."""
    if len(stamps) < 2:
        return float("nan")
    return sum(per_step[1:len(stamps)]) / (stamps[-1] - stamps[0])


def worker(args) -> None:
    """One side, one repeat; prints `RESULT {json}`."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = tokenizer()
    m = model(args, tok).to(args.device)
    texts, _ = examples(args, tok)
    gflops = matmul_gflops(args.device)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stamps = []

    def stamp(*_, **__):
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if args.worker == "ours":
        import numpy as np
        from accelerate import Accelerator

        from bias_amp.train import batch_order, encode, finetune

        res = finetune(m, tok, texts, our_cfg(args), Accelerator(cpu=not cuda), seed=args.seed, on_step=stamp)
        real, computed, steps = res.tokens, None, res.steps
        lengths = [len(e) for e in encode(tok, texts, args.max_length)]     # finetune's own batch order
        order = batch_order(lengths, args.batch_size, np.random.default_rng(args.seed), True)
        per_step = [sum(lengths[j] for j in b) for b in order]
    else:
        from transformers import TrainerCallback

        class Stamp(TrainerCallback):
            def on_step_end(self, *a, **k):
                stamp()

        with tempfile.TemporaryDirectory() as out:
            collator = CountingCollator(tok)
            trainer = hf_trainer(m, tok, texts, args, out, collator)
            trainer.add_callback(Stamp())
            steps = trainer.train().global_step
            real, computed, per_step = sum(collator.real), sum(collator.computed), collator.real
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(dict(side=args.worker, seconds=seconds, real=real, computed=computed, steps=steps,
                                      steady=steady(stamps, per_step),
                                      gflops=gflops, peak_mib=peak, rss_before_mib=rss0 / 1024,
                                      params=sum(p.numel() for p in m.parameters()))))


def loss_check(args, tok, texts) -> tuple[float, float]:
    """First batch's loss, same init, eval mode: ours vs HF Trainer's compute_loss."""
    import torch

    from bias_amp.train import collate, encode, token_loss_sum

    first = texts[: args.batch_size]
    m = model(args, tok).to(args.device).eval()
    with torch.no_grad():
        batch = collate(encode(tok, first, args.max_length), tok.pad_token_id, args.device)
        labels = batch.pop("labels")
        ours = token_loss_sum(m(**batch).logits, labels).item() / int((labels[:, 1:] != -100).sum())
        with tempfile.TemporaryDirectory() as out:
            collator = CountingCollator(tok)
            trainer = hf_trainer(m, tok, first, args, out, collator)
            hf_batch = {k: v.to(args.device) for k, v in collator(list(trainer.train_dataset)).items()}
            hf = trainer.compute_loss(m, hf_batch).item()
    return ours, hf


def run_worker(args, side: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, *sys.argv[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode or not lines:
        print(res.stdout[-2000:], res.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{side} worker failed (exit {res.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=list(MODELS), default="gpt2-small")
    ap.add_argument("--examples", choices=["articles", "lines", "sample"], default="articles")
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps per side and repeat")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads, both sides")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    import torch

    torch.set_num_threads(args.threads)
    tok = tokenizer()
    texts, where = examples(args, tok)
    lengths = [min(len(ids), args.max_length) for ids in tok(texts).input_ids]
    eos_texts = sum(tok.eos_token_id in ids for ids in tok(texts).input_ids)
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, device {args.device}, torch {torch.__version__}, "
          f"{args.threads} thread(s); load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"model {args.model} {MODELS[args.model]}, {args.examples}: {len(texts)} examples from {where}, "
          f"tokens min/median/max {min(lengths)}/{int(statistics.median(lengths))}/{max(lengths)} "
          f"(truncated to {args.max_length}; padding share at max_length: "
          f"{1 - sum(lengths) / (len(lengths) * args.max_length):.0%})")
    print(f"{args.steps} optimizer steps x batch {args.batch_size} per side, {args.repeats} repeats, interleaved")

    ours_loss, hf_loss = loss_check(args, tok, texts)
    rel = abs(ours_loss - hf_loss) / abs(hf_loss)
    print(f"objective: first-batch loss ours {ours_loss:.6f} vs HF Trainer {hf_loss:.6f} (rel. diff {rel:.1e}: "
          f"{'same' if rel < 1e-4 else 'DIFFERENT'}); texts holding a real EOS, which HF's collator would also "
          f"mask (pad = EOS): {eos_texts}")

    runs = {"ours": [], "hf": []}
    for r in range(args.repeats):
        for side in (("ours", "hf") if r % 2 == 0 else ("hf", "ours")):
            res = run_worker(args, side)
            runs[side].append(res)
            print(f"  repeat {r + 1} {side:>4}: {res['real'] / res['seconds']:8.1f} real tokens/s whole call "
                  f"({res['seconds']:.1f} s, {res['steps']} steps), {res['steady']:8.1f} after step 1, matmul {res['gflops']:.0f} GFLOP/s, "
                  f"peak {res['peak_mib']:.0f} MiB", flush=True)

    med = lambda side, f: statistics.median(f(x) for x in runs[side])  # noqa: E731
    params = runs["ours"][0]["params"]
    gflops = statistics.median(x["gflops"] for side in runs for x in runs[side])
    roof = gflops * 1e9 / (6 * params)
    whole = {side: med(side, lambda x: x["real"] / x["seconds"]) for side in runs}
    ours_tps, hf_tps = med("ours", lambda x: x["steady"]), med("hf", lambda x: x["steady"])
    hf_comp = hf_tps * med("hf", lambda x: x["computed"] / x["real"])
    mem = "peak GPU memory allocated" if args.device.startswith("cuda") else "peak RSS (whole worker process)"
    print(f"\nparameters {params / 1e6:.1f} M; matmul {gflops:.0f} GFLOP/s (median of the workers) -> "
          f"roofline {roof:.1f} tokens/s (6 x parameters FLOPs per token)")
    extra = "" if args.device.startswith("cuda") else " (+ over the pre-training peak)"
    print(f"{'side':<22} {'real tokens/s':>14} {'% roofline':>11} {'whole call':>11}   {mem}{extra}")
    for side, name, tps in (("ours", "bias_amp finetune", ours_tps), ("hf", "HF Trainer, pad 512", hf_tps)):
        peak = med(side, lambda x: x["peak_mib"])
        plus = "" if extra == "" else f" (+{med(side, lambda x: x['peak_mib'] - x['rss_before_mib']):.0f} MiB)"
        print(f"{name:<22} {tps:>14.1f} {tps / roof:>11.0%} {whole[side]:>11.1f}   {peak:.0f} MiB{plus}")
    print("(real tokens/s = after the first optimizer step; whole call = from texts, set-up and step 1 included)")
    print(f"HF computes {hf_comp:.1f} tokens/s including padding = {hf_comp / roof:.0%} of roofline")
    print(f"ratio ours / HF: {ours_tps / hf_tps:.2f}x real tokens/s after step 1, {whole['ours'] / whole['hf']:.2f}x "
          f"whole call (goal >= 2x from not computing padding); "
          f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
