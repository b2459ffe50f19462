"""REST resources of the face plugin (API.md): face checks, recovery lookup, account reset,
the recovery audit trail."""

from __future__ import annotations

from typing import Any

from gonglun.api.routes import responds
from gonglun.api.util import client_ip, header_text, json_body, ok, query_int, run_sync
from gonglun.plugins.face import flow, recovery, trail
from gonglun.plugins.face.trail import Caller

_NAME = {"type": "string", "maxLength": 32}
_CODE = {"type": "string", "maxLength": 18, "description": "ID-card number (GB 11643)"}
START_SCHEMA = {
    "type": "object",
    "required": ["name", "code"],
    "properties": {
        "type": {"type": "string", "maxLength": 32, "examples": ["personal", "retrieve"]},
        "name": _NAME, "code": _CODE,
        "id": {"type": "string", "maxLength": 32, "description": "retrieve: the candidate's "
               "reference from the lookup"},
        "method": {"type": "string", "enum": ["money", "alipay", "wxpay"]},
        "channel": {"type": "string", "maxLength": 16},
    },
}
LOOKUP_SCHEMA = {"type": "object", "required": ["code"], "properties": {"code": _CODE}}
RESET_SCHEMA = {
    "type": "object",
    "required": ["token", "password"],
    "properties": {"token": {"type": "string", "maxLength": 64},
                   "password": {"type": "string", "maxLength": 128}},
}
FACE_REF = {"type": "string", "pattern": "^[0-9a-f]{32}$"}


def caller(req: Any) -> Caller:
    return Caller(req.context.user, client_ip(req), (req.user_agent or "")[:512],
                  header_text(req, "X-Fingerprint"))


class _Resource:
    auth = "public"
    auth_optional = True

    def __init__(self, rt: Any):
        self.rt = rt


class Verifications(_Resource):
    """``POST /v1/face/verifications``: start a face check (FACE-01..10)."""

    @responds(201, description="the check: its reference and the provider's page URL")
    async def on_post(self, req: Any, resp: Any) -> None:
        """Start a check of ``type`` ``personal`` (logged in) or ``retrieve`` (guests, with the
        candidate's ``id`` from the lookup). Short quota answers 402 ``face.payment_required``
        with ``data.jump = "payment"`` and the order to pay; too fast answers 429."""
        body = await json_body(req)
        ok(resp, await run_sync(flow.start, self.rt, caller(req), body), status=201)


class Verification(_Resource):
    """``GET /v1/face/verifications/{ref}``: the check's verdict (asks the provider once)."""

    async def on_get(self, req: Any, resp: Any, ref: str) -> None:
        """The check's status; a finished ``retrieve`` pass answers the reset ``token`` once."""
        ok(resp, await run_sync(flow.read, self.rt, caller(req), ref))


class VerificationCancel(_Resource):
    """``POST /v1/face/verifications/{ref}/cancel``: the user walked away (not billed)."""

    async def on_post(self, req: Any, resp: Any, ref: str) -> None:
        ok(resp, await run_sync(flow.cancel, self.rt, caller(req), ref))


class RecoveryLookup(_Resource):
    """``POST /v1/account/recovery/lookup``: the accounts an ID number verified (masked)."""

    async def on_post(self, req: Any, resp: Any) -> None:
        """Guests only; limited per address and per number as face checks are (FACE-03)."""
        body = await json_body(req)
        ok(resp, await run_sync(recovery.lookup, self.rt, caller(req), body.get("code")))


class AccountReset(_Resource):
    """``POST /v1/account/reset``: the new password with the reset token (FACE-13)."""

    async def on_post(self, req: Any, resp: Any) -> None:
        """Once, within 2 h, from the address, agent and fingerprint that passed the check;
        anything else is 403 非法请求."""
        body = await json_body(req)
        ok(resp, await run_sync(recovery.redeem, self.rt, caller(req), body.get("token"),
                                body.get("password")), msg="密码已重置")


class AuditLog:
    """``GET /v1/face/audit`` (admin): recovery attempts, newest first."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        limit = query_int(req, "limit", 50, minimum=1, maximum=500)
        before = query_int(req, "before", 0) or None
        user_id = query_int(req, "user_id", 0) or None
        ok(resp, await run_sync(trail.entries, self.rt, user_id=user_id, before=before,
                                limit=limit))
