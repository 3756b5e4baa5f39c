"""Build an expectation tagged with its review meaning (GX ``meta``): rule id, reason code, severity, messages."""

from __future__ import annotations

from expectations.reasons import REASONS, severity_of


def tagged(expectation_class, rule: str, code: str, settings, *, zh_detail: str = "", en_detail: str = "",
           **kwargs):
    """``expectation_class(**kwargs)`` with ``meta`` saying what a failure means for the order."""
    reason = REASONS[code]
    meta = {
        "rule": rule,
        "reason_code": code,
        "area": reason.area,
        "severity": severity_of(code, settings.review.severity),
        "message_zh": f"{reason.zh}（{zh_detail}）" if zh_detail else reason.zh,
        "message_en": f"{reason.en} ({en_detail})" if en_detail else reason.en,
    }
    return expectation_class(meta=meta, **kwargs)
