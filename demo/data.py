"""Deterministic demo data: a realistic catalog, customers in every province (Chongqing included), and orders.

The same seed always yields the same data, so demos and benchmarks are repeatable. Orders come out in a neutral
shape (one row per line) that each channel's stand-in turns into its own published format.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

# (province, city, district, street) — one real location per province; several in Chongqing and its neighbours.
LOCATIONS = [
    ("重庆市", "重庆市", "渝中区", "解放碑步行街88号"),
    ("重庆市", "重庆市", "沙坪坝区", "三峡广场12号"),
    ("重庆市", "重庆市", "万州区", "高笋塘商圈5号"),
    ("重庆市", "重庆市", "两江新区", "金开大道1001号"),
    ("重庆市", "重庆市", "酉阳县", "桃花源大道18号"),
    ("北京市", "北京市", "朝阳区", "建国路93号"),
    ("天津市", "天津市", "和平区", "南京路189号"),
    ("河北省", "石家庄市", "长安区", "中山东路39号"),
    ("山西省", "太原市", "小店区", "长风街123号"),
    ("内蒙古自治区", "呼和浩特市", "新城区", "新华大街1号"),
    ("辽宁省", "沈阳市", "和平区", "中华路21号"),
    ("吉林省", "长春市", "朝阳区", "人民大街5688号"),
    ("黑龙江省", "哈尔滨市", "南岗区", "红军街15号"),
    ("上海市", "上海市", "浦东新区", "世纪大道100号"),
    ("江苏省", "南京市", "鼓楼区", "中山北路30号"),
    ("浙江省", "杭州市", "西湖区", "文三路90号"),
    ("浙江省", "宁波市", "江北区", "人民路132号"),
    ("安徽省", "合肥市", "蜀山区", "长江西路8号"),
    ("福建省", "福州市", "鼓楼区", "五四路77号"),
    ("江西省", "南昌市", "东湖区", "八一大道357号"),
    ("山东省", "济南市", "历下区", "泉城路26号"),
    ("河南省", "郑州市", "金水区", "花园路39号"),
    ("湖北省", "武汉市", "江汉区", "解放大道690号"),
    ("湖南省", "长沙市", "岳麓区", "麓山南路2号"),
    ("广东省", "广州市", "天河区", "天河路208号"),
    ("广东省", "深圳市", "南山区", "科技园南区10号"),
    ("广西壮族自治区", "南宁市", "青秀区", "民族大道136号"),
    ("海南省", "海口市", "龙华区", "国贸大道2号"),
    ("四川省", "成都市", "武侯区", "人民南路四段1号"),
    ("四川省", "达州市", "通川区", "朝阳中路66号"),
    ("贵州省", "贵阳市", "南明区", "中华南路1号"),
    ("云南省", "昆明市", "五华区", "东风西路11号"),
    ("西藏自治区", "拉萨市", "城关区", "北京中路41号"),
    ("陕西省", "西安市", "雁塔区", "小寨东路1号"),
    ("甘肃省", "兰州市", "城关区", "东岗西路638号"),
    ("青海省", "西宁市", "城西区", "五四大街55号"),
    ("宁夏回族自治区", "银川市", "兴庆区", "解放西街2号"),
    ("新疆维吾尔自治区", "乌鲁木齐市", "天山区", "解放南路9号"),
]

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
)
GIVEN = [
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀兰",
    "霞",
]
COMPANY_WORDS = ["宏达", "鑫源", "华泰", "金桥", "恒通", "瑞丰", "嘉禾", "永盛", "天成", "博远"]
COMPANY_KINDS = ["机电设备有限公司", "商贸有限公司", "建材有限公司", "科技有限公司", "五金经营部"]

PRODUCTS = [
    # (name, spec, model, unit, price yuan, weight kg, volume m3, sourcing, lead days)
    ("摩托车发动机", "150cc 四冲程", "ZS150-A", "台", 3280.00, 32.0, 0.12, "stock", 0),
    ("摩托车头盔", "L码 3C认证", "HM-302", "顶", 189.00, 1.4, 0.02, "stock", 0),
    ("汽车刹车片", "前轮 陶瓷", "BP-7741", "套", 268.00, 2.1, 0.004, "stock", 0),
    ("火锅底料", "500g 牛油 麻辣", "HG-500", "袋", 39.90, 0.55, 0.001, "stock", 0),
    ("重庆小面调料", "300g", "XM-300", "盒", 25.80, 0.35, 0.001, "stock", 0),
    ("笔记本电脑", "14英寸 16G/512G", "NB-14P", "台", 5699.00, 1.6, 0.008, "buy", 7),
    ("工业变频器", "7.5kW 380V", "VF-75", "台", 4150.00, 6.5, 0.02, "make_to_order", 15),
    ("齿轮减速机", "速比 1:30", "RG-30", "台", 2360.00, 45.0, 0.06, "make_to_order", 20),
    ("不锈钢保温杯", "500ml", "BW-500", "个", 79.00, 0.4, 0.002, "stock", 0),
    ("电动自行车电池", "48V 20Ah 锂电", "EB-4820", "块", 1299.00, 9.5, 0.01, "buy", 5),
    ("LED 工矿灯", "150W IP65", "LED-150", "盏", 358.00, 3.2, 0.015, "stock", 0),
    ("实木办公桌", "1.6m", "DK-160", "张", 1880.00, 58.0, 0.45, "make_to_order", 12),
]
SERVICES = [
    ("设备上门安装", "市内/省外", "SV-INSTALL", "次", 300.00),
    ("设备调试", "含试运行", "SV-COMMISSION", "次", 500.00),
    ("上门维修", "不含配件", "SV-REPAIR", "次", 200.00),
    ("年度维保合同", "12个月", "SV-MAINT-12", "年", 3600.00),
]
# The demo's staff (issue 20), listed in the demo's policy file: every guarded step of the demo runs as one of them
# through the real checks (no bootstrap), and `yidi … --as demo-manager` etc. work on the demo store afterwards.
DEMO_STAFF = [
    {"name": "演示审核员", "login": "demo-reviewer", "roles": ["reviewer"]},  # the review form's decisions
    {"name": "演示仓管员", "login": "demo-operations", "roles": ["operations"]},  # imports the stocktake
    {"name": "演示财务", "login": "demo-finance", "roles": ["finance"]},
    {"name": "演示经理", "login": "demo-manager", "roles": ["manager"]},
    {"name": "演示审计员", "login": "demo-auditor", "roles": ["auditor"]},  # verifies the stocktake
]


def demo_staff_toml() -> str:
    """The ``[staff]`` section of the demo's policy file."""
    import json

    people = ",\n".join(f"  {{ name = {json.dumps(p['name'], ensure_ascii=False)}, login = {json.dumps(p['login'])}, "
                        f"roles = {json.dumps(p['roles'])} }}" for p in DEMO_STAFF)  # fmt: skip
    return f"[staff]\npeople = [\n{people},\n]\n"


def demo_staff_login(role: str) -> str:
    """The login of the demo's person with ``role``."""
    return next(p["login"] for p in DEMO_STAFF if role in p["roles"])


PAYMENT_METHODS = ["alipay", "wechatpay", "bank_transfer", "cod", "installment"]
PAYMENT_WEIGHTS = [0.42, 0.33, 0.15, 0.07, 0.03]


def demo_catalog(variants: int = 1) -> pd.DataFrame:
    """The catalog in the loader's canonical columns (``list_price`` in yuan); ``variants`` scales products."""
    rows = []
    for v in range(variants):
        suffix = "" if v == 0 else f"-{v:04d}"
        for i, (name, spec, model, unit, price, weight, volume, sourcing, lead) in enumerate(
            PRODUCTS, start=1
        ):
            rows.append(
                {
                    "code": f"SKU-{i:04d}{suffix}",
                    "kind": "product",
                    "name": name,
                    "spec": spec,
                    "model": model,
                    "unit": unit,
                    "list_price": f"{price:.2f}",
                    "weight_kg": weight,
                    "volume_m3": volume,
                    "sourcing": sourcing,
                    "lead_time_days": lead,
                    "max_order_qty": 200,
                    "preferred_supplier": "SUP-01" if sourcing == "buy" else None,
                }
            )
    for name, spec, code, unit, price in SERVICES:
        rows.append(
            {"code": code, "kind": "service", "name": name, "spec": spec, "model": code, "unit": unit,
             "list_price": f"{price:.2f}", "sourcing": "stock", "lead_time_days": 0}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _phone(rng: np.random.Generator, n: int) -> list[str]:
    prefixes = rng.choice(["138", "139", "135", "186", "177", "158", "199", "152"], size=n)
    tails = rng.integers(0, 10**8, size=n)
    return [f"{p}{t:08d}" for p, t in zip(prefixes, tails, strict=True)]


def _person(rng: np.random.Generator, n: int) -> list[str]:
    return [str(rng.choice(SURNAMES)) + str(rng.choice(GIVEN)) for _ in range(n)]


def demo_customers(n: int = 400, seed: int = 7) -> pd.DataFrame:
    """Customers spread over every province; about a fifth in Chongqing; some businesses, important, blocked."""
    rng = np.random.default_rng(seed)
    weights = np.array([4.0 if loc[0] == "重庆市" else 1.0 for loc in LOCATIONS])
    where = rng.choice(len(LOCATIONS), size=n, p=weights / weights.sum())
    business = rng.random(n) < 0.3
    names = _person(rng, n)
    for i in np.flatnonzero(business):
        names[i] = (
            f"{LOCATIONS[where[i]][1].removesuffix('市')}{rng.choice(COMPANY_WORDS)}{rng.choice(COMPANY_KINDS)}"
        )
    frame = pd.DataFrame(
        {
            "code": [f"C{i:05d}" for i in range(1, n + 1)],
            "name": names,
            "phone": _phone(rng, n),
            "email": [f"c{i:05d}@example.com" for i in range(1, n + 1)],
            "province": [LOCATIONS[w][0] for w in where],
            "city": [LOCATIONS[w][1] for w in where],
            "district": [LOCATIONS[w][2] for w in where],
            "address": [LOCATIONS[w][3] for w in where],
            "kind": np.where(business, "business", "consumer"),
            "is_important": np.where(business & (rng.random(n) < 0.3), "是", "否"),
            "credit_limit": np.where(business, rng.choice([50000, 100000, 300000], size=n), 0),
            "credit_rating": rng.choice(["A", "A", "B", "B", "C"], size=n),
            "payment_terms": np.where(
                business, rng.choice(["net", "prepaid", "installment"], size=n), "prepaid"
            ),
            "net_days": np.where(business, 30, 0),
            "blocked": np.where(rng.random(n) < 0.01, "是", "否"),
        }
    )
    return frame


def demo_orders(
    n_orders: int,
    customers: pd.DataFrame,
    catalog: pd.DataFrame,
    *,
    seed: int = 11,
    start: datetime | None = None,
) -> pd.DataFrame:
    """Orders as one row per line: order ref, customer/contact/address, item, quantity, unit price (yuan)."""
    rng = np.random.default_rng(seed)
    start = start or datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    products = catalog[catalog["kind"] == "product"].reset_index(drop=True)
    services = catalog[catalog["kind"] == "service"].reset_index(drop=True)
    cust_idx = rng.integers(0, len(customers), size=n_orders)
    lines_per_order = rng.choice([1, 1, 1, 2, 2, 3], size=n_orders)
    order_of_line = np.repeat(np.arange(n_orders), lines_per_order)
    n_lines = len(order_of_line)
    is_service = rng.random(n_lines) < 0.08
    product_pick = rng.integers(0, len(products), size=n_lines)
    service_pick = rng.integers(0, max(len(services), 1), size=n_lines)
    items = products.iloc[product_pick].reset_index(drop=True)
    if len(services):
        svc = services.iloc[service_pick].reset_index(drop=True)
        items = items.where(~pd.Series(is_service), svc)
    line_no = np.concatenate([np.arange(1, k + 1) for k in lines_per_order]) if n_orders else np.array([])
    minutes = np.sort(rng.integers(0, 7 * 24 * 60, size=n_orders))
    cust = customers.iloc[cust_idx].reset_index(drop=True)
    orders = pd.DataFrame(
        {
            "order_ref": [f"{i + 1:08d}" for i in range(n_orders)],
            "order_time": [start + timedelta(minutes=int(m)) for m in minutes],
            "customer_code": cust["code"],
            "customer_name": cust["name"],
            "phone": cust["phone"],
            "email": cust["email"],
            "province": cust["province"],
            "city": cust["city"],
            "district": cust["district"],
            "detail": cust["address"],
            "payment_method": rng.choice(PAYMENT_METHODS, size=n_orders, p=PAYMENT_WEIGHTS),
        }
    )
    lines = orders.iloc[order_of_line].reset_index(drop=True)
    lines["line_no"] = line_no.astype(int)
    lines["item_code"] = items["code"].to_numpy()
    lines["item_name"] = items["name"].to_numpy()
    lines["spec"] = items["spec"].to_numpy()
    lines["model"] = items["model"].to_numpy()
    lines["quantity"] = rng.choice([1, 1, 1, 2, 3, 5, 10], size=n_lines)
    lines["unit_price"] = items["list_price"].to_numpy()
    return lines
