"""The order template's columns (Chinese or English aliases) and the values its cells may hold."""

from __future__ import annotations

import re

# canonical field -> header aliases (compared after _header_key normalisation)
ALIASES: dict[str, list[str]] = {
    "order_id": ["订单号", "订单编号", "单号", "订单id", "orderno", "orderid", "ordernumber", "order"],
    "channel": ["渠道", "来源", "下单渠道", "channel", "source"],
    "order_time": ["下单时间", "订单时间", "下单日期", "日期", "ordertime", "orderdate", "date"],
    "customer_name": ["客户名称", "客户", "客户姓名", "收货人", "联系人", "customer", "customername", "name"],
    "customer_phone": ["联系电话", "电话", "手机", "手机号", "联系方式", "phone", "mobile", "tel", "telephone"],
    "customer_email": ["邮箱", "电子邮箱", "email", "e-mail", "mail"],
    "province": ["省", "省份", "province", "state"],
    "city": ["市", "城市", "city"],
    "district": ["区", "区县", "县区", "district", "county"],
    "detail": ["详细地址", "地址", "address", "detailaddress", "street"],
    "full_address": ["收货地址", "完整地址", "fulladdress", "shippingaddress"],
    "postcode": ["邮编", "邮政编码", "postcode", "zip", "zipcode"],
    "item_code": ["商品编码", "编码", "物料编码", "服务编码", "商品编号", "sku", "itemcode", "code"],
    "item_name": ["商品名称", "品名", "名称", "商品", "服务名称", "itemname", "product", "item"],
    "item_kind": ["类型", "商品类型", "kind", "type", "itemkind"],
    "spec": ["规格", "spec", "specification"],
    "model": ["型号", "model"],
    "quantity": ["数量", "qty", "quantity"],
    "unit_price": ["单价", "价格", "unitprice", "price"],
    "line_discount": ["折扣", "行折扣", "优惠", "discount", "linediscount"],
    "freight": ["运费", "freight", "shipping", "shippingfee"],
    "order_discount": ["订单优惠", "整单优惠", "整单折扣", "orderdiscount"],
    "payment_method": ["付款方式", "支付方式", "payment", "paymentmethod"],
    "installments": ["分期数", "分期期数", "installments"],
    "note": ["备注", "留言", "note", "remark", "buyernote", "notes"],
}
LABELS = {field: aliases[0] for field, aliases in ALIASES.items()}
REQUIRED = ["order_id", "customer_name", "customer_phone", "quantity", "unit_price"]
REQUIRED_ONE_OF = [("item_code", "item_name"), ("detail", "full_address")]
ORDER_LEVEL = [
    "channel",
    "order_time",
    "customer_name",
    "customer_phone",
    "customer_email",
    "province",
    "city",
    "district",
    "detail",
    "full_address",
    "postcode",
    "freight",
    "order_discount",
    "payment_method",
    "installments",
    "note",
]

CHANNEL_VALUES = {
    "电话": "phone",
    "phone": "phone",
    "tel": "phone",
    "传真": "fax",
    "fax": "fax",
    "邮件": "email",
    "电子邮件": "email",
    "email": "email",
    "e-mail": "email",
}
PAYMENT_VALUES = {
    "支付宝": "alipay",
    "alipay": "alipay",
    "微信": "wechatpay",
    "微信支付": "wechatpay",
    "wechat": "wechatpay",
    "wechatpay": "wechatpay",
    "银行转账": "bank_transfer",
    "转账": "bank_transfer",
    "对公转账": "bank_transfer",
    "banktransfer": "bank_transfer",
    "bank_transfer": "bank_transfer",
    "货到付款": "cod",
    "cod": "cod",
    "分期": "installment",
    "分期付款": "installment",
    "installment": "installment",
}
KIND_VALUES = {"商品": "product", "产品": "product", "product": "product", "服务": "service", "service": "service"}


def _header_key(text: str) -> str:
    text = str(text).strip().lower()
    text = re.sub(r"[（(\[【].*?[)）\]】]", "", text)  # "单价（元）" -> "单价"
    return re.sub(r"[\s*_:：\-]", "", text)


_ALIAS_LOOKUP = {_header_key(alias): field for field, aliases in ALIASES.items() for alias in aliases}


def map_headers(headers: list[str]) -> dict[str, str]:
    """{canonical field: original header} for the headers we recognise (first one wins)."""
    mapping: dict[str, str] = {}
    for header in headers:
        field_name = _ALIAS_LOOKUP.get(_header_key(header))
        if field_name and field_name not in mapping:
            mapping[field_name] = header
    return mapping


def missing_columns(mapping: dict[str, str]) -> list[str]:
    missing = [f"{LABELS[f]} ({f})" for f in REQUIRED if f not in mapping]
    for options in REQUIRED_ONE_OF:
        if not any(o in mapping for o in options):
            missing.append(" or ".join(f"{LABELS[o]} ({o})" for o in options))
    return missing


def header_problem(headers: list[str]) -> str | None:
    missing = missing_columns(map_headers(headers))
    if not missing:
        return None
    return (
        f"the order template is missing column(s): {', '.join(missing)}; found columns: "
        f"{', '.join(str(h) for h in headers) or '(none)'}. Add the columns (Chinese or English names) and "
        "drop the file again, or fix this record and replay it"
    )

