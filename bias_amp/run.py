"""Entry point: `python -m bias_amp.run [-m] setup=... decoding=... mitigation=... experiment=smoke`."""

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
        metrics = run_setup(cfg, Path(HydraConfig.get().runtime.output_dir))
        cols = [c for c in ("version", "share_right", "quality_mean", "perplexity_mean") if c in metrics]
        print(f"[{cfg.setup_name}]\n{metrics[cols].to_string(index=False)}")


if __name__ == "__main__":
    main()
