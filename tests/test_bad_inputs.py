"""The catalogue of bad inputs: each gives one line naming the key and what was expected, raised by the
loop runner before any model loads (models.load_lm is booby-trapped) unless the check needs the model."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from bias_amp import models
from bias_amp.errors import ConfigError
from bias_amp.loop import run_setup

ROOT = Path(__file__).resolve().parents[1]
BASE = ["experiment=smoke", "logger=none", "generations=1", "data.per_label=2", "probe.enabled=false"]


def articles(n=2, **edit):
    rows = [{"id": f"{lab}-{i}", "title": f"Title {lab} {i}", "text": f"Body of a {lab} article number {i}.",
             "label": lab, "source": "outlet"} for lab in ("left", "center", "right") for i in range(n)]
    for i, row in edit.get("rows", {}).items():
        rows[i] = {**rows[i], **row}
    return rows


def jsonl(tmp, rows, name="corpus.jsonl"):
    path = tmp / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def bad_bytes(tmp):
    path = tmp / "latin1.jsonl"
    path.write_bytes(b'{"id": "1", "title": "Caf\xe9", "text": "x", "label": "left"}\n')
    return str(path)


def no_eos_tokenizer(tmp):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tm
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(tm.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp / "tok")
    return str(tmp / "tok")


def leaning_model_with_other_labels(tmp):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"})
    BertForSequenceClassification(cfg).save_pretrained(tmp / "clf")
    return str(tmp / "clf")


# (case, overrides given tmp_path, the error's start); 'model' / 'classifier' mark checks that need that model
CASES = [
    ("missing data file", lambda t: ["data.path=/no/such/corpus.jsonl"], r"data\.path: expected an existing file"),
    ("empty data file", lambda t: [f"data.path={jsonl(t, [])}"], r"data\.path: expected .*"),
    ("missing column", lambda t: [f"data.path={jsonl(t, articles())}", "data.columns.text=content"],
     r"data\.columns\.text: expected column 'content'"),
    ("whitespace article", lambda t: [f"data.path={jsonl(t, articles(rows={1: {'text': '   '}}))}"],
     r"data\.columns\.text: expected"),
    ("non-UTF-8 bytes", lambda t: [f"data.path={bad_bytes(t)}"], r"data\.path: expected UTF-8"),
    ("duplicate ids", lambda t: [f"data.path={jsonl(t, articles(rows={1: {'id': 'left-0'}}))}"],
     r"data\.columns\.id: expected unique"),
    ("label outside the map", lambda t: [f"data.path={jsonl(t, articles(rows={0: {'label': 'far-left'}}))}"],
     r"data\.labels: expected .*far-left"),
    ("per_label above what exists", lambda t: [f"data.path={jsonl(t, articles())}", "data.per_label=5"],
     r"data\.per_label: expected"),
    ("per_label below 1", lambda t: ["data.per_label=0"], r"data\.per_label: expected"),
    ("no generations", lambda t: ["generations=0"], r"generations: expected an integer in \[1, inf\], got 0"),
    ("real_fraction above 1", lambda t: ["mitigation.real_fraction=1.5"], r"mitigation\.real_fraction: expected"),
    ("accumulate window 0", lambda t: ["mitigation=accumulate", "mitigation.window=0"], r"mitigation\.window: expected"),
    ("unknown mitigation train key", lambda t: ["+mitigation.train.epochz=3"], r"mitigation\.train\.epochz: expected"),
    ("unknown decoding key", lambda t: ["+decoding.kwargs.beam_width=4"],
     r"decoding\.kwargs\.beam_width: expected a generate\(\) argument"),
    ("num_beams below 1", lambda t: ["decoding=beam", "decoding.kwargs.num_beams=0"], r"decoding\.kwargs\.num_beams: expected"),
    ("top_p outside (0, 1]", lambda t: ["decoding=nucleus", "decoding.kwargs.top_p=1.5"], r"decoding\.kwargs\.top_p: expected"),
    ("zero epochs", lambda t: ["train.epochs=0"], r"train\.epochs: expected an integer in \[1, inf\]"),
    ("negative learning rate", lambda t: ["train.lr=-1"], r"train\.lr: expected a number in \(0, inf\]"),
    ("zero new tokens", lambda t: ["synthesis.new_tokens=0"], r"synthesis\.new_tokens: expected"),
    ("packed weights not a bool", lambda t: ["synthesis.packed_weights=maybe"], r"synthesis\.packed_weights: expected true or false"),
    ("unknown init_from", lambda t: ["init_from=scratch"], r"init_from: expected one of \['previous', 'base'\]"),
    ("unknown model kind", lambda t: ["model.kind=onnx"], r"model\.kind: expected one of"),
    ("missing model path", lambda t: ["model=gpt2", "model.path=./models/missing"], r"model\.path: expected an existing model directory"),
    ("missing tokenizer path", lambda t: ["model.tokenizer_path=/no/tokenizer"], r"model\.tokenizer_path: expected"),
    ("missing leaning model dir", lambda t: ["leaning=paper", "leaning.model=./no/classifier"], r"leaning\.model: expected"),
    ("probe on zero prompts", lambda t: ["probe.enabled=true", "probe.max_prompts=0"],
     r"probe\.max_prompts: expected an integer in \[1, inf\]"),
    ("overwrite not a bool", lambda t: ["overwrite=yes please"], r"overwrite: expected true or false"),
    ("hub model offline", lambda t: ["model=gpt2", "model.path=nobody/not-cached-lm"],
     r"model\.path: expected a local path or a model in the Hugging Face cache .*model=smollm2"),
    ("unwritable output dir", lambda t: ["+out=blocked"], r"hydra\.run\.dir: expected a writable output directory"),
    ("tokenizer without pad or EOS", lambda t: [f"model.tokenizer_path={no_eos_tokenizer(t)}", "model=tiny"],
     r"model\.tokenizer: expected a tokenizer with an EOS token", "model"),
    ("classifier labels not the model's", lambda t: ["leaning=paper", f"leaning.model={leaning_model_with_other_labels(t)}"],
     r"leaning\.labels: expected keys matching the model's labels \['negative', 'neutral', 'positive'\]", "classifier"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_naming_the_key(case, tmp_path, monkeypatch):
    name, overrides, message, *needs = case
    extra = overrides(tmp_path)
    out = tmp_path / "run"
    if "+out=blocked" in extra:
        extra.remove("+out=blocked")
        (tmp_path / "blocked").write_text("")
        out = tmp_path / "blocked" / "run"
    if "model" not in needs:
        def trap(*a, **k):
            raise AssertionError("a model was loaded before the bad input was reported")
        monkeypatch.setattr(models, "load_lm", trap)
        monkeypatch.setattr(models, "load_checkpoint", trap)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=BASE + extra)
    with pytest.raises(ConfigError) as err:
        run_setup(cfg, out)
    text = str(err.value)
    assert "\n" not in text and len(text) < 400
    assert __import__("re").match(message, text), text
    assert not (out / "gen_00").exists()                  # nothing was produced, nothing lost
    if not needs:                                         # written only once every check passed
        assert not (out / "config.yaml").exists()


def test_a_run_that_failed_before_its_first_version_does_not_block_the_next(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        bad = compose("config", overrides=BASE + [f"model.tokenizer_path={no_eos_tokenizer(tmp_path)}"])
        good = compose("config", overrides=BASE + ["baseline=false", "train.max_length=64"])
    with pytest.raises(ConfigError, match="model.tokenizer"):
        run_setup(bad, tmp_path / "run")                  # fails when the model loads, after config.yaml
    assert run_setup(good, tmp_path / "run").version.tolist() == ["gen_00"]


def test_catalogue_has_at_least_twenty_cases():
    assert len(CASES) >= 20
