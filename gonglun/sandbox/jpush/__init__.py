"""JPush REST API v3 emulator: ``POST /v3/push`` with HTTP Basic ``app_key:master_secret``.

The ``jpush`` client talks to it through a zone whose ``PUSH`` URL points here (docs/notify.md).
Answers follow JPush's status-code rules: 200 ``{"sendno", "msg_id"}``; errors use a 4xx/5xx
status and ``{"error": {"code", "message"}}`` (the client reads ``error.code``). Faults:
``{"channel": "jpush", "error": 2002}`` (429 rate limited), ``1011`` (400 no target), ``1000``
(500), ``1030`` (503)..., ``"http": "500" | "timeout"`` as for the payment channels.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

import falcon.asgi

from ..vendors import Vendor, json_or_none, keys_of
from ..web import read_body

KEYS = ("app_key", "master_secret")
PLATFORMS = frozenset({"android", "ios", "quickapp", "hmos", "winphone"})
AUDIENCE_KEYS = frozenset({"tag", "tag_and", "tag_not", "alias", "registration_id",
                           "segment", "abtest", "live_activity_id"})
#: Error code → (HTTP status, message), after JPush's documented table.
ERRORS: dict[int, tuple[int, str]] = {
    1000: (500, "系统内部错误"),
    1002: (400, "缺少了必须的参数"),
    1003: (400, "参数值不合法"),
    1004: (401, "验证失败"),
    1005: (400, "消息体太大"),
    1008: (400, "app_key 参数非法"),
    1011: (400, "没有满足条件的推送目标"),
    1030: (503, "内部服务超时, 请稍后重试"),
    2002: (429, "API 调用频率超出该应用的限制"),
    2003: (403, "该应用 appkey 已被限制调用 API"),
    2008: (403, "广播推送超出频率限制"),
}
MAX_BODY = 4000  # JPush refuses notification + message payloads above 4000 bytes (1005)


def _error_code(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in ERRORS:
        raise ValueError(f"one of JPush's codes {sorted(ERRORS)}")
    return value


class PushError(Exception):
    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.status, message = ERRORS[code]
        self.message = f"{message}: {detail}" if detail else message


class JPush(Vendor):
    name = "jpush"

    def __init__(self, keys: dict[str, Any]) -> None:
        super().__init__(keys, {"error": _error_code})
        self.app_key = keys["app_key"]
        self.master_secret = keys["master_secret"]

    def add_routes(self, app: falcon.asgi.App) -> None:
        super().add_routes(app)
        app.add_route("/v3/push", _Push(self))

    def info(self) -> dict[str, Any]:
        return {"app_key": self.app_key}

    def authorised(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            key, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(key, self.app_key) and secrets.compare_digest(
            secret, self.master_secret)

    def push(self, body: bytes) -> dict[str, Any]:
        if len(body) > MAX_BODY:
            raise PushError(1005)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise PushError(1003, "body is not JSON") from None
        if not isinstance(data, dict):
            raise PushError(1003, "body must be an object")
        for field in ("platform", "audience"):
            if field not in data:
                raise PushError(1002, field)
        platform, audience = data["platform"], data["audience"]
        if platform != "all" and not (isinstance(platform, list) and platform
                                      and set(platform) <= PLATFORMS):
            raise PushError(1003, "platform")
        if audience != "all" and not (
            isinstance(audience, dict) and audience and set(audience) <= AUDIENCE_KEYS
            and all(isinstance(v, list) and 0 < len(v) <= 1000 for v in audience.values())
        ):
            raise PushError(1003, "audience")
        if "notification" not in data and "message" not in data:
            raise PushError(1002, "notification or message")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise PushError(1003, "options")
        fault = self.faults.take("error")
        if fault is not None:
            raise PushError(int(fault.value), "sandbox fault")
        return {"sendno": str(options.get("sendno", 0)),
                "msg_id": str(secrets.randbelow(10**18) + 10**17)}


class _Push:
    auth = "public"

    def __init__(self, vendor: JPush) -> None:
        self.vendor = vendor

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if await self.vendor.faulted(resp):
            return
        body = await read_body(req)
        try:
            if not self.vendor.authorised(req.get_header("Authorization")):
                raise PushError(1004)
            status, reply = 200, self.vendor.push(body)
        except PushError as exc:
            status, reply = exc.status, {"error": {"code": exc.code, "message": exc.message}}
        request = json_or_none(body)
        audience = request.get("audience") if isinstance(request, dict) else None
        aliases = audience.get("alias") if isinstance(audience, dict) else None
        self.vendor.recorder.add(
            action="push", status=str(status), request=request, response=reply,
            alias=str(aliases[0]) if isinstance(aliases, list) and aliases else "")
        resp.status = status
        resp.content_type = "application/json"
        resp.text = json.dumps(reply, ensure_ascii=False)


def create(keyset: dict[str, Any]) -> JPush | None:
    keys = keys_of(keyset, "jpush", KEYS)
    return JPush(keys) if keys is not None else None
