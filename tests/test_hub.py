"""Hub-named models are checked before anything runs: cached or reachable, else one line in seconds."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from bias_amp import hub
from bias_amp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def cfg_for(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def closed_port() -> str:
    with socket.socket() as s:          # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache: the machine's own cache must not decide these tests."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


@pytest.fixture()
def online(monkeypatch):
    """The hub allowed (conftest sets HF_HUB_OFFLINE for the suite), at an endpoint the test chooses."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return lambda url: monkeypatch.setenv("HF_ENDPOINT", url)


def test_hub_models_are_the_hub_named_ones():
    assert hub.hub_models(cfg_for()) == {"model.path": "gpt2", "leaning.model": "wu981526092/bias_classifier_roberta",
                                         "quality.model": "madhurjindal/autonlp-Gibberish-Detector-492513457"}
    assert hub.hub_models(cfg_for("experiment=smoke")) == {}
    assert hub.hub_models(cfg_for("model=smollm2", "leaning=smoke", "quality.model=./clf",
                                  "perplexity.model=org/ppl-model")) == {"perplexity.model": "org/ppl-model"}
    assert hub.hub_models(cfg_for("experiment=smoke", "leaning=paper", "leaning.enabled=false")) == {}


def test_offline_names_the_key_and_the_offline_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        hub.check_models(cfg_for("model.path=nobody/not-cached-lm"))
    text = str(err.value)
    assert text.startswith("model.path: expected a local path or a model in the Hugging Face cache ('nobody/")
    assert "HF_HUB_OFFLINE is set; also leaning.model, quality.model" in text
    assert "model=smollm2" in text and "experiment=smoke" in text and "\n" not in text


def test_a_closed_endpoint_fails_at_once(online):
    online(closed_port())
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^leaning\.model: .*127\.0\.0\.1:\d+ unreachable.*leaning=smoke"):
        hub.check_models(cfg_for("experiment=smoke", "leaning=paper", "leaning.model=nobody/not-cached-clf"))
    assert time.perf_counter() - start < 5


def test_a_silent_endpoint_is_given_up_after_the_timeout(online, monkeypatch):
    with socket.socket() as server:      # accepts connections (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        online(f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr(hub, "TIMEOUT_S", 0.5)
        start = time.perf_counter()
        with pytest.raises(ConfigError, match="unreachable"):
            hub.check_models(cfg_for("model.path=nobody/not-cached-lm", "leaning=smoke", "quality=smoke"))
        assert time.perf_counter() - start < 2


def test_a_cached_model_passes_offline(empty_cache, monkeypatch):
    cfg = cfg_for("experiment=smoke", "model=gpt2", "model.path=nobody/cached-lm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="^model.path: "):
        hub.check_models(cfg)
    repo = empty_cache / "models--nobody--cached-lm"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    hub.check_models(cfg)


def test_the_advertised_sweep_fails_offline_in_one_line_in_seconds(tmp_path):
    """Issue 12: `python -m bias_amp.run -m decoding=greedy,beam,nucleus` with no hub used to retry for minutes."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = closed_port()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bias_amp.run", "-m", "decoding=greedy,beam,nucleus",
                           "model.path=nobody/not-cached-lm", "logger=none"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2 and elapsed < 45, (elapsed, proc.stderr[-2000:])   # mostly imports; was 166 s
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors and errors[0].startswith("error: model.path: expected a local path") and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("seed_0/config.yaml"))   # the run's own config.yaml: only once all checks pass
