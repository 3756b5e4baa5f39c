"""Money (yidi/money.py): integer fen in, exact yuan text out, and strict parsing of what people and files write."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from yidi.money import (
    BadAmount,
    decimal_to_fen,
    fen_to_yuan,
    round_units_to_fen,
    yuan_series_to_fen,
    yuan_text,
    yuan_texts,
    yuan_to_fen,
)


@pytest.mark.parametrize(("fen", "plain", "shown"), [
    (0, "0.00", "¥0.00"),
    (5, "0.05", "¥0.05"),
    (123456, "1234.56", "¥1,234.56"),
    (-150, "-1.50", "-¥1.50"),
    (100000000_00, "100000000.00", "¥100,000,000.00"),
])  # fmt: skip
def test_fen_read_as_yuan_exactly(fen, plain, shown):
    assert yuan_text(fen) == plain
    assert yuan_text(fen, grouping=True, symbol=True) == shown


def test_a_column_formats_like_one_value_at_a_time_even_beyond_float_precision():
    values = list(range(-2_000, 2_000)) + [2**53 - 1, 2**53, 2**60 + 7, -(2**60) - 3]
    column = pd.Series(values, dtype="Int64")
    assert yuan_texts(column, grouping=True, symbol=True) == [yuan_text(v, grouping=True, symbol=True) for v in values]
    assert yuan_texts(pd.Series([250, None], dtype="Int64")) == ["2.50", None]
    assert yuan_texts(np.array([1.0, np.nan])) == ["0.01", None]


def test_an_integer_column_formats_column_wise_exactly_like_one_value_at_a_time():
    # The Arrow path (integer arrays, no grouping) against yuan_text, the rule's one definition.
    values = [0, 5, 99, 100, 123456, -1, -150, -100, 2**53 + 7, -(2**53) - 9, 2**61, -(2**61)]
    assert yuan_texts(np.array(values, dtype=np.int64)) == ["0.00", "0.05", "0.99", "1.00", "1234.56", "-0.01",
                                                            "-1.50", "-1.00", "90071992547409.99", "-90071992547410.01",
                                                            "23058430092136939.52", "-23058430092136939.52"]
    assert yuan_texts(pd.Series(values), symbol=True) == [yuan_text(v, symbol=True) for v in values]
    extremes = [2**63 - 1, -(2**63)]  # beyond the Arrow path's range: the loop formats them
    assert yuan_texts(np.array(extremes, dtype=np.int64)) == ["92233720368547758.07", "-92233720368547758.08"]


def test_a_missing_amount_is_not_zero():
    assert fen_to_yuan(None) is None and fen_to_yuan(float("nan")) is None and fen_to_yuan(0) == "0.00"


@pytest.mark.parametrize(("text", "fen"), [
    ("199.00", 19900), ("¥1,234.5", 123450), ("12", 1200), (" 0.07 元", 7), ("-3.10", -310), ("", None), (None, None),
])  # fmt: skip
def test_yuan_text_from_people_and_files_parses_exactly(text, fen):
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["12.345", "1e3", "12,3a", "¥", "--1"])
def test_anything_that_is_not_an_amount_is_refused_never_rounded(text):
    with pytest.raises(BadAmount, match="not an amount in yuan"):
        yuan_to_fen(text, "unit price")


def test_a_column_of_yuan_parses_like_one_value_at_a_time():
    fen, bad = yuan_series_to_fen(pd.Series(["199.00", "", "12.345", "¥1,234.5", None, "abc"]))
    assert fen.tolist()[:1] == [19900] and fen.iloc[3] == 123450
    assert fen.isna().tolist() == [False, True, True, False, True, True]
    assert bad.tolist() == [False, False, True, False, False, True]


def test_configured_yuan_and_provider_units_become_fen():
    assert decimal_to_fen(Decimal("12.34")) == 1234 and decimal_to_fen(0.1) == 10 and decimal_to_fen("3") == 300
    # Fees printed with four decimals round half away from zero at the fen, as the providers print them.
    assert round_units_to_fen(np.array([12345, 12355, -12355]), 4).tolist() == [123, 124, -124]
    assert round_units_to_fen(np.array([5]), 1).tolist() == [50]
