"""The settlement demo (`make demo`): what the money side would deliver for the orders in the store (Alipay and
WeChat Pay bills, bank statements, carrier COD remittances, with the usual troubles mixed in), written by the
stand-ins into the settlement inbox; then the real reconciliation and weekly analysis flows run on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow
from sqlalchemy import select

from demo.standins.payment_files import (
    BUSINESS_TZ,
    DEFAULT_ACCOUNTS,
    bank_file_name,
    contract_fee,
    stable_digits,
    write_alipay_bill,
    write_bank_statement,
    write_cod_remittance,
    write_wechatpay_bill,
)
from flows.naming import run_name
from flows.settlement import reconcile_settlements, settlement_analysis
from tasks.settlement.files import inbox_dir
from yidi import schema
from yidi.bulk import read_frame
from yidi.db import get_engine
from yidi.money import decimal_to_fen
from yidi.settings import get_settings


def demo_payments(
    orders: pd.DataFrame, shipments: pd.DataFrame, *, seed: int = 7, now: datetime | None = None
) -> dict[str, pd.DataFrame]:
    """What the money side would deliver for these orders: per source, the payment lines, with the usual
    troubles mixed in (short and double payments, transfers naming several orders or none, refunds with and
    without a return, a fee off contract, strangers' transfers, COD not yet remitted).

    ``orders``: id, order_no, channel_order_id, customer_name, payment_method, order_total_fen, order_time,
    state, installments. ``shipments``: order_id, carrier, waybill_no, cod_amount_fen, delivered_at.
    Money that would move after ``now`` (default: the clock) has not moved yet and is left out.
    Returns {'alipay': …, 'wechatpay': …, 'bank:icbc': …, 'bank:cmb': …, 'cod:<carrier>': …}.
    """
    rng = np.random.default_rng(seed)
    orders = orders.reset_index(drop=True)
    placed = pd.to_datetime(orders["order_time"], utc=True)
    accepted = ~orders["state"].isin(["rejected", "auto_rejected", "received", "pending_review"])
    out: dict[str, list[dict]] = {}

    def add(source: str, **row) -> None:
        out.setdefault(source, []).append(row)

    for i, order in orders.iterrows():
        method, total, when = order["payment_method"], int(order["order_total_fen"]), placed[i]
        roll = rng.random()
        if method in ("alipay", "wechatpay"):
            if roll < 0.03:
                continue  # abandoned at the cashier: never paid
            add(method, merchant_order_no=order["order_no"], kind="payment", amount_fen=total,
                txn_time=when + pd.Timedelta(minutes=int(rng.integers(1, 30))), payer_name=None, memo=None)  # fmt: skip
            if roll > 0.99:  # paid twice (two devices, an impatient buyer)
                add(method, merchant_order_no=order["order_no"], kind="payment", amount_fen=total,
                    txn_time=when + pd.Timedelta(minutes=40), payer_name=None, memo=None)  # fmt: skip
            if order["state"] in ("cancelled", "rejected", "auto_rejected"):
                add(method, merchant_order_no=order["order_no"], kind="refund", amount_fen=-total,
                    txn_time=when + pd.Timedelta(hours=30), payer_name=None, memo="订单取消退款")  # fmt: skip
            elif 0.975 < roll <= 0.98:  # goodwill refund nobody recorded as after-sales
                add(method, merchant_order_no=order["order_no"], kind="refund", amount_fen=-(total // 10),
                    txn_time=when + pd.Timedelta(hours=50), payer_name=None, memo="补偿")  # fmt: skip
        elif method in ("bank_transfer", "installment") and accepted[i]:
            n = max(int(order.get("installments") or 1), 1) if method == "installment" else 1
            amount = total // n + total % n
            bank = "bank:icbc" if rng.random() < 0.7 else "bank:cmb"
            paid_at = when + pd.Timedelta(hours=int(rng.integers(2, 72)))
            if roll < 0.06:
                continue  # not paid yet
            if roll < 0.10:
                amount = int(amount * 0.9)  # short-paid
            memo = (
                f"货款 {order['order_no']}" if roll < 0.70
                else f"订单{order['channel_order_id']}" if roll < 0.78
                else "货款"
            )  # fmt: skip
            add(bank, merchant_order_no=None, kind="credit", amount_fen=amount, txn_time=paid_at,
                payer_name=order["customer_name"], memo=memo, payer_account=f"62{stable_digits('acct', order['customer_name'], n=14)}")  # fmt: skip
    # strangers, provider withdrawals and our own outgoing payments
    start = placed.min() if len(placed) else pd.Timestamp.now(tz="UTC")
    for k, (name, amount) in enumerate([("陈某某", 88800), ("个体户王记", 1250000), ("未知单位", 30000)]):
        add("bank:icbc", merchant_order_no=None, kind="credit", amount_fen=amount,
            txn_time=start + pd.Timedelta(hours=5 + 20 * k), payer_name=name, memo="转账", payer_account="6228000000")  # fmt: skip
    add("bank:icbc", merchant_order_no=None, kind="credit", amount_fen=1_234_567, txn_time=start + pd.Timedelta(hours=30),
        payer_name="支付宝（中国）网络技术有限公司", memo="支付宝提现", payer_account="1202020000")  # fmt: skip
    add("bank:icbc", merchant_order_no=None, kind="debit", amount_fen=-350_000, txn_time=start + pd.Timedelta(hours=33),
        payer_name="重庆顺达物流有限公司", memo="运费结算", payer_account="3100000000")  # fmt: skip
    frames = {source: pd.DataFrame(rows) for source, rows in out.items()}
    if "alipay" in frames and len(frames["alipay"]):  # one fee charged above the contract rate
        fees = contract_fee(frames["alipay"]["amount_fen"], 0.006)
        fees[0] = fees[0] + 100
        frames["alipay"]["fee_fen"] = fees
    cod = shipments[(shipments["cod_amount_fen"] > 0) & shipments["delivered_at"].notna()]
    cod = cod.merge(orders[["id", "order_no", "customer_name"]], left_on="order_id", right_on="id")
    remitted = cod[rng.random(len(cod)) < 0.8]
    for carrier, part in remitted.groupby("carrier"):
        delivered = pd.to_datetime(part["delivered_at"], utc=True)
        frames[f"cod:{carrier}"] = pd.DataFrame(
            {"waybill_no": part["waybill_no"].to_numpy(), "merchant_order_no": part["order_no"].to_numpy(),
             "payer_name": [n[0] + "**" if isinstance(n, str) and n else "" for n in part["customer_name"]],
             "amount_fen": part["cod_amount_fen"].to_numpy(), "signed_at": delivered.to_numpy(),
             "txn_time": (delivered + pd.Timedelta(days=3)).to_numpy(), "kind": "cod"}
        )  # fmt: skip
    cutoff = pd.Timestamp(now or datetime.now(UTC))
    frames = {
        k: f[pd.to_datetime(f["txn_time"], utc=True) <= cutoff].reset_index(drop=True)
        for k, f in frames.items()
    }
    return {k: f for k, f in frames.items() if len(f)}


def _cod_contract(carrier: str) -> tuple[float, int]:
    """The carrier charges what its rate card in the policy file says (so the demo has no false fee cases)."""
    card = get_settings().fulfilment.rate_cards.get(carrier)
    return (card.cod_fee_pct / 100, decimal_to_fen(card.cod_min_yuan)) if card else (0.01, 0)


def write_demo_files(frames: dict[str, pd.DataFrame], inbox: str | Path) -> list[Path]:
    """One file per source and day (as the providers deliver them) into the inbox layout the flow reads."""
    inbox = Path(inbox)
    written = []
    for source, frame in frames.items():
        if frame.empty:
            continue
        days = pd.to_datetime(frame["txn_time"], utc=True).dt.tz_convert(BUSINESS_TZ).dt.date
        for day, part in frame.groupby(days):
            kind, _, key = source.partition(":")
            if kind == "alipay":
                written.append(
                    write_alipay_bill(part, inbox / "alipay" / f"alipay-{day:%Y%m%d}.zip", day=day)
                )
            elif kind == "wechatpay":
                written.append(
                    write_wechatpay_bill(part, inbox / "wechatpay" / f"wechatpay-{day:%Y%m%d}.csv")
                )
            elif kind == "bank":
                name = bank_file_name(key, DEFAULT_ACCOUNTS[source], day)
                written.append(
                    write_bank_statement(part, inbox / f"bank-{key}" / name, template_key=key, day=day)
                )
            elif kind == "cod":
                rate, minimum = _cod_contract(key)
                written.append(
                    write_cod_remittance(part, inbox / f"cod-{key}" / f"cod-{key}-{day:%Y%m%d}.csv", carrier=key,
                                         remit_date=day, fee_rate=rate, fee_min_fen=minimum)
                )  # fmt: skip
    return written


@flow(name="settlement-demo", log_prints=True, flow_run_name=run_name("settlement demo"))
def settlement_demo(seed: int = 7) -> dict:
    """`make demo`: the stand-ins deliver the bills, statements and COD remittances for the orders in the store
    (with the usual troubles mixed in) into the settlement inbox; then the reconciliation and the weekly analysis
    run as subflows."""
    o, s = schema.orders.c, schema.shipments.c
    with get_engine().connect() as conn:
        order_frame = read_frame(
            conn,
            select(o.id, o.order_no, o.channel_order_id, o.customer_name, o.payment_method, o.order_total_fen,
                   o.order_time, o.state, o.installments),
        )  # fmt: skip
        shipment_frame = read_frame(
            conn,
            select(s.order_id, s.carrier, s.waybill_no, s.cod_amount_fen, s.delivered_at).where(s.waybill_no.is_not(None)),
        )  # fmt: skip
    frames = demo_payments(order_frame, shipment_frame, seed=seed)
    written = write_demo_files(frames, inbox_dir())
    print(f"stand-ins delivered {len(written)} payment files into {inbox_dir()}")
    days = pd.concat([pd.to_datetime(f["txn_time"], utc=True) for f in frames.values() if len(f)])
    local = days.dt.tz_convert(BUSINESS_TZ).dt.date
    period = f"{local.min()}..{local.max()}" if len(local) else None
    reconciliation = reconcile_settlements(period=period)
    analysis = settlement_analysis()
    return {"files": len(written), "period": period, "report": reconciliation["report"],
            "analysis_workbook": analysis["workbook"]}  # fmt: skip
