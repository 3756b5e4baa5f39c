"""Payment files into the store (A1): which files a run reconciles (one named file, or the settlement inbox,
optionally of one source) and taking each in whole or not at all.

Idempotency: a file already ingested (same content hash) is skipped; a line already known (same source and line
identity) is not inserted again; a refused file is recorded with its reason and, on scheduled inbox runs, only
listed afterwards, so a bad file fails one run, not every run until someone removes it. The days an Alipay or
WeChat Pay bill covers are recorded per account (``provider_bill_days``): cases wait for them (issue 12).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, select, update

from connectors.payment_files import file_source, is_source, read_payment_file, source_hint
from connectors.payment_files.alipay import bill_period
from connectors.payment_files.common import PaymentFileError, file_hash, read_source
from yidi.bulk import insert_rows, utc_now
from yidi.db import serial_section
from yidi.lifecycle import current_actor
from yidi.schema_settlement import payment_lines, provider_bill_days, statement_files
from yidi.settings import Settings, get_settings, yidi_home
from yidi.workdays import BUSINESS_TZ


class ReconciliationFailed(RuntimeError):
    """A reconciliation finished its work but some files were refused; the message lists them."""


def inbox_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    path = Path(settings.settlement.inbox_dir).expanduser()
    return path if path.is_absolute() else yidi_home() / path


def inbox_files(settings: Settings | None = None, source: str | None = None) -> list[Path]:
    """Files in the settlement inbox, optionally only those of ``source`` ('bank' selects every bank)."""
    settings = settings or get_settings()
    root = inbox_dir(settings)
    if not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not source:
        return files
    # a file no format recognises is left out here; an unfiltered run reports it
    return [p for p in files if (found := file_source(p, settings.settlement)) and is_source(found, source)]


def known_sources(settings: Settings | None = None) -> list[str]:
    """Every value a reconciliation's ``source`` takes: each file kind, and for the kinds keyed by a template or
    carrier (bank, cod) each one the policy configures (``bank:icbc``, ``cod:shunfeng``)."""
    policy = (settings or get_settings()).settlement
    keys = {"bank": sorted(policy.bank_templates), "cod": sorted(policy.accounts.cod)}
    return ["alipay", "wechatpay", "bank", *(f"bank:{k}" for k in keys["bank"]), "cod",
            *(f"cod:{k}" for k in keys["cod"])]  # fmt: skip


def unknown_source(source: str | None, settings: Settings | None = None) -> str | None:
    """Why ``source`` is refused (naming every valid one), or None when it is known (or not given)."""
    valid = known_sources(settings)
    if not source or source in valid:
        return None
    return f"unknown source {source!r}; valid: {', '.join(valid)}"


def files_to_reconcile(settings: Settings, source: str | None, file_path: str | None) -> list[Path]:
    """The one file named (it must exist), else every file in the inbox of ``source``."""
    if file_path:
        path = Path(file_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{file_path}: no such file")
        return [path]
    return inbox_files(settings, source)


def refused_files(ingested: list[dict]) -> ReconciliationFailed | None:
    """The error a run ends with when files were refused (after reconciling the rest), None when none was."""
    rejected = [f for f in ingested if f["status"] == "rejected"]
    if not rejected:
        return None
    return ReconciliationFailed(
        f"{len(rejected)} of {len(ingested)} file(s) rejected (the rest was reconciled):\n"
        + "\n".join(f"  {f['error']}" for f in rejected)
    )


BILLED_SOURCES = ("alipay", "wechatpay")


def day_in_file_name(name: str) -> date | None:
    """The bill day a file's name gives (``…2026-11-02…``, ``…20261102…``, ``…2026_11_02…``), None without one.

    A WeChat Pay 交易账单 does not print its day (it is the ``bill_date`` it was downloaded for), so the name the
    file was saved under is where the day is stated; an empty bill has no rows to date it either."""
    for match in re.finditer(r"(?<!\d)(20\d\d)[-_.]?(\d\d)[-_.]?(\d\d)(?!\d)", name):
        try:
            return date(*map(int, match.groups()))
        except ValueError:
            continue
    return None


def bill_days_covered(frame: pd.DataFrame, data: bytes, name: str, source: str) -> list[date]:
    """The business days a provider bill covers: its stated period where the format prints one (Alipay's
    起始日期/终止日期, end exclusive), the day its file name states (WeChat Pay, whose bill does not print it),
    and every day from its first to its last transaction. An empty bill covers only its stated days."""
    local = pd.to_datetime(frame["txn_time"], utc=True).dt.tz_convert(BUSINESS_TZ).dt.date
    first, last = (local.min(), local.max()) if len(local) else (None, None)
    if source == "wechatpay" and (named := day_in_file_name(name)) is not None:
        first, last = min(first or named, named), max(last or named, named)
    if source == "alipay":
        try:
            period = bill_period(data)
        except PaymentFileError:
            period = None
        stamps = [re.findall(r"\d+", p) for p in period or ()]
        if len(stamps) == 2 and all(len(s) >= 3 for s in stamps):
            start = date(*map(int, stamps[0][:3]))
            end = datetime(*map(int, stamps[1][:6] + ["0"] * (6 - len(stamps[1][:6])))) - timedelta(microseconds=1)
            first, last = min(first or start, start), max(last or end.date(), end.date())
    if first is None:
        return []
    return [d.date() for d in pd.date_range(first, last, freq="D")]


def billed_account(frame: pd.DataFrame, source: str, settings: Settings) -> str | None:
    """The provider account a bill is for: its rows' account; for an empty bill, the one account the policy
    names for the provider (None when it names several: which account's day it was is then not known)."""
    if len(frame):
        return str(frame["account"].iloc[0])
    ours = getattr(settings.settlement.accounts, source, None) if source in BILLED_SOURCES else None
    return str(ours[0]) if isinstance(ours, list) and len(ours) == 1 else None


def ingest_payment_file(
    conn: Connection,
    path: str | Path,
    *,
    source: str | None = None,
    settings: Settings | None = None,
    actor: str | None = None,
    now: datetime | None = None,
    retry_rejected: bool = True,
) -> dict:
    """Parse one file and store its lines in ``conn``'s transaction; a file already ingested is skipped, a refused
    one recorded. The registry (``connectors.payment_files``) says which format the file is and reads it.

    ``retry_rejected``: parse a file refused before again (the policy may have changed, e.g. an account added);
    scheduled inbox runs pass False so a bad file fails one run, not every run until someone removes it.
    Returns {file, status: ingested|duplicate|rejected|rejected_before, source, file_id, rows, new_lines,
    reason, error}.
    """
    settings = settings or get_settings()
    actor = actor or current_actor()
    now = now or utc_now()
    data, name = read_source(Path(path))
    digest = file_hash(data)
    # One worker at a time per file (issue 17): two runs taking the same file at once both found it new and both
    # recorded it 'ingested', the second overwriting the first's count of new lines with 0.
    serial_section(conn, f"payment-file:{digest}")
    known = conn.execute(
        select(statement_files.c.id, statement_files.c.status, statement_files.c.source).where(
            statement_files.c.file_hash == digest
        )
    ).first()
    if known is not None and known.status == "ingested":
        return {
            "file": name,
            "status": "duplicate",
            "source": known.source,
            "file_id": known.id,
            "new_lines": 0,
        }
    if known is not None and not retry_rejected:
        # refused before and unchanged: listed, not re-parsed (and not failing every scheduled run again)
        return {"file": name, "status": "rejected_before", "source": known.source, "file_id": known.id,
                "new_lines": 0}  # fmt: skip
    hint = source_hint(Path(path), source)
    try:
        detected, frame = read_payment_file(data, name, settings.settlement, hint=hint, wanted=source)
    except PaymentFileError as exc:
        record = {
            "file_hash": digest, "source": source or hint, "file_name": name, "file_path": str(path),
            "status": "rejected", "reason": exc.reason, "error": str(exc), "received_at": now, "actor": actor,
        }  # fmt: skip
        insert_rows(
            conn, statement_files, pd.DataFrame([record]), on_conflict=["file_hash"],
            update_columns=["reason", "error", "source"],
        )  # fmt: skip
        return {
            "file": name,
            "status": "rejected",
            "source": source or hint,
            "reason": exc.reason,
            "error": str(exc),
        }

    amounts = frame["amount_fen"]
    record = {
        "file_hash": digest, "source": detected, "account": frame["account"].iloc[0] if len(frame) else None,
        "file_name": name, "file_path": str(path), "status": "ingested", "reason": None, "error": None,
        "row_count": len(frame), "new_lines": 0, "credit_fen": int(amounts[amounts > 0].sum()),
        "debit_fen": int(-amounts[amounts < 0].sum()),
        "first_txn_at": frame["txn_time"].min() if len(frame) else None,
        "last_txn_at": frame["txn_time"].max() if len(frame) else None, "received_at": now, "actor": actor,
    }  # fmt: skip
    insert_rows(
        conn, statement_files, pd.DataFrame([record]), on_conflict=["file_hash"],
        update_columns=[c for c in record if c not in ("file_hash", "received_at")],
    )  # fmt: skip
    file_id = conn.execute(
        select(statement_files.c.id).where(statement_files.c.file_hash == digest)
    ).scalar_one()
    lines = frame.drop(columns=["file_hash"]).assign(
        file_id=file_id, match_status="unmatched", ingested_at=now
    )
    new = insert_rows(conn, payment_lines, lines, on_conflict=["source", "line_key"])
    conn.execute(update(statement_files).where(statement_files.c.id == file_id).values(new_lines=new))
    account = billed_account(frame, detected, settings)
    if detected in BILLED_SOURCES and account is not None:
        days = [{"source": detected, "account": account, "bill_day": d, "file_id": file_id,
                 "received_at": now} for d in bill_days_covered(frame, data, name, detected)]  # fmt: skip
        if days:
            insert_rows(conn, provider_bill_days, pd.DataFrame(days), on_conflict=["source", "account", "bill_day"])
    return {"file": name, "status": "ingested", "source": detected, "file_id": file_id, "rows": len(frame),
            "new_lines": new}  # fmt: skip
