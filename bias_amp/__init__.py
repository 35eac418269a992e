"""bias-amp: bias amplification and model collapse under self-consuming fine-tuning."""

from omegaconf import OmegaConf

__version__ = "0.1.0"


def _variant(overrides) -> str:
    from bias_amp.layout import variant
    return variant(overrides)


# Resolvers of conf/ (registered when any bias_amp module is imported: runs, apps and tests compose alike)
OmegaConf.register_new_resolver("bias_amp.variant", _variant, replace=True)           # output dirs of config.yaml
OmegaConf.register_new_resolver("bias_amp.times", lambda a, b: a * b, replace=True)   # e.g. overfit's 5 x epochs
