"""`python -m bias_amp.instruments [only=[leaning]] ...` (conf/instruments.yaml): trains the offline leaning
classifier and gibberish detector into `out_dir/<metric>/` (model/, results, instrument_card.md), where
`leaning=offline quality=offline` find them."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from bias_amp.classifier.run import TASKS
from bias_amp.errors import check


def train(cfg: DictConfig) -> dict[str, Path]:
    """Train every metric of `cfg.only`; {metric: model dir}. Configs are all checked before any training."""
    from bias_amp.classifier.cache import compose
    from bias_amp.classifier.run import run

    only = list(cfg.only)
    check(bool(only) and set(only) <= set(TASKS), "only", f"a non-empty list of {list(TASKS)}", only)
    tcfgs = {m: compose(OmegaConf.to_container(cfg[m], resolve=True)) for m in only}
    for m, tcfg in tcfgs.items():
        check(tcfg.task == m, f"{m}.task", repr(m), tcfg.task)
    out = {}
    for m, tcfg in tcfgs.items():
        run(tcfg, Path(cfg.out_dir) / m)
        out[m] = Path(cfg.out_dir) / m / "model"
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="instruments")
def main(cfg: DictConfig) -> None:
    from bias_amp.cli import one_line_errors

    with one_line_errors():
        for metric, path in train(cfg).items():
            print(f"{metric}: {path.resolve()} (card: {path.parent.resolve() / 'instrument_card.md'})")


if __name__ == "__main__":
    main()
