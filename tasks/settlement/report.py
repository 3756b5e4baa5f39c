"""Settlement reports: the period's reconciliation (match rate, discrepancies by class and amount, ageing, dunning
list) and the weekly analysis with trends (A2), as DataFrames, Prefect artifacts (personal data masked) and xlsx
workbooks for finance (full values: an export meant for staff).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, text

from tasks.settlement.discrepancies import awaiting_bills
from tasks.settlement.rules import ageing, ageing_table, bucket_labels
from tasks.settlement.store import bill_days, fee_case_line_ids, overdue_receivables, with_order_dates
from yidi.bulk import drop_temp_tables, insert_rows, json_text, read_frame, temp_key_table, utc_now
from yidi.masking import mask_series
from yidi.money import yuan_text
from yidi.schema_settlement import payment_lines, settlement_runs
from yidi.settings import Settings, yidi_home
from yidi.settlement_policy import CASE_CLASSES
from yidi.sheets import SHARE_FORMAT, YUAN_FORMAT, excel_writer, write_people_sheet
from yidi.workdays import BUSINESS_TZ

TIME = payment_lines.c.txn_time.type


def utc_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start, end) local calendar dates as UTC instants."""
    a = datetime(start.year, start.month, start.day, tzinfo=BUSINESS_TZ).astimezone(UTC)
    b = datetime(end.year, end.month, end.day, tzinfo=BUSINESS_TZ).astimezone(UTC)
    return a, b


def _between(sql: str, conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    stmt = text(sql).bindparams(bindparam("a", type_=TIME), bindparam("b", type_=TIME))
    return read_frame(conn, stmt, {"a": start, "b": end})


def match_rates(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Per source: lines and money in the period, how many matched, ignored, unmatched; match rate (matched /
    lines that are order payments)."""
    frame = _between(
        """SELECT source, match_status, COUNT(*) AS lines, SUM(amount_fen) AS amount_fen
           FROM payment_lines WHERE txn_time >= :a AND txn_time < :b GROUP BY source, match_status""",
        conn,
        start,
        end,
    )
    if frame.empty:
        return pd.DataFrame(
            columns=["source", "lines", "matched", "ignored", "unmatched", "amount_yuan", "match_rate"]
        )
    pivot = frame.pivot_table(
        index="source", columns="match_status", values="lines", aggfunc="sum", fill_value=0
    )
    for status in ("matched", "ignored", "unmatched"):
        if status not in pivot:
            pivot[status] = 0
    amounts = frame.groupby("source")["amount_fen"].sum()
    table = pivot[["matched", "ignored", "unmatched"]].astype(int)
    table.insert(0, "lines", table.sum(axis=1))
    relevant = (table["lines"] - table["ignored"]).replace(0, np.nan)
    table["match_rate"] = (table["matched"] / relevant).fillna(1.0).round(4)
    table["amount_yuan"] = amounts.reindex(table.index).map(lambda fen: yuan_text(fen, grouping=True))
    table = table.reset_index()
    total = table[["lines", "matched", "ignored", "unmatched"]].sum()
    rate = total["matched"] / max(total["lines"] - total["ignored"], 1)
    total_row = {"source": "all", **total.to_dict(), "match_rate": round(float(rate), 4),
                 "amount_yuan": yuan_text(int(amounts.sum()), grouping=True)}  # fmt: skip
    return pd.concat([table, pd.DataFrame([total_row])], ignore_index=True)


def cases_by_class(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Per discrepancy class: open and explained cases with their amount, opened and resolved in the period."""
    open_now = read_frame(
        conn,
        """SELECT case_class, status, COUNT(*) AS cases, SUM(amount_fen) AS amount_fen FROM settlement_cases
           WHERE status IN ('open', 'explained') GROUP BY case_class, status""",
    )
    moved = _between(
        """SELECT case_class,
                  SUM(CASE WHEN opened_at >= :a AND opened_at < :b THEN 1 ELSE 0 END) AS opened,
                  SUM(CASE WHEN resolved_at >= :a AND resolved_at < :b THEN 1 ELSE 0 END) AS resolved
           FROM settlement_cases GROUP BY case_class""",
        conn,
        start,
        end,
    )
    table = pd.DataFrame({"case_class": list(CASE_CLASSES)})
    for status in ("open", "explained"):
        part = open_now[open_now["status"] == status].set_index("case_class")
        table[status] = table["case_class"].map(part["cases"]).fillna(0).astype(int)
        table[f"{status}_fen"] = table["case_class"].map(part["amount_fen"]).fillna(0).astype("int64")
    moved = moved.set_index("case_class") if len(moved) else pd.DataFrame(columns=["opened", "resolved"])
    table["opened_in_period"] = table["case_class"].map(moved["opened"]).fillna(0).astype(int)
    table["resolved_in_period"] = table["case_class"].map(moved["resolved"]).fillna(0).astype(int)
    table["open_amount_yuan"] = (table["open_fen"] + table["explained_fen"]).map(
        lambda fen: yuan_text(fen, grouping=True)
    )
    return table


def case_list(conn: Connection) -> pd.DataFrame:
    return read_frame(
        conn,
        """SELECT c.id, c.case_class, c.status, c.owner, o.order_no, c.payment_line_id, c.shipment_id,
                  c.amount_fen, c.summary, c.opened_at, c.updated_at
           FROM settlement_cases c LEFT JOIN orders o ON o.id = c.order_id
           WHERE c.status IN ('open', 'explained') ORDER BY c.case_class, c.amount_fen DESC""",
    )


def _with_names(conn: Connection, plan: pd.DataFrame) -> pd.DataFrame:
    """Open rows of a ledger computed in memory, with order number, customer name and contacts."""
    rows = plan[(plan["status"] == "open") & (plan["outstanding_fen"] > 0)]
    table = temp_key_table(conn, rows["order_id"], "int")
    names = read_frame(
        conn,
        f"""SELECT o.id AS order_id, o.order_no, COALESCE(c.name, o.customer_name) AS customer_name,
                   COALESCE(c.email, o.customer_email) AS email, COALESCE(c.phone, o.customer_phone) AS phone
            FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE o.id IN (SELECT k FROM {table})""",
    )
    drop_temp_tables(conn, table)
    return rows.merge(names, on="order_id")


def ageing_report(
    conn: Connection, settings: Settings, today: date, plan: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bucket table, per-customer ageing pivot) as of ``today``; of the stored ledger, or of ``plan`` (a ledger
    computed as of a past day, not written)."""
    policy = settings.settlement
    ledger = _with_names(conn, plan) if plan is not None else read_frame(
        conn,
        """SELECT r.order_id, r.installment_no, r.customer_id, r.payment_terms, r.due_date, r.outstanding_fen,
                  r.status, o.order_no, COALESCE(c.name, o.customer_name) AS customer_name
           FROM receivables r JOIN orders o ON o.id = r.order_id LEFT JOIN customers c ON c.id = r.customer_id
           WHERE r.status = 'open' AND r.outstanding_fen > 0""",
    )  # fmt: skip
    if ledger.empty:
        empty = pd.DataFrame({"bucket": bucket_labels(policy), "receivables": 0, "outstanding_fen": 0})
        empty["outstanding_yuan"] = "0.00"
        return empty, pd.DataFrame(columns=["customer_name", *bucket_labels(policy), "total"])
    aged = ageing(ledger, policy, today)
    table = ageing_table(aged, policy)
    per_customer = aged.pivot_table(
        index="customer_name",
        columns="bucket",
        values="outstanding_fen",
        aggfunc="sum",
        fill_value=0,
        observed=False,
    ).reindex(columns=bucket_labels(policy), fill_value=0)
    per_customer["total"] = per_customer.sum(axis=1)
    per_customer = per_customer.sort_values("total", ascending=False).reset_index()
    return table, per_customer


def overdue_in_plan(conn: Connection, plan: pd.DataFrame, today: date, policy) -> pd.DataFrame:
    """``overdue_receivables`` of a ledger computed in memory."""
    rows = _with_names(conn, plan)
    rows = rows[(rows["payment_terms"] != "cod") & (pd.to_datetime(rows["due_date"]) < pd.Timestamp(today))]
    rows = rows.assign(due_date=pd.to_datetime(rows["due_date"]).dt.date)
    table = temp_key_table(conn, rows["order_id"], "int")
    orders_of = read_frame(conn, f"SELECT id AS order_id, payment_method, order_time FROM orders "
                                 f"WHERE id IN (SELECT k FROM {table})")  # fmt: skip
    drop_temp_tables(conn, table)
    rows = rows.merge(orders_of, on="order_id")
    rows = rows[~awaiting_bills(with_order_dates(rows), bill_days(conn), policy).to_numpy()]
    return rows.assign(party_key=np.where(rows["customer_id"].notna(),
                                          "customer:" + rows["customer_id"].astype("Int64").astype("string"),
                                          "order:" + rows["order_id"].astype("string")))  # fmt: skip


def dunning_list(
    conn: Connection, settings: Settings, today: date, plan: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Overdue parties: overdue total, oldest due date, days, step reached, last step taken, next step."""
    overdue = (overdue_receivables(conn, today, settings.settlement) if plan is None
               else overdue_in_plan(conn, plan, today, settings.settlement))
    if overdue.empty:
        return pd.DataFrame(columns=["party_key", "customer_name", "phone", "overdue_yuan", "oldest_due_date",
                                     "days_overdue", "last_step", "last_step_at", "next_step"])  # fmt: skip
    grouped = overdue.groupby("party_key").agg(
        customer_name=("customer_name", "first"), phone=("phone", "first"), overdue_fen=("outstanding_fen", "sum"),
        oldest_due_date=("due_date", "min"), orders=("order_no", "nunique"),
    )  # fmt: skip
    grouped["days_overdue"] = (pd.Timestamp(today) - pd.to_datetime(grouped["oldest_due_date"])).dt.days
    actions = read_frame(
        conn, "SELECT party_key, step_name, step_no, taken_at FROM dunning_actions ORDER BY taken_at, step_no"
    )
    last = (
        actions.groupby("party_key").last()
        if len(actions)
        else pd.DataFrame(columns=["step_name", "taken_at"])
    )
    grouped["last_step"] = grouped.index.map(last["step_name"]) if len(last) else None
    grouped["last_step_at"] = grouped.index.map(last["taken_at"]) if len(last) else None
    steps = settings.settlement.dunning_steps
    grouped["next_step"] = [
        next((f"{s.name} (day {s.days_overdue})" for s in steps if s.days_overdue > d), "—")
        for d in grouped["days_overdue"]
    ]
    grouped["overdue_yuan"] = grouped["overdue_fen"].map(lambda fen: yuan_text(fen, grouping=True))
    return grouped.sort_values("overdue_fen", ascending=False).reset_index()


def period_lines(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Every payment line of the period with where it went (for the finance workbook)."""
    return _between(
        """SELECT l.id, l.source, l.kind, l.provider_txn_id, l.merchant_order_no, l.amount_fen, l.fee_fen,
                  l.txn_time, l.payer_name, l.memo, l.waybill_no, l.match_status, o.order_no, m.amount_fen AS
                  allocated_fen, m.rule, m.score
           FROM payment_lines l LEFT JOIN payment_matches m ON m.payment_line_id = l.id
           LEFT JOIN orders o ON o.id = m.order_id
           WHERE l.txn_time >= :a AND l.txn_time < :b ORDER BY l.txn_time, l.id""",
        conn,
        start,
        end,
    )


def period_files(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    return _between(
        """SELECT file_name, source, account, status, reason, error, row_count, new_lines, received_at
           FROM statement_files WHERE received_at >= :a AND received_at < :b
              OR (first_txn_at < :b AND last_txn_at >= :a) ORDER BY received_at""",
        conn,
        start,
        end,
    )


def cases_as_of(conn: Connection, conditions: pd.DataFrame, start: datetime, end: datetime) -> tuple:
    """(cases by class, case list) of the conditions that held as of a past day, with the stored case's id, status
    and owner where there is one (a case a person resolved stays resolved)."""
    stored = read_frame(conn, "SELECT id, case_key, status, owner, opened_at, updated_at, resolved_by FROM "
                              "settlement_cases")  # fmt: skip
    stored["case_key"] = stored["case_key"].astype(object)
    rows = conditions.assign(case_key=conditions["case_key"].astype(object)).merge(stored, on="case_key", how="left")
    person_resolved = (rows["status"] == "resolved") & (rows["resolved_by"] != "system")
    rows["status"] = rows["status"].where(person_resolved | rows["status"].eq("explained"), "open")
    table = cases_by_class(conn, start, end)
    for status in ("open", "explained"):
        part = rows[rows["status"] == status].groupby("case_class")["amount_fen"].agg(["size", "sum"])
        table[status] = table["case_class"].map(part["size"]).fillna(0).astype(int)
        table[f"{status}_fen"] = table["case_class"].map(part["sum"]).fillna(0).astype("int64")
    table["open_amount_yuan"] = (table["open_fen"] + table["explained_fen"]).map(
        lambda fen: yuan_text(fen, grouping=True)
    )
    table_ids = temp_key_table(conn, rows["order_id"].dropna(), "int")
    numbers = read_frame(conn, f"SELECT id AS order_id, order_no FROM orders WHERE id IN (SELECT k FROM {table_ids})")
    drop_temp_tables(conn, table_ids)
    listed = rows[rows["status"] != "resolved"].merge(numbers, on="order_id", how="left")
    listed = listed.sort_values(["case_class", "amount_fen"], ascending=[True, False])
    return table, listed[["id", "case_class", "status", "owner", "order_no", "payment_line_id", "shipment_id",
                          "amount_fen", "summary", "opened_at", "updated_at"]].reset_index(drop=True)  # fmt: skip


def reconciliation_report(
    conn: Connection, settings: Settings, *, start: date, end: date, today: date, view: dict | None = None
) -> dict:
    """The period's tables. ``view``: {plan, conditions} computed as of a past day (a month-end close): ageing,
    cases and the dunning list come from it instead of the stored ledger and cases."""
    a, b = utc_bounds(start, end)
    plan = view["plan"] if view else None
    buckets, per_customer = ageing_report(conn, settings, today, plan)
    by_class, listed = cases_as_of(conn, view["conditions"], a, b) if view else (cases_by_class(conn, a, b),
                                                                                 case_list(conn))  # fmt: skip
    return {
        "match_rates": match_rates(conn, a, b),
        "cases_by_class": by_class,
        "cases": listed,
        "ageing": buckets,
        "ageing_by_customer": per_customer,
        "dunning": dunning_list(conn, settings, today, plan),
        "lines": period_lines(conn, a, b),
        "files": period_files(conn, a, b),
    }


def run_summary(report: dict, run: dict, label: str) -> dict:
    """What one reconciliation did and found (``run``: the step list's results, ``report``: the period's tables):
    what the CLI prints, the workbook's first sheet and the ``settlement_runs`` row."""
    rates = report["match_rates"]
    overall = rates[rates["source"] == "all"]["match_rate"]
    files = run["files"]
    return {
        "period": label, "match_rate": float(overall.iloc[0]) if len(overall) else None,
        "files_ingested": sum(f["status"] == "ingested" for f in files),
        "files_duplicate": sum(f["status"] == "duplicate" for f in files),
        "files_rejected": sum(f["status"] == "rejected" for f in files),
        "files_rejected_before": sum(f["status"] == "rejected_before" for f in files),
        "new_lines": sum(int(f.get("new_lines") or 0) for f in files),
        "matched_lines": run["matching"]["matched_lines"], "by_rule": run["matching"]["by_rule"],
        "payment_state_changes": run["matching"]["payment_states"]["changed"],
        "settled": run["settled"]["settled"], "cases": run["cases"], "dunning": run["dunning"],
        "open_cases_fen": int(report["cases_by_class"][["open_fen", "explained_fen"]].sum().sum()),
        "overdue_fen": int(report["ageing"].loc[report["ageing"]["bucket"] != "current", "outstanding_fen"].sum()),
    }  # fmt: skip


def summary_sheet(summary: dict) -> pd.DataFrame:
    """The workbook's first sheet: one row per figure (nested counts as ``cases: opened``), money in yuan."""
    rows = []

    def add(key: str, value) -> None:
        if isinstance(value, dict):
            for inner, v in value.items():
                add(f"{key}: {inner}", v)
        elif key.endswith("_fen") and isinstance(value, int | float):
            rows.append({"item": f"{key.removesuffix('_fen')} (yuan)", "value": value / 100})
        else:
            rows.append({"item": key, "value": value})

    for key, value in summary.items():
        add(key, value)
    return pd.DataFrame(rows, columns=["item", "value"])


def record_run(
    conn: Connection, *, started: datetime, actor: str, source: str | None, period: str | None, summary: dict,
    as_of: datetime | None = None,
) -> None:  # fmt: skip
    """One ``settlement_runs`` row per reconciliation: when, by whom, of what, as of when, and its summary."""
    row = {"started_at": started, "finished_at": utc_now(), "actor": actor, "source": source,
           "period": summary.get("period") or period, "summary": json_text(summary), "as_of": as_of or started}  # fmt: skip
    insert_rows(conn, settlement_runs, pd.DataFrame([row]))


SHEETS = {
    "summary": "汇总", "match_rates": "匹配率", "cases_by_class": "差异分类", "cases": "差异明细", "ageing": "账龄",
    "ageing_by_customer": "客户账龄", "dunning": "催收清单", "lines": "流水明细", "files": "对账文件",
    "trends": "周趋势",
}  # fmt: skip


def write_workbook(frames: dict[str, pd.DataFrame], path: Path) -> Path:
    """The reconciliation workbook as finance opens it: money in yuan with a currency format, Beijing times,
    columns that show (``yidi.sheets.write_xlsx``). Payer names and remarks come from bank files: text cells are
    typed as strings, never formulas."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sheets = {SHEETS.get(key, key): frame for key, frame in frames.items()}
    if "ageing_by_customer" in frames:  # the pivot's cells are fen under bucket names
        per_customer = frames["ageing_by_customer"]
        amounts = [c for c in per_customer.columns if c != "customer_name"]
        sheets[SHEETS["ageing_by_customer"]] = (per_customer.assign(**{c: per_customer[c] / 100 for c in amounts})
                                                .rename(columns={c: f"{c} (yuan)" for c in amounts}))  # fmt: skip
    with excel_writer(path) as writer:
        for name, frame in sheets.items():
            sheet = write_people_sheet(writer, name, frame)
            if "item" in frame.columns and "value" in frame.columns:  # the summary: money rows in yuan
                for row, item in enumerate(frame["item"], start=2):
                    if str(item).endswith("(yuan)"):
                        sheet.cell(row=row, column=2).number_format = YUAN_FORMAT
                    elif str(item).endswith("_rate"):
                        sheet.cell(row=row, column=2).number_format = SHARE_FORMAT
    return path


def report_path(settings: Settings, name: str) -> Path:
    folder = Path(settings.settlement.report_dir).expanduser()
    folder = folder if folder.is_absolute() else yidi_home() / folder
    return folder / name


def masked_dunning(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    out = frame.copy()
    out["customer_name"] = mask_series("name", out["customer_name"])
    out["phone"] = mask_series("phone", out["phone"])
    return out[["party_key", "customer_name", "phone", "overdue_yuan", "oldest_due_date", "days_overdue",
                "last_step", "next_step"]]  # fmt: skip


# ----------------------------------------------------------------------------------------------- weekly trends


def weekly_trends(
    conn: Connection, settings: Settings, today: date, weeks: int | None = None
) -> pd.DataFrame:
    """Per ISO week (Asia/Shanghai): money in and refunded, lines and match rate, cases opened and resolved,
    cases open at week end, and the overdue receivables recorded by the week's last reconciliation run."""
    weeks = weeks or settings.settlement.analysis_weeks
    monday = today - timedelta(days=today.weekday())
    first = monday - timedelta(weeks=weeks - 1)
    a, b = utc_bounds(first, monday + timedelta(days=7))
    frame = pd.DataFrame({"week_start": [first + timedelta(weeks=i) for i in range(weeks)]})
    frame["week"] = [f"{d.isocalendar().year}-W{d.isocalendar().week:02d}" for d in frame["week_start"]]

    def week_of(values) -> pd.Series:
        local = (
            pd.to_datetime(values, utc=True).dt.tz_convert(BUSINESS_TZ).dt.tz_localize(None).dt.normalize()
        )
        return (local - pd.to_timedelta(local.dt.day_of_week, unit="D")).dt.date

    lines = _between(
        "SELECT txn_time, amount_fen, match_status FROM payment_lines WHERE txn_time >= :a AND txn_time < :b",
        conn,
        a,
        b,
    )
    if len(lines):
        lines["week_start"] = week_of(lines["txn_time"])
        relevant = lines[lines["match_status"] != "ignored"]
        grouped = relevant.groupby("week_start").agg(
            lines=("amount_fen", "size"),
            received_fen=("amount_fen", lambda s: int(s[s > 0].sum())),
            refunded_fen=("amount_fen", lambda s: int(-s[s < 0].sum())),
            matched=("match_status", lambda s: int((s == "matched").sum())),
        )
        frame = frame.merge(grouped, left_on="week_start", right_index=True, how="left")
    for column in ("lines", "received_fen", "refunded_fen", "matched"):
        if column not in frame:
            frame[column] = 0
        frame[column] = frame[column].fillna(0).astype("int64")
    frame["match_rate"] = (frame["matched"] / frame["lines"].replace(0, np.nan)).round(4)
    cases = read_frame(conn, "SELECT case_class, opened_at, resolved_at FROM settlement_cases")
    opened = (
        cases.assign(week_start=week_of(cases["opened_at"])).groupby("week_start").size()
        if len(cases)
        else {}
    )
    resolved_cases = cases[cases["resolved_at"].notna()] if len(cases) else cases
    resolved = (
        resolved_cases.assign(week_start=week_of(resolved_cases["resolved_at"])).groupby("week_start").size()
        if len(resolved_cases)
        else {}
    )
    frame["cases_opened"] = frame["week_start"].map(opened).fillna(0).astype(int)
    frame["cases_resolved"] = frame["week_start"].map(resolved).fillna(0).astype(int)
    open_at_end = []
    for start in frame["week_start"]:
        end = pd.Timestamp(start + timedelta(days=7)).tz_localize(BUSINESS_TZ)
        if len(cases):
            opened_before = pd.to_datetime(cases["opened_at"], utc=True) < end
            still_open = cases["resolved_at"].isna() | (pd.to_datetime(cases["resolved_at"], utc=True) >= end)
            open_at_end.append(int((opened_before & still_open).sum()))
        else:
            open_at_end.append(0)
    frame["cases_open_at_week_end"] = open_at_end
    runs = read_frame(conn, "SELECT finished_at, summary FROM settlement_runs WHERE finished_at IS NOT NULL")
    overdue = {}
    if len(runs):
        runs["week_start"] = week_of(runs["finished_at"])
        for week, part in runs.sort_values("finished_at").groupby("week_start"):
            try:
                overdue[week] = int(json.loads(part["summary"].iloc[-1]).get("overdue_fen", 0))
            except (ValueError, TypeError, AttributeError):
                continue
    frame["overdue_fen"] = frame["week_start"].map(overdue)
    frame["received_yuan"] = frame["received_fen"].map(lambda fen: yuan_text(fen, grouping=True))
    frame["refunded_yuan"] = frame["refunded_fen"].map(lambda fen: yuan_text(fen, grouping=True))
    return frame


def case_list_as_of(conn: Connection, settings: Settings, day: date) -> pd.DataFrame:
    """The discrepancy cases that held at the end of ``day`` (Asia/Shanghai), computed from the facts dated up to
    then; the same list however much later it is asked for."""
    from tasks.settlement.cases import current_conditions
    from tasks.settlement.receivables import ledger_plan
    from tasks.settlement.rules import end_of_business_day

    at = end_of_business_day(day)
    plan = ledger_plan(conn, settings.settlement, at=at)
    conditions, _ = current_conditions(conn, settings, today=day, now=at, new_line_ids=fee_case_line_ids(conn, at),
                                       at=at, plan=plan)  # fmt: skip
    a, b = utc_bounds(day, day + timedelta(days=1))
    return cases_as_of(conn, conditions, a, b)[1]
