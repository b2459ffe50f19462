"""Tencent Cloud API 3.0 emulator: ``POST /`` signed with TC3-HMAC-SHA256; SMS ``SendSms``,
FaceID ``DetectAuth`` and ``GetDetectInfoEnhanced`` (``faceid.py``).

``tencentcloud-sdk-python`` talks to it unchanged, pointed with
``HttpProfile(endpoint="<host>:<port>", protocol="http")``. As the real gateway, every answer
is HTTP 200 with ``Content-Type: application/json`` (the SDK parses ``Error`` only then), and
the service and action come from the credential scope and ``X-TC-Action``. Faults:
``{"channel": "tencentcloud", "error": "RequestLimitExceeded"}`` answers that error envelope,
``"status": "LimitExceeded.PhoneNumberDailyLimit"`` fails the next numbers inside
``SendStatusSet``, ``"http": "500" | "timeout"`` as for the payment channels.
"""

from __future__ import annotations

import json
import re
from typing import Any

import falcon.asgi

from ..vendors import Vendor, json_or_none, keys_of
from ..web import ControlError, fail, ok, read_body, read_json
from . import faceid
from .sms import CATALOG, VERSION, Template, send_sms, template_from
from .tc3 import TcError, envelope, verify

KEYS = ("secret_id", "secret_key", "sms_sdk_app_id", "sms_sign_name")
_CODE = re.compile(r"^[A-Z][A-Za-z]+(\.[A-Za-z0-9]+)*$")


def _code(value: Any) -> str:
    if not isinstance(value, str) or not _CODE.match(value) or len(value) > 100:
        raise ValueError("a Tencent Cloud error code such as RequestLimitExceeded")
    return value


class TencentCloud(Vendor):
    name = "tencentcloud"

    def __init__(self, keys: dict[str, Any]) -> None:
        super().__init__(keys, {"error": _code, "status": _code})
        self.secrets = {keys["secret_id"]: keys["secret_key"]}
        self.sdk_app_id = keys["sms_sdk_app_id"]
        self.sign_name = keys["sms_sign_name"]
        self.templates: dict[str, Template] = {t.id: t for t in CATALOG}
        self.faceid = faceid.FaceId(str(keys.get("faceid_rule_id") or "1"))

    def add_routes(self, app: falcon.asgi.App) -> None:
        super().add_routes(app)
        app.add_route("/", _Api(self))
        app.add_route("/sandbox/tencentcloud/templates", _Templates(self))
        app.add_route("/sandbox/tencentcloud/faceid/{token}", _FacePerson(self))

    def info(self) -> dict[str, Any]:
        return {"secret_id": self.keys["secret_id"], "sms_sdk_app_id": self.sdk_app_id,
                "sms_sign_name": self.sign_name, "templates": sorted(self.templates),
                "faceid_rule_id": self.faceid.rule_id}

    def reset(self) -> None:
        super().reset()
        self.templates = {t.id: t for t in CATALOG}
        self.faceid.reset()

    def handle(self, req: falcon.asgi.Request, body: bytes) -> tuple[dict[str, Any], str]:
        """The payload of one API call (and the SMS text, if any); raises ``TcError``."""
        signed = verify(req.method, req.path, req.query_string, dict(req.headers), body,
                        self.secrets)
        fault = self.faults.take("error")
        if fault is not None:
            raise TcError(str(fault.value), "sandbox fault")
        versions = {"sms": VERSION, "faceid": faceid.VERSION}
        if signed.service not in versions:
            raise TcError("InvalidAction", f"服务 {signed.service} 未开通 (sandbox)")
        if signed.service == "sms" and signed.action != "SendSms":
            raise TcError("InvalidAction", f"接口 {signed.action} 不存在")
        if signed.version != versions[signed.service]:
            raise TcError("NoSuchVersion", f"接口版本 {signed.version} 不存在")
        try:
            params = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise TcError("InvalidParameter", "请求体不是合法的 JSON") from None
        if not isinstance(params, dict):
            raise TcError("InvalidParameter", "请求体必须是 JSON 对象")
        if signed.service == "faceid":
            return self.faceid.handle(signed.action, params, req.netloc), ""
        return send_sms(self, params)


class _Api:
    """``POST /``: every Tencent Cloud API call arrives here (the SDK's request path)."""

    auth = "public"

    def __init__(self, vendor: TencentCloud) -> None:
        self.vendor = vendor

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if await self.vendor.faulted(resp):
            return
        body = await read_body(req)
        action = req.get_header("X-TC-Action") or ""
        params, text = json_or_none(body), ""
        try:
            payload, text = self.vendor.handle(req, body)
            answer = envelope(payload)
        except TcError as exc:
            answer = envelope(error=exc)
        reply = json.loads(answer)["Response"]
        self.vendor.recorder.add(
            action=action, region=req.get_header("X-TC-Region") or "",
            template_id=str((params or {}).get("TemplateId", "")) if isinstance(params, dict)
            else "", request=params, text=text, response=reply,
            error=(reply.get("Error") or {}).get("Code", ""))
        resp.status = 200
        resp.content_type = "application/json"  # exactly: the SDK ignores errors otherwise
        resp.text = answer


class _Templates:
    """``GET /sandbox/tencentcloud/templates``: approved templates; ``POST`` approves one."""

    auth = "public"

    def __init__(self, vendor: TencentCloud) -> None:
        self.vendor = vendor

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ok(resp, [vars(t) for t in self.vendor.templates.values()])

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        try:
            template = template_from(await read_json(req, required=True))
        except ControlError as exc:
            fail(resp, exc)
            return
        except ValueError as exc:
            fail(resp, ControlError(400, "bad_template", str(exc)))
            return
        self.vendor.templates[template.id] = template
        ok(resp, vars(template), 201)


class _FacePerson:
    """``POST /sandbox/tencentcloud/faceid/{BizToken}`` ``{"result": ...}``: the person in front
    of the camera passes, fails (``not_same_person``, ``not_alive``, ``id_mismatch``), is failed
    by the service (``engine_timeout``... see ``faceid.RESULTS``), walks away (``abandon``) or
    lets the session run out (``expire``); ``GET`` shows the session."""

    auth = "public"

    def __init__(self, vendor: TencentCloud) -> None:
        self.vendor = vendor

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                     token: str) -> None:
        found = self.vendor.faceid.sessions.get(token)
        if found is None:
            fail(resp, ControlError(404, "unknown_token", "no such BizToken"))
            return
        ok(resp, {"token": found.token, "result": found.result, "reads": found.reads,
                  "redirect_url": found.redirect_url, "extra": found.extra})

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                      token: str) -> None:
        try:
            body = await read_json(req, required=True)
            found = self.vendor.faceid.play(token, (body or {}).get("result"))
        except ControlError as exc:
            fail(resp, exc)
            return
        except (TcError, ValueError, AttributeError) as exc:
            fail(resp, ControlError(400, "bad_result", str(exc)))
            return
        ok(resp, {"token": found.token, "result": found.result,
                  "redirect_url": found.redirect_url})


def create(keyset: dict[str, Any]) -> TencentCloud | None:
    keys = keys_of(keyset, "tencentcloud", KEYS)
    return TencentCloud(keys) if keys is not None else None
