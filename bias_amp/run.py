"""Entry point: `python -m bias_amp.run [-m] setup=... decoding=... mitigation=... experiment=smoke`.
A single run writes outputs/runs/<experiment>[+changes]/<setup>/seed_<seed>/, a sweep (-m)
multirun/<experiment>[+changes]/<setup>/seed_<seed>/ (layout.variant names the changes)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bias_amp.cli import one_line_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from bias_amp.loop import run_setup

    with one_line_errors():
        out = Path(HydraConfig.get().runtime.output_dir)
        metrics = run_setup(cfg, out)
        cols = [c for c in ("version", "share_right", "quality_mean", "perplexity_mean") if c in metrics]
        print(f"[{cfg.setup_name} seed {cfg.seed}] {out}\n{metrics[cols].to_string(index=False)}")


if __name__ == "__main__":
    main()
