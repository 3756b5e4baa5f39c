"""Spreadsheets as finance and managers open them (issue 15, Build 5: "staff exports show money in yuan with two
decimals (xlsx as numbers with a currency format), datetimes Excel can read"; Asia/Shanghai, labelled). Seen: the
reconciliation workbook had `open_cases_fen 63893000` and JSON in its summary, money as text (`16,884,824.60`,
which Excel cannot add up) and UTC times as text; the risk workbook listed KPIs by code only, in cut-off columns,
with the collection forecast in fen."""

from __future__ import annotations

from datetime import datetime

import openpyxl
import pandas as pd
from risk_data import AS_OF
from test_risk_kpi import build
from test_settlement import NOW, build_store, day_files, reconcile

from flows.compose import in_process
from flows.risk import assessment
from yidi.sheets import write_xlsx
from yidi.workdays import BUSINESS_TZ

CURRENCY = '"¥"#,##0.00'


def _sheet_rows(sheet) -> tuple[list, list[list]]:
    rows = [list(r) for r in sheet.iter_rows()]
    return [c.value for c in rows[0]], rows[1:]


def test_a_workbook_shows_yuan_numbers_beijing_times_and_whole_columns(tmp_path):
    frame = pd.DataFrame({
        "客户名称": ["重庆两江机电有限公司"],
        "amount_fen": [5190],
        "amount_yuan": ["51.90"],  # the terminal's text beside the fen: replaced by the number
        "received_yuan": ["16,884,824.60"],
        "opened_at": ["2026-11-26 01:05:00.000000"],  # what the store returns on SQLite: UTC, as text
        "match_rate": [0.9988],
    })  # fmt: skip
    write_xlsx({"汇总": frame}, tmp_path / "book.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "book.xlsx")["汇总"]
    header, (row,) = _sheet_rows(sheet)
    assert header == ["客户名称", "amount_yuan", "received_yuan", "opened_at (Asia/Shanghai)", "match_rate"]
    assert (row[1].value, row[1].data_type, row[1].number_format) == (51.9, "n", CURRENCY)
    assert (row[2].value, row[2].number_format) == (16884824.6, CURRENCY)
    assert row[3].value == datetime(2026, 11, 26, 9, 5) and row[3].is_date  # 01:05 UTC is 09:05 in Chongqing
    assert (row[4].value, row[4].number_format) == (0.9988, "0.00%")
    assert sheet.column_dimensions["A"].width >= 2 * len("重庆两江机电有限公司")  # CJK characters are double width
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:E2"


def test_the_reconciliation_workbook_is_in_yuan_and_beijing_time(engine, tmp_path):
    build_store(engine)
    result = reconcile(engine, files=day_files(tmp_path), now=NOW, actor="test")
    book = openpyxl.load_workbook(result["report"]["workbook"])

    header, rows = _sheet_rows(book["差异明细"])
    assert "amount_fen" not in header and "opened_at" not in header
    cod = next(r for r in rows if r[header.index("case_class")].value == "cod_not_remitted")
    amount = cod[header.index("amount_yuan")]
    assert (amount.value, amount.number_format) == (300, CURRENCY)  # YD2026110010: COD of 300.00 yuan
    opened = cod[header.index("opened_at (Asia/Shanghai)")]
    assert opened.value == NOW.astimezone(BUSINESS_TZ).replace(tzinfo=None) == datetime(2026, 11, 20, 9, 30)
    assert opened.is_date  # stored 01:30 UTC, shown as the 09:30 Beijing time the case was opened

    summary = {r[0].value: r[1] for r in _sheet_rows(book["汇总"])[1]}
    assert summary["cases: opened"].value == 6  # the JSON {"opened": 6, …} as rows a person reads
    assert summary["open_cases (yuan)"].number_format == CURRENCY and "open_cases_fen" not in summary
    assert summary["match_rate"].number_format == "0.00%"
    header, rows = _sheet_rows(book["客户账龄"])
    assert header[1:] == ["current (yuan)", "1-30 (yuan)", "31-60 (yuan)", "61-90 (yuan)", "over 90 (yuan)",
                          "total (yuan)"]  # fmt: skip
    assert all(c.number_format == CURRENCY for r in rows for c in r[1:])


def test_the_risk_workbook_names_each_kpi_and_colours_its_status(engine):
    with engine.begin() as conn:
        build(conn)
    summary = assessment(in_process, period="2026-11", now=AS_OF, engine=engine)
    book = openpyxl.load_workbook(summary["workbook"])
    header, rows = _sheet_rows(book["KPIs"])
    assert header[:2] == ["kpi", "指标"]
    review = next(r for r in rows if r[0].value == "review_on_time_pct")
    assert review[1].value == "审核按期率 %"
    status = review[header.index("status")]
    assert status.value == "○ 红" and status.fill.start_color.rgb.endswith("FFC7CE")  # 66.67 % against 95 %
    header, rows = _sheet_rows(book["Forecast"])
    money = [h for h in header if h.endswith("_yuan")]
    assert money and not [h for h in header if h.endswith("_fen")]
    assert all(r[header.index(h)].number_format == CURRENCY for r in rows for h in money)
