"""Money: integer fen in the store, yuan text at the edges. One module parses and formats it.

Every amount is stored as integer fen (exact on every database); text from files, platforms and people is parsed
here strictly (an amount with three decimals or a stray letter is an error, never rounded), and every amount a
person reads is formatted here.
"""

from __future__ import annotations

import re
from decimal import Decimal

import numpy as np
import pandas as pd


class BadAmount(ValueError):
    """A value that is not an amount in yuan; the message says which field and why."""


_MONEY = re.compile(r"^\s*(-)?\s*[¥￥]?\s*(\d{1,13})(?:\.(\d{0,2})0*)?\s*(?:元)?\s*$")


def yuan_to_fen(value, field_name: str = "amount") -> int | None:
    """'12.50' / '¥1,234.5' / 12.5 -> fen; '' or None -> None; anything else raises BadAmount."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value) * 100
    text = str(value).replace(",", "").replace("，", "").strip()
    if text == "":
        return None
    match = _MONEY.match(text)
    if not match:
        raise BadAmount(f"{field_name} {value!r} is not an amount in yuan (like 199.00)")
    sign, whole, frac = match.groups()
    fen = int(whole) * 100 + int((frac or "").ljust(2, "0")[:2] or 0)
    return -fen if sign else fen


def yuan_series_to_fen(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Vectorised yuan_to_fen (Arrow compute, exact decimals): (fen as Int64 with NA for empty, bool mask of values
    that are not amounts). Each distinct text is converted once (prices repeat)."""
    codes, distinct = pd.factorize(series.astype("str"))
    fen, bad = _distinct_yuan_to_fen(pd.Series(distinct, dtype="str"))
    bad_values = np.append(bad.to_numpy(dtype=bool), False)[codes]  # code -1 (empty) is never bad
    return (pd.Series(fen.array.take(codes, allow_fill=True), index=series.index, dtype="Int64"),
            pd.Series(bad_values, index=series.index, dtype=bool))


def _distinct_yuan_to_fen(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(
        pa.array(series.astype("str"), type=pa.large_string(), from_pandas=True), r"[,，¥￥元\s]", ""))
    empty = pc.fill_null(pc.equal(text, ""), True)
    ok = pc.fill_null(pc.match_substring_regex(text, r"^-?\d{1,13}(\.\d{0,2}0*)?$"), False)
    valid = pc.if_else(ok, text, pa.scalar(None, pa.large_string()))
    valid = pc.replace_substring_regex(valid, r"^(-?\d+\.\d{0,2})0*$", r"\1")
    valid = pc.replace_substring_regex(valid, r"\.$", "")
    fen = pc.cast(pc.multiply(pc.cast(valid, pa.decimal128(18, 2)), pa.scalar(100, pa.decimal128(5, 0))),
                  pa.int64())
    bad = pc.and_(pc.invert(ok), pc.invert(empty))
    return (pd.Series(fen.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).array, index=series.index,
                      dtype="Int64"),
            pd.Series(bad.to_numpy(zero_copy_only=False), index=series.index, dtype=bool))


def decimal_to_fen(value: Decimal | float | int | str) -> int:
    """A yuan number from configuration (rate cards, fees) to fen, rounded half to even at the fen."""
    return int((Decimal(str(value)) * 100).to_integral_value())


def round_units_to_fen(units: np.ndarray, decimals: int) -> np.ndarray:
    """Units of 10^-decimals yuan to fen, rounding half away from zero (as the providers print fees)."""
    if decimals <= 2:
        return units * (10 ** (2 - decimals))
    step = 10 ** (decimals - 2)
    magnitude = (np.abs(units) + step // 2) // step
    return np.sign(units) * magnitude


def yuan_text(fen, *, grouping: bool = False, symbol: bool = False) -> str:
    """Fen as exact yuan text: ``1234.50``; ``grouping`` gives ``1,234.50``, ``symbol`` ``¥1,234.50``."""
    fen = int(fen or 0)
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    number = f"{whole:,}" if grouping else str(whole)
    return f"{sign}{'¥' if symbol else ''}{number}.{cents:02d}"


_EXACT_FLOAT_FEN = 2**53  # below this, fen / 100 formatted to two places is exactly the yuan text


def yuan_texts(fen_values, *, grouping: bool = False, symbol: bool = False) -> list[str | None]:
    """``yuan_text`` for a whole column in one loop (no call per value: report and reason columns of 100k rows);
    missing values give None. Within 2**53 fen a float formats exactly; larger amounts take the integer path."""
    prefix, spec = ("¥" if symbol else ""), (",.2f" if grouping else ".2f")
    if not grouping and isinstance(fen_values, pd.Series | np.ndarray):
        whole_fen = np.asarray(fen_values)
        if whole_fen.dtype.kind in "iu" and len(whole_fen) and -(2**62) < whole_fen.min() and whole_fen.max() < 2**62:
            return _integer_yuan_texts(whole_fen, prefix)
    values = fen_values.tolist() if isinstance(fen_values, pd.Series | np.ndarray) else list(fen_values)
    out: list[str | None] = []
    for value in values:
        if value is None or value is pd.NA or value != value:
            out.append(None)
        elif abs(value) >= _EXACT_FLOAT_FEN:
            out.append(yuan_text(int(value), grouping=grouping, symbol=symbol))
        elif value < 0:
            out.append(f"-{prefix}{-value / 100:{spec}}")
        else:
            out.append(f"{prefix}{value / 100:{spec}}")
    return out


def _integer_yuan_texts(fen: np.ndarray, prefix: str) -> list[str]:
    """``yuan_texts`` of an integer column without grouping, built in Arrow (no Python call per value: a bulk drop
    formats the total of every new order for its notice)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fen = fen.astype(np.int64)
    negative = fen < 0
    whole, cents = np.divmod(np.abs(fen), 100)
    sign = pa.array(np.where(negative, "-" + prefix, prefix).tolist(), type=pa.string())
    cents_text = pc.utf8_lpad(pa.array(cents).cast(pa.string()), 2, "0")
    return pc.binary_join_element_wise(sign, pa.array(whole).cast(pa.string()), ".", cents_text, "").to_pylist()


def fen_to_yuan(fen) -> str | None:
    """Like ``yuan_text`` but None stays None (a missing amount is not zero)."""
    if fen is None or (isinstance(fen, float) and np.isnan(fen)) or fen is pd.NA:
        return None
    return yuan_text(fen)
