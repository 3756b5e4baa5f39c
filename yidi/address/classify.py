"""Classifying a column of addresses (requirement S1): each distinct address read once, the admin prefix of each
text cut with a prefix dictionary so that distinct street parts do not cost a classification each."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from yidi.address.gazetteer import gazetteer
from yidi.address.messy import needs_repair
from yidi.address.names import (
    EMPTY_WORDS,
    LEADING_JUNK,
    SEPARATORS,
    STREET_NEXT_1,
    STREET_NEXT_2,
    WORD_NEXT_2,
)
from yidi.address.reading import classify_text, repair, resolve_fields, rest_of

INPUT_COLUMNS = ("province", "city", "district", "detail", "full_address")
OUTPUT_COLUMNS = ("province", "city", "district", "detail", "admin_code", "region", "region_note")


def classify_addresses(df: pd.DataFrame) -> pd.DataFrame:
    """Split and classify delivery addresses.

    Input columns (each optional, NA allowed): ``province``, ``city``, ``district``, ``detail`` (structured
    platform fields), ``full_address`` (free text when there is no structure) and ``country`` (ISO code or
    name, as WooCommerce sends it). Output, on the same index: ``province``, ``city``, ``district`` (current
    official names), ``detail`` (the rest of the address), ``admin_code`` (6-digit GB/T 2260 code of the
    most specific level known), ``region`` ('remote' | 'local' | 'unknown') and ``region_note``.

    Work is done once per distinct (fields, admin part of the text): the admin prefix of each text is cut
    with a prefix dictionary (a few dict probes per row), so a million distinct street addresses cost a
    million cheap cuts and only as many full classifications as there are distinct admin prefixes.
    """
    n = len(df)
    if n == 0:
        return pd.DataFrame({c: pd.Series([], dtype="str", index=df.index) for c in OUTPUT_COLUMNS}, index=df.index)
    cols = {c: _clean_column(df[c]) if c in df.columns else pa.nulls(n, pa.large_string())
            for c in (*INPUT_COLUMNS, "country")}
    field_cols = [cols[c] for c in ("province", "city", "district", "country")]
    field_codes, field_first = _distinct_rows(field_cols, n)
    field_values = [c.take(pa.array(field_first)).to_pylist() for c in field_cols]
    fields = [
        resolve_fields(p or "", c or "", d or "", k or "")
        for p, c, d, k in zip(*field_values, strict=True)
    ]
    structured = pa.array([f.structured for f in fields]).take(pa.array(field_codes))
    # The text read for each row: the detail when there are structured fields, else the free text.
    use_detail = pc.or_kleene(pc.and_kleene(structured, pc.is_valid(cols["detail"])), pc.is_null(cols["full_address"]))
    texts = pc.if_else(use_detail, cols["detail"], cols["full_address"]).to_pylist()

    known = [f.known for f in fields]
    town_sensitive = [f.written is not None for f in fields]
    key_of = _make_text_key()
    single = len(fields) == 1
    if single:  # the common case (free text only, or one platform's constant fields): plain string keys
        kn, ts = known[0], town_sensitive[0]
        keys: list = [key_of(t, kn, ts) if t else None for t in texts]
    else:
        keys = [
            (f, key_of(t, known[f], town_sensitive[f]) if t else None)
            for f, t in zip(field_codes.tolist(), texts, strict=True)
        ]
    slot_of: dict = {}
    row_result = [slot_of.setdefault(k, len(slot_of)) for k in keys]
    results: list[tuple] = []
    ends: list = []
    for key in slot_of:  # insertion order is slot order
        fid, text_key = (0, key) if single else key
        result, end_ = classify_text(fields[fid], text_key)
        results.append(result)
        ends.append(end_)
    details = [rest_of(t, ends[slot]) for t, slot in zip(texts, row_result, strict=True)]
    _repair_rows(results, row_result, details, texts, ends, fields, None if single else field_codes,
                 lambda fid, text: key_of(text, known[fid], town_sensitive[fid]))

    take = pa.array(row_result)
    out = {}
    for j, name in enumerate(OUTPUT_COLUMNS):
        if name == "detail":
            values = pa.array(details, type=pa.large_string())
        else:
            k = j if j < 3 else j - 1
            values = pa.array([r[k] for r in results], type=pa.large_string()).take(take)
        out[name] = pd.Series(values, dtype="str", index=df.index)
    return pd.DataFrame(out, index=df.index)


def _repair_rows(results: list[tuple], row_result: list[int], details: list, texts: list, ends: list,
                 fields: list, field_codes: np.ndarray | None, key_of) -> None:
    """The slow path, in place: rows whose fast reading found no district and whose text looks messy (traditional
    or spaced characters, a misspelt name, HK/MO, see ``messy.needs_repair``) are read again, once per distinct
    (fields, text); an improved reading gets a slot of its own. Simplified texts are read through the same
    admin-prefix keys as the fast path, so distinct streets after 重慶市沙坪壩區 cost one conversion each."""
    clean: dict = {}

    def reader(fid: int):
        def read(plain: str) -> tuple[tuple, int]:
            key = (fid, key_of(fid, plain))
            if key not in clean:
                clean[key] = classify_text(fields[fid], key[1])
            return clean[key]

        return read

    # No district, and not foreign (foreign readings have no province and region remote).
    short = np.fromiter((r[2] is None and (r[0] is not None or r[4] == "unknown") for r in results),
                        dtype=bool, count=len(results))
    if not short.any():
        return
    rows = np.flatnonzero(short[np.asarray(row_result, dtype=np.int64)])
    done: dict = {}
    for i in rows.tolist():
        text = texts[i]
        slot = row_result[i]
        if not needs_repair(results[slot], text, ends[slot][1]):
            continue
        fid = 0 if field_codes is None else int(field_codes[i])
        key = (fid, text)
        if key not in done:
            repaired = repair(fields[fid], text, results[slot], reader(fid))
            if repaired is not None:
                results.append(repaired[0])
                done[key] = (len(results) - 1, repaired[1])
            else:
                done[key] = None
        if done[key] is not None:
            row_result[i], details[i] = done[key]


def _clean_column(series: pd.Series) -> pa.Array:
    """NFKC (full-width → ASCII), 市辖区 dropped, trimmed, placeholders like 不详/无/null as missing; in Arrow."""
    if isinstance(series.dtype, pd.StringDtype):
        arr = pa.array(series.array)  # Arrow-backed already: no copy through Python objects
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.large_string())
    else:
        arr = pa.array(series.astype("str").to_numpy(dtype=object, na_value=None), type=pa.large_string())
    # 市辖区 (the code tables' "districts of the city" row) is written out by platforms and customers between a
    # city and its district (北京市市辖区朝阳区); it names nothing, so it goes before anything is read.
    arr = pc.utf8_trim_whitespace(pc.replace_substring(pc.utf8_normalize(arr, form="NFKC"), "市辖区", ""))
    blank = pc.or_kleene(pc.equal(arr, ""), pc.is_in(pc.utf8_lower(arr), value_set=_EMPTY_VALUES))
    return pc.if_else(pc.fill_null(blank, False), pa.scalar(None, pa.large_string()), arr)


_EMPTY_VALUES = pa.array(sorted(EMPTY_WORDS), type=pa.large_string())


def _distinct_rows(columns: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense id per distinct combination of the columns (nulls included), and each id's first row."""
    combined = np.zeros(n, dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(pd.Series(column, dtype="str"), use_na_sentinel=False)
        combined, _ = pd.factorize(combined * (len(uniques) + 1) + codes.astype(np.int64))
        combined = combined.astype(np.int64)
    _, first = np.unique(combined, return_index=True)
    return combined, first


_STREET_NEXT_2_FIRST = frozenset(s[0] for s in STREET_NEXT_2)
_JUNK_START = frozenset(" \t,，、/\\|-_·.。:：;；()（）[]【】<>《》\"'`~中收送配邮寄详联快地CcPp")


@lru_cache(maxsize=1)
def _make_text_key():
    """Build the per-row key function with everything it touches bound to locals (it runs once per row)."""
    g = gazetteer()
    by_prefix_get = g.by_prefix.get
    only_short = g.only_short
    has_short = g.has_short
    separators = SEPARATORS
    street_1 = STREET_NEXT_1
    street_2 = STREET_NEXT_2
    street_2_first = _STREET_NEXT_2_FIRST
    word_next = WORD_NEXT_2
    junk_start = _JUNK_START
    junk_match = LEADING_JUNK.match

    def text_key(text: str, fields_known: bool, town_sensitive: bool = False) -> str:
        """The leading admin names of ``text`` plus the few characters after them that the classifier looks
        at (street guard, 市场/区域). Mirrors ``_scan``'s longest-match walk without its context rules, so it
        can only cut later than the classifier stops; the classification of the key equals that of the text."""
        n = len(text)
        pos = 0
        if text[0] in junk_start:
            m = junk_match(text)
            pos = m.end() if m else 0
        start = pos
        last = ""
        guarded = 0  # a street-like short name right after the admin part, with its guard characters
        while pos < n:
            candidates = by_prefix_get(text[pos : pos + 2])
            if not candidates:
                break
            for surface in candidates:
                if text.startswith(surface, pos):
                    end = pos + len(surface)
                    nxt = text[end : end + 1]
                    if surface in only_short and nxt and (nxt in street_1 or text[end : end + 2] in street_2):
                        guarded = max(guarded, len(surface) + (1 if nxt in street_1 else 2))
                        continue  # a street name (长寿路): the classifier rejects it the same way
                    last = surface
                    pos = end
                    break
            else:
                break
            guarded = 0
            while pos < n and text[pos] in separators:
                pos += 1
        if pos == start:
            if not fields_known or text.isascii():
                return text  # nothing at the start: the classifier may search further, read Latin or a country
            last = ""
        nxt = text[pos : pos + 1]
        if not nxt or town_sensitive or "渝北" in text[:pos] or "北碚" in text[:pos]:
            return text  # 渝北/北碚 addresses: the town decides the district (2025 reform), keep them whole
        # Look ahead only as far as the classifier would: the last name's own street guard (1–2 characters)
        # or 市场/区域 (1). A street-like short name there is then kept whole with its guard characters,
        # otherwise the classifier would see a bare name and read it; with no lookahead it sees neither.
        need = 0
        if last in has_short and (nxt in street_1 or nxt in street_2_first):
            need = 1 if nxt in street_1 else 2
        elif last and last[-1] in "市区" and nxt in word_next:
            need = 1
        if need and guarded:
            need = max(need, guarded)
        return text[: pos + need]

    return text_key

