"""Tencent Cloud API 3.0: the TC3-HMAC-SHA256 check and the response envelope.

Shared by every Tencent Cloud service the sandbox speaks (SMS today, FaceID next). The
canonical request is rebuilt from what arrived: the method, the path, the query, the headers
the ``SignedHeaders`` list names (lower-case names, values trimmed and lower-cased) and the
body's SHA-256; the key is derived from the secret key, the credential date and the service.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ALGORITHM = "TC3-HMAC-SHA256"
#: Requests signed longer ago than this (or this far in the future) are refused.
MAX_SKEW_S = 300
_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<sid>[^/\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


class TcError(Exception):
    """An error answered in the ``{"Response": {"Error": {...}}}`` envelope."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Signed:
    secret_id: str
    service: str
    action: str
    version: str
    region: str


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_signing = _hmac(_hmac(k_date, service), "tc3_request")
    return hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
           secrets: Mapping[str, str], now: float | None = None) -> Signed:
    """Check a request's TC3 signature against ``secrets`` (secret id → secret key).

    Raises ``TcError`` with the code Tencent Cloud answers: ``AuthFailure.InvalidAuthorization``
    (malformed header), ``.SecretIdNotFound``, ``.SignatureExpire``, ``.SignatureFailure``.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    found = _AUTH.match(lower.get("authorization", "").strip())
    if found is None:
        raise TcError("AuthFailure.InvalidAuthorization",
                      "Authorization 不符合腾讯云 TC3-HMAC-SHA256 规范")
    secret_key = secrets.get(found["sid"])
    if secret_key is None:
        raise TcError("AuthFailure.SecretIdNotFound", "密钥不存在")
    stamp = lower.get("x-tc-timestamp", "")
    if not stamp.isdigit():
        raise TcError("MissingParameter", "缺少 X-TC-Timestamp")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > MAX_SKEW_S:
        raise TcError("AuthFailure.SignatureExpire", "签名过期, 请检查本机时间")
    signed = found["signed"].split(";")
    if "content-type" not in signed or "host" not in signed:
        raise TcError("AuthFailure.InvalidAuthorization",
                      "SignedHeaders 须包含 content-type 和 host")
    date = time.strftime("%Y-%m-%d", time.gmtime(int(stamp)))
    if found["date"] != date:
        raise TcError("AuthFailure.SignatureFailure", "凭证日期与时间戳不符")
    canonical_headers = "".join(f"{h}:{lower.get(h, '').strip().lower()}\n" for h in signed)
    canonical = "\n".join([method.upper(), path or "/", query, canonical_headers,
                           found["signed"], hashlib.sha256(body).hexdigest()])
    scope = f"{found['date']}/{found['service']}/tc3_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    expected = signature(secret_key, found["date"], found["service"], to_sign)
    if not hmac.compare_digest(expected, found["sig"]):
        raise TcError("AuthFailure.SignatureFailure", "请求签名验证失败, 请检查密钥和签名计算")
    return Signed(found["sid"], found["service"], lower.get("x-tc-action", ""),
                  lower.get("x-tc-version", ""), lower.get("x-tc-region", ""))


def envelope(payload: dict[str, Any] | None = None, error: TcError | None = None) -> str:
    """The JSON body: ``{"Response": {...payload, "RequestId"}}`` or the ``Error`` form."""
    inner: dict[str, Any] = dict(payload or {})
    if error is not None:
        inner = {"Error": {"Code": error.code, "Message": error.message}}
    inner["RequestId"] = str(uuid.uuid4())
    return json.dumps({"Response": inner}, ensure_ascii=False)
