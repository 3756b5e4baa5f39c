"""The channels' write-back answers read from the published samples (tests/data/formats, issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

from connectors.taobao import TopClient
from connectors.taobao_writeback import offline_send, quantity_update
from connectors.woocommerce_writeback import WooWriter

FORMATS = Path(__file__).parent / "data" / "formats"


class _Answer:
    def __init__(self, body: bytes, status: int = 200):
        self.content, self.status_code = body, status
        self.text = body.decode("utf-8")

    def json(self):
        return json.loads(self.content)


def _top_answering(monkeypatch, sample: str) -> tuple[TopClient, list[dict]]:
    sent: list[dict] = []

    def post(url, data, timeout):
        sent.append(data)
        return _Answer((FORMATS / "taobao" / sample).read_bytes())

    monkeypatch.setattr("connectors.taobao.requests.post", post)
    return TopClient(url="http://top.invalid/router/rest", app_key="k", app_secret="s", attempts=3, backoff=0), sent


def test_offline_send_success_sample(monkeypatch):
    client, sent = _top_answering(monkeypatch, "logistics-offline-send.json")
    outcome = offline_send(client, "3900000000000000777", "ZT7001", "ZTO", ["39000000000000007771"])
    assert outcome.status == "confirmed"
    assert {k: sent[0][k] for k in ("method", "tid", "out_sid", "company_code", "sub_tid", "is_split")} == {
        "method": "taobao.logistics.offline.send", "tid": "3900000000000000777", "out_sid": "ZT7001",
        "company_code": "ZTO", "sub_tid": "39000000000000007771", "is_split": "1"}


def test_offline_send_already_shipped_sample_is_done_and_not_retried(monkeypatch):
    client, sent = _top_answering(monkeypatch, "logistics-offline-send-already-shipped.json")
    outcome = offline_send(client, "1", "ZT7001", "ZTO")
    assert outcome.status == "already"
    assert outcome.answer == {"sub_code": "isv.logistics-offline-service-error:B04",
                              "sub_msg": "订单状态不对该物流订单已经发货或者已关闭，不能重复发货"}
    assert len(sent) == 1  # code 15 with an isv.* sub code is not a transient error


def test_quantity_update_sample(monkeypatch):
    client, sent = _top_answering(monkeypatch, "item-quantity-update.json")
    outcome = quantity_update(client, "10001", 8)
    assert outcome.status == "confirmed" and outcome.answer["item"]["num"] == 8
    assert (sent[0]["num_iid"], sent[0]["quantity"], sent[0]["type"]) == ("10001", "8", "1")


def test_woocommerce_note_and_batch_samples(monkeypatch):
    writer = WooWriter("http://shop.invalid", "ck", "cs")
    calls = []

    def request(method, url, timeout, **kwargs):
        calls.append((method, url.split("/wc/v3")[1], kwargs.get("json")))
        if url.endswith("/notes") and method == "GET":
            return _Answer(b"[]")
        if url.endswith("/notes"):
            return _Answer((FORMATS / "woocommerce" / "order-note-created.json").read_bytes(), 201)
        if url.endswith("/batch"):
            return _Answer((FORMATS / "woocommerce" / "products-batch-update.json").read_bytes())
        return _Answer(b'{"id": 723, "status": "completed"}')

    monkeypatch.setattr(writer.session, "request", request)
    confirmed = writer.confirm_shipped("723", "note SF1001", "SF1001", "completed")
    assert confirmed.status == "confirmed"
    assert (confirmed.answer["note"]["customer_note"], confirmed.answer["order_status"]) == (True, "completed")
    assert [c[:2] for c in calls] == [("GET", "/orders/723/notes"), ("POST", "/orders/723/notes"),
                                      ("PUT", "/orders/723")]
    assert calls[1][2] == {"note": "note SF1001", "customer_note": True}
    outcomes = writer.update_stock([("799", 10), ("12345", 3)])
    assert outcomes["799"].status == "confirmed" and outcomes["799"].answer == {"stock_quantity": 10}
    assert (outcomes["12345"].status, outcomes["12345"].error) == (
        "refused", "woocommerce_rest_product_invalid_id: Invalid ID.")
    assert calls[-1][2] == {"update": [{"id": 799, "stock_quantity": 10, "manage_stock": True},
                                       {"id": 12345, "stock_quantity": 3, "manage_stock": True}]}
