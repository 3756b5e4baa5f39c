"""Phone normalisation: real-world forms, dtypes, and the fast pass agreeing with the full regex pass."""

from __future__ import annotations

import random

import pandas as pd
import pyarrow as pa
import pytest

from yidi.phone import _full_pass, _prepare, normalise_phone, normalise_phones

CASES = [
    # mobile
    ("13812345678", "13812345678", "mobile"),
    ("138 1234 5678", "13812345678", "mobile"),
    ("138-1234-5678", "13812345678", "mobile"),
    ("+86 138 1234 5678", "13812345678", "mobile"),
    ("+8613812345678", "13812345678", "mobile"),
    ("0086-13812345678", "13812345678", "mobile"),
    ("86 13812345678", "13812345678", "mobile"),
    ("8613812345678", "13812345678", "mobile"),
    ("(+86)13812345678", "13812345678", "mobile"),
    ("＋８６　１３８１２３４５６７８", "13812345678", "mobile"),
    ("１３８－１２３４－５６７８", "13812345678", "mobile"),
    ("13812345678.0", "13812345678", "mobile"),
    ("013812345678", "13812345678", "mobile"),
    ("手机:13812345678", "13812345678", "mobile"),
    ("手机号码：199 1234 5678", "19912345678", "mobile"),
    ("tel: 138-1234-5678", "13812345678", "mobile"),
    ("13812345678 / 023-63856789", "13812345678", "mobile"),
    ("13812345678，13912345678", "13812345678", "mobile"),
    ("13812345678或13912345678", "13812345678", "mobile"),
    ("16612345678", "16612345678", "mobile"),
    ("12345678901", "12345678901", "invalid"),  # no 12x mobile prefix
    ("1381234567", "1381234567", "invalid"),  # 10 digits
    ("138123456789", "138123456789", "invalid"),  # 12 digits
    # landline
    ("023-63856789", "023-63856789", "landline"),
    ("(023)63856789", "023-63856789", "landline"),
    ("（023）6385 6789", "023-63856789", "landline"),
    ("023 6385 6789", "023-63856789", "landline"),
    ("02363856789", "023-63856789", "landline"),
    ("023.6385.6789", "023-63856789", "landline"),
    ("+86 23 6385 6789", "023-63856789", "landline"),
    ("+86-23-63856789", "023-63856789", "landline"),
    ("0086 23 63856789", "023-63856789", "landline"),
    ("+86 (0)23 6385 6789", "023-63856789", "landline"),
    ("010-12345678", "010-12345678", "landline"),
    ("(010) 8765 4321", "010-87654321", "landline"),
    ("0755-8888 8888", "0755-88888888", "landline"),
    ("0571-87654321", "0571-87654321", "landline"),
    ("0851-5555555", "0851-5555555", "landline"),
    ("023-63856789转8012", "023-63856789-8012", "landline"),
    ("023-63856789-8012", "023-63856789-8012", "landline"),
    ("023-63856789 ext. 12", "023-63856789-12", "landline"),
    ("023-63856789#123", "023-63856789-123", "landline"),
    ("+86-23-63856789-8012", "023-63856789-8012", "landline"),
    ("电话：023-68889999", "023-68889999", "landline"),
    ("63856789", "63856789", "invalid"),  # no area code
    ("0123-4567890", "0123-4567890", "invalid"),  # no 01x area code other than 010
    # service
    ("400-820-8820", "4008208820", "service"),
    ("400 820 8820", "4008208820", "service"),
    ("4008208820", "4008208820", "service"),
    ("800-810-8888", "8008108888", "service"),
    ("+86 400 820 8820", "4008208820", "service"),
    ("400-820-8820转2", "4008208820-2", "service"),
    # foreign
    ("+1 650 253 0000", "+16502530000", "foreign"),
    ("+81 3-1234-5678", "+81312345678", "foreign"),
    ("001 650 253 0000", "+16502530000", "foreign"),
    ("+1 123", "+1 123", "invalid"),
    # nothing usable
    ("", None, "invalid"),
    (None, None, "invalid"),
    ("abc", "abc", "invalid"),
    ("123", "123", "invalid"),
    ("无", "无", "invalid"),
]


def test_real_world_forms():
    values = [c[0] for c in CASES]
    out = normalise_phones(pd.Series(values, dtype=object))
    got = [(None if pd.isna(p) else p, k) for p, k in zip(out["phone"], out["phone_kind"], strict=True)]
    wrong = [(v, g, (p, k)) for v, g, (_, p, k) in zip(values, got, CASES, strict=True) if g != (p, k)]
    assert not wrong, wrong


@pytest.mark.parametrize(("value", "phone", "kind"), [c for c in CASES if c[0] in ("13812345678", "023-63856789转8012")])
def test_single_value(value, phone, kind):
    assert normalise_phone(value) == (phone, kind)


def test_numeric_columns_from_spreadsheets():
    ints = normalise_phones(pd.Series([13812345678, 2363856789, 4008208820], dtype="int64"))
    assert ints["phone"].tolist() == ["13812345678", "023-63856789", "4008208820"]
    assert ints["phone_kind"].tolist() == ["mobile", "landline", "service"]
    floats = normalise_phones(pd.Series([13812345678.0, float("nan")]))
    assert floats["phone"].iloc[0] == "13812345678" and pd.isna(floats["phone"].iloc[1])
    assert floats["phone_kind"].tolist() == ["mobile", "invalid"]


def test_default_area_code_completes_local_numbers():
    out = normalise_phones(pd.Series(["63856789", "6385678", "13812345678"]), default_area_code="023")
    assert out["phone"].tolist() == ["023-63856789", "023-6385678", "13812345678"]


def test_index_and_dtype_kept_and_result_is_idempotent():
    s = pd.Series([c[0] for c in CASES], index=range(100, 100 + len(CASES)), dtype=object)
    out = normalise_phones(s)
    assert list(out.index) == list(s.index)
    assert str(out["phone"].dtype) == "str" and str(out["phone_kind"].dtype) == "str"
    again = normalise_phones(out["phone"])
    settled = out["phone_kind"] != "invalid"
    assert again["phone"][settled].tolist() == out["phone"][settled].tolist()
    assert again["phone_kind"][settled].tolist() == out["phone_kind"][settled].tolist()
    assert len(normalise_phones(pd.Series([], dtype="str"))) == 0


def test_fast_pass_agrees_with_the_full_pass():
    rng = random.Random(3)
    def digits(k: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(k))

    forms = [lambda: f"1{digits(2)} {digits(4)} {digits(4)}", lambda: f"+86 1{digits(2)}-{digits(4)}-{digits(4)}",
             lambda: f"0{digits(2)}-{digits(8)}", lambda: f"(0{digits(3)}) {digits(3)} {digits(4)}",
             lambda: f"400-{digits(3)}-{digits(4)}", lambda: f"86 1{digits(10)}", lambda: f"0{digits(rng.randint(8, 12))}",
             lambda: f"0086 2{digits(1)} {digits(4)}{digits(4)}", lambda: f"{digits(rng.randint(5, 13))}"]
    values = [rng.choice(forms)() for _ in range(3000)]
    s = pd.Series(values, dtype="str")
    out = normalise_phones(s)
    phone, kind = _full_pass(_prepare(s), pa.array([False] * len(s)), "")
    assert pd.Series(phone, dtype="str").fillna("").tolist() == out["phone"].fillna("").tolist()
    assert pd.Series(kind, dtype="str").tolist() == out["phone_kind"].tolist()
    # every kind occurs (random digits starting 00 are international numbers: foreign)
    assert set(out["phone_kind"]) == {"mobile", "landline", "service", "invalid", "foreign"}
