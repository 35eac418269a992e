"""Run every benchmark script in benchmarks/ with its quick defaults, one after another, and print its output.

    nice .venv/bin/python benchmarks/run_all.py [--only bench_train bench_sweep]      # `make bench`

Order: bench_synth, bench_precision (its synthesis section: bf16 vs fp32), bench_hac, bench_train, bench_sweep, then
any other bench_*.py found. A script that fails is
reported and the others still run; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_synth", "bench_precision", "bench_hac", "bench_train", "bench_sweep"]


def scripts() -> list[Path]:
    found = {p.stem: p for p in sorted(HERE.glob("bench_*.py"))}
    return [found.pop(name) for name in ORDER if name in found] + list(found.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="script names (stems) to run")
    args = ap.parse_args()
    todo = [p for p in scripts() if not args.only or p.stem in args.only]
    failed = []
    for path in todo:
        print(f"\n===== {path.name} =====", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(path)], cwd=HERE.parent).returncode   # output streams through
        print(f"----- {path.name}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(path.name)
    print(f"\n{len(todo) - len(failed)}/{len(todo)} benchmarks ran" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
