"""Shared fixtures: offline tiny models, the ../shared folder (skipped when absent), quiet tracking."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests use tiny models: one thread is as fast, and immune to OpenMP oversubscription when the machine is
# busy (2 threads on 2 loaded cores ran a tiny forward 20x slower). Subprocess runs inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
torch.set_num_threads(1)



def study_script(name: str):
    """A script of studies/study/ (a folder of scripts, not a package), imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "studies" / "study" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SENTENCES = [
    "The senate passed the budget bill on Tuesday after a long debate.",
    "Critics said the new tax plan favours the wealthy over working families.",
    "Supporters argued the border policy would restore order and security.",
    "The governor announced new climate rules for power plants in the state.",
    "Economists expect inflation to cool as interest rates stay high this year.",
    "Local officials met with residents to discuss school funding and safety.",
] * 8


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED


@pytest.fixture(scope="session")
def gpt2_tokenizer(shared_dir):
    from transformers import AutoTokenizer

    path = shared_dir / "models" / "gpt2-tokenizer"
    if not path.is_dir():
        pytest.skip("GPT-2 tokenizer absent from ../shared")
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from bias_amp.models import train_tokenizer

    return train_tokenizer(SENTENCES, vocab_size=400)


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    """A fresh 2-layer GPT-2 (random, seeded) for the trained tiny tokenizer."""
    from bias_amp.models import tiny_lm

    return tiny_lm(tiny_tokenizer, n_layer=2, n_embd=64, n_head=2, n_positions=256, seed=0).eval()


SMOKE_SWEEP = ["experiment=smoke", "logger=none", "generations=4", "data.per_label=3", "train.max_length=96",
               "synthesis.new_tokens=16", "probe.max_prompts=16"]


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Path:
    """A real (small) smoke sweep: two setups, baseline + 4 generations, run by the CLI once per session."""
    import subprocess
    import sys

    sweep = tmp_path_factory.mktemp("smoke") / "sweep"
    cmd = [sys.executable, "-m", "bias_amp.run", "--multirun", "setup=greedy,greedy-preserve", *SMOKE_SWEEP,
           f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


@pytest.fixture()
def jupyter_kernel(tmp_path, monkeypatch) -> str:
    """A 'python3' kernelspec pointing at the running interpreter, first on JUPYTER_PATH."""
    import json
    import sys

    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bias-amp test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"
