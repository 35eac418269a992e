"""Training of the metric classifiers (§4.3 political leaning, §4.4 offline gibberish detector):
`splits` (examples and splits), `fit` (backbones, fine-tuning), `run` (Table 1 results, confusion figure,
the saved model), `cache` (smoke models trained once per config for the loop's Scorer); the CLI is
`python -m bias_amp.classifier` (`__main__`). Nothing in `bias_amp.metrics` imports this package."""
