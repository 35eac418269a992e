"""The generation loop (§4.2): generation 0 is the model fine-tuned on the real articles; every
generation continues each article block by block, and the next one fine-tunes on those
continuations. One call = one setup; finished versions are skipped, so a rerun resumes.
Under `accelerate launch` training is data-parallel, synthesis is sharded by article and gathered
back in order, and only the main process writes."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pandas as pd
from accelerate.utils import gather_object, set_seed
from omegaconf import DictConfig, OmegaConf

from bias_amp import data, faults, io, memory, mitigation, models, precision, probes, synth, tracking, train
from bias_amp.classifier.cache import trained_instruments
from bias_amp.layout import METRICS_COLUMNS, is_done, seed_for, version_name
from bias_amp.metrics.collapse import SOURCE_TEMPLATE
from bias_amp.metrics.scorer import Scorer, summarize
from bias_amp.projection import Tracker, c_t_columns, probe_set
from bias_amp.validate import validate_run

log = logging.getLogger(__name__)


def run_setup(cfg: DictConfig, out: Path) -> pd.DataFrame:
    """Run (or resume) one setup into `out`; returns its metrics table."""
    acc = tracking.make_accelerator(cfg.logger)
    cfg.precision = precision.resolve(cfg.precision, acc.device)   # auto -> what this device runs; recorded as such
    scorer = None
    try:
        # config, corpus, hub models, output dir and resume: all checked before any model loads
        real = validate_run(cfg, out, write=acc.is_main_process)
        if cfg.train.memory == "low":
            memory.return_freed_memory()                        # for every stage, not fine-tuning alone
        acc.wait_for_everyone()                                 # an overwritten run dir is empty for all
        probe = probe_set(cfg)       # held-out right/left articles defining b̂ (None: c_t not measured)
        real_texts = [a.text(cfg.data.template) for a in real]
        memory.trim()                       # the corpus's parse is freed (tracking.stage does so after every stage)
        base = lambda: models.load_lm(cfg.model, corpus=real_texts, seed=cfg.seed)  # noqa: E731
        reference = models.Reloadable(base, out / ".reference", cfg.precision)  # the Scorer's perplexity model
        scorer = Scorer(cfg, device=acc.device, base_model_loader=reference.load, trained=trained_instruments(cfg))
        if acc.is_main_process:
            io.write_jsonl(out / "real.jsonl", [vars(a) for a in real])
        model, tok = base()
        tracker = Tracker(cfg, probe, model) if probe else None      # θ_0 = the base model
        if acc.is_main_process:             # only the main process scores
            reference.keep(model, tok)
        model.to(acc.device).eval()
        todo = [version_name(g) for g in range(-1 if cfg.baseline else 0, cfg.generations) if not is_done(out, g)]
        if todo and acc.is_main_process:    # a tracker run only once a version will be computed
            tracking.start_run(acc, cfg, out, todo)
        probe_prompts = [b for a in real for b in synth.split_blocks(tok, a.title, a.body, cfg.synthesis.block_tokens)]
        if cfg.baseline and not is_done(out, -1):
            finish_version(cfg, out, -1, model, tok, real, scorer, acc, probe_prompts, None)
        replay = resume(cfg, out)           # finished versions whose lost checkpoint is re-trained
        if replay.start > 0:
            model, tok = models.load_checkpoint(out / "checkpoints" / version_name(replay.start - 1))
            model.to(acc.device)
        train_cfg = OmegaConf.merge(cfg.train, cfg.mitigation.train)
        for g in range(cfg.generations):
            if is_done(out, g) and g not in replay:
                continue
            v = version_name(g)
            synthetic = [[a["text"] for a in io.read_jsonl(out / version_name(k) / "articles.jsonl")] for k in range(g)]
            if cfg.init_from == "base" and g > 0:
                model, tok = base()
                model.to(acc.device)
            set_seed(seed_for(cfg.seed, g, "train"))
            scores = [pd.read_csv(out / version_name(k) / "scores.csv") for k in range(g)] \
                if cfg.mitigation.get("select") else None                  # `select` reads the leanings
            batch = mitigation.training_set(g, real_texts, synthetic, cfg.mitigation, cfg.seed,
                                            real_labels=[a.label for a in real], scores=scores)
            measure = tracker if tracker is not None and (g not in replay or tracker.project) else None
            if measure is not None:
                with tracking.stage(out, v, "projection", acc.is_main_process):
                    measure.start(model, tok)            # b̂ of this generation
            def on_step(step: int, v=v, measure=measure) -> None:
                if measure is not None:
                    measure.after_step(step)              # `project` at the update
                if step == 1:
                    faults.point(v, "train")

            with tracking.stage(out, v, "replay" if g in replay else "train", acc.is_main_process):
                result = train.finetune(model, tok, batch.texts, train_cfg, acc, seed=seed_for(cfg.seed, g, "train"),
                                        precision=cfg.precision, desc=f"{cfg.setup_name} {v} fine-tune",
                                        grad_hook=measure and measure.before_step, on_step=on_step)
            if g in replay:                      # re-trained for its checkpoint; its articles stay
                last = g + 1 == replay.stop
                if acc.is_main_process:
                    if last:
                        save_and_prune(cfg, out, g, model, tok)
                    check_replay(out, g, result, last)
                continue
            prompts = real if cfg.prompt_source == "real" or g == 0 else [
                data.Article(a["id"], a["label"], "", a["text"]) for a in io.read_jsonl(out / version_name(g - 1) / "articles.jsonl")]
            finish_version(cfg, out, g, model, tok, prompts, scorer, acc, probe_prompts,
                           {**result.to_dict(), "data": batch.origin, "projection": tracker and tracker.finish()})
        acc.wait_for_everyone()
        if cfg.keep_checkpoints == "none" and acc.is_main_process:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        return write_metrics(out) if acc.is_main_process else pd.DataFrame()
    finally:
        if scorer is not None:
            scorer.close()
            reference.close()
        tracking.finish(acc)


def resume(cfg, out: Path) -> range:
    """The finished versions to re-fine-tune before the run goes on: none when the last one's checkpoint is
    there (or nothing is left, or every version starts from the base model); else those after the latest
    checkpoint kept, each on its recorded training set (a run dir carried to another machine without its
    checkpoints, or keep_checkpoints=none, resumes so). `start` - 1 is the checkpoint to load (-1: the base)."""
    done = [g for g in range(cfg.generations) if is_done(out, g)]
    if not done or done[-1] + 1 >= cfg.generations or cfg.init_from != "previous":
        return range(0)
    kept = [g for g in done if (out / "checkpoints" / version_name(g)).is_dir()]
    start = kept[-1] + 1 if kept else 0
    if start <= done[-1]:
        log.warning("%s: no checkpoint of %s; re-fine-tuning %s from the recorded training sets", out,
                    version_name(done[-1]), ", ".join(version_name(g) for g in range(start, done[-1] + 1)))
    return range(start, done[-1] + 1)


def check_replay(out: Path, g: int, result, last: bool) -> None:
    """A replayed fine-tuning against the one recorded in train.json: its batch losses, step by step
    (identical on the same CPU, thread count and precision). Written to the version's replay.json."""
    vdir = out / version_name(g)
    recorded = io.read_json(vdir / "train.json")["batch_losses"]
    rel = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(result.batch_losses, recorded, strict=True)]
    stats = {"steps": len(rel), "identical": max(rel) == 0, "max_rel_loss_diff": max(rel),
             "mean_rel_loss_diff": sum(rel) / len(rel)}
    io.write_json(vdir / "replay.json", stats)
    tracking.note(out, f"{version_name(g):<8} replayed: {'identical losses' if stats['identical'] else 'losses differ'}"
                  f" (max relative difference {stats['max_rel_loss_diff']:.2e} over {len(rel)} steps)"
                  + (", checkpoint saved" if last else ""))


def synthesize(cfg, g, model, tok, prompts, acc) -> tuple[list[dict], float]:
    """This process's share of the articles, continued, then gathered back in article order."""
    n = cfg.synthesis.max_articles
    prompts = prompts[:n] if n else prompts
    mine = list(range(acc.process_index, len(prompts), acc.num_processes))
    set_seed(seed_for(cfg.seed, g, "synthesis"))
    start = time.perf_counter()
    decoding = synth.Decoding(OmegaConf.to_container(cfg.decoding.kwargs, resolve=True))   # checked by validate_run
    out = synth.synthesize(model, tok, [prompts[i] for i in mine], decoding, precision=cfg.precision,
                           block_tokens=cfg.synthesis.block_tokens, new_tokens=cfg.synthesis.new_tokens,
                           max_blocks=cfg.synthesis.max_blocks, batch_size=cfg.synthesis.batch_size,
                           seed=seed_for(cfg.seed, g, "decode", acc.process_index),
                           progress=acc.is_local_main_process, threads=cfg.synthesis.threads,
                           packed=cfg.synthesis.packed_weights,
                           on_batch=lambda *_: faults.point(version_name(g), "synthesis"))
    seconds = time.perf_counter() - start
    if acc.num_processes > 1:
        out = [a for _, a in sorted(gather_object(list(zip(mine, out, strict=True))), key=lambda p: p[0])]
    tokens = sum(a["new_tokens"] for a in out)
    return out, tokens / max(seconds, 1e-9)


def finish_version(cfg, out, g, model, tok, prompts, scorer, acc, probe_prompts, train_stats) -> None:
    """Synthesise, score and probe one model version; write its dir, the DONE marker last."""
    v, vdir = version_name(g), out / version_name(g)
    with tracking.stage(out, v, "synthesis", acc.is_main_process):
        articles, synth_rate = synthesize(cfg, g, model, tok, prompts, acc)
    if acc.is_main_process:
        with tracking.stage(out, v, "scoring"):
            source = {p.id: p.text(SOURCE_TEMPLATE) for p in prompts}     # what each article continues
            scores = scorer.score(articles, [source[a["id"]] for a in articles])
            scorer.close()                  # no metric model is held while the next generation trains
        faults.point(v, "metrics")
        row = {"setup": cfg.setup_name, "seed": cfg.seed, "version": v, "generation": g, **summarize(scores),
               "smoke_instruments": scorer.smoke_instruments, "precision": cfg.precision,
               "train_loss": train_stats["loss"] if train_stats else None,
               "train_tokens_per_s": train_stats["tokens_per_s"] if train_stats else None,
               "synth_tokens_per_s": synth_rate, **c_t_columns(train_stats)}
        io.write_jsonl(vdir / "articles.jsonl", articles)
        io.write_csv(vdir / "scores.csv", scores)
        if train_stats:
            io.write_json(vdir / "train.json", train_stats)
        if cfg.probe.enabled:
            with tracking.stage(out, v, "probe"), precision.inference_weights(model, cfg.precision):
                probes.save_probe(vdir / "probe.npz", probes.probe(model, tok, probe_prompts, cfg.probe,
                                                                   desc=f"{cfg.setup_name} {v} probe"))
        io.write_json(vdir / "metrics.json", row)
        if g >= 0:                       # the latest checkpoint is what a killed run resumes from
            with tracking.stage(out, v, "checkpoint"):
                save_and_prune(cfg, out, g, model, tok)
        io.write_text(vdir / "DONE", "")
        write_metrics(out)
        tracking.log_version(acc, row, out)
    acc.wait_for_everyone()


def save_and_prune(cfg, out: Path, g: int, model, tok) -> None:
    ckpt = out / "checkpoints"
    models.save_checkpoint(model, tok, ckpt / version_name(g))
    if cfg.keep_checkpoints != "all":
        for old in ckpt.glob("gen_*"):
            if old.name < version_name(g):
                shutil.rmtree(old, ignore_errors=True)


def write_metrics(out: Path) -> pd.DataFrame:
    """metrics.csv = every finished version's metrics.json, baseline first."""
    rows = [io.read_json(p.parent / "metrics.json") for p in sorted(out.glob("*/DONE"))]
    df = pd.DataFrame(rows).sort_values("generation", ignore_index=True)
    df = df[[c for c in METRICS_COLUMNS if c in df] + [c for c in df if c not in METRICS_COLUMNS]]
    io.write_csv(out / "metrics.csv", df)
    return df
