"""E1 data accuracy over bulk drops: orders that came in as one chunk record of a csv drop are re-derived from
that chunk like any other order, so the audit's sample is drawn from every order and a changed one is found."""

from __future__ import annotations

import pandas as pd
from intake_support import frame, neutral
from sqlalchemy import select, update

from connectors.spreadsheet_orders import SpreadsheetConnector
from connectors.template.records import CHUNK_CONTENT_TYPE
from demo.standins.spreadsheets import template_frame, write_csv
from flows.risk import rederive_orders
from tasks.intake.landing import run_channel
from tasks.risk.audit_steps import DATA_CHECKS, run_audit
from tasks.risk.periods import business_dates
from yidi.schema import orders
from yidi.schema_risk import risk_findings
from yidi.settings import load_settings

SETTINGS = load_settings()


def test_orders_landed_in_bulk_chunks_are_sampled_and_compared_with_their_chunk(engine, tmp_path):
    write_csv(template_frame(neutral(30), prefix="B"), tmp_path / "orders.csv")
    connector = SpreadsheetConnector("spreadsheet", {"files": [str(tmp_path / "orders.csv")],
                                                     "move_processed": False, "chunk_rows": 10})  # fmt: skip
    summary = run_channel(engine, connector)
    assert (summary.read, summary.new, summary.quarantined) == (30, 30, 0)
    stored = frame(engine, "SELECT o.id, o.received_at, r.content_type FROM orders o "
                           "JOIN intake_records r ON r.id = o.raw_record_id ORDER BY o.id")  # fmt: skip
    assert set(stored["content_type"]) == {CHUNK_CONTENT_TYPE}  # every order points at a chunk of the drop
    tampered, repriced = int(stored["id"].iloc[4]), int(stored["id"].iloc[21])
    with engine.begin() as conn:  # changed in the store after intake: the raw chunk still says otherwise
        conn.execute(update(orders).where(orders.c.id == tampered).values(ship_detail="解放碑1号"))
        conn.execute(update(orders).where(orders.c.id == repriced).values(
            order_total_fen=orders.c.order_total_fen + 100))  # fmt: skip
    day = business_dates(pd.to_datetime(stored["received_at"], utc=True)).iloc[0]
    period = f"{day:%Y-%m}"
    settings = SETTINGS.model_copy(update={"audit": SETTINGS.audit.model_copy(update={"sample_size": 30})})
    result = run_audit(engine, settings, period, pd.Timestamp.now(tz="UTC").to_pydatetime(),
                       rederive=rederive_orders)  # fmt: skip
    assert result["sample"] == 30 and sorted(result["sample_ids"]) == sorted(stored["id"].tolist())
    with engine.connect() as conn:
        found = pd.read_sql(select(risk_findings.c.order_id, risk_findings.c.check_code, risk_findings.c.summary)
                            .where(risk_findings.c.check_code.in_(DATA_CHECKS)), conn)  # fmt: skip
    assert sorted(zip(found["order_id"].astype(int), found["check_code"], found["summary"], strict=True)) == sorted([
        (tampered, "DATA_FIELD_MISMATCH", "fields differ: ship_detail"),
        (repriced, "DATA_FIELD_MISMATCH", "fields differ: order_total_fen"),
    ])  # fmt: skip
