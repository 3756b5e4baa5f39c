"""Payment files (A1): which formats exist, how each is recognised and how it is read, in one registry.

A task hands the registry a file and gets back its source (``detect_source``, ``file_source``) or its canonical
payments frame (``read_payment_file``, columns in ``common.PAYMENT_COLUMNS``); it never looks at the bytes itself.

Sources: 'alipay' | 'wechatpay' | 'bank:<template key>' (templates from ``[settlement.bank_templates]``) |
'cod:<carrier code>' (templates from ``[settlement.cod_templates]``). A source asked for names one format ('bank' alone selects every bank, 'cod' every
carrier). In the settlement inbox a file's folder names its source (``alipay/``, ``wechatpay/``,
``bank-<template>/``, ``cod-<carrier>/``); anywhere else its content does.

Adding a format = one module with a detector and a parser, one ``PaymentFormat`` in ``FORMATS``. The first
detector that recognises a file wins, so the order matters: bills (zip, or a header of their own) before COD
remittances (a carrier template whose header and carrier name are found) before bank statements (a bank
template whose header is found). A file no format takes is refused naming every template tried and why it
did not fit (``template_misfits``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from connectors.payment_files import bank_statement, cod_remittance
from connectors.payment_files.alipay import looks_like_alipay, parse_alipay_bill
from connectors.payment_files.bank_statement import parse_bank_statement
from connectors.payment_files.cod_remittance import parse_cod_remittance
from connectors.payment_files.common import PaymentFileError
from connectors.payment_files.wechatpay import looks_like_wechatpay, parse_wechatpay_bill
from yidi.settlement_policy import SettlementPolicy


@dataclass(frozen=True)
class PaymentFormat:
    """One payment-file format: ``detect(data, name, policy)`` gives the file's source or None when the file is
    not of this format; ``parse(data, name, key, policy)`` reads it (``key``: the source after ':')."""

    kind: str  # the source before ':'
    keyed: bool  # the source names a template or carrier after ':' (bank:icbc, cod:shunfeng)
    detect: Callable[[bytes, str, SettlementPolicy], str | None]
    parse: Callable[[bytes, str, str, SettlementPolicy], pd.DataFrame]


def _detect_alipay(data: bytes, name: str, policy: SettlementPolicy) -> str | None:
    return "alipay" if looks_like_alipay(data, name) else None


def _parse_alipay(data: bytes, name: str, key: str, policy: SettlementPolicy) -> pd.DataFrame:
    return parse_alipay_bill(data, name=name, accounts=policy.accounts.alipay)


def _detect_wechatpay(data: bytes, name: str, policy: SettlementPolicy) -> str | None:
    return "wechatpay" if looks_like_wechatpay(data) else None


def _parse_wechatpay(data: bytes, name: str, key: str, policy: SettlementPolicy) -> pd.DataFrame:
    return parse_wechatpay_bill(data, name=name, accounts=policy.accounts.wechatpay)


def _first_fit(data: bytes, name: str, templates: dict, fit) -> str | None:
    cache: dict = {}  # the file's first rows per (encoding, delimiter), read once for all templates
    return next((key for key, template in templates.items() if fit(data, name, template, cache) is None), None)


def _detect_cod(data: bytes, name: str, policy: SettlementPolicy) -> str | None:
    key = _first_fit(data, name, policy.cod_templates, cod_remittance.template_fit)
    return f"cod:{key}" if key else None


def _parse_cod(data: bytes, name: str, key: str, policy: SettlementPolicy) -> pd.DataFrame:
    template = policy.cod_templates.get(key)
    if template is None:
        raise PaymentFileError(
            name, "format", f"no carrier template {key!r} in [settlement.cod_templates] "
            f"(have {', '.join(sorted(policy.cod_templates))})",
        )
    return parse_cod_remittance(
        data, template, template_key=key, name=name, accounts=policy.accounts.cod.get(key, [])
    )


def _detect_bank(data: bytes, name: str, policy: SettlementPolicy) -> str | None:
    key = _first_fit(data, name, policy.bank_templates, bank_statement.template_fit)
    return f"bank:{key}" if key else None


def _parse_bank(data: bytes, name: str, key: str, policy: SettlementPolicy) -> pd.DataFrame:
    template = policy.bank_templates.get(key)
    if template is None:
        raise PaymentFileError(
            name, "format", f"no bank template {key!r} in [settlement.bank_templates] "
            f"(have {', '.join(sorted(policy.bank_templates))})",
        )
    return parse_bank_statement(
        data, template, template_key=key, name=name, accounts=policy.accounts.bank.get(key, [])
    )


def template_misfits(data: bytes, name: str, policy: SettlementPolicy) -> list[tuple[str, str]]:
    """(source, why it does not fit) for every configured bank and carrier template."""
    cache: dict = {}
    return [
        *((f"cod:{k}", cod_remittance.template_fit(data, name, t, cache) or "fits")
          for k, t in policy.cod_templates.items()),
        *((f"bank:{k}", bank_statement.template_fit(data, name, t, cache) or "fits")
          for k, t in policy.bank_templates.items()),
    ]  # fmt: skip


FORMATS = {
    f.kind: f
    for f in (
        PaymentFormat("alipay", False, _detect_alipay, _parse_alipay),
        PaymentFormat("wechatpay", False, _detect_wechatpay, _parse_wechatpay),
        PaymentFormat("cod", True, _detect_cod, _parse_cod),
        PaymentFormat("bank", True, _detect_bank, _parse_bank),
    )
}


def detect_source(data: bytes, name: str, policy: SettlementPolicy) -> str:
    """Which kind of payment file this is, from its content; a file no format recognises is refused."""
    for payment_format in FORMATS.values():
        found = payment_format.detect(data, name, policy)
        if found:
            return found
    tried = "; ".join(f"{source}: {why}" for source, why in template_misfits(data, name, policy))
    raise PaymentFileError(
        name,
        "format",
        "not a payment file yidi knows (not an Alipay or WeChat Pay bill, and no template fits; a wrong encoding "
        f"also ends here). Templates tried: {tried}",
    )


def parse_payment_file(data: bytes, name: str, source: str, policy: SettlementPolicy) -> pd.DataFrame:
    """The canonical payments frame of a file of ``source``; a file that is not whole and ours is refused."""
    kind, _, key = source.partition(":")
    payment_format = FORMATS.get(kind)
    if payment_format is None:
        raise PaymentFileError(name, "format", f"unknown source {source!r}")
    return payment_format.parse(data, name, key, policy)


def is_source(found: str, wanted: str | None) -> bool:
    """``found`` is of the source asked for (nothing asked: any; 'bank' selects every bank, 'cod' every carrier)."""
    return not wanted or found == wanted or found.startswith(wanted + ":")


def source_from_folder(path: Path) -> str | None:
    """Inbox layout: ``alipay/``, ``wechatpay/``, ``bank-<template>/``, ``cod-<carrier>/`` (else content decides)."""
    folder = path.parent.name.lower()
    if folder in FORMATS and not FORMATS[folder].keyed:
        return folder
    for kind in (k for k, f in FORMATS.items() if f.keyed):
        for sep in ("-", "_", ":"):
            if folder.startswith(kind + sep) and len(folder) > len(kind) + 1:
                return f"{kind}:{folder[len(kind) + 1 :]}"
    return None


def source_hint(path: Path, source: str | None) -> str | None:
    """The source a file is taken to be before its content is read: the source asked for when it names one format
    exactly ('alipay', 'bank:icbc'), else the file's inbox folder; None leaves it to the content."""
    if source:
        kind = source.partition(":")[0]
        if ":" in source or (kind in FORMATS and not FORMATS[kind].keyed):
            return source
    return source_from_folder(path)


def file_source(path: Path, policy: SettlementPolicy) -> str | None:
    """A file's source by its inbox folder, else by its content; None when it is no payment file yidi knows."""
    found = source_from_folder(path)
    if found:
        return found
    try:
        return detect_source(path.read_bytes(), path.name, policy)
    except PaymentFileError:
        return None  # not recognisable: a run over it reports why


def read_payment_file(
    data: bytes, name: str, policy: SettlementPolicy, *, hint: str | None = None, wanted: str | None = None
) -> tuple[str, pd.DataFrame]:
    """The file's source and canonical payments frame. ``hint`` (see ``source_hint``) or the content decides the
    format; the file must be of the source ``wanted``. Raises ``PaymentFileError`` naming the file and problem."""
    detected = hint or detect_source(data, name, policy)
    if not is_source(detected, wanted):
        raise PaymentFileError(name, "format", f"asked for source {wanted}, the file is {detected}")
    return detected, parse_payment_file(data, name, detected, policy)
