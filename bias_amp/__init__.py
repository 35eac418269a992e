"""bias-amp: bias amplification and model collapse under self-consuming fine-tuning."""

__version__ = "0.1.0"
