"""Instrument-free collapse measures on hand-made texts with known values."""

import math
import zlib

import pandas as pd
import pytest

from bias_amp.metrics.collapse import (
    COLUMNS,
    compression_ratio,
    copied_share,
    measures,
    summary,
    table,
    words,
)


def test_words_are_lowercased_runs_and_symbols():
    assert words("The U.S. said: \"No!\"") == ["the", "u", ".", "s", ".", "said", ":", '"', "no", "!", '"']
    assert words("") == [] and words(None) == []


def test_known_values():
    rep = measures("with with with with with with with with")          # 8 words, one type
    assert rep["distinct_1"] == 1 / 8 and rep["distinct_2"] == 1 / 7 and rep["repeated_4gram_share"] == 0.8
    clean = measures("The cat sat on the mat.")                       # the, cat, sat, on, the, mat, .
    assert clean["distinct_1"] == 6 / 7 and clean["distinct_2"] == 1 and clean["repeated_4gram_share"] == 0
    loop = measures("a b c d a b c d")                                 # 4-grams abcd bcda cdab dabc abcd
    assert loop["distinct_2"] == 4 / 7 and loop["repeated_4gram_share"] == pytest.approx(0.2)
    assert measures("With WITH with")["distinct_1"] == 1 / 3
    short = measures("one two")
    assert short["distinct_2"] == 1 and math.isnan(short["repeated_4gram_share"])
    assert all(math.isnan(v) for v in measures("").values())


def test_compression_ratio_shows_repetition():
    text = "with " * 200
    assert compression_ratio(text) == len(text.encode()) / len(zlib.compress(text.encode(), 9))
    assert compression_ratio(text) > 10
    assert compression_ratio("The senate passed the budget bill on Tuesday after a long debate.") < 1.2
    assert compression_ratio("\ufffd" * 60) > compression_ratio("Lawmakers debated the budget on Tuesday.")
    assert math.isnan(compression_ratio("   "))


def test_table_and_version_summary():
    df = table(["with with with with with with with with", "The cat sat on the mat.", ""])
    assert df.columns.tolist() == COLUMNS and len(df) == 3 and df.iloc[2].isna().all()
    s = summary(df)
    assert s["distinct_1"] == pytest.approx((1 / 8 + 6 / 7) / 2)            # NaN (empty text) skipped
    assert s["repeated_4gram_share"] == pytest.approx(0.4)
    assert all(math.isnan(v) for v in summary(pd.DataFrame({"id": ["x"]})).values())   # columns absent


def test_copied_share_counts_verbatim_ngrams_of_the_source():
    source = "The senate passed the budget bill on Tuesday after a long debate over spending."
    assert copied_share("the Senate passed the budget bill on Tuesday after", source, n=8) == 1   # 2 of 2, any case
    assert copied_share("Lawmakers went home for the holidays without a vote on anything at all", source) == 0
    half = "the senate passed the budget bill on tuesday while protesters gathered outside the capitol"
    assert copied_share(half, source, n=4) == pytest.approx(5 / 11)      # 11 4-grams, the first 5 in the source
    repeated = "passed the budget bill " * 4                              # 13 4-grams
    assert copied_share(repeated, source, n=4) == pytest.approx(4 / 13)   # "passed the budget bill", 4 times
    assert math.isnan(copied_share("too short", source))
    copied = measures("the senate passed the budget bill on tuesday after a vote", source)
    assert copied["copied_8gram_share"] == copied_share("the senate passed the budget bill on tuesday after a vote",
                                                        source) == 3 / 4
    assert math.isnan(measures("the senate passed the budget bill on tuesday after a vote")["copied_8gram_share"])
    df = table(["the senate passed the budget bill on tuesday after", "a b c d e f g h"], [source, source])
    assert df.copied_8gram_share.tolist() == [1, 0] and table(["a b c d e f g h"]).copied_8gram_share.isna().all()
