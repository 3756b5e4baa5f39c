"""Request and answer signatures of the payment providers' refund interfaces, as they publish them.

Both use SHA256withRSA (RSASSA-PKCS1-v1_5 over SHA-256, base64), over different strings:

- **Alipay open API (``sign_type=RSA2``)**: every request parameter except ``sign`` whose value is not empty, sorted
  by name, written ``name=value`` and joined with ``&`` (values raw, not URL-encoded). The answer's ``sign`` is over
  the exact text of the ``<method>_response`` JSON value as it stands in the answer (``alipay_answer_signed_text``).
- **WeChat Pay API v3**: the request's ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`` (URL = path and query), sent as
  ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"``;
  the answer is signed over ``TIMESTAMP\\nNONCE\\nBODY\\n`` with the ``Wechatpay-Timestamp``/``-Nonce``/``-Signature``
  headers, by the platform key named in ``Wechatpay-Serial``.

The primitive is checked against the published vector of the official Go SDK (``tests/data/formats/wechatpay/
sha256withrsa-sdk-vector.json``). Keys are PEM files whose paths the policy names (``[aftersales]``).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

WECHATPAY_SCHEMA = "WECHATPAY2-SHA256-RSA2048"


class SigningKeyError(RuntimeError):
    """A key file is missing or is not an RSA key in PEM."""


def load_private_key(pem: bytes | str | Path) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM text or a PEM file (PKCS#8 ``PRIVATE KEY`` or PKCS#1 ``RSA PRIVATE KEY``)."""
    data = _pem_bytes(pem)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError("the private key is not RSA")
    return key


def load_public_key(pem: bytes | str | Path) -> rsa.RSAPublicKey:
    """An RSA public key from PEM text or file: ``PUBLIC KEY``, ``RSA PUBLIC KEY`` or a certificate."""
    data = _pem_bytes(pem)
    try:
        if b"CERTIFICATE" in data:
            from cryptography import x509

            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"not a PEM public key or certificate: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SigningKeyError("the public key is not RSA")
    return key


def _pem_bytes(pem: bytes | str | Path) -> bytes:
    if isinstance(pem, Path) or (isinstance(pem, str) and "-----BEGIN" not in pem):
        path = Path(pem)
        if not path.is_file():
            raise SigningKeyError(f"key file {path} does not exist")
        return path.read_bytes()
    return pem.encode("ascii") if isinstance(pem, str) else pem


def sha256_rsa_sign(message: str, key: rsa.RSAPrivateKey) -> str:
    """SHA256withRSA (PKCS#1 v1.5) of the UTF-8 message, base64."""
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def sha256_rsa_verify(message: str, signature: str, key: rsa.RSAPublicKey) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message.encode("utf-8"), padding.PKCS1v15(),
                   hashes.SHA256())  # fmt: skip
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# --- Alipay ---------------------------------------------------------------------------------------------------


def alipay_sign_content(params: dict[str, str]) -> str:
    """The string Alipay signs: non-empty parameters but ``sign``, sorted by name, ``k=v`` joined by ``&``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] not in ("", None))


def alipay_answer_signed_text(text: str, response_key: str) -> str | None:
    """The exact text of ``"<response_key>": {...}``'s value in an Alipay answer (what its ``sign`` covers), or
    None when the key is missing. Taken from the raw text: re-serialising the parsed JSON would change it."""
    match = re.search(r'"' + re.escape(response_key) + r'"\s*:\s*', text)
    if match is None:
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(text, match.end())
    except ValueError:
        return None
    return text[match.end():end]


# --- WeChat Pay API v3 --------------------------------------------------------------------------------------------


def wechatpay_request_message(method: str, url_path: str, timestamp: str, nonce: str, body: str) -> str:
    return f"{method.upper()}\n{url_path}\n{timestamp}\n{nonce}\n{body}\n"


def wechatpay_answer_message(timestamp: str, nonce: str, body: str) -> str:
    return f"{timestamp}\n{nonce}\n{body}\n"


def wechatpay_authorization(*, mchid: str, serial_no: str, nonce: str, timestamp: str, signature: str) -> str:
    return (f'{WECHATPAY_SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')  # fmt: skip


def parse_wechatpay_authorization(header: str) -> dict[str, str] | None:
    """The fields of a v3 ``Authorization`` header, or None when it is not one."""
    schema, _, rest = (header or "").partition(" ")
    if schema != WECHATPAY_SCHEMA:
        return None
    fields = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    needed = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"}
    return fields if needed <= fields.keys() else None
