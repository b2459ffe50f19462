"""REST resources of the refund plugin (API.md): request, live query, list and resolve."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gonglun.api.routes import responds
from gonglun.api.util import (
    client_ip,
    get_str,
    json_body,
    ok,
    path_id,
    query_int,
    query_str,
    run_sync,
)
from gonglun.errors import GonglunError
from gonglun.plugins.refund import checks, exits, service
from gonglun.plugins.refund.models import REFUNDING, STATUS_NAMES, STUCK, Refund

REQUEST_SCHEMA = {
    "type": "object",
    "required": ["amount", "way", "reason"],
    "properties": {
        "amount": {"type": "integer", "minimum": 1, "description": "fen"},
        "way": {"type": "string", "enum": list(checks.WAYS)},
        "reason": {"type": "string", "minLength": 1, "maxLength": 255},
        "refund_key": {"type": "string", "description": "the system way's key (services only)"},
    },
}
RESOLVE_SCHEMA = {
    "type": "object",
    "required": ["action"],
    "properties": {
        "action": {"type": "string", "enum": ["manual", "retry"]},
        "note": {"type": "string", "maxLength": 200},
        "type": {"type": "string", "enum": ["USER_BANK_CARD", "MERCHANT_BANK_CARD"]},
        "bank_type": {"type": "string"}, "bank_account": {"type": "string"},
        "real_name": {"type": "string"},
    },
}


class PaymentRefunds:
    """``POST /v1/payments/{ref}/refunds``: the unified refund (CORE-10)."""

    auth = "public"
    auth_optional = True

    def __init__(self, rt: Any):
        self.rt = rt

    @responds(201, description="the refund and the payment, with the catalog's message")
    async def on_post(self, req: Any, resp: Any, ref: str) -> None:
        """Refund a paid order, whole or in part (one refund per payment, DECISIONS.md 10).

        ``way``: ``seller`` (the order's seller), ``admin``, or ``system`` (a service with the
        configured ``refund_key``, never with a user's session). Without a token, only the
        system way with a valid key gets past 401, before the payment is looked up; a user who
        may not see the payment gets 404. Checks and messages follow DECISIONS.md 11 and the
        catalog (REF-03, REF-04). A channel refund still settling
        answers ``wait_refund`` with its message; an unknown outcome is 502
        ``refund.outcome_unknown`` and is confirmed by the system.
        """
        from gonglun.idempotency import idempotent

        body = await json_body(req)
        user = req.context.user
        ask = checks.Ask(ref=ref, amount=body.get("amount"), way=body.get("way"),
                         reason=body.get("reason"), refund_key=body.get("refund_key"),
                         user=user, ip=client_ip(req), session=user is not None)
        checks.gate(self.rt, ask)  # 401 before any lookup, before an idempotency record
        scope = f"u{user.id}" if user else f"ip:{ask.ip}"

        async def work(_key: str | None) -> None:
            result = await run_sync(service.request_refund, self.rt, ask)
            ok(resp, {"refund": result["refund"], "payment": result["payment"]},
               status=201, msg=result["msg"])

        await idempotent(self.rt, req, resp, scope, body, work)


class RefundQuery:
    """``GET /v1/payments/{ref}/refund``: the live refund status (REF-23..29, CORE-13)."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any, ref: str) -> None:
        """Ask the channel now (balance refunds: the local state). Limits per IP (1 per 5 s)
        and per role (users 5 a minute then 5 minutes blocked, admins 10, superadmins none);
        the answer carries the status and its message, never the channel's data."""
        from gonglun.plugins.refund.query import live_query, rate_limit

        await run_sync(rate_limit, self.rt, req.context.user, client_ip(req))
        ok(resp, await run_sync(live_query, self.rt, ref, req.context.user))


class Refunds:
    """``GET /v1/refunds`` (admin): refund records, newest first, by status or payment."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Refund records (``status`` 1-4 or a name: success, refunding, failed, void; or
        ``stuck``: refunding, and the channel keeps saying PROCESSING)."""
        limit = query_int(req, "limit", 50, minimum=1, maximum=500)
        before = query_int(req, "before", 0) or None
        status = query_str(req, "status", choices=(*map(str, STATUS_NAMES), *STATUS_NAMES.values(),
                                                   STUCK))
        payment = query_int(req, "payment_id", 0) or None
        ok(resp, await run_sync(self._list, limit, before, status, payment))

    def _list(self, limit: int, before: int | None, status: str | None,
              payment_id: int | None) -> dict[str, Any]:
        stmt = select(Refund).order_by(Refund.id.desc()).limit(limit)
        if before:
            stmt = stmt.where(Refund.id < before)
        if status == STUCK:
            stmt = stmt.where(Refund.status == REFUNDING, Refund.stuck_at.isnot(None))
        elif status:
            code = int(status) if status.isdigit() else {
                v: k for k, v in STATUS_NAMES.items()}[status]
            stmt = stmt.where(Refund.status == code)
        if payment_id:
            stmt = stmt.where(Refund.payment_id == payment_id)
        with self.rt.db.read() as session:
            rows = [service.refund_dict(r) for r in session.scalars(stmt)]
        return {"refunds": rows, "next_before": rows[-1]["id"] if len(rows) == limit else None}


class RefundResolve:
    """``POST /v1/refunds/{id}/resolve`` (admin): the exit of a ``fail_refund``."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, refund_id: str) -> None:
        """``{"action": "manual", "note"}``: the buyer was paid by hand (the held money leaves
        through the ``manual`` account, with the note and the admin), once the channel says it
        did not pay (REF-27: paid there 409 ``refund.paid_by_channel``, processing there 409
        ``refund.channel_processing``, no answer 502 ``refund.channel_unconfirmed``).
        ``{"action": "retry"}``: through the channel again (WeChat ``ABNORMAL``: its
        abnormal-refund API, with ``type`` and, for ``USER_BANK_CARD``, ``bank_type``,
        ``bank_account``, ``real_name``). One exit at a time: another one racing it answers 409
        (``refund.exit_claimed``, ``refund.not_failed``) and calls nobody."""
        rid = path_id(refund_id, error="refund.not_found", msg="退款记录不存在")
        body = await json_body(req)
        action = get_str(body, "action", choices=("manual", "retry"))
        admin = req.context.user.id
        if action == "manual":
            note = get_str(body, "note", max_len=200)
            ok(resp, await run_sync(exits.resolve_manual, self.rt, rid, note, admin))
            return
        bank = {k: get_str(body, k, required=False, max_len=128)
                for k in ("type", "bank_type", "bank_account", "real_name")}
        bank = {k: v for k, v in bank.items() if v}
        if bank.get("type", "USER_BANK_CARD") == "USER_BANK_CARD" and bank and not all(
                bank.get(k) for k in ("bank_type", "bank_account", "real_name")):
            raise GonglunError("refund.bank_required",
                               "退款到用户银行卡需要 bank_type、bank_account、real_name")
        ok(resp, await run_sync(exits.retry_channel, self.rt, rid, bank, admin))
