"""Secrets kept out of what yidi prints: policy values under secret-like keys and passwords inside URLs.

Personal data has its own masking (``yidi.masking``); this is about credentials an operator may have put in the
policy file or the store's URL, which no error message or ``yidi config show`` may repeat.
"""

from __future__ import annotations

import re

SECRET_WORDS = ("password", "passwd", "secret", "token", "salt", "credential", "api_key", "apikey", "private")
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:\s]*):[^/@\s]*@")


def secret_like(key: str) -> bool:
    """A key whose value must never be shown: its name says secret (``*_env`` keys name a variable, not a secret)."""
    name = key.lower()
    return not name.endswith("_env") and any(word in name for word in SECRET_WORDS)


def without_url_passwords(text: str) -> str:
    """``scheme://user:pw@host`` -> ``scheme://user:***@host`` wherever it appears in ``text``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def redacted(value, key: str = ""):
    """Settings (nested dicts and lists) as they may be shown: secret-like keys' values and URL passwords masked."""
    if isinstance(value, dict):
        return {k: redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, key) for v in value]
    if isinstance(value, str) and value and secret_like(key):
        return "***"
    if isinstance(value, str):
        return without_url_passwords(value)
    return value


def shown_input(key: str, err: dict) -> str:
    """What a policy validation error may echo: nothing for an unknown key (a secret put under a wrong name must
    not be printed) or a secret-like one; the value otherwise."""
    if err.get("type") == "extra_forbidden":
        return "unknown key; its value is not shown"
    if secret_like(key):
        return "value not shown"
    return f"got {err.get('input')!r}"
