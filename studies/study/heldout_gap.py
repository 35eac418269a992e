"""Held-out check of the study's classifier-free leaning (STUDY.md): per article, the mean per-token log-likelihood
of right- and left-labelled AllSides articles that neither trained the LM nor defined b̂ (drawn from
train.jsonl.gz, whose articles the loop never uses), under the base model and each run's final checkpoint.
gap = mean over right articles - mean over left articles (> 0: the model prefers right text); its change from
the base model, and its difference from greedy-none's final model of the same seed (and from the mean of greedy-none's
seeds' log-likelihoods, and with --versus from another setup's of the same seed), get paired bootstrap 95% CIs over
articles (not over training runs). A setup with several seeds also gets a `<setup>/mean` row, its seeds' mean, when every seed's arrays are at hand.

    python studies/study/heldout_gap.py multirun/study --per-label 100 --cache studies/study/heldout_logp \
        --out studies/study/heldout_gap.csv --append
(needs the runs' checkpoints: run it in the sitting that ran the run; keep_checkpoints: last keeps gen_10; a run
still going is skipped, so one run can be published while another runs in the same sweep). The
per-article log-likelihoods go to --cache (a few KB per model; published since 2026-12-02), and every model found
there is compared as well, so a later run is compared with earlier ones whose checkpoints are gone. --append adds
rows for models not yet in --out and leaves its existing rows as they are (the first twelve runs' log-likelihoods
stayed on the machine that made them: their rows cannot be recomputed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from bias_amp import data, io, models
from bias_amp.layout import is_done

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "allsides" / "train.jsonl.gz"


@torch.no_grad()
def article_logp(model, tok, texts: list[str], max_length: int, batch: int = 8) -> np.ndarray:
    """Mean per-token log p of each text (truncated to max_length tokens, as the training units)."""
    model.eval()
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i:i + batch], return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        logp = torch.log_softmax(model(**enc).logits[:, :-1].float(), -1)
        target, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].float()
        tok_lp = logp.gather(-1, target[..., None])[..., 0] * mask
        out += (tok_lp.sum(1) / mask.sum(1)).tolist()
    return np.array(out)


def setup_means(versions: dict[str, np.ndarray], published: set[str]) -> dict[str, np.ndarray]:
    """`<setup>/mean` for each setup with several final models, unless a published seed's arrays are missing
    (a mean of some seeds only would pass for all of them)."""
    by_setup = {}
    for name, lp in versions.items():
        if name.count("/") == 2:                           # <setup>/seed_<n>/gen_<g>
            by_setup.setdefault(name.split("/")[0], []).append(lp)
    means = {}
    for setup, lps in by_setup.items():
        missing = {m for m in published if m.startswith(f"{setup}/seed_")} - set(versions)
        if missing:
            print(f"no {setup}/mean: no per-article log-likelihoods of {', '.join(sorted(missing))}")
        elif len(lps) > 1:
            means[f"{setup}/mean"] = np.mean(lps, axis=0)
    return means


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--per-label", type=int, default=100)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, help="keep each model's per-article log-likelihoods here (.npy) and reuse them")
    ap.add_argument("--append", action="store_true", help="keep --out's rows; add rows for the models it lacks")
    ap.add_argument("--versus", action="append", default=[], metavar="SETUP",
                    help="also compare every run with SETUP's final model of the same seed (gap_vs_<SETUP>)")
    args = ap.parse_args()
    runs = sorted(p.parent for p in args.sweep.glob("*/seed_*/config.yaml"))
    cfg = OmegaConf.load(runs[0] / "config.yaml")
    finished = [run for run in runs if is_done(run, OmegaConf.load(run / "config.yaml").generations - 1)]
    for run in sorted(set(runs) - set(finished)):      # a run still going: its newest checkpoint is not final
        print(f"skipped {run}: not finished")
    runs = finished
    pool = data.read_articles(OmegaConf.merge(cfg.data, {"path": str(SHARED), "exclude_sources": None}))
    held = [a for a in data.stratified_sample(pool, args.per_label, seed=0) if a.label in ("right", "left")]
    texts = [a.text(cfg.data.template) for a in held]
    right = np.array([a.label == "right" for a in held])
    def logp(name, load):
        cached = args.cache / f"{name.replace('/', '__')}.npy" if args.cache else None
        if cached and cached.exists():
            return np.load(cached)
        lp = article_logp(*load(), texts, cfg.train.max_length)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, lp)
        return lp

    versions = {"base": logp("base", lambda: models.load_lm(cfg.model))}
    for run in runs:
        ckpt = max((run / "checkpoints").glob("gen_*"))
        name = f"{run.parent.name}/{run.name}/{ckpt.name}"
        versions[name] = logp(name, lambda ckpt=ckpt: models.load_checkpoint(ckpt))
    for cached in sorted(args.cache.glob("*.npy")) if args.cache else []:     # runs of earlier sittings
        versions.setdefault(cached.stem.replace("__", "/"), np.load(cached))
    published = set(pd.read_csv(args.out).model) if args.append and args.out.exists() else set()
    versions |= setup_means(versions, published)
    rng = np.random.default_rng(0)
    idx_r, idx_l = np.flatnonzero(right), np.flatnonzero(~right)
    boot = [(rng.choice(idx_r, len(idx_r)), rng.choice(idx_l, len(idx_l))) for _ in range(args.boot)]

    def gap(lp, r=idx_r, l_=idx_l):
        return lp[r].mean() - lp[l_].mean()

    final = {(name.split("/")[0], name.split("/")[1]): lp for name, lp in versions.items() if "/" in name}
    none = {seed: lp for (setup, seed), lp in final.items() if setup == "greedy-none" and seed != "mean"}
    rows = []
    for name, lp in versions.items():
        row = {"model": name, "n_right": len(idx_r), "n_left": len(idx_l), "logp_right": lp[right].mean(),
               "logp_left": lp[~right].mean(), "gap": gap(lp)}
        seed = name.split("/")[1] if "/" in name else "seed_0"      # the base model: against seed 0's
        refs = {"gap_change": versions["base"], "gap_vs_greedy_none": none.get(seed),
                "gap_vs_greedy_none_mean": np.mean(list(none.values()), axis=0) if none else None}
        refs |= {f"gap_vs_{setup}": final.get((setup, seed)) for setup in args.versus}
        for key, ref in refs.items():
            if ref is not None:                    # paired over articles: the same resamples for every model
                deltas = [gap(lp - ref, r, l_) for r, l_ in boot]
                row |= {key: gap(lp - ref), f"{key}_ci_low": np.quantile(deltas, 0.025),
                        f"{key}_ci_high": np.quantile(deltas, 0.975)}
        rows.append(row)
    table = pd.DataFrame(rows)
    if args.append and args.out.exists():
        old = pd.read_csv(args.out)
        table = pd.concat([old, table[~table.model.isin(old.model)]], ignore_index=True)
    io.write_csv(args.out, table)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
