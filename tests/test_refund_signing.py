"""Refund requests are signed as the providers publish it, and answers are believed only when their signature
verifies: Alipay RSA2 over the sorted parameter string, WeChat Pay API v3 ``WECHATPAY2-SHA256-RSA2048``. The
signing primitive is checked against the official WeChat Pay Go SDK's test vector; the stand-ins verify with the
merchant's public key and refuse a bad signature in the providers' published error shapes; a refused or
unverifiable attempt leaves the refund pending and it is still made exactly once (both databases)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from aftersales_support import (
    add_order,
    assess,
    build_reference,
    case_of,
    local,
    request,
    signed_refund_policy,
)
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update

from connectors import alipay_refund, wechatpay_refund
from connectors.provider_signing import (
    alipay_answer_signed_text,
    alipay_sign_content,
    load_private_key,
    parse_wechatpay_authorization,
    sha256_rsa_sign,
    sha256_rsa_verify,
    wechatpay_request_message,
)
from connectors.refund_api import RefundUnavailable
from demo.standins.refunds import RefundStandIn
from tasks.aftersales.refunds import make_refund_clients, send_refunds
from tasks.aftersales.returns import receive_returns
from yidi.bulk import read_frame
from yidi.schema import orders
from yidi.schema_aftersales import refund_requests
from yidi.settings import get_settings

FORMATS = Path(__file__).parent / "data" / "formats"


def test_our_sha256withrsa_matches_the_wechatpay_sdk_test_vector():
    vector = json.loads((FORMATS / "wechatpay" / "sha256withrsa-sdk-vector.json").read_text(encoding="utf-8"))
    key = load_private_key(FORMATS / "wechatpay" / vector["private_key_file"])
    assert sha256_rsa_sign(vector["message"], key) == vector["expected_signature"]
    assert sha256_rsa_verify(vector["message"], vector["expected_signature"], key.public_key())
    assert not sha256_rsa_verify("sourcf", vector["expected_signature"], key.public_key())


def test_the_alipay_sign_content_is_the_documented_sorted_string():
    # The string Alipay's Java SDK signs for alipay.trade.app.pay (AlipaySignature.rsa256Sign demo): sorted,
    # sign_type included, sign and empty values left out, values raw.
    biz = ('{"seller_id":"","total_amount":"0.01","subject":"abcdefghijklmn","out_trade_no":"S6RE1P8R48R5V15",'
           '"product_code":"QUICK_MSECURITY_PAY"}')
    params = {"timestamp": "2018-08-10 10:15:00", "method": "alipay.trade.app.pay", "version": "1.0",
              "app_id": "2018070560549460", "sign_type": "RSA2", "charset": "utf-8", "biz_content": biz,
              "notify_url": "", "sign": "ignored"}
    assert alipay_sign_content(params) == (
        f"app_id=2018070560549460&biz_content={biz}&charset=utf-8&method=alipay.trade.app.pay&sign_type=RSA2"
        "&timestamp=2018-08-10 10:15:00&version=1.0")


def test_the_alipay_answer_sign_covers_the_exact_response_text():
    text = (FORMATS / "alipay" / "refund-invalid-signature.json").read_text(encoding="utf-8").strip()
    assert alipay_answer_signed_text(text, "alipay_trade_refund_response") == (
        '{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"无效签名"}')
    assert alipay_answer_signed_text(text, "alipay_trade_query_response") is None


def test_the_published_refusals_leave_the_refund_pending():
    alipay_text = (FORMATS / "alipay" / "refund-invalid-signature.json").read_text(encoding="utf-8")
    with pytest.raises(RefundUnavailable, match="40002 isv.invalid-signature: 无效签名"):
        alipay_refund.parse_refund_answer(alipay_text, "YDRF0000000001", 100)
    wechat_text = (FORMATS / "wechatpay" / "refund-sign-error.json").read_text(encoding="utf-8")
    with pytest.raises(RefundUnavailable, match="HTTP 401 SIGN_ERROR: 签名错误"):
        wechatpay_refund.parse_refund_answer(401, wechat_text)


def test_the_wechatpay_authorization_header_signs_the_request_line_and_body():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = wechatpay_refund.WechatPayRefundClient("http://127.0.0.1:1", mchid="1900000001", serial_no="ABC123",
                                                    private_key=key, clock=lambda: 1554208460)  # fmt: skip
    header = client.authorization("POST", "/v3/refund/domestic/refunds", '{"a":1}')
    assert header.startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="')
    fields = parse_wechatpay_authorization(header)
    assert (fields["mchid"], fields["serial_no"], fields["timestamp"]) == ("1900000001", "ABC123", "1554208460")
    assert len(fields["nonce_str"]) == 32
    message = wechatpay_request_message("POST", "/v3/refund/domestic/refunds", "1554208460", fields["nonce_str"],
                                        '{"a":1}')  # fmt: skip
    assert message == f'POST\n/v3/refund/domestic/refunds\n1554208460\n{fields["nonce_str"]}\n{{"a":1}}\n'
    assert sha256_rsa_verify(message, fields["signature"], key.public_key())


def test_nothing_is_sent_unsigned():
    client = alipay_refund.AlipayRefundClient("http://127.0.0.1:1", app_id="2021000000000001")
    with pytest.raises(RefundUnavailable, match="alipay_private_key_path"):
        client.refund(order_no="YD-1", request_no="YDRF1", amount_fen=100, reason="r", now=local(2026, 12, 8))
    with pytest.raises(RefundUnavailable, match="wechatpay_private_key_path"):
        wechatpay_refund.WechatPayRefundClient("http://127.0.0.1:1").refund(
            order_no="YD-1", request_no="YDRF1", amount_fen=100, total_fen=100, reason="r")


@pytest.fixture
def store(engine):
    build_reference(engine)
    return engine


def _refund_pending(store, order_no: str, route: str) -> None:
    add_order(store, order_no, {"SKU-0009": 2}, delivered=local(2026, 12, 2, 0, 30))
    request(store, order_no, "return", local(2026, 12, 4), quality_problem=True)
    assess(store, local(2026, 12, 4, 11))
    with store.begin() as conn:
        conn.execute(update(orders).where(orders.c.order_no == order_no).values(payment_method=route))
        receive_returns(conn, pd.DataFrame({"case_no": [case_of(store, order_no)["case_no"]], "inspection": ["good"]}),
                        get_settings(), local(2026, 12, 8))  # fmt: skip


def _send(store, clients, hour):
    with store.begin() as conn:
        return send_refunds(conn, clients, get_settings(), local(2026, 12, 8, hour))


@pytest.mark.parametrize(("route", "refusal"), [("alipay", "Alipay 40002 isv.invalid-signature: 无效签名"),
                                                ("wechatpay", "WeChat Pay HTTP 401 SIGN_ERROR: 签名错误")])  # fmt: skip
def test_a_wrong_key_is_refused_and_a_forged_answer_is_not_believed(store, tmp_path, route, refusal):
    _refund_pending(store, "YD-S", route)
    with RefundStandIn() as provider:
        good = signed_refund_policy(provider, tmp_path / "keys", alipay_url=provider.url, wechatpay_url=provider.url)
        bad_clients = make_refund_clients(good)  # a merchant key that is not the one registered with the provider
        bad_clients[route].private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert _send(store, bad_clients, 9) == {"succeeded": 0, "instructed": 0, "pending": 1, "failed": 0}
        assert (provider.refused_signatures, provider.refunds) == (1, [])
        with store.connect() as conn:
            error = conn.execute(select(refund_requests.c.last_error)).scalar()
        assert error == refusal
        provider.tamper_answers = True  # the refund is made, but its answer is not signed by the provider's key
        clients = make_refund_clients(good)
        assert _send(store, clients, 10)["pending"] == 1
        provider.tamper_answers = False
        assert _send(store, clients, 11)["succeeded"] == 1  # same request number: the first refund comes back
    assert [(r["trade"], r["amount_fen"]) for r in provider.refunds] == [("YD-S", 2 * 7900)]
    with store.connect() as conn:
        sent = read_frame(conn, select(refund_requests.c.status, refund_requests.c.attempts))
    assert sent.to_dict("records") == [{"status": "succeeded", "attempts": 3}]
