"""reconcile: matching 1M payment lines against 1M orders with the reconciliation rules.

Data: 1M orders (online, bank transfer, COD, instalment mixes as in the demo) and 1M payment lines: Alipay/WeChat
lines by merchant order number (some refunds, some by the channel's id), COD remittances by waybill, bank credits
naming an order in the memo (some naming several orders), bank credits with only the payer's name and amount, and
lines that belong to no order. Ours: ``tasks.settlement.match.match_lines`` (the function the flow runs). Baseline: a
hand-written pandas implementation of the same rules (merges on the keys, memo tokens by regex, amount join plus
rapidfuzz name score in a date window), without ours' tolerance range join, many-to-one allocation or ambiguity
handling. The store is not involved on either side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NAME = "reconcile"
DEFAULT_N = 1_000_000
TARGET = 2.0
BASELINE = "hand-written pandas merges of the same rules (keys, memo tokens, amount+name+date)"

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰飞鹏辉")
CITIES = [
    "重庆",
    "成都",
    "贵阳",
    "昆明",
    "西安",
    "武汉",
    "长沙",
    "广州",
    "深圳",
    "杭州",
    "南京",
    "上海",
    "北京",
]


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    people = np.char.add(rng.choice(SURNAMES, n), np.char.add(rng.choice(GIVEN, n), rng.choice(GIVEN, n)))
    firms = np.char.add(np.char.add(rng.choice(CITIES, n), np.char.add(rng.choice(GIVEN, n), rng.choice(GIVEN, n))),
                        "机电有限公司")  # fmt: skip
    return np.where(rng.random(n) < 0.3, firms, people)


def make_data(n: int, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-09-01", tz="UTC")
    customers = _names(rng, max(n // 20, 10))
    ids = np.arange(1, n + 1)
    method = rng.choice(
        ["alipay", "wechatpay", "bank_transfer", "cod", "installment"], n, p=[0.42, 0.33, 0.15, 0.07, 0.03]
    )
    total = rng.integers(1_000, 5_000_000, n)
    order_time = start + pd.to_timedelta(rng.integers(0, 60 * 24 * 60, n), unit="min")
    orders = pd.DataFrame(
        {
            "id": ids,
            "order_no": pd.Series(ids).map("YD{:015d}".format).astype("string"),
            "channel_order_id": pd.Series(ids).map("T{:014d}".format).astype("string"),
            "customer_id": rng.integers(1, len(customers) + 1, n),
            "order_total_fen": total,
            "outstanding_fen": total,
            "order_time": order_time,
            "due_time": order_time + pd.Timedelta(days=1),
            "state": "approved",
            "payment_method": pd.Series(method, dtype="string"),
        }
    )
    orders["customer_name"] = pd.Series(customers[orders["customer_id"] - 1], dtype="string")
    n_inst = np.where(method == "installment", 3, 1)
    orders["next_due_fen"] = total // n_inst + total % n_inst

    # payment lines: each picks an order of its kind
    by_method = {
        m: np.flatnonzero(method == m) for m in ("alipay", "wechatpay", "bank_transfer", "cod", "installment")
    }
    shares = {
        "online": 0.74,
        "refund": 0.02,
        "cod": 0.06,
        "memo": 0.10,
        "memo_multi": 0.01,
        "fuzzy": 0.05,
        "unknown": 0.02,
    }
    counts = {k: int(n * v) for k, v in shares.items()}
    counts["online"] += n - sum(counts.values())
    online_orders = np.concatenate([by_method["alipay"], by_method["wechatpay"]])
    bank_orders = np.concatenate([by_method["bank_transfer"], by_method["installment"]])
    parts = []
    line_id = iter(range(1, 10 * n))

    def frame(k: int, **cols) -> pd.DataFrame:
        base = {"id": [next(line_id) for _ in range(k)], "source": "alipay", "kind": "payment", "merchant_order_no": None,
                "provider_txn_id": None, "original_txn_id": None, "payer_name": None, "memo": None, "waybill_no": None}  # fmt: skip
        base.update(cols)
        return pd.DataFrame(base)

    pick = rng.choice(online_orders, counts["online"])
    by_channel = rng.random(len(pick)) < 0.05
    keys = np.where(
        by_channel, orders["channel_order_id"].to_numpy()[pick], orders["order_no"].to_numpy()[pick]
    )
    online = frame(
        len(pick), source=np.where(method[pick] == "alipay", "alipay", "wechatpay"), merchant_order_no=keys,
        provider_txn_id=pd.Series(np.arange(len(pick))).map("P{:012d}".format).to_numpy(), amount_fen=total[pick],
        txn_time=order_time[pick] + pd.Timedelta(minutes=2),
    )  # fmt: skip
    parts.append(online)
    refunded = rng.choice(len(online), counts["refund"], replace=False)
    parts.append(
        frame(
            len(refunded), source=online["source"].to_numpy()[refunded], kind="refund",
            merchant_order_no=np.where(rng.random(len(refunded)) < 0.5, online["merchant_order_no"].to_numpy()[refunded], None),
            original_txn_id=online["provider_txn_id"].to_numpy()[refunded],
            amount_fen=-(online["amount_fen"].to_numpy()[refunded] // 2),
            txn_time=(online["txn_time"].iloc[refunded] + pd.Timedelta(days=3)).to_numpy(),
        )
    )  # fmt: skip
    cod_pick = rng.choice(by_method["cod"], counts["cod"], replace=False)
    shipments = pd.DataFrame(
        {"carrier": "shunfeng", "waybill_no": pd.Series(by_method["cod"]).map("SF{:013d}".format).astype("string"),
         "order_id": ids[by_method["cod"]]}
    )  # fmt: skip
    parts.append(
        frame(
            len(cod_pick), source="cod:shunfeng", kind="cod", waybill_no=pd.Series(cod_pick).map("SF{:013d}".format).to_numpy(),
            amount_fen=total[cod_pick], txn_time=order_time[cod_pick] + pd.Timedelta(days=5),
        )
    )  # fmt: skip
    memo_pick = rng.choice(bank_orders, counts["memo"])
    parts.append(
        frame(
            len(memo_pick), source="bank:icbc", kind="credit",
            memo=("汇入汇款 货款 " + orders["order_no"].to_numpy()[memo_pick].astype(str)),
            payer_name=orders["customer_name"].to_numpy()[memo_pick], amount_fen=total[memo_pick],
            txn_time=order_time[memo_pick] + pd.Timedelta(days=2),
        )
    )  # fmt: skip
    a = rng.choice(bank_orders, counts["memo_multi"])
    b = rng.choice(bank_orders, counts["memo_multi"])
    nos = orders["order_no"].to_numpy()
    parts.append(
        frame(
            len(a), source="bank:icbc", kind="credit", memo=("货款 " + nos[a].astype(str) + "、" + nos[b].astype(str)),
            payer_name=orders["customer_name"].to_numpy()[a], amount_fen=total[a] + total[b],
            txn_time=order_time[a] + pd.Timedelta(days=3),
        )
    )  # fmt: skip
    fuzzy_pick = rng.choice(bank_orders, counts["fuzzy"], replace=False)
    payer = orders["customer_name"].to_numpy()[fuzzy_pick].astype(str)
    payer = np.where(rng.random(len(payer)) < 0.5, np.char.replace(payer, "有限公司", ""), payer)
    parts.append(
        frame(
            len(fuzzy_pick), source="bank:cmb", kind="credit", payer_name=payer, memo="货款",
            amount_fen=orders["next_due_fen"].to_numpy()[fuzzy_pick], txn_time=order_time[fuzzy_pick] + pd.Timedelta(days=4),
        )
    )  # fmt: skip
    parts.append(
        frame(
            counts["unknown"], source="bank:icbc", kind="credit", payer_name=_names(rng, counts["unknown"]), memo="转账",
            amount_fen=rng.integers(1_000, 5_000_000, counts["unknown"]),
            txn_time=start + pd.to_timedelta(rng.integers(0, 60 * 24 * 60, counts["unknown"]), unit="min"),
        )
    )  # fmt: skip
    lines = pd.concat(parts, ignore_index=True)
    for column in ("source", "kind", "merchant_order_no", "provider_txn_id", "original_txn_id", "payer_name", "memo",
                   "waybill_no"):  # fmt: skip
        lines[column] = lines[column].astype("string")
    lines["txn_time"] = pd.to_datetime(lines["txn_time"], utc=True)
    lines["amount_fen"] = lines["amount_fen"].astype("int64")
    return {"orders": orders, "lines": lines, "shipments": shipments}


def prepare(n: int, workdir: Path, case=None) -> dict:
    from yidi.settings import load_settings

    data = make_data(n)
    data["policy"] = load_settings().settlement
    return data


def ours(ctx: dict) -> None:
    from tasks.settlement.match import match_lines

    result = match_lines(ctx["lines"], ctx["orders"], ctx["policy"], shipments=ctx["shipments"])
    ctx["_last"] = result


def baseline(ctx: dict) -> None:
    hand_written_match(ctx["lines"], ctx["orders"], ctx["shipments"], ctx["policy"])


def hand_written_match(
    lines: pd.DataFrame, orders: pd.DataFrame, shipments: pd.DataFrame, policy
) -> pd.DataFrame:
    """The same rules as plain pandas merges, the way one would write them by hand."""
    from rapidfuzz import fuzz
    from rapidfuzz.process import cpdist

    out = []
    left = lines
    cod = left[left["kind"] == "cod"].assign(carrier=lambda f: f["source"].str.removeprefix("cod:"))
    hit = cod.merge(shipments, on=["carrier", "waybill_no"])[["id", "order_id", "amount_fen"]]
    out.append(hit.assign(rule="cod_waybill"))
    left = left[~left["id"].isin(hit["id"])]
    for key, rule in (("order_no", "merchant_order_no"), ("channel_order_id", "channel_order_id")):
        hit = left.merge(
            orders[[key, "id"]].rename(columns={"id": "order_id"}), left_on="merchant_order_no", right_on=key
        )
        out.append(hit[["id", "order_id", "amount_fen"]].assign(rule=rule))
        left = left[~left["id"].isin(hit["id"])]
    done = pd.concat(out)
    payments = done.merge(lines[["id", "source", "provider_txn_id"]], on="id")
    hit = left.merge(payments[["source", "provider_txn_id", "order_id"]],
                     left_on=["source", "original_txn_id"], right_on=["source", "provider_txn_id"])  # fmt: skip
    out.append(hit[["id", "order_id", "amount_fen"]].assign(rule="refund_original"))
    left = left[~left["id"].isin(hit["id"])]
    tokens = left[["id", "memo"]].dropna()
    tokens = tokens.assign(
        token=tokens["memo"].str.upper().str.findall(policy.memo_reference_pattern)
    ).explode("token")
    hit = tokens.merge(
        orders[["order_no", "id"]].rename(columns={"id": "order_id"}), left_on="token", right_on="order_no"
    )
    hit = hit.merge(left[["id", "amount_fen"]], on="id")
    out.append(hit[["id", "order_id", "amount_fen"]].assign(rule="memo_order_no"))
    left = left[~left["id"].isin(hit["id"])]
    fuzzy = left[(left["kind"] == "credit") & left["payer_name"].notna()]
    targets = orders[orders["payment_method"].isin(policy.fuzzy_payment_methods)]
    pairs = fuzzy.merge(targets[["id", "next_due_fen", "customer_name", "order_time"]].rename(columns={"id": "order_id"}),
                        left_on="amount_fen", right_on="next_due_fen")  # fmt: skip
    days = (pairs["txn_time"] - pairs["order_time"]).dt.days
    pairs = pairs[(days >= -policy.match_days_before_order) & (days <= policy.match_days_after_due)]
    pairs = pairs.assign(
        score=cpdist(pairs["payer_name"].tolist(), pairs["customer_name"].tolist(), scorer=fuzz.WRatio)
    )
    pairs = (
        pairs[pairs["score"] >= policy.name_min_score]
        .sort_values("score", ascending=False)
        .drop_duplicates("id")
    )
    out.append(pairs[["id", "order_id", "amount_fen"]].assign(rule="amount_name_date"))
    return pd.concat(out, ignore_index=True)


def extra(ctx: dict) -> dict:
    from tasks.settlement.match import match_lines

    result = match_lines(ctx["lines"], ctx["orders"], ctx["policy"], shipments=ctx["shipments"])
    base = hand_written_match(ctx["lines"], ctx["orders"], ctx["shipments"], ctx["policy"])
    lines = len(ctx["lines"])
    return {
        "orders": len(ctx["orders"]),
        "lines": lines,
        "matched_lines_ours": int(result.matches["payment_line_id"].nunique()),
        "matched_lines_baseline": int(base["id"].nunique()),
        "ignored_lines_ours": len(result.ignored),
        "by_rule_ours": {
            k: int(v) for k, v in result.matches.groupby("rule")["payment_line_id"].nunique().items()
        },
    }
