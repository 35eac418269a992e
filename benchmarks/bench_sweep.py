"""The smoke sweep end to end, and memory across generations.

1. sweep: `python -m bias_amp.run -m 'setup=glob(*)' experiment=smoke logger=none hydra.sweep.dir=<tmp>` as a
   subprocess (--sweep-generations per setup; default 2, as the full 11 take over an hour on 2 busy cores): wall
   time, peak RSS (resource.getrusage(RUSAGE_CHILDREN), and the sampled one), versions finished.
2. generations: one setup (default greedy-accumulate, experiment=smoke, generations=11) as a subprocess whose RSS
   (the process and its children) is sampled every --interval seconds (psutil, else /proc/<pid>/status VmRSS);
   each sample is attributed to the version being worked on (the first whose <version>/DONE is missing). Prints
   the per-version peak table and the growth of the peak over generations; writes
   benchmarks/figures/sweep_memory.png.

    nice .venv/bin/python benchmarks/bench_sweep.py          # sweep at 2 generations/setup + 11 generations of one
    nice .venv/bin/python benchmarks/bench_sweep.py --part sweep --sweep-generations 0     # the full smoke sweep
    nice .venv/bin/python benchmarks/bench_sweep.py --part generations --generations 6
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bias_amp.layout import run_dirs, version_name

ROOT = Path(__file__).resolve().parents[1]
FIGURES = Path(__file__).resolve().parent / "figures"
MB = 1024 * 1024


def rss_tree(pid: int) -> int | None:
    """Resident bytes of `pid` and its descendants (None once it is gone)."""
    try:
        import psutil
    except ImportError:
        return _proc_rss(pid)
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _proc_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def version_names(generations: int, baseline: bool = True) -> list[str]:
    return [version_name(g) for g in range(-1 if baseline else 0, generations)]


def sample_run(cmd: list[str], out: Path, versions: list[str], interval: float) -> tuple[list[tuple], int, float]:
    """Run `cmd`, sampling RSS; returns ([(t, rss_bytes, version)], returncode, seconds)."""
    start = time.perf_counter()
    log = tempfile.TemporaryFile("w+")           # a file, not a pipe: tqdm's stderr would fill a pipe and block
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    samples, current = [], 0
    while proc.poll() is None:
        rss = rss_tree(proc.pid)
        while current < len(versions) and (out / versions[current] / "DONE").is_file():
            current += 1
        if rss is not None:
            samples.append((time.perf_counter() - start, rss, versions[min(current, len(versions) - 1)]))
        time.sleep(interval)
    if proc.returncode:
        log.seek(0)
        print(log.read()[-3000:], file=sys.stderr)
    log.close()
    return samples, proc.returncode, time.perf_counter() - start


def sweep(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        cmd = [sys.executable, "-m", "bias_amp.run", "-m", "setup=glob(*)", "experiment=smoke", "logger=none",
               f"hydra.sweep.dir={tmp}", *([f"generations={args.sweep_generations}"] if args.sweep_generations else []),
               *args.overrides]
        print("$", " ".join(cmd[1:]))
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        samples, rc, wall = sample_run(cmd, Path(tmp), ["sweep"], args.interval)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # KiB, max over waited-for children
        if rc:
            raise SystemExit(f"smoke sweep failed (exit {rc})")
        runs = [d for d in run_dirs(tmp) if (d / "metrics.csv").is_file()]
        setups = sorted(d.parent.name for d in runs)
        done = sum(len(list(d.glob("*/DONE"))) for d in runs)
    note = "" if before < peak else f" (an earlier child peaked higher: {before / 1024:.0f} MiB)"
    sampled = max((r for _, r, _ in samples), default=0) / MB
    print(f"smoke sweep: {len(setups)} setups {setups}, {done} versions finished")
    print(f"wall {wall:.0f} s ({wall / max(done, 1):.1f} s per version), peak RSS {peak / 1024:.0f} MiB "
          f"(getrusage RUSAGE_CHILDREN){note}; sampled peak {sampled:.0f} MiB")


def generations(args) -> None:
    import numpy as np

    versions = version_names(args.generations)
    with tempfile.TemporaryDirectory(prefix="bench_gens_") as tmp:
        out = Path(tmp) / args.setup
        cmd = [sys.executable, "-m", "bias_amp.run", f"setup={args.setup}", "experiment=smoke", "logger=none",
               f"generations={args.generations}", f"hydra.run.dir={out}", *args.overrides]
        print("$", " ".join(cmd[1:]))
        samples, rc, wall = sample_run(cmd, out, versions, args.interval)
        if rc:
            raise SystemExit(f"run failed (exit {rc})")
    rows = []
    for v in versions:
        mine = [(t, r) for t, r, name in samples if name == v]
        if mine:
            rows.append((v, max(r for _, r in mine) / MB, mine[-1][0] - mine[0][0], len(mine)))
    print(f"{args.setup}: {len(versions)} versions in {wall:.0f} s, {len(samples)} RSS samples "
          f"every {args.interval} s ({'psutil' if _has_psutil() else '/proc VmRSS'})")
    print(f"{'version':<10} {'peak RSS MiB':>12} {'seconds':>8}")
    for v, peak, secs, _ in rows:
        print(f"{v:<10} {peak:>12.0f} {secs:>8.0f}")
    gens = [(i, peak) for i, (v, peak, _, _) in enumerate(rows) if v.startswith("gen_") and v != "gen_00"]
    if len(gens) >= 3:
        x, y = np.array(gens, dtype=float).T
        slope = np.polyfit(x, y, 1)[0]
        half = len(y) // 2
        print(f"peak RSS over gen_01..{rows[-1][0]}: {y.min():.0f}-{y.max():.0f} MiB, slope {slope:+.1f} MiB/generation, "
              f"max of the later half - max of the earlier half = {y[half:].max() - y[:half].max():+.0f} MiB")
    figure(samples, rows, args.setup, FIGURES / "sweep_memory.png")


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
        return True
    except ImportError:
        return False


def figure(samples, rows, setup: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame(samples, columns=["seconds", "rss", "version"])
    df["RSS (MiB)"] = df.rss / MB
    sns.set_theme(style="whitegrid")
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    sns.lineplot(df, x="seconds", y="RSS (MiB)", hue="version", ax=a, legend=False, palette="viridis", lw=1)
    a.set_title(f"RSS over time, {setup} (colour = version)")
    peaks = pd.DataFrame([(v, p) for v, p, _, _ in rows], columns=["version", "peak RSS (MiB)"])
    sns.barplot(peaks, x="version", y="peak RSS (MiB)", ax=b, color="steelblue")
    b.tick_params(axis="x", rotation=60)
    b.set_title("peak RSS per version")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    print(f"figure: {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["sweep", "generations", "both"], default="both")
    ap.add_argument("--sweep-generations", type=int, default=2,
                    help="generations per setup in the sweep (0: the experiment's own, 11 for smoke)")
    ap.add_argument("--setup", default="greedy-accumulate")
    ap.add_argument("--generations", type=int, default=11)
    ap.add_argument("--interval", type=float, default=0.2, help="RSS sampling period, seconds")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for both parts")
    args = ap.parse_args()
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    if args.part in ("sweep", "both"):          # first: RUSAGE_CHILDREN's peak is then the sweep's alone
        sweep(args)
    if args.part in ("generations", "both"):
        generations(args)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
