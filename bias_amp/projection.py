"""The bias projection coefficient c_t (§3.1, Eq. 1) measured while fine-tuning, and the `project` mitigation.

Bias direction: b = ∇θ [mean per-token log p_θ(right probe) − mean per-token log p_θ(left probe)] over a fixed
probe set of real right- and left-labelled articles held out from training (data.held_out), b̂ = b / ||b||.
Sign convention (as in Eq. 1): a descent step Δθ = −η g changes the preference for right-leaning text by
≈ bᵀΔθ = −η ||b|| b̂ᵀg, so c_t = b̂ᵀg < 0 means the step RAISES the model's preference for right text.

`project` (conf/mitigation/project.yaml) removes the amplifying part along b̂ of a vector v with c = b̂ᵀv:
  hard  v ← v − min(0, c)·b̂
  soft  v ← argmin_v' ½||v' − v||² − λ max(0, b̂ᵀv')² + γ min(0, b̂ᵀv')²   (the paper's penalty on the step's
        own coefficient, in closed form: c < 0 shrinks to c/(1+2γ), c > 0 grows to c/(1−2λ); λ < 0.5)
  at: gradient  v = g before clipping (the issue's form; AdamW then rescales it per coordinate)
  at: update    v = −Δθ, the optimizer's actual step, so b̂ᵀ(θ − θ_start) ≤ 0 holds exactly under `hard`.
The exact gradient of the penalty needs a Hessian-vector product per step (> 2× a step); this costs two dot
products and one axpy. θ_0 below is the base model (the weights at the start of generation 0).
The bracket itself, the log-likelihood gap, is a classifier-free leaning of the model (> 0: it prefers the right
probes): c_t_logp_gap_start / _end, before and after each generation's fine-tuning."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from bias_amp import data, train
from bias_amp.errors import ConfigError, check, check_range

log = logging.getLogger(__name__)
ENABLED = ("auto", True, False)
PARAMS = ("all", "mlp")
FORMS = ("hard", "soft")
AT = ("gradient", "update")
PROBE_LABELS = ("right", "left")
PROBE_BATCH = 4


def validate(cfg: DictConfig) -> None:
    """The `projection` block and the mitigation's `project` block (null unless mitigation=project)."""
    p = cfg.projection
    check(p.enabled in ENABLED, "projection.enabled", "auto, true or false", p.enabled)
    check_range(p.probe_per_label, "projection.probe_per_label", 1, integer=True)
    check(p.params in PARAMS, "projection.params", f"one of {list(PARAMS)}", p.params)
    project = cfg.mitigation.get("project")
    if project is None:
        return
    keys = ("form", "lam", "gamma", "at", "refresh_every")
    for key in project:
        check(key in keys, f"mitigation.project.{key}", f"one of {', '.join(keys)}", key)
    check(project.form in FORMS, "mitigation.project.form", f"one of {list(FORMS)}", project.form)
    check(project.at in AT, "mitigation.project.at", f"one of {list(AT)}", project.at)
    check_range(project.lam, "mitigation.project.lam", 0, 0.5, hi_open=True)
    check_range(project.gamma, "mitigation.project.gamma", 0)
    if project.refresh_every is not None:
        check_range(project.refresh_every, "mitigation.project.refresh_every", 1, integer=True)
    check(p.enabled is not False, "projection.enabled", "auto or true (mitigation project needs b̂)", p.enabled)
    check(cfg.train.get("memory", "default") == "default", "train.memory",
          "default with mitigation project (memory=low steps inside backward)", cfg.train.get("memory"))


def probe_set(cfg: DictConfig) -> dict[str, list[str]] | None:
    """The held-out right/left probe texts, or None when c_t is not measured (enabled=false, or auto without
    enough articles outside the training corpus, or train.memory=low, which frees gradients in backward)."""
    p, needed = cfg.projection, required(cfg)
    if p.enabled is False:
        return None
    if cfg.train.get("memory", "default") == "low":
        check(not needed, "projection.enabled", "auto or false under train.memory=low (no gradients to read)", True)
        return None
    try:
        held = data.held_out(cfg.data, cfg.seed, p.probe_per_label, PROBE_LABELS)
    except ConfigError as err:
        if needed:
            raise
        log.warning("c_t not measured: %s", err)
        return None
    return {label: [a.text(cfg.data.template) for a in held if a.label == label] for label in PROBE_LABELS}


def required(cfg: DictConfig) -> bool:
    """c_t must be measured: asked for explicitly, or the `project` mitigation needs b̂."""
    return cfg.projection.enabled is True or cfg.mitigation.get("project") is not None


def selected(model, params: str) -> list[torch.nn.Parameter]:
    """The parameters b lives in: all trainable ones, or those of the MLP blocks."""
    module = getattr(model, "module", model)           # DDP-wrapped under accelerate launch
    return [p for name, p in module.named_parameters() if p.requires_grad and (params == "all" or ".mlp." in name)]


def _probe_logp(module, tok, texts: list[str], max_length: int, device):
    """Each batch's part of the mean per-token log p of `texts` (graphs when grad is enabled)."""
    examples = train.encode(tok, texts, max_length)
    targets = sum(len(e) - 1 for e in examples)
    for i in range(0, len(examples), PROBE_BATCH):
        inputs = train.collate(examples[i:i + PROBE_BATCH], tok.pad_token_id, device)
        labels = inputs.pop("labels")
        yield -train.token_loss_sum(module(**inputs).logits, labels) / targets


def direction(model, tok, probe: dict[str, list[str]], params: list,
              max_length: int) -> tuple[list, float, float]:
    """b̂ (one tensor per parameter), ||b|| and the log-likelihood gap (mean per-token log p of the right probes
    minus that of the left ones; > 0: the model prefers right-leaning text); the model's mode is restored, its
    .grad left untouched."""
    module = getattr(model, "module", model)
    was_training, device = module.training, params[0].device
    module.eval()                                       # no dropout: b is a function of θ only
    b = [torch.zeros_like(p) for p in params]
    gap = 0.0
    for label, sign in zip(PROBE_LABELS, (1.0, -1.0), strict=True):
        for logp in _probe_logp(module, tok, probe[label], max_length, device):
            gap += sign * logp.item()
            for acc, grad in zip(b, torch.autograd.grad(sign * logp, params, allow_unused=True), strict=True):
                if grad is not None:
                    acc.add_(grad)
    module.train(was_training)
    norm = torch.sqrt(sum((x.double() ** 2).sum() for x in b)).item()
    check(norm > 0, "projection", "a probe set on which right and left texts differ in log-likelihood", norm)
    return [x / norm for x in b], norm, gap


@torch.no_grad()
def logp_gap(model, tok, probe: dict[str, list[str]], max_length: int) -> float:
    """The log-likelihood gap of `direction` alone (no gradients)."""
    module = getattr(model, "module", model)
    was_training, device = module.training, next(module.parameters()).device
    module.eval()
    gap = sum(sign * logp.item() for label, sign in zip(PROBE_LABELS, (1.0, -1.0), strict=True)
              for logp in _probe_logp(module, tok, probe[label], max_length, device))
    module.train(was_training)
    return gap


def dot(xs, ys) -> torch.Tensor:
    """Σᵢ xᵢ·yᵢ over two lists of tensors, in float64: each row's dot product (a BLAS call in the tensors' dtype)
    summed in float64. Relative error ~1e-7 against casting everything to float64, 6x faster on a CPU (two calls
    per optimizer step over all the weights: casting cost more than the fine-tuning step's LM head)."""
    def rows(t):
        return t.reshape(-1, t.shape[-1]) if t.ndim else t.reshape(1, 1)
    return sum(torch.linalg.vecdot(rows(x), rows(y.to(x.device))).sum(dtype=torch.float64)
               for x, y in zip(xs, ys, strict=True))


def coefficient(c: torch.Tensor, project: DictConfig) -> torch.Tensor:
    """How much of b̂ to remove from v given c = b̂ᵀv (module docstring): v ← v − coefficient·b̂."""
    if project.form == "hard":
        return c.clamp(max=0)
    return torch.where(c < 0, c * 2 * project.gamma / (1 + 2 * project.gamma),
                       -c * 2 * project.lam / (1 - 2 * project.lam))


class Tracker:
    """c_t for one run: θ_0 is snapshotted at construction (the base model); `start` computes b̂ for a
    generation, `before_step` (train.finetune's grad_hook) reads c_t off the gradient and, under `project`
    at the gradient, projects it; `after_step` projects the update; `finish` summarises the generation."""

    def __init__(self, cfg: DictConfig, probe: dict[str, list[str]], model):
        self.cfg, self.probe, self.project = cfg.projection, probe, cfg.mitigation.get("project")
        self.max_length = cfg.train.max_length
        self.theta0 = [p.detach().to("cpu", copy=True) for p in selected(model, self.cfg.params)]

    def start(self, model, tok) -> None:
        self.model, self.tok = model, tok
        self.params = selected(model, self.cfg.params)
        self.b, self.b_norm, self.gap_start = direction(model, tok, self.probe, self.params, self.max_length)
        self.b_start = self.b                              # the per-generation measures use the start's b̂
        self.theta_start = [p.detach().to("cpu", copy=True) for p in self.params]
        self.c, self.g_norm, self.refreshes = [], [], 0

    def before_step(self, step: int, model) -> None:
        every = self.project.refresh_every if self.project is not None else None
        if every and step > 1 and (step - 1) % every == 0:
            self.b, _, _ = direction(model, self.tok, self.probe, self.params, self.max_length)
            self.refreshes += 1
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        c = dot(grads, self.b)                            # stays on the device: no host sync per step
        self.c.append(c)
        self.g_norm.append(torch.sqrt(dot(grads, grads)))
        if self.project is not None and self.project.at == "gradient":
            coef = coefficient(c, self.project).float()
            for g, b in zip(grads, self.b, strict=True):
                g.addcmul_(b, coef, value=-1)            # no host sync, no temporary
        elif self.project is not None:
            self.s_before = dot([p.detach() for p in self.params], self.b)

    def after_step(self, step: int) -> None:
        if self.project is None or self.project.at != "update":
            return
        c = self.s_before - dot([p.detach() for p in self.params], self.b)    # b̂ᵀ(−Δθ)
        coef = coefficient(c, self.project).float()
        with torch.no_grad():
            for p, b in zip(self.params, self.b, strict=True):
                p.addcmul_(b, coef)                       # −Δθ' = −Δθ − coef·b̂

    def finish(self) -> dict:
        """Per generation: columns starting with c_t (metrics.csv, W&B) and the per-step values (train.json)."""
        c = torch.stack(self.c).cpu().tolist() if self.c else []
        cos = (torch.stack(self.c) / torch.stack(self.g_norm).clamp(min=1e-30)).cpu().tolist() if self.c else []
        now = [p.detach().cpu() for p in self.params]
        delta = [x - y for x, y in zip(now, self.theta_start, strict=True)]
        b = [x.cpu() for x in self.b_start]
        delta_norm = torch.sqrt(dot(delta, delta)).item()
        n = max(len(c), 1)
        summary = {
            "c_t_mean": sum(c) / n,
            "c_t_negative_share": sum(x < 0 for x in c) / n,
            "c_t_cos_mean": sum(cos) / n,
            "c_t_cos_update": dot(delta, b).item() / delta_norm if delta_norm > 0 else 0.0,   # cos(Δθ_gen, b̂)
            "c_t_bias_component": dot([x - y for x, y in zip(now, self.theta0, strict=True)], b).item(),
            "c_t_b_norm": self.b_norm,
            # a classifier-free leaning of the model: log p(right probes) - log p(left probes), per token
            "c_t_logp_gap_start": self.gap_start,
            "c_t_logp_gap_end": logp_gap(self.model, self.tok, self.probe, self.max_length),
        }
        self.model = self.tok = self.params = self.b = self.b_start = self.theta_start = None
        return {**summary, "refreshes": self.refreshes, "steps": {"c_t": c, "cos": cos}}


def c_t_columns(train_stats: dict | None) -> dict:
    """The c_t columns of a version's metrics row (none when c_t was not measured)."""
    stats = (train_stats or {}).get("projection") or {}
    return {k: v for k, v in stats.items() if k.startswith("c_t")}


def pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per fine-tuned generation g of every run (`report.load_runs` rows): its mean c_t beside the
    change in right share it produces, share_right(gen_g) − share_right(the version it continued from:
    gen_{g−1}, or the baseline for gen_00)."""
    if "c_t_mean" not in runs:
        return pd.DataFrame(columns=["setup", "seed", "generation", "c_t_mean", "delta_right"])
    out = []
    for (setup, seed), d in runs.groupby(["setup", "seed"], sort=True):
        d = d.sort_values("generation")
        prev = d.share_right.shift(1).where(d.generation.diff() == 1)
        out.append(pd.DataFrame({"setup": setup, "seed": seed, "generation": d.generation,
                                 "c_t_mean": d.c_t_mean, "delta_right": d.share_right - prev}))
    df = pd.concat(out, ignore_index=True)
    return df[(df.generation >= 0) & df.c_t_mean.notna() & df.delta_right.notna()].reset_index(drop=True)


def association(runs: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """Theorem 1, tested: across generations and setups, Δ right share ~ a + slope · mean c_t (the theory
    predicts slope < 0: a negative c_t raises the right share). OLS slope with its t 95% CI, Pearson r, and
    95% bootstrap CIs of both (pairs resampled); None with fewer than 3 pairs."""
    from scipy import stats

    df = pairs(runs)
    if len(df) < 3 or df.c_t_mean.nunique() < 2:
        return None
    x, y = df.c_t_mean.to_numpy(float), df.delta_right.to_numpy(float)
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boot.append((np.polyfit(x[i], y[i], 1)[0], np.corrcoef(x[i], y[i])[0, 1]))
    slope_b, r_b = np.array(boot).T if boot else (np.array([np.nan]), np.array([np.nan]))
    by_setup = df.groupby("setup").agg(generations=("generation", "size"), c_t_mean=("c_t_mean", "mean"),
                                       delta_right=("delta_right", "mean")).reset_index()
    return {"n_pairs": len(df), "n_runs": int(df[["setup", "seed"]].drop_duplicates().shape[0]),
            "by_setup": by_setup.to_dict("records"), "slope": fit.slope, "slope_t_ci": [fit.slope - half, fit.slope + half],
            "slope_boot_ci": np.nanpercentile(slope_b, [2.5, 97.5]).tolist(), "intercept": fit.intercept,
            "r": fit.rvalue, "r_boot_ci": np.nanpercentile(r_b, [2.5, 97.5]).tolist(), "p": fit.pvalue,
            "n_boot": len(boot)}


def markdown(result: dict) -> str:
    """analysis/c_t.md: the association, then per setup the mean c_t and mean change in right share."""
    lo, hi = result["slope_t_ci"]
    head = (f"# Bias projection c_t vs the change in right share (Theorem 1)\n\n"
            f"Δ share_right = a + slope · mean c_t over {result['n_pairs']} generations of {result['n_runs']} runs: "
            f"slope {result['slope']:.4g} (t 95% CI {lo:.4g} .. {hi:.4g}; bootstrap "
            f"{result['slope_boot_ci'][0]:.4g} .. {result['slope_boot_ci'][1]:.4g}), Pearson r {result['r']:.3f} "
            f"(bootstrap {result['r_boot_ci'][0]:.3f} .. {result['r_boot_ci'][1]:.3f}), p = {result['p']:.3g}. "
            "The theory predicts slope < 0 (c_t < 0: the step raises the preference for right text).\n\n")
    lines = ["| setup | generations | mean c_t | mean Δ share_right |", "|---|---|---|---|"]
    lines += [f"| {r['setup']} | {r['generations']} | {r['c_t_mean']:.4g} | {r['delta_right']:+.4f} |"
              for r in result["by_setup"]]
    return head + "\n".join(lines) + "\n"
