"""The real corpus (§4.1). Reads a local JSONL / CSV / Parquet file (plain or .gz), a folder of one JSON per
article (Article-Bias-Prediction `data/jsons/`) or a `datasets` hub name; maps columns and labels onto
left / center / right; validates every article; draws a seeded stratified sample of `per_label` per leaning.

Errors are one-line `ConfigError`s naming the config key; rows are counted from 0 (= the default id).
Output order: left, then center, then right; within a leaning, the sampled order (`per_label` set) or the
file order (`per_label: null`).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import string
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bias_amp.errors import ConfigError, check, check_range
from bias_amp.layout import LEANINGS
from bias_amp.models import resolve_path

log = logging.getLogger(__name__)
FORMATS = ("auto", "jsonl", "csv", "parquet", "abp_jsons")
SUFFIXES = {".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".csv.gz": "csv",
            ".parquet": "parquet", ".pq": "parquet"}
# Article-Bias-Prediction JSON fields, aliased so the allsides column map reads both layouts.
ABP_ALIASES = {"id": "ID", "text": "content_original", "label": "bias_text"}
DEFAULT_TEMPLATE = "title: {title}\nbody: {body}"


@dataclass(frozen=True)
class Article:
    id: str
    label: str
    title: str
    body: str
    source: str = ""

    def text(self, template: str = DEFAULT_TEMPLATE) -> str:
        """Training text: `data.template` filled with title and body (the authors' `title: ...\\nbody: ...`)."""
        return template.format(title=self.title, body=self.body)


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _fail(key: str, expected: str, got: str) -> ConfigError:
    """A ConfigError whose `got` part is already worded (no repr quoting)."""
    return ConfigError(key, f"{expected}, got {got}")


def _source_path(cfg: dict) -> Path:
    raw = cfg.get("path")
    try:
        resolved = resolve_path(raw)
    except ConfigError:
        raise ConfigError("data.path", "an installed package path pkg://module/file", raw) from None
    check(bool(resolved), "data.path", "a file or directory (or set data.hub)", raw)
    return Path(str(resolved)).expanduser()


def _format(path: Path, fmt: str) -> str:
    if path.is_dir():
        check(fmt in ("auto", "abp_jsons"), "data.format", "auto or abp_jsons for a directory", fmt)
        return "abp_jsons"
    if fmt != "auto":
        check(fmt != "abp_jsons", "data.format", "a directory of .json files for abp_jsons", str(path))
        return fmt
    name = path.name.lower()
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    raise ConfigError("data.format", f"one of {list(FORMATS[1:])} (cannot tell from the name {path.name!r})", fmt)


def validate(data_cfg) -> None:
    """Check a `data` config: values, and that the source exists (no reading beyond that)."""
    cfg = _plain(data_cfg)
    fmt = cfg.get("format") or "auto"
    check(fmt in FORMATS, "data.format", f"one of {list(FORMATS)}", fmt)
    hub = cfg.get("hub")
    if hub is not None:
        check(isinstance(hub, str) and bool(hub.strip()), "data.hub", "a datasets name or null", hub)
        check(isinstance(cfg.get("split") or "train", str), "data.split", "a split name such as 'train'",
              cfg.get("split"))
    else:
        path = _source_path(cfg)
        check(path.exists(), "data.path", "an existing file or directory", str(path))
        kind = _format(path, fmt)
        if kind != "abp_jsons":
            check(path.stat().st_size > 0, "data.path", "a non-empty file", str(path))
    cols = cfg.get("columns") or {}
    check(isinstance(cols, dict), "data.columns", "a mapping {text, title, label, id, source}", cols)
    for key in ("text", "label"):
        check(isinstance(cols.get(key), str) and bool(cols[key]), f"data.columns.{key}", "a column name", cols.get(key))
    for key in ("title", "id", "source"):
        check(cols.get(key) is None or isinstance(cols[key], str), f"data.columns.{key}", "a column name or null",
              cols.get(key))
    unknown = sorted(set(cols) - {"text", "title", "label", "id", "source"})
    check(not unknown, "data.columns", "only the keys text, title, label, id, source", unknown)
    labels = cfg.get("labels")
    check(isinstance(labels, dict) and bool(labels), "data.labels", "a non-empty map raw value -> left|center|right",
          labels)
    for raw, leaning in labels.items():
        check(leaning in LEANINGS, f"data.labels.{raw}", f"one of {list(LEANINGS)}", leaning)
    if cfg.get("per_label") is not None:
        check_range(cfg["per_label"], "data.per_label", lo=1, integer=True)
    excluded = cfg.get("exclude_sources")
    check(excluded is None or (isinstance(excluded, list) and all(isinstance(x, str) for x in excluded)),
          "data.exclude_sources", "a list of outlet names (the source column) or null", excluded)
    for key in ("drop_unmapped", "drop_empty"):
        check(isinstance(cfg.get(key, False), bool), f"data.{key}", "true or false", cfg.get(key))
    check(cfg.get("csv_bad_lines", "error") in ("error", "skip"), "data.csv_bad_lines", "error or skip",
          cfg.get("csv_bad_lines"))
    template = cfg.get("template", DEFAULT_TEMPLATE)
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        template.format(title="", body="")
    except (AttributeError, ValueError, KeyError, IndexError, TypeError):
        fields = None
    check(fields is not None and "body" in fields and fields <= {"title", "body"}, "data.template",
          "a format string with {body} (and optionally {title}), nothing else", template)


# ---- readers: (records, locations, columns) ------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    if path.name.lower().endswith(".gz"):
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as e:
            raise ConfigError("data.path", "a readable gzip file", f"{path} ({e})") from None
    return path.read_bytes()


def _decode(raw: bytes, where: Path) -> str:
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise _fail("data.path", f"UTF-8 text in {where}",
                    f"byte 0x{raw[e.start]:02x} at byte offset {e.start} (line {line})") from None


def _columns(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in records for k in r))


def _read_jsonl(path: Path):
    records, locs = [], []
    for lineno, line in enumerate(_decode(_read_bytes(path), path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise _fail("data.path", f"one JSON object per line in {path}", f"invalid JSON at line {lineno} ({e.msg})") from None
        if not isinstance(rec, dict):
            raise _fail("data.path", f"one JSON object per line in {path}", f"{type(rec).__name__} at line {lineno}")
        locs.append(f"row {len(records)}, line {lineno}")
        records.append(rec)
    return records, locs, _columns(records)


def _read_csv(path: Path, bad_lines: str):
    import pandas as pd

    text = _decode(_read_bytes(path), path)
    skipped = []
    kwargs = dict(on_bad_lines=(skipped.append if bad_lines == "skip" else "error"),
                  engine="python" if bad_lines == "skip" else "c")
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, **kwargs)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    except pd.errors.ParserError as e:
        raise _fail("data.path", f"a well-formed CSV file (or data.csv_bad_lines: skip): {path}",
                    str(e).strip().splitlines()[-1]) from None
    if skipped:
        log.warning("%s: skipped %d malformed CSV lines (data.csv_bad_lines: skip)", path, len(skipped))
    return df.to_dict("records"), [f"row {i}" for i in range(len(df))], [str(c) for c in df.columns]


def _read_parquet(path: Path):
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ConfigError("data.path", "a readable Parquet file", f"{path} ({type(e).__name__})") from None
    return df.to_dict("records"), [f"row {i}" for i in range(len(df))], [str(c) for c in df.columns]


def _read_abp_jsons(path: Path):
    from tqdm.auto import tqdm

    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".json" and p.is_file())
    check(bool(files), "data.path", "a directory with at least one .json article", str(path))
    records, locs = [], []
    for f in tqdm(files, desc="reading articles", unit="file", disable=len(files) < 2000):
        try:
            rec = json.loads(_decode(f.read_bytes(), f))
        except json.JSONDecodeError as e:
            raise _fail("data.path", "one JSON object per file", f"invalid JSON in {f} ({e.msg})") from None
        check(isinstance(rec, dict), "data.path", "one JSON object per file", f"{type(rec).__name__} in {f}")
        for alias, field in ABP_ALIASES.items():
            if field in rec and alias not in rec:
                rec[alias] = rec[field]
        locs.append(f"row {len(records)}, file {f.name}")
        records.append(rec)
    return records, locs, _columns(records)


def _read_hub(name: str, split: str):
    from datasets import load_dataset

    try:
        ds = load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, bad split: one line, the cause named
        msg = (str(e).strip().splitlines() or [""])[0]
        raise _fail("data.hub", "a loadable datasets name and split", f"{name!r} split {split!r}: "
                    f"{type(e).__name__}: {msg}") from None
    return ds.to_list(), [f"row {i}" for i in range(len(ds))], list(ds.column_names)


def _read(cfg: dict):
    """(records, locations, columns, where) from the configured source."""
    if cfg.get("hub"):
        split = cfg.get("split") or "train"
        return (*_read_hub(cfg["hub"], split), f"{cfg['hub']}[{split}]")
    path = _source_path(cfg)
    kind = _format(path, cfg.get("format") or "auto")
    if kind == "jsonl":
        out = _read_jsonl(path)
    elif kind == "csv":
        out = _read_csv(path, cfg.get("csv_bad_lines", "error"))
    elif kind == "parquet":
        out = _read_parquet(path)
    else:
        out = _read_abp_jsons(path)
    check(bool(out[0]), "data.path", "at least one article in the file", str(path))
    return (*out, str(path))


# ---- mapping, validation, sampling -----------------------------------------------------------------------

def _str(value: Any) -> str | None:
    """A cell as text; None for missing / NaN; 3.0 -> '3' (ids and labels read as floats)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _articles(records: list[dict], locs: list[str], columns: list[str], cfg: dict, where: str) -> list[Article]:
    cols = cfg["columns"]
    for key in ("text", "label", "title", "id", "source"):
        name = cols.get(key)
        if name is not None and name not in columns:
            raise _fail(f"data.columns.{key}", f"column {name!r} in {where}", f"columns {columns}")
    lmap = {str(k).strip(): v for k, v in cfg["labels"].items()}
    articles, seen, dropped, empty = [], {}, 0, 0
    for i, (rec, loc) in enumerate(zip(records, locs, strict=True)):
        raw = _str(rec.get(cols["label"]))
        if raw is None or raw.strip() not in lmap:
            if cfg.get("drop_unmapped", False):
                dropped += 1
                continue
            raise _fail("data.labels", f"every raw label to be a key of {list(lmap)} (or data.drop_unmapped: true)",
                        f"{raw!r} at {loc} of {where}")
        if cols.get("id"):
            aid = _str(rec.get(cols["id"]))
            if aid is None or not aid.strip():
                raise _fail("data.columns.id", f"an id in every article of {where}", f"none at {loc}")
        else:
            aid = str(i)
        body = (_str(rec.get(cols["text"])) or "").strip()
        if not body:
            if cfg.get("drop_empty", False):
                empty += 1
                continue
            raise _fail("data.columns.text", f"non-empty text in every article of {where} (or data.drop_empty: true)",
                        f"empty text in article {aid!r} at {loc}")
        if aid in seen:
            raise _fail("data.columns.id", f"unique article ids in {where}", f"{aid!r} at {seen[aid]} and {loc}")
        seen[aid] = loc
        title = (_str(rec.get(cols["title"])) or "").strip() if cols.get("title") else ""
        source = (_str(rec.get(cols["source"])) or "").strip() if cols.get("source") else ""
        articles.append(Article(id=aid, label=lmap[raw.strip()], title=title, body=body, source=source))
    if dropped or empty:
        log.warning("%s: dropped %d articles with unmapped labels, %d with empty text", where, dropped, empty)
    check(bool(articles), "data.labels", f"at least one article with a mapped label in {where}", None)
    return articles


def read_articles(data_cfg) -> list[Article]:
    """Every article of the configured source, mapped and validated, in file order (no sampling)."""
    validate(data_cfg)
    cfg = _plain(data_cfg)
    records, locs, columns, where = _read(cfg)
    articles = _articles(records, locs, columns, cfg, where)
    excluded = set(cfg.get("exclude_sources") or ())          # e.g. outlets a leaning classifier was trained on
    return [a for a in articles if a.source not in excluded] if excluded else articles


def stratified_sample(articles: list[Article], per_label: int | None, seed: int, where: str = "the corpus"):
    """`per_label` articles of each leaning drawn without replacement by one `np.random.default_rng(seed)`
    (left, then center, then right); None keeps all. Order: left, center, right; sampled order within."""
    rng = np.random.default_rng(seed)
    out = []
    for label in LEANINGS:
        group = [a for a in articles if a.label == label]
        if per_label is None:
            out += group
            continue
        check(len(group) >= per_label, "data.per_label",
              f"at most {len(group)} (the number of {label!r} articles in {where})", per_label)
        out += [group[j] for j in rng.choice(len(group), size=per_label, replace=False)]
    return out


def load_corpus(data_cfg, seed: int) -> list[Article]:
    """Read, map columns and labels, validate, then sample `data.per_label` articles per leaning (§4.1)."""
    articles = read_articles(data_cfg)
    cfg = _plain(data_cfg)
    where = cfg.get("hub") or str(_source_path(cfg))
    sample = stratified_sample(articles, cfg.get("per_label"), seed, where)
    counts = {lab: sum(a.label == lab for a in sample) for lab in LEANINGS}
    log.info("corpus %s: %d articles read, %d kept %s (seed %d)", where, len(articles), len(sample), counts, seed)
    return sample


def held_out(data_cfg, seed: int, per_label: int, labels) -> list[Article]:
    """`per_label` articles of each of `labels` that load_corpus(data_cfg, seed) leaves out (never trained
    on), drawn by a seeded generator of their own: the probe set of bias_amp.projection."""
    articles = read_articles(data_cfg)
    cfg = _plain(data_cfg)
    kept = {a.id for a in stratified_sample(articles, cfg.get("per_label"), seed)}
    rng = np.random.default_rng([seed, 15])
    out = []
    for label in labels:
        group = [a for a in articles if a.label == label and a.id not in kept]
        check(len(group) >= per_label, "projection.probe_per_label",
              f"at most {len(group)} (the {label!r} articles outside the training corpus; lower data.per_label)",
              per_label)
        out += [group[j] for j in rng.choice(len(group), size=per_label, replace=False)]
    return out
