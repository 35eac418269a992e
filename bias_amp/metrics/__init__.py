"""Per-article and per-generation measurements: leaning, quality index, perplexity."""
