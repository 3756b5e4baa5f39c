"""reconcile: matching 1M payment lines against 1M orders with the reconciliation rules.

Data: 1M orders (online, bank transfer, COD, instalment mixes as in the demo) and 1M payment lines: Alipay/WeChat
lines by merchant order number (some refunds, some by the channel's id), COD remittances by waybill, bank credits
naming an order in the memo (some naming several orders), bank credits with only the payer's name and amount, and
lines that belong to no order. Ours: ``tasks.settlement.match.match_lines`` (the function the flow runs). Baseline:
the same rules written as DuckDB SQL (``duckdb_match``: the key joins, memo tokens with regexp_extract_all, the
many-to-one split by window functions, the amount-bucket join with the tolerance and date filters, acceptance with
the ambiguity margin, the one-transfer-for-several-orders rule), with the same name scorer (rapidfuzz WRatio on the
same normalised names). ``parity`` checks both make the same matches (line, order, amount, rule, score) before
anything is timed. The store is not involved on either side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NAME = "reconcile"
DEFAULT_N = 1_000_000
TARGET = 1.5
BASELINE = "the same rules as DuckDB SQL, same name scorer"

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
    duckdb_match(ctx["lines"], ctx["orders"], ctx["shipments"], ctx["policy"])


def parity(ctx: dict) -> None:
    """Both sides make the same matches: line, order, amount, rule and score (to 0.1)."""
    from tasks.settlement.match import match_lines

    mine = match_lines(ctx["lines"], ctx["orders"], ctx["policy"], shipments=ctx["shipments"]).matches
    theirs = duckdb_match(ctx["lines"], ctx["orders"], ctx["shipments"], ctx["policy"])
    key = ["payment_line_id", "order_id", "amount_fen", "rule", "score"]

    def rows(frame):
        frame = frame[key].astype({"payment_line_id": "int64", "order_id": "int64", "amount_fen": "int64",
                                   "rule": str, "score": "float64"})  # fmt: skip
        return set(frame.assign(score=frame["score"].round(1)).itertuples(index=False, name=None))

    a, b = rows(mine), rows(theirs)
    only_ours, only_theirs = sorted(a - b)[:5], sorted(b - a)[:5]
    assert a == b, f"{len(a - b)} matches only ours (e.g. {only_ours}), {len(b - a)} only the baseline (e.g. {only_theirs})"


def extra(ctx: dict) -> dict:
    from tasks.settlement.match import match_lines

    result = match_lines(ctx["lines"], ctx["orders"], ctx["policy"], shipments=ctx["shipments"])
    base = duckdb_match(ctx["lines"], ctx["orders"], ctx["shipments"], ctx["policy"])
    lines = len(ctx["lines"])
    return {
        "orders": len(ctx["orders"]),
        "lines": lines,
        "matched_lines_ours": int(result.matches["payment_line_id"].nunique()),
        "matched_lines_baseline": int(base["payment_line_id"].nunique()),
        "ignored_lines_ours": len(result.ignored),
        "by_rule_ours": {
            k: int(v) for k, v in result.matches.groupby("rule")["payment_line_id"].nunique().items()
        },
    }


# --- the baseline: the same rules as DuckDB SQL --------------------------------------------------------------------


def score_pairs(pairs: pd.DataFrame) -> None:
    """Name (rapidfuzz WRatio on the normalised names), amount and date scores of candidate pairs, as ours weighs
    them; adds ``name_score`` and ``score``."""
    from rapidfuzz import fuzz
    from rapidfuzz.process import cpdist

    from tasks.settlement.match import normalise_names

    name = cpdist(normalise_names(pairs["payer_name"]), normalise_names(pairs["customer_name"]), scorer=fuzz.WRatio,
                  workers=-1)  # fmt: skip
    pairs["name_score"] = name
    amount_score = 100.0 * (1.0 - (pairs["amount_fen"] - pairs["target_fen"]).abs() / (pairs["tol_fen"] + 1.0))
    pairs["score"] = 0.6 * name + 0.25 * amount_score + 0.15 * (100.0 - 2.0 * pairs["days"]).clip(0.0, 100.0)


def duckdb_match(lines: pd.DataFrame, orders: pd.DataFrame, shipments: pd.DataFrame, policy) -> pd.DataFrame:
    """Every rule of ``match_lines`` that the data exercises, as DuckDB SQL, with the same name scorer (rapidfuzz
    WRatio on the same normalised names) for the fuzzy pairs. Returns payment_line_id, order_id, amount_fen, rule,
    score."""
    import duckdb

    from tasks.settlement.match import CLOSED_FOR_PAYMENT

    abs_tol = int(round(float(policy.amount_tolerance_yuan) * 100))
    pct = float(policy.amount_tolerance_pct) / 100

    def tol(x: str) -> str:
        return f"greatest({abs_tol}, floor(abs({x}) * {pct}))::BIGINT"

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute("SET enable_progress_bar = false")
    con.register("lines_df", lines)
    con.register("orders_df", orders)
    con.register("ships_df", shipments)
    counterparties = [str(p) for p in policy.ignore_counterparties]
    memo_words = "|".join(__import__("re").escape(w) for w in policy.ignore_memo_words) or "$^"
    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    con.execute(
        f"""CREATE TEMP VIEW l AS SELECT *, starts_with(source, 'bank:') AND (list_contains([{', '.join(map(literal, counterparties)) or "''"}]::VARCHAR[], payer_name)
                   OR regexp_matches(coalesce(memo, ''), {literal(memo_words)})) AS skip FROM lines_df"""
    )
    con.execute("CREATE TEMP VIEW o AS SELECT * FROM orders_df")
    # 2./3. COD waybill, our order number, the channel's order id (only where it names one order)
    con.execute("""
        CREATE TEMP TABLE m AS
        WITH cod AS (
            SELECT l.id, s.order_id, l.amount_fen, 'cod_waybill' AS rule, 100.0 AS score
            FROM l JOIN (SELECT DISTINCT ON (carrier, waybill_no) carrier, waybill_no, order_id FROM ships_df) s
              ON s.carrier = replace(l.source, 'cod:', '') AND s.waybill_no = l.waybill_no
            WHERE NOT l.skip AND l.kind = 'cod'),
        by_no AS (
            SELECT l.id, o.id AS order_id, l.amount_fen, 'merchant_order_no' AS rule, 100.0 AS score
            FROM l JOIN o ON o.order_no = l.merchant_order_no
            WHERE NOT l.skip AND NOT EXISTS (SELECT 1 FROM cod WHERE cod.id = l.id)),
        channel AS (SELECT channel_order_id, min(id) AS order_id FROM o WHERE channel_order_id IS NOT NULL
                    GROUP BY 1 HAVING count(*) = 1),
        by_channel AS (
            SELECT l.id, c.order_id, l.amount_fen, 'channel_order_id' AS rule, 98.0 AS score
            FROM l JOIN channel c ON c.channel_order_id = l.merchant_order_no
            WHERE NOT l.skip AND NOT EXISTS (SELECT 1 FROM cod WHERE cod.id = l.id) AND NOT EXISTS (SELECT 1 FROM by_no WHERE by_no.id = l.id))
        SELECT * FROM cod UNION ALL SELECT * FROM by_no UNION ALL SELECT * FROM by_channel""")
    # 4. refunds by the payment they refund, matched in this run
    con.execute("""
        INSERT INTO m
        SELECT r.id, m.order_id, r.amount_fen, 'refund_original', 100.0
        FROM l r JOIN l p ON p.source = r.source AND p.provider_txn_id = r.original_txn_id
                 JOIN m ON m.id = p.id
        WHERE NOT r.skip AND r.original_txn_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM m x WHERE x.id = r.id)""")
    # 5. order numbers in the memo: tokens looked up raw, then upper-cased; several orders share the line
    con.execute("""
        CREATE TEMP TABLE tok AS
        WITH raw AS (
            SELECT id, unnest(regexp_extract_all(memo, ?)) AS raw, generate_subscripts(regexp_extract_all(memo, ?), 1) AS i
            FROM l WHERE memo IS NOT NULL AND NOT skip),
        keyed AS (SELECT id, raw, upper(raw) AS key, i FROM raw QUALIFY row_number() OVER (PARTITION BY id, upper(raw) ORDER BY i) = 1),
        pos AS (SELECT *, row_number() OVER (PARTITION BY id ORDER BY i) - 1 AS pos FROM keyed),
        channel AS (SELECT channel_order_id, min(id) AS order_id FROM o WHERE channel_order_id IS NOT NULL
                    GROUP BY 1 HAVING count(*) = 1),
        found AS (
            SELECT p.id, p.pos, 0 AS part, coalesce(a.id, b.id) AS order_id
            FROM pos p LEFT JOIN o a ON a.order_no = p.raw LEFT JOIN o b ON b.order_no = p.key
            UNION ALL
            SELECT p.id, p.pos, 1, coalesce(a.order_id, b.order_id)
            FROM pos p LEFT JOIN channel a ON a.channel_order_id = p.raw LEFT JOIN channel b ON b.channel_order_id = p.key)
        SELECT f.id, f.order_id, min(f.pos) AS pos FROM found f
        WHERE f.order_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM m x WHERE x.id = f.id)
        GROUP BY 1, 2""", [policy.memo_reference_pattern, policy.memo_reference_pattern])
    con.execute(f"""
        INSERT INTO m
        WITH t AS (
            SELECT t.id, t.order_id, l.amount_fen AS amount, greatest(coalesce(o.outstanding_fen, 0), 0) AS owed,
                   count(*) OVER w AS n, row_number() OVER (PARTITION BY t.id ORDER BY t.pos) AS k
            FROM tok t JOIN l ON l.id = t.id LEFT JOIN o ON o.id = t.order_id
            WINDOW w AS (PARTITION BY t.id)),
        single AS (
            SELECT id, order_id, amount AS amount_fen, 'memo_order_no' AS rule,
                   CASE WHEN abs(amount - owed) <= {tol('owed')} THEN 95.0 ELSE 85.0 END AS score
            FROM t WHERE n = 1),
        multi AS (
            SELECT *, sum(owed) OVER (PARTITION BY id ORDER BY k ROWS UNBOUNDED PRECEDING) - owed AS owed_before,
                   sum(owed) OVER (PARTITION BY id) AS owed_total, k = n AS last
            FROM t WHERE n > 1),
        shares AS (
            SELECT *, CASE WHEN last THEN 0 ELSE least(greatest(amount - owed_before, 0), owed) END AS share FROM multi),
        alloc AS (
            SELECT id, order_id, k,
                   CASE WHEN amount <= 0 OR owed_total = 0 THEN (CASE WHEN k = 1 THEN amount ELSE 0 END)
                        WHEN last THEN amount - sum(share) OVER (PARTITION BY id)
                        ELSE share END AS amount_fen,
                   CASE WHEN abs(owed_total - amount) <= {tol('greatest(owed_total, 1)')} THEN 95.0 ELSE 85.0 END AS score,
                   (amount <= 0 OR owed_total = 0) AND k = 1 AS whole_first
            FROM shares)
        SELECT id, order_id, amount_fen, rule, score FROM single
        UNION ALL
        SELECT id, order_id, amount_fen, 'memo_order_no', score FROM alloc WHERE amount_fen <> 0 OR whole_first""")
    # 6. amount (within tolerance of outstanding or next instalment) + payer name + date window
    closed = list(CLOSED_FOR_PAYMENT)
    con.execute(f"""
        CREATE TEMP TABLE tg AS
        WITH base AS (
            SELECT id AS order_id, customer_id, customer_name, outstanding_fen, next_due_fen, order_time AS anchor,
                   order_time - INTERVAL {int(policy.match_days_before_order)} DAY AS window_start,
                   greatest(coalesce(due_time, order_time), order_time) + INTERVAL {int(policy.match_days_after_due)} DAY AS window_end
            FROM o WHERE outstanding_fen > 0 AND NOT list_contains(?, state) AND customer_name IS NOT NULL
                     AND list_contains(?, coalesce(payment_method, 'bank_transfer')))
        , t AS (SELECT *, outstanding_fen AS target_fen FROM base
                UNION ALL SELECT *, next_due_fen FROM base WHERE next_due_fen > 0 AND next_due_fen <> outstanding_fen)
        SELECT *, {tol('target_fen')} AS tol_fen, target_fen - {tol('target_fen')} AS lo,
               target_fen + {tol('target_fen')} AS hi FROM t""",
                [closed, list(policy.fuzzy_payment_methods)])
    pairs = con.execute("""
        WITH w AS (SELECT max(tol_fen) + 1 AS width FROM tg),
        probe AS (SELECT l.*, (l.amount_fen // w.width) + d.k AS bucket
                  FROM l, w, (VALUES (-1), (0), (1)) d(k)
                  WHERE NOT l.skip AND l.kind = 'credit' AND l.payer_name IS NOT NULL AND l.amount_fen > 0
                    AND NOT EXISTS (SELECT 1 FROM m x WHERE x.id = l.id)),
        targets AS (SELECT tg.*, tg.target_fen // w.width AS bucket FROM tg, w)
        SELECT p.id, t.order_id, p.amount_fen, t.target_fen, t.tol_fen, p.payer_name, t.customer_name,
               abs(floor(epoch(p.txn_time - t.anchor) / 86400)) AS days
        FROM probe p JOIN targets t ON t.bucket = p.bucket
        WHERE p.amount_fen BETWEEN t.lo AND t.hi AND p.txn_time BETWEEN t.window_start AND t.window_end""").df()
    score_pairs(pairs)
    con.register("pairs", pairs)
    con.execute(f"""
        INSERT INTO m
        WITH ok AS (SELECT id, order_id, amount_fen, max(score) AS score FROM pairs
                    WHERE name_score >= {float(policy.name_min_score)} GROUP BY 1, 2, 3),
        ranked AS (SELECT *, row_number() OVER (PARTITION BY id ORDER BY score DESC) AS r,
                          lead(score) OVER (PARTITION BY id ORDER BY score DESC) AS second FROM ok),
        best AS (SELECT * FROM ranked WHERE r = 1 AND score >= {float(policy.auto_match_min_score)}
                   AND score - coalesce(second, -1e300) >= {float(policy.ambiguity_margin)})
        SELECT id, order_id, amount_fen, 'amount_name_date', round(score, 1) FROM best
        QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY score DESC, id) = 1""")
    # 7. one transfer for all of a customer's open orders: sum of outstanding within tolerance, same name rule
    con.execute("""
        CREATE TEMP TABLE party AS
        WITH t AS (SELECT *, coalesce(CAST(customer_id AS VARCHAR), 'name:' || customer_name) AS party
                   FROM tg WHERE target_fen = outstanding_fen)
        SELECT party, arg_min(customer_name, order_id) AS customer_name, sum(outstanding_fen)::BIGINT AS target_fen,
               max(window_start) AS window_start, min(window_end) AS window_end, max(anchor) AS anchor
        FROM t GROUP BY party HAVING count(*) >= 2 AND max(window_start) <= min(window_end)""")
    pairs = con.execute(f"""
        WITH pt AS (SELECT *, {tol('target_fen')} AS tol_fen FROM party),
        w AS (SELECT max(tol_fen) + 1 AS width FROM pt),
        probe AS (SELECT l.*, (l.amount_fen // w.width) + d.k AS bucket
                  FROM l, w, (VALUES (-1), (0), (1)) d(k)
                  WHERE NOT l.skip AND l.kind = 'credit' AND l.payer_name IS NOT NULL AND l.amount_fen > 0
                    AND NOT EXISTS (SELECT 1 FROM m x WHERE x.id = l.id)),
        targets AS (SELECT pt.*, pt.target_fen // w.width AS bucket FROM pt, w)
        SELECT p.id, t.party, p.amount_fen, t.target_fen, t.tol_fen, p.payer_name, t.customer_name,
               abs(floor(epoch(p.txn_time - t.anchor) / 86400)) AS days
        FROM probe p JOIN targets t ON t.bucket = p.bucket
        WHERE abs(p.amount_fen - t.target_fen) <= t.tol_fen AND p.txn_time BETWEEN t.window_start AND t.window_end""").df()
    if len(pairs):
        score_pairs(pairs)
        con.register("mpairs", pairs)
        con.execute(f"""
            INSERT INTO m
            WITH ok AS (SELECT id, party, amount_fen, max(score) AS score FROM mpairs
                        WHERE name_score >= {float(policy.name_min_score)} GROUP BY 1, 2, 3),
            ranked AS (SELECT *, row_number() OVER (PARTITION BY id ORDER BY score DESC) AS r,
                              lead(score) OVER (PARTITION BY id ORDER BY score DESC) AS second FROM ok),
            best AS (SELECT * FROM ranked WHERE r = 1 AND score >= {float(policy.auto_match_min_score)}
                       AND score - coalesce(second, -1e300) >= {float(policy.ambiguity_margin)}
                     QUALIFY row_number() OVER (PARTITION BY party ORDER BY score DESC, id) = 1),
            members AS (
                SELECT b.id, t.order_id, b.amount_fen AS amount, t.outstanding_fen AS owed, b.score,
                       row_number() OVER (PARTITION BY b.id ORDER BY t.order_id) AS k, count(*) OVER (PARTITION BY b.id) AS n,
                       sum(t.outstanding_fen) OVER (PARTITION BY b.id ORDER BY t.order_id ROWS UNBOUNDED PRECEDING)
                         - t.outstanding_fen AS owed_before,
                       sum(t.outstanding_fen) OVER (PARTITION BY b.id) AS owed_total
                FROM best b JOIN (SELECT *, coalesce(CAST(customer_id AS VARCHAR), 'name:' || customer_name) AS party
                                  FROM tg WHERE target_fen = outstanding_fen) t ON t.party = b.party),
            shares AS (SELECT *, CASE WHEN k = n THEN 0 ELSE least(greatest(amount - owed_before, 0), owed) END AS share
                       FROM members)
            SELECT id, order_id, CASE WHEN k = n THEN amount - sum(share) OVER (PARTITION BY id) ELSE share END,
                   'amount_name_date_multi', round(score, 1)
            FROM shares""")
    out = con.execute("SELECT id AS payment_line_id, order_id, amount_fen, rule, score FROM m").df()
    con.close()
    return out
