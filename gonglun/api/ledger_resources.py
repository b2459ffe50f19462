"""The ledger's admin REST resources (``/v1/ledger/accounts``, ``/v1/ledger/transfers``,
``/v1/ledger/adjustments``), routed by the core plugin (``gonglun.core_plugin``)."""

from __future__ import annotations

from typing import Any

from gonglun.api.routes import responds
from gonglun.api.util import client_ip, json_body, ok, query_int, run_sync
from gonglun.errors import GonglunError
from gonglun.ledger import adjust
from gonglun.ledger.accounts import INCOME, check_code
from gonglun.ledger.reads import accounts_report, list_transfers
from gonglun.ledger.transfers import MAX_AMOUNT

ADJUST_SCHEMA = {
    "type": "object", "required": ["user_id", "amount", "reason", "key"],
    "additionalProperties": False,
    "properties": {
        "user_id": {"type": "integer", "minimum": 1, "maximum": adjust.INT64_MAX},
        "amount": {"type": "integer", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT,
                   "not": {"const": 0},
                   "description": "signed fen: positive credits the user from manual"},
        "reason": {"type": "string", "minLength": 1, "maxLength": adjust.MAX_REASON,
                   "description": "plain text on one line"},
        "key": {"type": "string", "minLength": 1, "maxLength": adjust.MAX_KEY,
                "pattern": "^[!-~]+$", "description": "idempotency key naming the adjustment"},
        "allow_negative": {"type": "boolean", "default": False,
                           "description": "let a debit leave the wallet below zero"},
    },
}


class _Resource:
    """The ledger's routes are staff's: admins, or super admins where ``auth`` says so."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt


class LedgerAccounts(_Resource):
    """``GET /v1/ledger/accounts`` (admin)."""

    async def on_get(self, req: Any, resp: Any) -> None:
        """System accounts with their balances, the wallets in total, and the sum (always 0).
        ``income`` shows its balance to super admins only (PAY-22)."""
        report = await run_sync(accounts_report, self.rt)
        if not _sees_income(req):
            for account in report["accounts"]:
                if account["code"] == INCOME:
                    account["balance"] = None
        ok(resp, report)


class LedgerTransfers(_Resource):
    """``GET /v1/ledger/transfers`` (admin)."""

    async def on_get(self, req: Any, resp: Any) -> None:
        """Transfers newest first; filter by ``account`` (``escrow``, ``user:7``...), ``code``
        and ``ref``; page with ``limit`` and ``before``. Amounts to or from ``income`` show to
        super admins only (PAY-22)."""
        account = req.get_param("account") or None
        if account is not None:
            check_code(self.rt, account)
        code, ref = _param(req, "code"), _param(req, "ref")
        limit = query_int(req, "limit", 50, minimum=1, maximum=500)
        before = query_int(req, "before", 0, minimum=0) or None

        def load() -> dict[str, Any]:
            with self.rt.db.read() as session:
                return list_transfers(session, account=account, code=code, ref=ref,
                                      limit=limit, before=before)

        listing = await run_sync(load)
        if not _sees_income(req):
            for t in listing["transfers"]:
                if INCOME in (t["debit"], t["credit"]):
                    t.update(amount=None, debit_after=None, credit_after=None)
        ok(resp, listing)


class LedgerAdjustments(_Resource):
    """``POST /v1/ledger/adjustments`` (super admins)."""

    auth = "superadmin"

    @responds(201, description="the adjustment (the same one again for a repeated key)")
    async def on_post(self, req: Any, resp: Any) -> None:
        """Adjust a wallet against ``manual``: repair a negative balance, record a payout made
        outside the system.

        ``amount`` is signed fen (positive credits the user, negative debits); ``key`` names the
        adjustment: repeated with the same body it answers the stored adjustment
        (``Idempotent-Replayed: true``) and moves nothing, with another body it is refused
        (422 ``ledger.adjustment_mismatch``). A debit below zero is refused
        (``ledger.adjustment_negative``) unless ``allow_negative`` is true. Written to the admin
        audit log."""
        adj = adjust.parse(await json_body(req))
        me = req.context.user
        actor = (me.id, f"{me.role}:{me.login}", f"ip:{client_ip(req)}")
        view, created = await run_sync(adjust.adjust, self.rt, adj, actor=actor)
        if not created:
            resp.set_header("Idempotent-Replayed", "true")
        ok(resp, {"adjustment": view, "balance": view["balance_after"]}, status=201)


def _sees_income(req: Any) -> bool:
    """PAY-22: platform revenue is for super admins; admins see that it moved, not how much."""
    return bool(req.context.user is not None and req.context.user.role == "superadmin")


def _param(req: Any, name: str) -> str | None:
    value = req.get_param(name) or None
    if value is not None and len(value) > 64:
        raise GonglunError("request.too_long", f"参数 {name} 过长", data={"field": name})
    return value


__all__ = ["ADJUST_SCHEMA", "LedgerAccounts", "LedgerAdjustments", "LedgerTransfers"]
