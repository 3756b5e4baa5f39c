"""Masking of personal data for logs and UI artifacts (full values stay in the store and staff exports)."""

from __future__ import annotations

import re

import pandas as pd

_DIGITS = re.compile(r"\d")


def mask_phone(phone: str | None) -> str:
    """``13812348000`` -> ``138****8000``; landlines keep area code and last 4 digits."""
    if not phone:
        return ""
    text = str(phone)
    digits = [m.start() for m in _DIGITS.finditer(text)]
    if len(digits) <= 4:
        return "*" * len(text)
    keep_head = 3 if len(digits) >= 11 else min(3, len(digits) - 4)
    hidden = set(digits[keep_head:-4])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))


def mask_name(name: str | None) -> str:
    """``张三丰`` -> ``张**``; ``Li Wei`` -> ``L*****``."""
    if not name:
        return ""
    text = str(name).strip()
    return text[0] + "*" * (len(text) - 1) if len(text) > 1 else "*"


def mask_address(detail: str | None) -> str:
    """Keep the first 6 characters (usually district/road), hide the rest (building, room)."""
    if not detail:
        return ""
    text = str(detail)
    return text[:6] + "*" * min(len(text) - 6, 8) if len(text) > 6 else text[:2] + "*" * (len(text) - 2)


_MASKERS = {"phone": mask_phone, "name": mask_name, "address": mask_address}


def mask_value(kind: str, value) -> str:
    """One value masked for display (``kind`` as in ``mask_series``)."""
    return _MASKERS[kind](value) if isinstance(value, str) else ""


def mask_series(kind: str, values: pd.Series) -> pd.Series:
    """Mask a column for display: ``kind`` is ``phone``, ``name`` or ``address``."""
    masker = _MASKERS[kind]
    return values.map(lambda v: masker(v) if isinstance(v, str) else "")


def mask_frame(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """A copy of ``frame`` with ``columns`` ({column: kind}) masked."""
    masked = frame.copy()
    for column, kind in columns.items():
        if column in masked:
            masked[column] = mask_series(kind, masked[column])
    return masked
