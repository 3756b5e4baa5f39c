"""Company website: WooCommerce REST API v3 orders (``GET /wp-json/wc/v3/orders``).

- Cursor: the latest ``date_modified_gmt`` committed; each run asks ``modified_after = cursor - overlap`` with
  ``dates_are_gmt=true`` and ``status=any``, so refunds and status changes come back as modified orders.
- Paging by ``orderby=id&order=asc``: ids never change, so an order modified while we page keeps its place (it does
  not jump to the end and shift the others past us, as ``orderby=modified`` would). Pages are followed through the
  ``Link: rel="next"`` header, else ``page`` up to ``X-WP-TotalPages``. The cursor advances once the last page of
  the run is committed.
- Auth: HTTP Basic with the consumer key/secret (or as query parameters when ``auth = "query"``); 401/403 are
  permanent errors with a clear message; 429, 5xx, timeouts and malformed JSON are transient (retried with backoff).
"""

from __future__ import annotations

import html
import json
import logging
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import pandas as pd
import requests

from connectors.base import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    BadValue,
    Batch,
    ChannelError,
    Connector,
    Parsed,
    TransientChannelError,
    clean_text,
    frame_from_rows,
    make_records,
    problem_rows,
)
from yidi.bulk import json_text
from yidi.money import BadAmount, yuan_to_fen

log = logging.getLogger(__name__)

ORDERS_PATH = "/wp-json/wc/v3/orders"
# WooCommerce's states for CN (i18n/states.php): CN1…CN32.
CN_STATES = {
    "CN1": "云南省", "CN2": "北京市", "CN3": "天津市", "CN4": "河北省", "CN5": "山西省", "CN6": "内蒙古自治区",
    "CN7": "辽宁省", "CN8": "吉林省", "CN9": "黑龙江省", "CN10": "上海市", "CN11": "江苏省", "CN12": "浙江省",
    "CN13": "安徽省", "CN14": "福建省", "CN15": "江西省", "CN16": "山东省", "CN17": "河南省", "CN18": "湖北省",
    "CN19": "湖南省", "CN20": "广东省", "CN21": "广西壮族自治区", "CN22": "海南省", "CN23": "重庆市",
    "CN24": "四川省", "CN25": "贵州省", "CN26": "陕西省", "CN27": "甘肃省", "CN28": "青海省",
    "CN29": "宁夏回族自治区", "CN30": "澳门特别行政区", "CN31": "西藏自治区", "CN32": "新疆维吾尔自治区",
}  # fmt: skip
CANCELLED_STATUSES = {"cancelled", "refunded", "trash"}
DEFAULT_PAYMENT_METHODS = {
    "bacs": "bank_transfer",
    "cheque": "bank_transfer",
    "cod": "cod",
    "alipay": "alipay",
    "wechatpay": "wechatpay",
    "wxpay": "wechatpay",
}


def _secret(options: dict, key: str) -> str:
    env_name = options.get(key)
    value = os.environ.get(env_name) if env_name else None
    if not value:
        raise ChannelError(f"woocommerce: environment variable {env_name or '(not configured)'} ({key}) is not set")
    return value


class WooCommerceConnector(Connector):
    """Options: url (site root), consumer_key_env, consumer_secret_env, auth ("basic"|"query"), per_page,
    overlap_minutes, initial_lookback_hours, timeout_seconds, attempts, backoff_seconds, payment_methods,
    batch_records (pages are committed together up to about this many records)."""

    order_channel = "website"

    def fetch(self, cursor: str | None) -> Iterator[Batch]:
        o = self.options
        key, secret = _secret(o, "consumer_key_env"), _secret(o, "consumer_secret_env")
        session = requests.Session()
        params = {
            "per_page": min(int(o.get("per_page", 100)), 100),
            "orderby": "id",
            "order": "asc",
            "status": "any",
            "dates_are_gmt": "true",
        }
        if o.get("auth", "basic") == "query":
            params.update(consumer_key=key, consumer_secret=secret)
        else:
            session.auth = (key, secret)
        overlap = timedelta(minutes=float(o.get("overlap_minutes", 10)))
        if cursor:
            since = datetime.fromisoformat(json.loads(cursor)["modified_after"]) - overlap
        else:
            since = datetime.now(UTC) - timedelta(hours=float(o.get("initial_lookback_hours", 72)))
        params["modified_after"] = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        url: str | None = o["url"].rstrip("/") + ORDERS_PATH
        page, total_pages = 1, None
        latest = json.loads(cursor)["modified_after"] if cursor else None
        query: dict | None = {**params, "page": 1}
        pending: Batch | None = None
        batch_records = int(o.get("batch_records", 1000))
        try:
            while url:
                response = self._get(session, url, query)
                try:
                    orders = response.json()
                except ValueError:
                    raise TransientChannelError(
                        f"woocommerce sent malformed JSON for page {page} ({len(response.content)} bytes)"
                    ) from None
                if not isinstance(orders, list):
                    raise TransientChannelError(f"woocommerce page {page} is not a list of orders")
                total_pages = int(response.headers.get("X-WP-TotalPages") or total_pages or 1)
                for order in orders:
                    stamp = order.get("date_modified_gmt") if isinstance(order, dict) else None
                    if stamp and (latest is None or _gmt(stamp) > datetime.fromisoformat(latest)):
                        latest = _gmt(stamp).isoformat()
                records = self._records(orders, page)
                if pending is not None and len(pending.records) + len(records) > batch_records:
                    yield pending
                    pending = None
                if pending is None:
                    pending = Batch(records, label=f"page {page}/{total_pages}")
                else:
                    pending.records = pd.concat([pending.records, records], ignore_index=True)
                    pending.label = f"{pending.label.split('/')[0]}-{page}/{total_pages}"
                next_url = response.links.get("next", {}).get("url")
                if next_url:
                    url, query = next_url, None  # the Link URL carries every parameter (but not the auth)
                    if o.get("auth", "basic") == "query" and "consumer_key=" not in next_url:
                        query = {"consumer_key": key, "consumer_secret": secret}
                elif page < total_pages:
                    query = {**params, "page": page + 1}
                else:
                    url = None
                page += 1
            if pending is not None:
                pending.cursor = json.dumps({"modified_after": latest}) if latest else None
                yield pending
        finally:
            session.close()

    def _get(self, session: requests.Session, url: str, query: dict | None) -> requests.Response:
        o = self.options
        attempts = int(o.get("attempts", 4))
        backoff = float(o.get("backoff_seconds", 0.5))
        for attempt in range(1, attempts + 1):
            try:
                response = session.get(url, params=query, timeout=float(o.get("timeout_seconds", 20)))
            except (requests.Timeout, requests.ConnectionError) as exc:
                error: ChannelError = TransientChannelError(f"woocommerce unreachable or slow: {type(exc).__name__}")
            else:
                if response.status_code in (401, 403):
                    raise ChannelError(
                        f"woocommerce refused the credentials (HTTP {response.status_code}: "
                        f"{_message(response)}); check the consumer key/secret environment variables"
                    )
                if response.status_code == 429 or response.status_code >= 500:
                    error = TransientChannelError(f"woocommerce answered HTTP {response.status_code}")
                elif response.status_code >= 400:
                    raise ChannelError(f"woocommerce answered HTTP {response.status_code}: {_message(response)}")
                else:
                    try:
                        response.json()
                    except ValueError:
                        error = TransientChannelError(
                            f"woocommerce sent malformed JSON ({len(response.content)} bytes)"
                        )
                    else:
                        return response
            if attempt == attempts:
                raise error
            wait = backoff * 2 ** (attempt - 1) * (1 + random.random() * 0.25)
            log.warning("woocommerce: %s; retrying in %.1fs (attempt %d/%d)", error, wait, attempt, attempts)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _records(self, orders: list, page: int) -> pd.DataFrame:
        contents = [json_text(order) for order in orders]
        keys = [str(order.get("id")) if isinstance(order, dict) and order.get("id") is not None else None
                for order in orders]
        return make_records(contents, f"woocommerce:{ORDERS_PATH}#page={page}", content_type="application/json",
                            source_keys=keys)

    def parse(self, records: pd.DataFrame) -> Parsed:
        methods = {**DEFAULT_PAYMENT_METHODS, **self.options.get("payment_methods", {})}
        return parse_orders(records["content"].tolist(), methods, self.order_channel)


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message"))[:200]
    except (ValueError, AttributeError):
        return response.text[:200]


def _gmt(text: str) -> datetime:
    stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _text(value) -> str | None:
    """Text as the shop shows it: WordPress stores names with HTML entities (``Hoodie &ndash; Blue``, ``&amp;``)
    and the REST API sends them encoded."""
    text = clean_text(value)
    return html.unescape(text).strip() or None if text and "&" in text else text


def _money(value, name: str) -> int | None:
    if isinstance(value, float):
        try:
            value = str(Decimal(repr(value)).quantize(Decimal("0.01")))
        except InvalidOperation:
            raise BadValue(f"{name} {value!r} is not an amount") from None
    return yuan_to_fen(value, name)


def parse_orders(contents: list[str], payment_methods: dict, order_channel: str = "website") -> Parsed:
    orders, lines, problems = [], [], []
    for idx, content in enumerate(contents):
        try:
            order = json.loads(content)
        except ValueError as exc:
            problems.append((idx, f"not valid JSON ({exc}); fix the text and replay"))
            continue
        try:
            row, order_lines = _order(idx, order, payment_methods, order_channel)
        except (BadValue, BadAmount) as exc:
            ident = order.get("id") if isinstance(order, dict) else "?"
            problems.append((idx, f"woocommerce order {ident}: {exc}"))
            continue
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:  # a part of the wrong kind
            ident = order.get("id") if isinstance(order, dict) else "?"
            problems.append((idx, f"woocommerce order {ident}: not the published shape ({type(exc).__name__}: "
                             f"{exc}); fix the text and replay"))
            continue
        orders.append(row)
        lines.extend(order_lines)
    return Parsed(frame_from_rows(orders, ORDER_COLUMNS), frame_from_rows(lines, LINE_COLUMNS),
                  problem_rows(problems))


def _order(idx: int, order, payment_methods: dict, order_channel: str) -> tuple[dict, list[dict]]:
    if not isinstance(order, dict):
        raise BadValue("the record is not an order object")
    ident = clean_text(order.get("id"))
    if not ident:
        raise BadValue("id is missing")
    items = order.get("line_items") or []
    if not items:
        raise BadValue("the order has no line_items")
    lines = []
    for n, item in enumerate(items, start=1):
        quantity = item.get("quantity")
        if not isinstance(quantity, int | float) or isinstance(quantity, bool) or quantity <= 0:
            raise BadValue(f"line {n}: quantity {quantity!r} is not a positive number")
        subtotal = _money(item.get("subtotal"), f"line {n} subtotal")
        total = _money(item.get("total"), f"line {n} total")
        price = _money(item.get("price"), f"line {n} price")
        if price is None and subtotal is not None:
            price = round(subtotal / quantity)
        if price is None:
            raise BadValue(f"line {n}: neither price nor subtotal is given")
        lines.append(
            {
                "record_idx": idx,
                "line_no": n,
                "item_code": clean_text(item.get("sku")) or (f"WC-{item.get('product_id')}"
                                                              if item.get("product_id") else None),
                "item_name": _text(item.get("name")),
                "quantity": float(quantity),
                "unit_price_fen": price,
                "discount_fen": max((subtotal or 0) - (total or 0), 0) if total is not None else 0,
                "line_total_fen": total,
            }
        )
    shipping = order.get("shipping") or {}
    billing = order.get("billing") or {}
    address = shipping if clean_text(shipping.get("address_1")) or clean_text(shipping.get("city")) else billing
    first, last = _text(address.get("first_name")) or "", _text(address.get("last_name")) or ""
    if not (first or last):
        first, last = _text(billing.get("first_name")) or "", _text(billing.get("last_name")) or ""
    country = (clean_text(address.get("country")) or "CN").upper()
    state = _text(address.get("state"))
    province = CN_STATES.get(state.upper(), state) if country == "CN" and state else state
    detail = " ".join(p for p in (_text(address.get("address_1")), _text(address.get("address_2"))) if p)
    company = _text(address.get("company"))
    # Chinese names: family name (last_name) first, no space; Latin names keep "first last".
    name = (last + first) if _is_cjk(last + first) else " ".join(p for p in (first, last) if p)
    method_id = clean_text(order.get("payment_method"))
    status = clean_text(order.get("status"))
    refunds = [
        {"id": r.get("id"), "total": r.get("total"), "reason": r.get("reason")}
        for r in order.get("refunds") or [] if isinstance(r, dict)
    ]
    extra = {
        "number": order.get("number"),
        "refunds": refunds or None,
        "refunded_fen": -sum(_money(r["total"], "refund total") or 0 for r in refunds) if refunds else None,
        "date_paid_gmt": order.get("date_paid_gmt"),
        "transaction_id": clean_text(order.get("transaction_id")),
        "company": company,
        "coupons": [c.get("code") for c in order.get("coupon_lines") or [] if isinstance(c, dict)] or None,
    }
    extra = {k: v for k, v in extra.items() if v}
    goods = sum(line_item["unit_price_fen"] * line_item["quantity"] for line_item in lines)
    created = order.get("date_created_gmt") or order.get("date_created")
    modified = order.get("date_modified_gmt") or order.get("date_modified")
    if not created:
        raise BadValue("date_created_gmt is missing")
    try:
        order_time, modified_at = _gmt(created), (_gmt(modified) if modified else None)
    except ValueError:
        raise BadValue(f"date_created_gmt {created!r} / date_modified_gmt {modified!r} is not a date") from None
    row = {
        "record_idx": idx,
        "channel": order_channel,
        "channel_order_id": ident,
        "customer_name": name or company,
        "customer_phone": clean_text(shipping.get("phone")) or clean_text(billing.get("phone")),
        "customer_email": clean_text(billing.get("email")),
        "ship_country": country,
        "ship_province": province,
        "ship_city": _text(address.get("city")),
        "ship_district": None,
        "ship_detail": detail or None,
        "ship_postcode": clean_text(address.get("postcode")),
        "payment_method": payment_methods.get(method_id or "", method_id),
        "installments": 1,
        "currency": clean_text(order.get("currency")) or "CNY",
        "goods_total_fen": round(goods),
        "discount_fen": _money(order.get("discount_total"), "discount_total") or 0,
        "freight_fen": _money(order.get("shipping_total"), "shipping_total") or 0,
        "order_total_fen": _money(order.get("total"), "total"),
        "source_status": status,
        "source_cancelled": status in CANCELLED_STATUSES,
        "order_time": order_time,
        "source_modified_at": modified_at,
        "buyer_note": _text(order.get("customer_note")),
        "source_extra": json_text(extra) if extra else None,
    }
    return row, lines


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)
