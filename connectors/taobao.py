"""E-commerce platform: the Taobao Open Platform (TOP) style API, ``taobao.trades.sold.increment.get``.

- Signing exactly as published: every parameter except ``sign`` (and byte parameters), sorted by name (ASCII),
  concatenated ``k1v1k2v2…`` in UTF-8; ``md5`` = MD5(secret + s + secret), ``hmac`` = HMAC-MD5(secret, s),
  ``hmac-sha256`` = HMAC-SHA256(secret, s); upper-case hex.
- Incremental windows by modification time (≤ 1 day each; 30 minutes recommended), each window starting
  ``overlap`` before the stored cursor so late-indexed changes are not missed; the cursor (end of the last
  committed window) advances only after the window's records are committed.
- Results are newest first, so pages are read from the last page backwards: an order modified while we page moves
  out of the window and shifts the rest towards page 1, which we have not read yet — nothing is skipped (a
  repeated trade is harmless: same content, same hash).
- ``error_response`` (code, msg, sub_code, sub_msg): throttling (code 7, ``*limit*``/``flow-control`` sub codes)
  and ``isp.*`` service errors are transient and retried with backoff; signature, app key, session and argument
  errors are permanent and reported clearly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import requests

from connectors.base import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    SHANGHAI,
    BadValue,
    Batch,
    ChannelError,
    Connector,
    Parsed,
    TransientChannelError,
    clean_text,
    frame_from_rows,
    make_records,
    parse_local_time,
    problem_rows,
)
from yidi.bulk import json_text
from yidi.money import BadAmount, yuan_to_fen

log = logging.getLogger(__name__)

METHOD = "taobao.trades.sold.increment.get"
RESPONSE_KEY = "trades_sold_increment_get_response"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_FIELDS = (
    "tid,status,payment,post_fee,total_fee,discount_fee,created,pay_time,modified,buyer_message,receiver_name,"
    "receiver_state,receiver_city,receiver_district,receiver_town,receiver_address,receiver_zip,receiver_mobile,"
    "receiver_phone,orders"
)
CANCELLED_STATUSES = {"TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"}
TRANSIENT_CODES = {7, 10, 15, 520}  # call limited, service unavailable, remote service error, isp errors
THROTTLE_CODES = {7}
# isv.* sub codes are the caller's fault (bad argument, wrong order state) even under code 15, except these
# "try again later" ones (发货异常，请稍等后重试).
ISV_RETRY_LATER = {"isv.logistics-offline-service-error:B150"}


class TopError(ChannelError):
    def __init__(self, code, msg, sub_code=None, sub_msg=None):
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg
        detail = f" / {sub_code}: {sub_msg}" if sub_code or sub_msg else ""
        super().__init__(f"TOP error {code} {msg}{detail}{_hint(code)}")


class TopTransientError(TopError, TransientChannelError):
    pass


def _hint(code) -> str:
    return {
        25: " — check the app secret and sign_method in the intake settings",
        27: " — the seller session expired or is wrong; re-authorise the shop and update the session secret",
        29: " — the app key is wrong; check the app key environment variable",
        11: " — the app lacks permission for this API",
    }.get(_int(code), "")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def sign_params(params: dict, secret: str, sign_method: str = "md5") -> str:
    """The TOP signature of ``params`` (``sign`` itself excluded)."""
    text = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] is not None
                   and not isinstance(params[k], bytes | bytearray))
    if sign_method == "md5":
        digest = hashlib.md5((secret + text + secret).encode("utf-8")).hexdigest()
    elif sign_method == "hmac":
        digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.md5).hexdigest()
    elif sign_method == "hmac-sha256":
        digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()
    else:
        raise ValueError(f"unknown sign_method {sign_method!r} (md5, hmac, hmac-sha256)")
    return digest.upper()


def top_timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(SHANGHAI).strftime(TIME_FORMAT)


@dataclass
class TopClient:
    url: str
    app_key: str
    app_secret: str
    session: str | None = None
    sign_method: str = "md5"
    timeout: float = 20.0
    attempts: int = 4  # per call, for transient errors
    backoff: float = 0.5  # seconds, doubled per attempt (jittered); throttling waits what the server says
    max_wait: float = 30.0
    keep_alive: bool = False  # one pooled HTTP session for many calls (stock sync); thread-safe for plain posts

    def call(self, method: str, **api_params) -> dict:
        """Call ``method``; returns the ``<method>_response`` object; raises TopError / TransientChannelError."""
        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                return self._call_once(method, api_params)
            except TransientChannelError as exc:
                last = exc
                if attempt == self.attempts:
                    break
                wait = self._wait_for(exc, attempt)
                log.warning("taobao %s: %s; retrying in %.1fs (attempt %d/%d)", method, exc, wait, attempt,
                            self.attempts)
                time.sleep(wait)
        assert last is not None
        raise last

    def _session(self) -> requests.Session:
        if getattr(self, "_http", None) is None:
            self._http = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=32)
            self._http.mount("http://", adapter)
            self._http.mount("https://", adapter)
        return self._http

    def _wait_for(self, exc: Exception, attempt: int) -> float:
        wait = self.backoff * 2 ** (attempt - 1) * (1 + random.random() * 0.25)
        if isinstance(exc, TopError) and _int(exc.code) in THROTTLE_CODES:
            found = re.search(r"(\d+)\s*(?:more\s*)?seconds?", f"{exc.msg} {exc.sub_msg}")
            if found:
                wait = max(wait, float(found.group(1)))
        return min(wait, self.max_wait)

    def _call_once(self, method: str, api_params: dict) -> dict:
        params = {
            "method": method,
            "app_key": self.app_key,
            "timestamp": top_timestamp(),
            "format": "json",
            "v": "2.0",
            "sign_method": self.sign_method,
            **{k: v for k, v in api_params.items() if v is not None},
        }
        if self.session:
            params["session"] = self.session
        params = {k: str(v) for k, v in params.items()}
        params["sign"] = sign_params(params, self.app_secret, self.sign_method)
        try:
            poster = self._session().post if self.keep_alive else requests.post
            response = poster(self.url, data=params, timeout=self.timeout)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientChannelError(f"taobao gateway unreachable or slow: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientChannelError(f"taobao gateway answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ChannelError(f"taobao gateway answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError:
            raise TransientChannelError(
                f"taobao gateway sent malformed JSON ({len(response.content)} bytes; starts "
                f"{response.text[:60]!r})"
            ) from None
        if not isinstance(body, dict):
            raise TransientChannelError("taobao gateway sent JSON that is not an object")
        if "error_response" in body:
            err = body["error_response"] or {}
            code, sub_code = err.get("code"), str(err.get("sub_code") or "")
            transient = (
                _int(code) in TRANSIENT_CODES
                or sub_code.startswith("isp.")
                or "limit" in sub_code
                or "flow-control" in sub_code
            ) and (not sub_code.startswith("isv.") or sub_code in ISV_RETRY_LATER)  # isv.*: the caller's own fault
            cls = TopTransientError if transient else TopError
            raise cls(code, err.get("msg"), err.get("sub_code"), err.get("sub_msg"))
        key = method.replace("taobao.", "", 1).replace(".", "_") + "_response"
        if key not in body:
            raise TransientChannelError(f"taobao gateway response lacks {key}")
        return body[key]


def _secret(options: dict, key: str, required: bool = True) -> str | None:
    env_name = options.get(key)
    value = os.environ.get(env_name) if env_name else None
    if required and not value:
        raise ChannelError(f"taobao: environment variable {env_name or '(not configured)'} ({key}) is not set")
    return value


class TaobaoConnector(Connector):
    """Options: url, app_key_env, app_secret_env, session_env, sign_method, window_minutes, overlap_minutes,
    page_size, initial_lookback_hours, lag_seconds, fields, timeout_seconds, attempts, backoff_seconds,
    batch_records (pages are committed together up to about this many records)."""

    order_channel = "taobao"

    def client(self) -> TopClient:
        o = self.options
        return TopClient(
            url=o["url"],
            app_key=_secret(o, "app_key_env"),
            app_secret=_secret(o, "app_secret_env"),
            session=_secret(o, "session_env", required=False),
            sign_method=o.get("sign_method", "md5"),
            timeout=float(o.get("timeout_seconds", 20)),
            attempts=int(o.get("attempts", 4)),
            backoff=float(o.get("backoff_seconds", 0.5)),
        )

    def fetch(self, cursor: str | None) -> Iterator[Batch]:
        o = self.options
        client = self.client()
        window = timedelta(minutes=min(float(o.get("window_minutes", 30)), 24 * 60))
        overlap = timedelta(minutes=float(o.get("overlap_minutes", 5)))
        page_size = min(int(o.get("page_size", 100)), 100)
        now = datetime.now(UTC) - timedelta(seconds=float(o.get("lag_seconds", 0)))
        if cursor:
            start = datetime.fromisoformat(json.loads(cursor)["modified_until"]) - overlap
        else:
            start = now - timedelta(hours=float(o.get("initial_lookback_hours", 72)))
        while start < now:
            end = min(start + window, now)
            yield from self._window(client, start, end, page_size)
            start = end

    def _window(self, client: TopClient, start: datetime, end: datetime, page_size: int) -> Iterator[Batch]:
        cursor = json.dumps({"modified_until": end.astimezone(UTC).isoformat()})
        common = {
            "fields": self.options.get("fields", DEFAULT_FIELDS),
            "start_modified": top_timestamp(start),
            "end_modified": top_timestamp(end),
            "page_size": page_size,
            "use_has_next": "false",
        }
        first = client.call(METHOD, page_no=1, **common)
        total = int(first.get("total_results") or 0)
        pages = math.ceil(total / page_size)
        label = f"{common['start_modified']} – {common['end_modified']}"
        if pages <= 1:
            yield Batch(self._records(first, label, 1), cursor=cursor, label=f"window {label}")
            return
        # Pages accumulate into batches of about batch_records (fewer, larger transactions); the cursor rides on
        # the batch that ends with page 1.
        batch_records = int(self.options.get("batch_records", 1000))
        pending, first_page = [], pages
        for page_no in range(pages, 0, -1):
            body = client.call(METHOD, page_no=page_no, **common)
            pending.append(self._records(body, label, page_no))
            if page_no == 1 or sum(len(p) for p in pending) >= batch_records:
                yield Batch(
                    pd.concat(pending, ignore_index=True),
                    cursor=cursor if page_no == 1 else None,
                    label=f"window {label} pages {first_page}-{page_no} of {pages}",
                )
                pending, first_page = [], page_no - 1

    def _records(self, body: dict, label: str, page_no: int) -> pd.DataFrame:
        trades = ((body.get("trades") or {}).get("trade")) or []
        contents = [json_text(t) for t in trades]
        keys = [str(t.get("tid")) if isinstance(t, dict) and t.get("tid") is not None else None for t in trades]
        return make_records(contents, f"taobao:{METHOD}:{label}#page={page_no}", content_type="application/json",
                            source_keys=keys)

    def parse(self, records: pd.DataFrame) -> Parsed:
        return parse_trades(records["content"].tolist(), self.order_channel)


def parse_trades(contents: list[str], order_channel: str = "taobao") -> Parsed:
    orders, lines, problems = [], [], []
    for idx, content in enumerate(contents):
        try:
            trade = json.loads(content)
        except ValueError as exc:
            problems.append((idx, f"not valid JSON ({exc}); fix the text and replay"))
            continue
        try:
            order, order_lines = _trade(idx, trade, order_channel)
        except (BadValue, BadAmount) as exc:
            problems.append((idx, f"trade {trade.get('tid') if isinstance(trade, dict) else '?'}: {exc}"))
            continue
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:  # a part of the wrong kind
            problems.append((idx, f"trade {trade.get('tid') if isinstance(trade, dict) else '?'}: not the published "
                             f"shape ({type(exc).__name__}: {exc}); fix the text and replay"))
            continue
        orders.append(order)
        lines.extend(order_lines)
    return Parsed(frame_from_rows(orders, ORDER_COLUMNS), frame_from_rows(lines, LINE_COLUMNS),
                  problem_rows(problems))


def _trade(idx: int, trade, order_channel: str) -> tuple[dict, list[dict]]:
    if not isinstance(trade, dict):
        raise BadValue("the record is not a trade object")
    tid = clean_text(trade.get("tid"))
    if not tid:
        raise BadValue("tid is missing")
    status = clean_text(trade.get("status"))
    sub_orders = ((trade.get("orders") or {}).get("order")) or []
    if not sub_orders:
        raise BadValue("the trade has no order lines (orders.order is empty)")
    lines = []
    for n, sub in enumerate(sub_orders, start=1):
        num = sub.get("num")
        try:
            quantity = float(num)
        except (TypeError, ValueError):
            raise BadValue(f"line {n}: num {num!r} is not a number") from None
        if quantity <= 0:
            raise BadValue(f"line {n}: num {num!r} must be positive")
        price = yuan_to_fen(sub.get("price"), f"line {n} price")
        if price is None:
            raise BadValue(f"line {n}: price is missing")
        paid = yuan_to_fen(sub.get("payment"), f"line {n} payment")
        gross = round(price * quantity)
        lines.append(
            {
                "record_idx": idx,
                "line_no": n,
                "item_code": clean_text(sub.get("outer_sku_id")) or clean_text(sub.get("outer_iid")),
                "item_name": clean_text(sub.get("title")),
                "spec": clean_text(sub.get("sku_properties_name")),
                "quantity": quantity,
                "unit_price_fen": price,
                "discount_fen": max(gross - paid, 0) if paid is not None else 0,
                "line_total_fen": paid if paid is not None else None,
            }
        )
    detail = clean_text(trade.get("receiver_address")) or ""
    town = clean_text(trade.get("receiver_town"))
    if town and town not in detail:
        detail = town + detail
    extra = {k: trade[k] for k in ("pay_time",) if trade.get(k)}
    order = {
        "record_idx": idx,
        "channel": order_channel,
        "channel_order_id": tid,
        "customer_name": clean_text(trade.get("receiver_name")),
        "customer_phone": clean_text(trade.get("receiver_mobile")) or clean_text(trade.get("receiver_phone")),
        "customer_email": None,
        "ship_country": "CN",
        "ship_province": clean_text(trade.get("receiver_state")),
        "ship_city": clean_text(trade.get("receiver_city")),
        "ship_district": clean_text(trade.get("receiver_district")),
        "ship_detail": detail or None,
        "ship_postcode": clean_text(trade.get("receiver_zip")),
        "payment_method": "alipay",
        "installments": 1,
        "currency": "CNY",
        "goods_total_fen": yuan_to_fen(trade.get("total_fee"), "total_fee"),
        "discount_fen": yuan_to_fen(trade.get("discount_fee"), "discount_fee") or 0,
        "freight_fen": yuan_to_fen(trade.get("post_fee"), "post_fee") or 0,
        "order_total_fen": yuan_to_fen(trade.get("payment"), "payment"),
        "source_status": status,
        "source_cancelled": status in CANCELLED_STATUSES,
        "order_time": parse_local_time(trade.get("created"), "created"),
        "source_modified_at": parse_local_time(trade.get("modified"), "modified"),
        "buyer_note": clean_text(trade.get("buyer_message")),
        "source_extra": json_text(extra) if extra else None,
    }
    if order["order_time"] is None:
        raise BadValue("created (order time) is missing")
    return order, lines
