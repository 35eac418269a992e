"""The sweep's schema, in one place: what a sweep folder holds and how its seeds are derived.

    SWEEP/<setup_name>/seed_<seed>/          one run = one setup x seed
        config.yaml  real.jsonl  metrics.csv
        baseline/ gen_00/ gen_01/ ...        one version each: articles.jsonl, scores.csv, metrics.json, DONE
        checkpoints/gen_XX/                  the latest fine-tuned model (what a killed run resumes from)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

LEANINGS = ("left", "center", "right")

# metrics.csv column order (one row per version); columns not listed here follow in their own order.
METRICS_COLUMNS = [
    "setup", "seed", "version", "generation", "n_articles", "n_unscorable", "smoke_instruments",
    *(f"share_{c}" for c in LEANINGS),
    *(f"share_{c}_ci_{end}" for c in LEANINGS for end in ("low", "high")),
    *(f"expected_{c}" for c in LEANINGS),
    "quality_mean", "quality_ci_low", "quality_ci_high", "perplexity_mean", "perplexity_ci_low",
    "perplexity_ci_high", "distinct_1", "distinct_2", "repeated_4gram_share", "compression_ratio",
    "copied_8gram_share", "train_loss", "train_tokens_per_s", "synth_tokens_per_s", "precision",
]

# Settings that may change between a run and its resume without changing its results (a key or a subtree).
RESUMABLE = ("logger", "paths", "keep_checkpoints", "generations", "synthesis.threads", "experiment_name",
             "overwrite")
# Keys the run's own path already names: SWEEP = <root>/<experiment_name><variant>, then <setup_name>/seed_<seed>.
PATH_KEYS = ("experiment", "experiment_name", "setup", "setup_name", "decoding", "mitigation", "seed")
VARIANT_MAX = 80

SEED_DIR = re.compile(r"seed_(\d+)")
# Per-stage offsets of seed_for (the values every earlier run used; changing them changes results).
SEED_STAGES = {"train": 0, "synthesis": 500, "decode": 0}


def version_name(g: int) -> str:
    """Directory name of a model version: -1 -> baseline (the un-fine-tuned model), 3 -> gen_03."""
    return "baseline" if g < 0 else f"gen_{g:02d}"


def is_done(run_dir: Path, g: int) -> bool:
    """A version is finished once its DONE marker exists (written last)."""
    return (Path(run_dir) / version_name(g) / "DONE").is_file()


def run_dir(sweep: Path, setup_name: str, seed: int) -> Path:
    return Path(sweep) / setup_name / f"seed_{seed}"


def variant(overrides: Iterable[str]) -> str:
    """The sweep folder's suffix: the command line's overrides that change results and that the path does not
    already name ('' when none), so a changed setting gets its own folder and the same command finds its own.
    ['setup=beam', 'data.per_label=5', 'logger=none'] -> '+data.per_label=5'. A path value shows its last
    part, other unsafe characters become '_', a long list is cut; then a hash of the exact overrides follows."""
    kept = {}
    for o in map(str, overrides):
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        if key.startswith(("hydra.", "hydra/")) or key in PATH_KEYS or any(key == r or key.startswith(r + ".") for r in RESUMABLE):
            continue
        kept[o] = f"{key}={value.rstrip('/').rsplit('/', 1)[-1]}" if value else key
    if not kept:
        return ""
    exact = sorted(kept)
    shown = re.sub(r"[^\w.=,-]", "_", ",".join(sorted(kept.values())))
    if shown != ",".join(exact) or len(shown) > VARIANT_MAX:
        shown = f"{shown[:VARIANT_MAX - 9]}-{hashlib.sha1(chr(0).join(exact).encode()).hexdigest()[:8]}"
    return "+" + shown


def run_dirs(sweep) -> list[Path]:
    """Every run directory (<setup>/seed_<n>/) of a sweep, sorted by setup, then seed number."""
    dirs = [p for p in Path(sweep).glob("*/seed_*") if p.is_dir() and SEED_DIR.fullmatch(p.name)]
    return sorted(dirs, key=lambda p: (p.parent.name, int(p.name[5:])))


def seed_for(seed: int, generation: int, stage: str, rank: int = 0) -> int:
    """The seed of one stage of one version: train (fine-tuning), synthesis (the global RNGs before
    decoding), decode (the decoder's sampling, one stream per process `rank`)."""
    return seed * 1000 + generation + SEED_STAGES[stage] + rank
