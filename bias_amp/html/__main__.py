"""python -m bias_amp.html SWEEP [SWEEP ...] [--out DIR] [--paper auto|DIR|none] [--n-articles 3] [--seed 0]

One page comparing studies (e.g. fp32 vs bf16, GPT-2 vs SmolLM2): every sweep's setups side by side, named
<study> · <setup>. `python -m bias_amp.report SWEEP` writes the same page for one sweep (SWEEP/report/index.html).
"""

from __future__ import annotations

import argparse

from bias_amp import cli, report
from bias_amp.errors import check
from bias_amp.html import build


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bias_amp.html", description=__doc__.split("\n\n")[1])
    ap.add_argument("sweeps", nargs="+", help="sweep directories (multirun/<experiment_name>)")
    ap.add_argument("--out", help="output directory (default SWEEP/report for one sweep; required for several)")
    ap.add_argument("--paper", default="auto", help="the paper's score CSVs: auto (../shared when present), DIR, none")
    ap.add_argument("--n-articles", type=int, default=3, help="articles in the trajectory picker, per sweep")
    ap.add_argument("--seed", type=int, default=0, help="seed of the article choice")
    args = ap.parse_args(argv)
    with cli.one_line_errors():
        check(args.out is not None or len(args.sweeps) == 1, "out", "an output directory (--out) for several sweeps")
        out = args.out or f"{args.sweeps[0]}/report"
        path = build(args.sweeps, out, report.resolve_paper(args.paper), args.n_articles, args.seed)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
