"""`python -m bias_amp.classifier [task=leaning|quality] [backbones=[...]] [split.by=source] ...`
(conf/classifier.yaml)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from bias_amp.classifier.run import run, validate


@hydra.main(version_base="1.3", config_path="../../conf", config_name="classifier")
def main(cfg: DictConfig) -> None:
    from bias_amp.cli import one_line_errors

    with one_line_errors():
        validate(cfg)
        table = run(cfg, cfg.out_dir)
    print(table.to_string(index=False))
    print(f"best model: {Path(cfg.out_dir, 'model').resolve()}")


if __name__ == "__main__":
    main()
