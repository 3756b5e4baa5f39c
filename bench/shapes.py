"""Real-shaped orders for benchmarks: every column varies the way a seller's orders do.

Repeat customers with a long tail (Zipf), people and firms, addresses across every province with a third local to
Chongqing, several channels, payment methods and states in realistic shares, skewed item popularity, order times
over a month with a daily rhythm. Seeded, so both sides of a benchmark see the same rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DIVISIONS = Path(__file__).resolve().parent.parent / "yidi" / "data" / "divisions.csv"
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华玉飞鹏辉建国志红文斌宇浩然欣怡子轩梓涵")
FIRM_WORDS = list("恒通达盛鑫源华泰丰利宏兴嘉瑞博远创新")
STREETS = ["人民路", "解放路", "中山路", "建设路", "长江路", "滨江路", "新华路", "和平路", "学府大道", "科技园路",
           "工业园区", "金沙江路", "朝阳北路", "迎宾大道", "文化路"]  # fmt: skip
CHANNELS = (["taobao", "website", "phone", "email", "fax", "spreadsheet"], [0.46, 0.22, 0.12, 0.1, 0.03, 0.07])
METHODS = (["alipay", "wechatpay", "bank_transfer", "cod", "installment", "credit"], [0.38, 0.3, 0.14, 0.1, 0.03, 0.05])
STATES = (["received", "pending_review", "approved", "allocated", "shipped", "in_transit", "delivered", "settled",
           "closed", "auto_rejected", "cancelled"],
          [0.05, 0.06, 0.04, 0.04, 0.05, 0.12, 0.18, 0.2, 0.2, 0.03, 0.03])  # fmt: skip


def districts() -> pd.DataFrame:
    """Every county-level division with its province and city names (Hong Kong, Macau, Taiwan left out)."""
    div = pd.read_csv(DIVISIONS, dtype=str)
    name = dict(zip(div["code"], div["name"], strict=True))
    level3 = div[(div["level"] == "3") & ~div["code"].str.match(r"^(71|81|82)")].copy()
    level3["province"] = level3["code"].str[:2].add("0000").map(name)
    city = level3["parent"].map(name)
    level3["city"] = city.where(~level3["parent"].str.endswith("0000"), level3["province"])
    return level3.rename(columns={"name": "district"})[["code", "province", "city", "district"]].reset_index(drop=True)


def _people(rng: np.random.Generator, k: int) -> np.ndarray:
    people = np.char.add(rng.choice(SURNAMES, k), np.char.add(rng.choice(GIVEN, k), rng.choice(GIVEN, k)))
    firms = np.char.add(np.char.add(rng.choice(FIRM_WORDS, k), rng.choice(FIRM_WORDS, k)),
                        rng.choice(["机电有限公司", "商贸有限公司", "建材经营部", "科技有限公司"], k))  # fmt: skip
    return np.where(rng.random(k) < 0.25, firms, people)


def real_orders(n: int, seed: int = 11) -> pd.DataFrame:
    """``n`` orders as a store row would hold them (the columns ``yidi.schema.orders`` takes from intake)."""
    rng = np.random.default_rng(seed)
    places = districts()
    customers = max(n // 2, 10)
    # Two orders in five come from a skewed set of regulars, the rest from anyone (many buy once).
    regulars = (max(customers // 20, 1) * rng.random(n) ** 3).astype(np.int64)
    who = np.where(rng.random(n) < 0.4, regulars, rng.integers(0, customers, n))
    names = _people(rng, customers)
    phones = (13_000_000_000 + rng.choice(999_999_999, customers, replace=False)).astype(str)
    local = rng.random(customers) < 0.33
    chongqing = places.index[places["code"].str.startswith("50")].to_numpy()
    home = np.where(local, rng.choice(chongqing, customers), rng.integers(0, len(places), customers))
    place = places.iloc[home[who]].reset_index(drop=True)
    detail = (pd.Series(rng.choice(STREETS, customers)[who]) + pd.Series(rng.integers(1, 2000, customers)[who]).astype(str)
              + "号" + pd.Series(rng.integers(1, 30, customers)[who]).astype(str) + "栋"
              + pd.Series(rng.integers(101, 3200, customers)[who]).astype(str) + "室")  # fmt: skip
    ids = np.arange(n)
    channel = rng.choice(CHANNELS[0], n, p=CHANNELS[1])
    # Item popularity is skewed: order values follow a few popular price points plus a long tail.
    goods = np.where(rng.random(n) < 0.6, rng.choice([5_900, 12_900, 29_900, 69_900, 159_900], n),
                     rng.lognormal(11, 1.1, n).astype(np.int64) + 100)  # fmt: skip
    discount = np.where(rng.random(n) < 0.2, (goods * rng.uniform(0.02, 0.15, n)).astype(np.int64), 0)
    freight = np.where(rng.random(n) < 0.7, 0, rng.choice([800, 1_000, 1_500, 2_000], n))
    seconds = rng.integers(0, 30 * 86_400, n)
    hour_bias = (np.sin((seconds % 86_400) / 86_400 * 2 * np.pi - 1.8) + 1.2).clip(0.1)
    seconds = np.where(rng.random(n) < hour_bias / 2.2, seconds, rng.integers(0, 30 * 86_400, n))
    frame = pd.DataFrame(
        {
            "order_no": pd.Series(ids).map("YD{:010d}".format),
            "channel": channel,
            "channel_order_id": pd.Series(channel).str[:2].str.upper() + pd.Series(rng.permutation(n) + 10**11).astype(str),
            "customer_name": names[who],
            "customer_phone": phones[who],
            "ship_province": place["province"],
            "ship_city": place["city"],
            "ship_district": place["district"],
            "ship_detail": detail,
            "region": np.where(place["code"].str.startswith("50"), "local", "remote"),
            "payment_method": rng.choice(METHODS[0], n, p=METHODS[1]),
            "goods_total_fen": goods,
            "order_total_fen": goods - discount + freight,
            "state": rng.choice(STATES[0], n, p=STATES[1]),
            "order_time": pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.sort(seconds), unit="s"),
        }
    )
    return frame.astype({c: "string" for c in ("order_no", "channel_order_id", "customer_phone")})
