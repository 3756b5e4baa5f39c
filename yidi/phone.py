"""Contact phone normalisation for intake and review, vectorised over a whole column.

Output forms (so the same number always compares equal):
- mobile: 11 digits (``13812345678``), validated against libphonenumber's strict CN mobile pattern (taken from
  the installed ``phonenumbers`` metadata, so it follows the library's updates);
- landline: ``0AA-NNNNNNNN`` (area code 010 / 02x = 3 digits, else 0 + 3 digits, then 7–8 digits), with the
  extension as ``-NNNN`` when there is one (``023-63856789-8012``);
- service: 400 / 800 numbers as 10 digits (``4008208820``; an extension is kept as ``-N``);
- foreign: a number with another country code, as E.164 (``+16502530000``) when libphonenumber says it is valid
  (cross-border orders carry them; they are a contact, not an error);
- invalid: anything else; ``phone`` keeps the trimmed input (NA stays NA) so a person can see what was sent.

Before classifying: NFKC (full-width digits, ＋, （）), labels such as 手机:/电话:/tel:, ``+86`` / ``0086`` /
``(+86)`` / a bare ``86`` before a mobile, a trunk ``0`` before a mobile, spaces, dashes, dots and brackets, and
numbers that spreadsheets turned into floats (``13812345678.0``). When a field holds several numbers
(``138… / 023-…``) the first is used.
"""

from __future__ import annotations

import unicodedata

import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers.phonemetadata import PhoneMetadata

PHONE_KINDS = ("mobile", "landline", "service", "foreign", "invalid")

MOBILE_PATTERN = PhoneMetadata.metadata_for_region("CN").mobile.national_number_pattern
_MOBILE = f"^(?:{MOBILE_PATTERN})$"
# Area code 010 (Beijing) or 02x (3 digits with the 0), else 0 + 3 digits; then 7–8 digits.
_LANDLINE = r"^0(?:10|2\d|[3-9]\d\d)\d{7,8}$"
_SERVICE = r"^(?:400|800)\d{7}$"

_LABEL = r"^(?:(?i:tel|phone|mobile|mob|cell)|手机号码|手机号|手机|电话号码|电话|联系电话|联系方式|座机|固话|号码)\s*[:：]?\s*"
_SPLIT = r"\s*(?:[/,;、|]|或|\s{2,})\s*"  # NFKC already turned ，；／ into ASCII
_EXTENSION = r"^(?P<main>.*?\d)\s*(?:转|分机|(?i:ext)\.?|[xX#]|-{2})\s*(?P<ext>\d{1,6})$"
# 023-63856789-8012 (after +86 the area code has no 0: 23-63856789-8012); never a mobile (first digit 1).
_DASH_EXTENSION = r"^(?P<main>\(?(?:0\d{2,3}|[2-9]\d{1,2})\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4})[\s.-]+(?P<ext>\d{1,5})$"
_EXTENSION_MARKER = r"转|分机|(?i:ext)|[xX#]|--"
_DASH_EXTENSION_SHAPE = r"\d[\s.-]+\d+[\s.-]+\d+[\s.-]+\d{1,5}$|\d{7,8}[\s.-]+\d{1,5}$"
_COUNTRY_86 = r"^\(?\s*(?:\+|00)\s*86\s*\)?[\s.-]*(?:\(0\)\s*)?"
_OTHER_COUNTRY = r"^\(?\s*(?:\+|00)\s*[1-9]"


def normalise_phones(s: pd.Series, *, default_area_code: str | None = None) -> pd.DataFrame:
    """Normalise a column of phone numbers; returns ``phone`` and ``phone_kind`` on the same index.

    ``default_area_code`` (e.g. ``"023"``) completes 7–8 digit local numbers written without one; without it
    they are invalid (the customer's city is not known from the number).

    Two passes, both Arrow kernels: a fast one for the usual shapes (digits with spaces, dashes, brackets, dots
    and an optional +86/0086), then the full regex pipeline only for the rows it could not settle (labels,
    extensions, several numbers, foreign codes, garbage), scattered back.
    """
    n = len(s)
    area_code = "".join(ch for ch in default_area_code if ch.isdigit()) if default_area_code else ""
    text = _prepare(s)
    numeric = pa.array([pd.api.types.is_numeric_dtype(s.dtype)] * n, type=pa.bool_())
    phone, kind = _fast_pass(text, numeric, area_code)
    unsettled = pc.and_(pc.is_null(kind), pc.fill_null(pc.not_equal(text, ""), False))
    if n and pc.any(unsettled).as_py():
        sub_phone, sub_kind = _full_pass(pc.filter(text, unsettled), pc.filter(numeric, unsettled), area_code)
        phone = pc.replace_with_mask(phone, unsettled, sub_phone)
        kind = pc.replace_with_mask(kind, unsettled, sub_kind)
    kind = pc.fill_null(kind, "invalid")  # missing or empty
    return pd.DataFrame(
        {"phone": pd.Series(phone, dtype="str", index=s.index), "phone_kind": pd.Series(kind, dtype="str", index=s.index)},
        index=s.index,
    )


_NULL = pa.scalar(None, pa.string())
_LEADING_2_TO_9 = pa.array(list("23456789"))


def _prepare(s: pd.Series) -> pa.Array:
    if isinstance(s.dtype, pd.StringDtype):
        arr = pa.array(s.array)
        arr = arr.cast(pa.string()) if arr.type != pa.string() else arr
    else:
        arr = pa.array(_as_text(s), type=pa.string())
    return pc.utf8_trim_whitespace(pc.utf8_normalize(arr, form="NFKC"))


def _fast_pass(text: pa.Array, numeric: pa.Array, area_code: str) -> tuple[pa.Array, pa.Array]:
    """Settle digit strings with only spaces, dashes, brackets, dots and +86/0086; kind is null otherwise."""
    d = pc.replace_substring(pc.replace_substring(text, " ", ""), "-", "")
    d = _where(_matches(d, r"[().]"), d, lambda x: pc.replace_substring_regex(x, r"[().]", ""))
    international = _matches(d, r"^(?:\+|00)86")
    d = _where(international, d, lambda x: pc.replace_substring_regex(x, r"^(?:\+|00)86", ""))
    digits_only = pc.utf8_is_digit(d)
    length = pc.utf8_length(d)
    # A bare 86 before a mobile (8613812345678) and a trunk 0 before one (013812345678).
    d = _where(pc.and_(pc.equal(length, 13), pc.starts_with(d, "861")), d, lambda x: pc.utf8_slice_codeunits(x, 2))
    d = _where(pc.and_(pc.equal(length, 12), pc.starts_with(d, "01")), d,
               lambda x: pc.replace_substring_regex(x, r"^0(1[3-9])", r"\1"))
    d = _restore_trunk_zero(d, pc.utf8_length(d), international, numeric, area_code)

    is_mobile = pc.and_(digits_only, _matches(d, _MOBILE))
    is_service = pc.and_(digits_only, _matches(d, _SERVICE))
    is_land = pc.and_(pc.and_(digits_only, pc.invert(is_mobile)), _matches(d, _LANDLINE))
    phone = pc.if_else(pc.or_(is_mobile, is_service), d, _NULL)
    phone = _where(is_land, phone, lambda _: _format_landline(pc.filter(d, is_land)))
    conditions = pc.make_struct(is_mobile, is_land, is_service)
    kind = pc.case_when(conditions, *(pa.scalar(k, pa.string()) for k in ("mobile", "landline", "service")), _NULL)
    return phone, kind


def _format_landline(digits: pa.Array) -> pa.Array:
    """0AA-NNNNNNNN: 010 and 02x are 3-character area codes, the others 4."""
    area_3 = pc.or_(pc.starts_with(digits, "010"), pc.starts_with(digits, "02"))
    return pc.if_else(
        area_3,
        pc.binary_join_element_wise(pc.utf8_slice_codeunits(digits, 0, 3), pc.utf8_slice_codeunits(digits, 3), "-"),
        pc.binary_join_element_wise(pc.utf8_slice_codeunits(digits, 0, 4), pc.utf8_slice_codeunits(digits, 4), "-"),
    )


def _where(mask: pa.Array, values: pa.Array, fn) -> pa.Array:
    """``values`` with ``fn`` applied to the rows where ``mask`` is true (computed on those rows only)."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return values
    return pc.replace_with_mask(values, mask, fn(pc.filter(values, mask)))


def _restore_trunk_zero(d, length, international, numeric, area_code: str):
    """+86 23 6385 6789 and spreadsheet numbers (2363856789) lost the trunk 0; 7–8 digits get the default area."""
    first_2_to_9 = pc.fill_null(pc.is_in(pc.utf8_slice_codeunits(d, 0, 1), value_set=_LEADING_2_TO_9), False)
    long_enough = pc.and_(pc.greater_equal(length, 9), pc.less_equal(length, 11))
    not_service = pc.invert(_matches(d, _SERVICE))
    lost = pc.and_(pc.and_(first_2_to_9, long_enough), pc.and_(not_service, pc.or_(international, numeric)))
    d = pc.if_else(lost, pc.binary_join_element_wise("0", d, ""), d)
    if area_code:
        local = pc.and_(first_2_to_9, pc.and_(pc.greater_equal(length, 7), pc.less_equal(length, 8)))
        d = pc.if_else(pc.and_(local, pc.invert(international)), pc.binary_join_element_wise(area_code, d, ""), d)
    return d


def _full_pass(text: pa.Array, numeric: pa.Array, area_code: str) -> tuple[pa.Array, pa.Array]:
    """Labels, several numbers, extensions, foreign codes: the regex pipeline, for the rows the fast pass left."""
    numeric = pc.or_(numeric, _matches(text, r"^\d+\.0+$"))
    text = pc.replace_substring_regex(text, r"^(\d+)\.0+$", r"\1")
    text = pc.replace_substring_regex(text, _LABEL, "")
    text = pc.replace_substring_regex(text, r"^[\s/,;、|]+", "")
    text = pc.list_element(pc.split_pattern_regex(text, _SPLIT, max_splits=1), 0)

    # Country code first, so that +86-23-63856789-8012 reads like 023-63856789-8012.
    international = _matches(text, _COUNTRY_86)
    foreign = pc.and_(_matches(text, _OTHER_COUNTRY), pc.invert(international))
    main = pc.replace_substring_regex(text, _COUNTRY_86, "")
    ext = pa.nulls(len(main), pa.string())
    for marker, pattern in ((_EXTENSION_MARKER, _EXTENSION), (_DASH_EXTENSION_SHAPE, _DASH_EXTENSION)):
        candidates = _matches(main, marker)  # a cheap test first: extraction is the slow kernel
        if not pc.any(candidates).as_py():
            continue
        parts = pc.extract_regex(pc.filter(main, candidates), pattern)
        found = pc.fill_null(pc.is_valid(parts), False)
        sub_main = pc.if_else(found, pc.struct_field(parts, [0]), pc.filter(main, candidates))
        sub_ext = pc.if_else(found, pc.struct_field(parts, [1]), _NULL)
        main = pc.replace_with_mask(main, candidates, sub_main)
        ext = pc.replace_with_mask(ext, candidates, sub_ext)
    digits = pc.replace_substring(pc.replace_substring(main, " ", ""), "-", "")
    digits = _where(pc.invert(pc.utf8_is_digit(digits)), digits, lambda x: pc.replace_substring_regex(x, r"\D+", ""))
    digits = pc.replace_substring_regex(digits, r"^86(1\d{10})$", r"\1")
    digits = pc.replace_substring_regex(digits, r"^0(1[3-9]\d{9})$", r"\1")
    digits = _restore_trunk_zero(digits, pc.utf8_length(digits), international, numeric, area_code)

    domestic = pc.invert(foreign)
    is_mobile = pc.and_(_matches(digits, _MOBILE), domestic)
    is_service = pc.and_(_matches(digits, _SERVICE), domestic)
    is_land = pc.and_(pc.and_(_matches(digits, _LANDLINE), domestic), pc.invert(is_mobile))
    dash_ext = pc.fill_null(pc.binary_join_element_wise("-", ext, ""), "")
    landline = pc.binary_join_element_wise(_format_landline(digits), dash_ext, "")
    service = pc.binary_join_element_wise(digits, dash_ext, "")

    foreign_e164, foreign_ok = _foreign_numbers(pc.if_else(foreign, text, _NULL))
    is_foreign = pc.and_(foreign, foreign_ok)

    invalid_text = pc.if_else(pc.equal(text, ""), _NULL, text)
    conditions = pc.make_struct(is_mobile, is_land, is_service, is_foreign)
    phone = pc.case_when(conditions, digits, landline, service, foreign_e164, invalid_text)
    kinds = ("mobile", "landline", "service", "foreign", "invalid")
    kind = pc.case_when(conditions, *(pa.scalar(k, pa.string()) for k in kinds))
    return phone, kind


def normalise_phone(value: object, *, default_area_code: str | None = None) -> tuple[str | None, str]:
    """One number: ``(phone, phone_kind)``."""
    out = normalise_phones(pd.Series([value], dtype=object), default_area_code=default_area_code)
    phone = out["phone"].iloc[0]
    return (None if pd.isna(phone) else phone), out["phone_kind"].iloc[0]


def _as_text(s: pd.Series) -> list[str | None]:
    """Strings for any input dtype; integers stay integers (no ``.0``), missing values become None."""
    if pd.api.types.is_float_dtype(s.dtype):
        return [None if v != v else (str(int(v)) if float(v).is_integer() else repr(v)) for v in s.tolist()]
    return s.astype("str").to_numpy(dtype=object, na_value=None).tolist()


def _matches(arr: pa.Array, pattern: str) -> pa.Array:
    return pc.fill_null(pc.match_substring_regex(arr, pattern), False)


def _foreign_numbers(candidates: pa.Array) -> tuple[pa.Array, pa.Array]:
    """E.164 form and validity of numbers with a non-Chinese country code (phonenumbers, once per value)."""
    values = candidates.to_pylist()
    seen: dict[str, str | None] = {}
    for v in values:
        if v is not None and v not in seen:
            number = v.strip("() ")
            number = "+" + number[2:] if number.startswith("00") else number
            try:
                parsed = phonenumbers.parse(number, None)
                seen[v] = (
                    phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                    if phonenumbers.is_valid_number(parsed)
                    else None
                )
            except phonenumbers.NumberParseException:
                seen[v] = None
    e164 = [seen.get(v) if v is not None else None for v in values]
    return pa.array(e164, type=pa.string()), pa.array([x is not None for x in e164])


def foreign_phones(values: pd.Series, regions: pd.Series) -> pd.Series:
    """E.164 numbers of orders shipped abroad, read in the destination's numbering (``(650) 253-0000`` for ``US``),
    once per distinct (number, region); NA where libphonenumber finds no valid number of another country there, so
    the Chinese reading (``normalise_phones``) stands for a Chinese number given on a foreign order."""
    seen: dict[tuple[str, str], str | None] = {}
    out = []
    for value, region in zip(values.tolist(), regions.tolist(), strict=True):
        key = (value, region)
        if key not in seen:
            seen[key] = _in_region(value, region)
        out.append(seen[key])
    return pd.Series(out, index=values.index, dtype="str")


def _in_region(value: object, region: object) -> str | None:
    if not isinstance(value, str) or not isinstance(region, str) or not value.strip():
        return None
    text = unicodedata.normalize("NFKC", value).strip()
    text = "+" + text[2:].lstrip() if text.startswith("00") else text
    try:
        parsed = phonenumbers.parse(text, region.upper())
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code == 86 or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
