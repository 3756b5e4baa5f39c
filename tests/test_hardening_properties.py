"""Issue 16: property-based tests (Hypothesis) for every parser of outside data — order templates, order emails,
platform (TOP) and website (WooCommerce) pages, Alipay and WeChat Pay bills, bank statements, COD remittances,
Kuaidi100 pushes. For any input: no crash; every input row accounted for (accepted, quarantined or the file
refused whole, with a reason); nothing changed that the format does not change (text comes back as written,
trimmed). Bounded (``max_examples``, no per-example deadline on a shared machine) so ``make test`` stays fast;
the same examples every run. ``YIDI_PROPERTY_EXAMPLES=300`` explores more, with fresh examples each time.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.email_body import parse_body
from connectors.kuaidi100 import PushRejected, push_sign, verify_push
from connectors.kuaidi100_push import implausible_checkpoint
from connectors.payment_files.alipay import parse_alipay_bill
from connectors.payment_files.bank_statement import parse_bank_statement
from connectors.payment_files.cod_remittance import parse_cod_remittance
from connectors.payment_files.common import PaymentFileError
from connectors.payment_files.wechatpay import parse_wechatpay_bill
from connectors.taobao import parse_trades
from connectors.template.csv_rows import iter_csv_chunks
from connectors.template.records import build_template_records
from connectors.woocommerce import DEFAULT_PAYMENT_METHODS, parse_orders
from demo.standins.payment_files import (
    BANK_LAYOUTS,
    write_alipay_bill,
    write_bank_statement,
    write_cod_remittance,
    write_wechatpay_bill,
)
from demo.standins.taobao import trade_from_neutral
from demo.standins.woocommerce import order_from_neutral
from yidi.settings import load_settings

BOUNDED = settings(max_examples=int(os.environ.get("YIDI_PROPERTY_EXAMPLES", "25")), deadline=None,
                   derandomize=not os.environ.get("YIDI_PROPERTY_EXAMPLES"),
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
RECEIVED = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
POLICY = load_settings().settlement

# Text as people and attackers type it: CJK (rare Extension B too), Latin, digits, punctuation that formats use
# (comma, quotes, tab, newline, colon, pipe), formula starters and emoji.
HOSTILE = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("张王李赵重庆渝中区解放碑路号栋楼室𠀀𪚥𫝀")),
        st.sampled_from(list("abcXYZ0123456789 ,;:|\"'\t\n=+-@#()（）：，、")),
        st.sampled_from(["😀", "🍲", "\u3000"]),
    ),
    max_size=24,
)
GBK_TEXT = HOSTILE.filter(lambda t: _encodes(t, "gbk"))
NAME = st.text(alphabet=st.sampled_from(list("张王李赵钱孙重庆机电有限公司abc·")), min_size=2, max_size=12)


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _blank(text) -> bool:
    return text is None or bool(pd.isna(text)) or str(text).strip() == ""


# --- order templates -----------------------------------------------------------------------------------------

HEADER = ["订单号", "下单时间", "客户名称", "联系电话", "收货地址", "商品编码", "商品名称", "数量", "单价（元）", "备注"]
TEMPLATE_ROW = st.fixed_dictionaries({
    "name": HOSTILE, "address": HOSTILE, "item": HOSTILE, "note": HOSTILE,
    "qty": st.sampled_from(["1", "2", "0", "-1", "两箱", "", "3.5"]),
    "price": st.sampled_from(["10", "9.90", "", "abc", "=1+2", "1,234.00"]),
    "extra": st.sampled_from([None, None, None, "多一列"]),  # a row with one field too many
})  # fmt: skip
TEMPLATE_ORDERS = st.lists(st.lists(TEMPLATE_ROW, min_size=1, max_size=3), min_size=1, max_size=5)


def _template_csv(orders: list[list[dict]]) -> tuple[str, int]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    rows = 0
    for n, lines in enumerate(orders, start=1):
        for line in lines:
            values = [f"P{n}", "2026-11-26 09:30", line["name"], "13812345678", line["address"], f"SKU-{n}",
                      line["item"], line["qty"], line["price"], line["note"]]  # fmt: skip
            writer.writerow(values + ([line["extra"]] if line["extra"] else []))
            rows += 1
    return buffer.getvalue(), rows


@BOUNDED
@given(TEMPLATE_ORDERS)
def test_template_rows_are_each_accepted_or_quarantined_with_their_whole_order(orders):
    text, rows = _template_csv(orders)
    accounted, accepted_lines = 0, 0
    for chunk in iter_csv_chunks(io.StringIO(text)):
        result = build_template_records(chunk, source_ref="file:p.csv", default_channel="phone",
                                        received_at=RECEIVED)  # fmt: skip
        parsed = result.parse()
        held = set(parsed.problems["record_idx"].astype(int))
        contents = result.records["content"].tolist()
        for position, content in enumerate(contents):
            in_record = len(list(csv.reader(io.StringIO(content)))) - 1  # rows under the header
            accounted += in_record
            lines = parsed.lines[parsed.lines["record_idx"] == position]
            if position not in held:
                assert len(lines) == in_record  # an accepted order has every one of its rows as a line
                accepted_lines += len(lines)
        for _, order in parsed.orders[~parsed.orders["record_idx"].isin(held)].iterrows():
            n = int(str(order["channel_order_id"])[1:])
            names = {line["name"].strip() for line in orders[n - 1]}
            assert order["customer_name"] in names or (_blank(order["customer_name"]) and "" in names)
            items = {line["item"].strip() for line in orders[n - 1]}
            got = parsed.lines.loc[parsed.lines["record_idx"] == order["record_idx"], "item_name"]
            assert set(got.dropna()) <= items
    assert accounted == rows  # every row is in exactly one record: nothing lost, nothing twice
    assert accepted_lines <= rows


# --- order emails --------------------------------------------------------------------------------------------


@BOUNDED
@given(name=HOSTILE, address=HOSTILE, item=HOSTILE, note=HOSTILE, junk=HOSTILE)
def test_an_order_email_is_one_order_or_one_quarantined_record(name, address, item, note, junk):
    body = "\n".join([junk, "订单号: E-1", f"客户: {name}", "电话: 13812345678", f"地址: 重庆市渝中区{address}",
                      f"商品: SKU-1 {item} x 2 @ 10.00", f"备注: {note}"])  # fmt: skip
    envelope = {"message_id": "<m1@example.com>", "from": "buyer@example.com", "subject": "订单", "date": None}
    parsed = parse_body(envelope, body, 0, RECEIVED)
    assert len(parsed.orders) + parsed.problems["record_idx"].nunique() >= 1
    assert set(parsed.orders["record_idx"]) <= {0} and set(parsed.problems["record_idx"]) <= {0}
    if len(parsed.orders) and not len(parsed.problems):
        value = parsed.orders["customer_name"].iloc[0]
        # One line holds one field: a name is the text up to its line's end, as written there.
        assert _blank(value) or value == name.split("\n")[0].strip().lstrip("-•*").strip() or value in body


# --- platform and website pages ------------------------------------------------------------------------------

JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | HOSTILE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HOSTILE, inner, max_size=3),
    max_leaves=8,
)
NEUTRAL = {
    "ref": "00000001", "customer_name": "余敏", "phone": "18636255317", "email": "c@example.com",
    "province": "北京市", "city": "北京市", "district": "朝阳区", "detail": "建国路93号", "postcode": "",
    "country": "CN", "payment_method": "alipay", "status": "paid", "note": "", "freight_fen": 0,
    "discount_fen": 0, "goods_fen": 236000,
    "order_time": datetime(2026, 12, 3, 19, 7, tzinfo=UTC), "modified": datetime(2026, 12, 3, 19, 13, tzinfo=UTC),
    "lines": [{"code": "SKU-0008", "name": "齿轮减速机", "spec": "", "model": "", "qty": 1, "price_fen": 236000}],
}  # fmt: skip


def _order_with(name: str, item: str, note: str) -> dict:
    return {**NEUTRAL, "customer_name": name, "note": note, "lines": [{**NEUTRAL["lines"][0], "name": item}]}


def _replace_somewhere(document, junk, path: list):
    """``document`` with the value at ``path`` (keys/indexes, as far as they go) replaced by ``junk``."""
    if not path:
        return junk
    if isinstance(document, dict) and document:
        key = sorted(document)[path[0] % len(document)]
        return {**document, key: _replace_somewhere(document[key], junk, path[1:])}
    if isinstance(document, list) and document:
        at = path[0] % len(document)
        return document[:at] + [_replace_somewhere(document[at], junk, path[1:])] + document[at + 1 :]
    return junk


PAGE_CASE = st.tuples(HOSTILE, HOSTILE, HOSTILE, JSON_JUNK, st.lists(st.integers(0, 40), max_size=4),
                      st.booleans(), HOSTILE)  # fmt: skip


def _page(make, case) -> tuple[list[str], str, str, str]:
    name, item, note, junk, path, damage, raw = case
    good = make(_order_with(name, item, note))
    contents = [json.dumps(good, ensure_ascii=False)]
    contents.append(json.dumps(_replace_somewhere(good, junk, path), ensure_ascii=False) if damage else raw)
    return contents, name, item, note


def _accounted(parsed, n: int) -> None:
    accepted = set(parsed.orders["record_idx"].astype(int))
    held = set(parsed.problems["record_idx"].astype(int))
    assert accepted | held == set(range(n))  # each record: an order or a reason


def _same_text(parsed, name: str, item: str, note: str) -> None:
    first = parsed.orders[parsed.orders["record_idx"] == 0]
    if len(first) and 0 not in set(parsed.problems["record_idx"]):
        row = first.iloc[0]
        # A website keeps a name as first and last name, joined again in the order the script reads (姓 first for
        # Chinese, "first last" otherwise): the same characters, none lost or added.
        letters = sorted(re.sub(r"\s", "", name))
        assert _blank(row["customer_name"]) or sorted(re.sub(r"\s", "", row["customer_name"])) == letters
        got = row["buyer_note"]
        assert (_blank(got) and _blank(note)) or got == note.strip()
        lines = parsed.lines[parsed.lines["record_idx"] == 0]["item_name"].tolist()
        assert lines == [item.strip() or lines[0]]


@BOUNDED
@given(PAGE_CASE)
def test_platform_trades_are_each_an_order_or_a_reason_and_keep_their_text(case):
    contents, name, item, note = _page(lambda o: trade_from_neutral(o, 1001), case)
    parsed = parse_trades(contents)
    _accounted(parsed, len(contents))
    _same_text(parsed, name, item, note)


@BOUNDED
@given(PAGE_CASE)
def test_website_orders_are_each_an_order_or_a_reason_and_keep_their_text(case):
    contents, name, item, note = _page(lambda o: order_from_neutral(o, 1001), case)
    parsed = parse_orders(contents, DEFAULT_PAYMENT_METHODS)
    _accounted(parsed, len(contents))
    _same_text(parsed, name, item, note)


# --- payment files -------------------------------------------------------------------------------------------

PAYMENT_ROWS = st.lists(
    st.fixed_dictionaries({"payer": GBK_TEXT, "memo": GBK_TEXT, "fen": st.integers(1, 10**9),
                           "refund": st.booleans()}),
    min_size=1, max_size=6,
)  # fmt: skip


def _payments(rows: list[dict], *, bank: bool = False) -> pd.DataFrame:
    kinds = [("debit" if bank else "refund") if r["refund"] else ("credit" if bank else "payment") for r in rows]
    return pd.DataFrame({
        "merchant_order_no": [f"YD2026110100000{i}" for i in range(len(rows))], "kind": kinds,
        "amount_fen": [-r["fen"] if r["refund"] else r["fen"] for r in rows],
        "txn_time": [datetime(2026, 11, 1, 2, tzinfo=UTC) + timedelta(minutes=i) for i in range(len(rows))],
        "payer_name": [r["payer"] for r in rows], "memo": [r["memo"] for r in rows],
        "payer_account": ["6222021"] * len(rows),
    })  # fmt: skip


def _parsed_or_refused(parse, rows: list[dict]) -> pd.DataFrame | None:
    """The parse, or None when the file was refused whole with a reason (PaymentFileError); anything else fails."""
    try:
        frame = parse()
    except PaymentFileError as exc:
        assert str(exc)
        return None
    return frame


def _payers_unchanged(frame: pd.DataFrame, rows: list[dict]) -> None:
    assert len(frame) == len(rows)  # every row of the file is a payment line
    got = [None if _blank(v) else v for v in frame["payer_name"].tolist()]
    wrote = [None if _blank(r["payer"]) else r["payer"].strip() for r in rows]
    assert got == wrote


@BOUNDED
@given(PAYMENT_ROWS)
def test_alipay_bills_are_read_row_for_row_or_refused_whole(rows):
    rows = [{**r, "refund": False} for r in rows]  # a refund in a bill follows its payment: payments here
    payments = _payments(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_alipay_bill(payments, Path(tmp) / "a.csv", zipped=False)
        frame = _parsed_or_refused(lambda: parse_alipay_bill(path, accounts=POLICY.accounts.alipay), rows)
    if frame is not None:
        assert len(frame) == len(payments)
        assert frame["amount_fen"].tolist() == payments["amount_fen"].tolist()


@BOUNDED
@given(PAYMENT_ROWS)
def test_wechat_bills_are_read_row_for_row_or_refused_whole(rows):
    payments = _payments(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_wechatpay_bill(payments, Path(tmp) / "wx.csv")
        frame = _parsed_or_refused(lambda: parse_wechatpay_bill(path, accounts=POLICY.accounts.wechatpay), rows)
    if frame is not None:
        assert frame["amount_fen"].tolist() == payments["amount_fen"].tolist()


@BOUNDED
@given(PAYMENT_ROWS, st.sampled_from(sorted(BANK_LAYOUTS)))
def test_bank_statements_are_read_row_for_row_or_refused_whole(rows, key):
    lines = _payments(rows, bank=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_bank_statement(lines, Path(tmp) / f"stmt{BANK_LAYOUTS[key][1]}", template_key=key)
        frame = _parsed_or_refused(lambda: parse_bank_statement(path, POLICY.bank_templates[key], template_key=key,
                                                                accounts=POLICY.accounts.bank[key]), rows)  # fmt: skip
    if frame is not None:
        _payers_unchanged(frame, rows)
        assert frame["amount_fen"].tolist() == lines["amount_fen"].tolist()


@BOUNDED
@given(PAYMENT_ROWS, st.booleans())
def test_cod_remittances_are_read_row_for_row_or_refused_whole(rows, xlsx):
    remits = pd.DataFrame({
        "waybill_no": [f"SF14000000000{i:02d}" for i in range(len(rows))],
        "merchant_order_no": [f"YD{i}" for i in range(len(rows))],
        "amount_fen": [r["fen"] for r in rows],
        "txn_time": [datetime(2026, 11, 5, tzinfo=UTC)] * len(rows),
        "payer_name": [r["payer"] for r in rows],
        "signed_at": [datetime(2026, 11, 3, 15, tzinfo=UTC)] * len(rows),
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = write_cod_remittance(remits, Path(tmp) / ("cod.xlsx" if xlsx else "cod.csv"), xlsx=xlsx)
        frame = _parsed_or_refused(lambda: parse_cod_remittance(path, POLICY.cod_templates["shunfeng"],
                                                                template_key="shunfeng",
                                                                accounts=POLICY.accounts.cod["shunfeng"]), rows)  # fmt: skip
    if frame is not None:
        assert len(frame) == len(rows)
        assert frame["amount_fen"].tolist() == remits["amount_fen"].tolist()
        assert frame["waybill_no"].tolist() == remits["waybill_no"].tolist()


# --- Kuaidi100 pushes ----------------------------------------------------------------------------------------


@BOUNDED
@given(JSON_JUNK, st.lists(st.integers(0, 40), max_size=4), HOSTILE, st.booleans(),
       st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1)))  # fmt: skip
def test_a_push_is_verified_or_rejected_with_a_reason_never_a_crash(junk, path, context, damage, when):
    stamp = when.strftime("%Y-%m-%d %H:%M:%S")
    body = {"status": "polling", "billstatus": "got", "message": "", "lastResult": {
        "message": "ok", "nu": "YT100", "ischeck": "0", "com": "yuantong", "status": "200", "state": "0",
        "data": [{"time": stamp, "ftime": stamp, "context": context}]}}  # fmt: skip
    param = json.dumps(_replace_somewhere(body, junk, path) if damage else body, ensure_ascii=False)
    try:
        notice = verify_push(param, push_sign(param, "salt"), "salt")
    except PushRejected as exc:
        assert str(exc)
        return
    now = datetime(2026, 3, 2, tzinfo=UTC)
    why = implausible_checkpoint(notice, now)
    if not damage:
        assert notice.num == "YT100" and notice.result.checkpoints[0].context == context.strip()
        plausible = now - timedelta(days=400) <= notice.result.checkpoints[0].time <= now + timedelta(days=1)
        assert (why is None) == plausible


def test_a_checkpoint_dated_1970_is_implausible():
    param = json.dumps({"status": "polling", "lastResult": {"nu": "A", "com": "ems", "state": "0", "data": [
        {"time": "1970-01-01 08:00:00", "context": "x"}]}})  # fmt: skip
    notice = verify_push(param, push_sign(param, "s"), "s")
    assert "outside the plausible window" in implausible_checkpoint(notice, datetime(2026, 3, 2, tzinfo=UTC))


def test_records_of_the_wrong_shape_are_reasons_not_crashes():
    """What Hypothesis found: a part of a record of the wrong JSON kind crashed the whole page's parse."""
    trades = ['{"tid": 1, "orders": true}', '{"tid": 2, "orders": {"order": [true]}}', '{"tid": 3, "orders": null}']
    parsed = parse_trades(trades)
    assert parsed.orders.empty and sorted(parsed.problems["record_idx"].unique()) == [0, 1, 2]
    woo = ['{"id": 5, "line_items": [true]}', '{"id": 6, "billing": true, "shipping": true, "line_items": []}']
    parsed = parse_orders(woo, DEFAULT_PAYMENT_METHODS)
    assert parsed.orders.empty and sorted(parsed.problems["record_idx"].unique()) == [0, 1]
