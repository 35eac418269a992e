"""Corpus layer: readers, column/label maps, validation errors, stratified sampling, the sample corpus."""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from bias_amp import sample_corpus
from bias_amp.data import Article, load_corpus, read_articles, stratified_sample, validate
from bias_amp.errors import ConfigError
from bias_amp.io import read_jsonl
from bias_amp.layout import LEANINGS

ROOT = Path(__file__).resolve().parents[1]
PENDING_GROUPS = ("leaning", "quality", "perplexity", "probe")  # other engineers' groups, maybe not written yet


def compose_data(*overrides: str):
    """The `data` node of the full Hydra config (groups still being written are dropped when absent)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            try:
                cfg = compose("config", overrides=list(overrides))
            except MissingConfigException:
                cfg = compose("config", overrides=[*overrides, *(f"~{g}" for g in PENDING_GROUPS)])
        return cfg.data
    finally:
        GlobalHydra.instance().clear()


def data_cfg(path, **kw):
    """conf/data/allsides.yaml with `path` and overrides (plain YAML load: no Hydra needed)."""
    cfg = OmegaConf.load(ROOT / "conf" / "data" / "allsides.yaml")
    cfg.path = str(path)
    cfg.per_label = kw.pop("per_label", None)
    return OmegaConf.merge(cfg, kw)


def rows(n_per_label=4, **extra):
    out = []
    for k in range(n_per_label):
        for label in LEANINGS:
            i = len(out)
            out.append(dict(id=f"a{i:02d}", title=f"Title {i}", text=f"Body of article {i} about {label}.",
                            label=label, source=f"outlet-{label}-{k % 2}", **extra))
    return out


def write_jsonl(path: Path, records, gz=False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def raises(match: str):
    return pytest.raises(ConfigError, match=match)


# ---- readers --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz", "c.csv", "c.csv.gz", "c.parquet"])
def test_readers_give_the_same_articles(tmp_path, name):
    recs = rows()
    path = tmp_path / name
    if ".jsonl" in name:
        write_jsonl(path, recs, gz=name.endswith(".gz"))
    elif ".csv" in name:
        pd.DataFrame(recs).to_csv(path, index=False, compression="gzip" if name.endswith(".gz") else None)
    else:
        pd.DataFrame(recs).to_parquet(path)
    arts = read_articles(data_cfg(path))
    assert [a.id for a in arts] == [r["id"] for r in recs]
    assert arts[4] == Article(id="a04", label="center", title="Title 4", body="Body of article 4 about center.",
                              source="outlet-center-1")


def test_abp_json_folder_is_auto_detected(tmp_path):
    """The Article-Bias-Prediction `data/jsons/` layout: one JSON per article, ID/content_original/bias_text."""
    folder = tmp_path / "jsons"
    folder.mkdir()
    for r in rows(2):
        abp = dict(ID=r["id"], title=r["title"], content="lower-cased tokens", content_original=r["text"],
                   bias=LEANINGS.index(r["label"]), bias_text=r["label"], source=r["source"], topic="x")
        (folder / f"{r['id']}.json").write_text(json.dumps(abp))
    (folder / "README.txt").write_text("not an article")
    arts = read_articles(data_cfg(folder))
    assert [(a.id, a.label, a.body) for a in arts[:2]] == [("a00", "left", "Body of article 0 about left."),
                                                           ("a01", "center", "Body of article 1 about center.")]
    assert len(arts) == 6
    # the numeric `bias` column with an int label map reads the same leanings
    alt = read_articles(data_cfg(folder, columns={"label": "bias"}, labels={0: "left", 1: "center", 2: "right"}))
    assert [a.label for a in alt] == [a.label for a in arts]


def test_hub_name_loads_with_datasets(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    (tmp_path / "hub").mkdir()
    write_jsonl(tmp_path / "hub" / "train.jsonl", rows(3))
    cfg = data_cfg(tmp_path / "missing-is-ignored", hub=str(tmp_path / "hub"), split="train", per_label=2)
    arts = load_corpus(cfg, seed=0)
    assert Counter(a.label for a in arts) == {"left": 2, "center": 2, "right": 2}
    with raises(r"^data\.hub: expected a loadable datasets name and split, got .*'nosuch'.*Unknown split"):
        load_corpus(OmegaConf.merge(cfg, {"split": "nosuch"}), seed=0)


def test_column_and_label_maps_webis_shape(tmp_path):
    """conf/data/webis.yaml on a Webis-Bias-Flipper-18-shaped CSV: ids are row numbers, labels mapped."""
    names = {"left": "From the Left", "center": "From the Center", "right": "From the Right"}
    recs = [dict(original_title=r["title"], original_body=r["text"], bias=names[r["label"]], source=r["source"])
            for r in rows(3)]
    path = tmp_path / "data_public.csv"
    pd.DataFrame(recs).to_csv(path, index=False)
    with open(path, "a") as f:
        f.write('"a","b","From the Left","s","an extra field"\n')  # malformed line, skipped (csv_bad_lines: skip)
    cfg = compose_data("data=webis", f"data.path={path}", "data.per_label=3")
    arts = load_corpus(cfg, seed=1)
    assert Counter(a.label for a in arts) == {"left": 3, "center": 3, "right": 3}
    assert {a.id for a in arts} == {str(i) for i in range(9)}
    a = next(a for a in arts if a.id == "4")
    assert (a.label, a.title, a.body) == ("center", "Title 4", "Body of article 4 about center.")


def test_numeric_ids_are_strings_and_default_ids_are_row_numbers(tmp_path):
    recs = rows(1)
    for i, r in enumerate(recs):
        r["id"] = 7 + i
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    assert [a.id for a in read_articles(data_cfg(path))] == ["7", "8", "9"]
    ids = [a.id for a in read_articles(data_cfg(path, columns={"id": None}))]
    assert ids == ["0", "1", "2"] == [a.id for a in read_articles(data_cfg(path, columns={"id": None}))]


def test_drop_unmapped_and_drop_empty(tmp_path):
    recs = rows(2) + [dict(id="x1", title="t", text="b", label="Lean Left", source="s"),
                      dict(id="x2", title="t", text="   ", label="left", source="s")]
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    arts = read_articles(data_cfg(path, drop_unmapped=True, drop_empty=True))
    assert len(arts) == 6 and {"x1", "x2"}.isdisjoint(a.id for a in arts)


def test_article_text_uses_the_template():
    a = Article(id="1", label="left", title="A {braced} title", body="Body text.")
    assert a.text("title: {title}\nbody: {body}") == "title: A {braced} title\nbody: Body text."
    assert a.text("{body}") == "Body text."


# ---- stratified sampling --------------------------------------------------------------------------------

def test_stratified_sample_counts_order_and_seed(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", rows(20))
    a = load_corpus(data_cfg(path, per_label=7), seed=0)
    assert [x.label for x in a] == ["left"] * 7 + ["center"] * 7 + ["right"] * 7
    assert len({x.id for x in a}) == 21
    assert [x.id for x in load_corpus(data_cfg(path, per_label=7), seed=0)] == [x.id for x in a]
    assert [x.id for x in load_corpus(data_cfg(path, per_label=7), seed=1)] != [x.id for x in a]
    # exactly numpy's default_rng(seed) draw, left then center then right
    arts = read_articles(data_cfg(path))
    rng = np.random.default_rng(0)
    expect = [g[j].id for lab in LEANINGS for g in [[x for x in arts if x.label == lab]]
              for j in rng.choice(len(g), size=7, replace=False)]
    assert [x.id for x in a] == expect


def test_per_label_null_keeps_all_in_file_order(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", rows(5))
    a = load_corpus(data_cfg(path, per_label=None), seed=3)
    assert [x.id for x in a] == [r["id"] for lab in LEANINGS for r in rows(5) if r["label"] == lab]
    assert stratified_sample(a, None, seed=9) == a


# ---- validation errors ----------------------------------------------------------------------------------

def test_error_missing_file(tmp_path):
    with raises(r"^data\.path: expected an existing file or directory, got '.*nope\.jsonl'$"):
        load_corpus(data_cfg(tmp_path / "nope.jsonl"), seed=0)


def test_error_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    with raises(r"^data\.path: expected a non-empty file, got '.*e\.jsonl'$"):
        validate(data_cfg(tmp_path / "e.jsonl"))
    write_jsonl(tmp_path / "e.jsonl.gz", [], gz=True)  # non-empty bytes, no article
    with raises(r"^data\.path: expected at least one article in the file, got '.*e\.jsonl\.gz'$"):
        load_corpus(data_cfg(tmp_path / "e.jsonl.gz"), seed=0)


def test_error_missing_column(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", rows(1))
    msg = (r"^data\.columns\.text: expected column 'content' in .*c\.jsonl, "
           r"got columns \['id', 'title', 'text', 'label', 'source'\]$")
    with raises(msg):
        load_corpus(data_cfg(path, columns={"text": "content"}), seed=0)


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_error_empty_or_whitespace_text_names_the_article(tmp_path, text):
    recs = rows(2)
    recs[4]["text"] = text
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    with raises(r"^data\.columns\.text: expected non-empty text .*, got empty text in article 'a04' at row 4, line 5$"):
        load_corpus(data_cfg(path), seed=0)


def test_error_missing_text_in_csv_names_the_row(tmp_path):
    recs = rows(1)
    recs[2]["text"] = ""
    pd.DataFrame(recs).drop(columns="id").to_csv(tmp_path / "c.csv", index=False)
    with raises(r"got empty text in article '2' at row 2$"):
        load_corpus(data_cfg(tmp_path / "c.csv", columns={"id": None}), seed=0)


def test_error_non_utf8_jsonl_names_file_offset_and_line(tmp_path):
    good = "".join(json.dumps(r) + "\n" for r in rows(1)).encode()
    bad = json.dumps(dict(id="z", title="t", text="caf", label="left", source="s")).encode().replace(b"caf", b"caf\xe9")
    (tmp_path / "c.jsonl").write_bytes(good + bad + b"\n")
    offset = len(good) + bad.index(b"\xe9")
    with raises(rf"^data\.path: expected UTF-8 text in .*c\.jsonl, got byte 0xe9 at byte offset {offset} \(line 4\)$"):
        load_corpus(data_cfg(tmp_path / "c.jsonl"), seed=0)


def test_error_non_utf8_csv_gz(tmp_path):
    data = b"id,title,text,label,source\n1,t,ok,left,s\n" + b"2,t,\xff\xfe,left,s\n"
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(data))
    assert data.index(b"\xff") == 45  # offsets count the decompressed bytes
    with raises(r"^data\.path: expected UTF-8 text in .*c\.csv\.gz, got byte 0xff at byte offset 45 \(line 3\)$"):
        load_corpus(data_cfg(tmp_path / "c.csv.gz"), seed=0)


def test_error_unknown_label_names_value_and_map_keys(tmp_path):
    recs = rows(1)
    recs[1]["label"] = "Lean Left"
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    with raises(r"^data\.labels: expected every raw label to be a key of \['left', 'center', 'right'\] "
                r"\(or data\.drop_unmapped: true\), got 'Lean Left' at row 1, line 2 of .*c\.jsonl$"):
        load_corpus(data_cfg(path), seed=0)


def test_error_fewer_articles_than_per_label(tmp_path):
    recs = rows(4)[:-1]  # 4 left, 4 center, 3 right
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    with raises(r"^data\.per_label: expected at most 3 \(the number of 'right' articles in .*c\.jsonl\), got 4$"):
        load_corpus(data_cfg(path, per_label=4), seed=0)


def test_error_duplicate_ids(tmp_path):
    recs = rows(2)
    recs[5]["id"] = recs[1]["id"]
    path = write_jsonl(tmp_path / "c.jsonl", recs)
    with raises(r"^data\.columns\.id: expected unique article ids in .*, got 'a01' at row 1, line 2 and row 5, line 6$"):
        load_corpus(data_cfg(path), seed=0)


@pytest.mark.parametrize("value", [0, -3, 2.5, "all"])
def test_error_per_label_below_one_or_not_integer(tmp_path, value):
    path = write_jsonl(tmp_path / "c.jsonl", rows(1))
    with raises(r"^data\.per_label: expected an integer"):
        validate(data_cfg(path, per_label=value))


def test_error_unknown_format(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", rows(1))
    with raises(r"^data\.format: expected one of \['auto', 'jsonl', 'csv', 'parquet', 'abp_jsons'\], got 'xml'$"):
        validate(data_cfg(path, format="xml"))
    (tmp_path / "c.txt").write_text("x")
    with raises(r"^data\.format: expected one of .*cannot tell from the name 'c\.txt'"):
        validate(data_cfg(tmp_path / "c.txt"))


def test_error_bad_json_line(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps(rows(1)[0]) + "\n{not json\n")
    with raises(r"^data\.path: expected one JSON object per line in .*, got invalid JSON at line 2"):
        load_corpus(data_cfg(tmp_path / "c.jsonl"), seed=0)


@pytest.mark.parametrize("override, key", [
    ({"labels": {"left": "liberal"}}, r"data\.labels\.left: expected one of \['left', 'center', 'right'\]"),
    ({"template": "title: {title}"}, r"data\.template: expected a format string with \{body\}"),
    ({"template": "{body} {author}"}, r"data\.template"),
    ({"columns": {"text": None}}, r"data\.columns\.text: expected a column name"),
    ({"csv_bad_lines": "ignore"}, r"data\.csv_bad_lines: expected error or skip"),
    ({"path": "pkg://no_such_pkg_xyz/c.jsonl"}, r"data\.path: expected an installed package path"),
])
def test_error_bad_config_values(tmp_path, override, key):
    path = write_jsonl(tmp_path / "c.jsonl", rows(1))
    with raises("^" + key):
        validate(OmegaConf.merge(data_cfg(path), override))


def test_errors_are_one_line(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps(rows(1)[0]) + "\n{\n")
    with pytest.raises(ConfigError) as e:
        load_corpus(data_cfg(tmp_path / "c.jsonl"), seed=0)
    assert "\n" not in str(e.value)


# ---- configs and the embedded sample corpus -------------------------------------------------------------

def test_data_configs_compose_and_validate(tmp_path):
    sample = compose_data("data=sample")
    assert sample.path == "pkg://bias_amp/resources/sample_corpus.jsonl" and sample.per_label is None
    assert sample.template == "title: {title}\nbody: {body}"
    validate(sample)
    allsides = compose_data("data=allsides")
    assert allsides.per_label == 506 and allsides.path.endswith("allsides/train.jsonl.gz")
    validate(compose_data("data=allsides", f"data.path={sample_corpus.PATH}"))
    webis = compose_data("data=webis")
    assert (webis.columns.text, webis.columns.title, webis.columns.label) == ("original_body", "original_title", "bias")
    (tmp_path / "w.csv").write_text("original_title,original_body,bias,source\nt,b,From the Left,s\n")
    validate(compose_data("data=webis", f"data.path={tmp_path / 'w.csv'}"))


def test_sample_corpus_loads_30_per_leaning():
    arts = load_corpus(compose_data("data=sample"), seed=0)
    assert Counter(a.label for a in arts) == {"left": 30, "center": 30, "right": 30}
    assert len({a.id for a in arts}) == 90 and len({a.title for a in arts}) == 90
    assert all(re.fullmatch(rf"sample-{a.label}-\d{{3}}", a.id) for a in arts)
    words = [len(a.body.split()) for a in arts]
    assert 80 <= min(words) and max(words) <= 160
    outlets = Counter((a.label, a.source) for a in arts)
    assert len(outlets) == 9 and set(outlets.values()) == {10}  # three outlets of 10 articles per leaning
    assert len({a.source for a in arts}) == 9  # no outlet shared between leanings


def test_committed_sample_corpus_equals_generator():
    assert read_jsonl(sample_corpus.PATH) == sample_corpus.generate()
    assert sample_corpus.main(["--check"]) == 0


def test_sample_framings_are_learnable_across_outlets():
    """Multinomial naive Bayes on word counts, trained on two outlets per leaning, tested on the third."""
    arts = read_articles(compose_data("data=sample"))
    tok = [re.findall(r"[a-z]+", a.text("{title} {body}").lower()) for a in arts]
    outlets = {lab: sorted({a.source for a in arts if a.label == lab}) for lab in LEANINGS}
    correct = 0
    for k in range(3):
        test = [outlets[a.label].index(a.source) == k for a in arts]
        counts = {lab: Counter() for lab in LEANINGS}
        for a, words, held in zip(arts, tok, test, strict=True):
            if not held:
                counts[a.label].update(words)
        vocab = set().union(*counts.values())
        logp = {lab: (c, sum(c.values()) + len(vocab)) for lab, c in counts.items()}
        for a, words, held in zip(arts, tok, test, strict=True):
            if held:
                score = {lab: sum(math.log((c[w] + 1) / n) for w in words if w in vocab) for lab, (c, n) in logp.items()}
                correct += max(score, key=score.get) == a.label
    assert correct / len(arts) >= 0.95


def test_shared_allsides_gives_506_per_label(shared_dir):
    path = shared_dir / "data" / "allsides" / "train.jsonl.gz"
    if not path.is_file():
        pytest.skip("allsides train.jsonl.gz absent from ../shared")
    arts = load_corpus(compose_data("data=allsides", f"data.path={path}"), seed=0)
    assert len(arts) == 1518 and Counter(a.label for a in arts) == {"left": 506, "center": 506, "right": 506}
    assert len({a.id for a in arts}) == 1518 and all(a.body and a.source for a in arts)
