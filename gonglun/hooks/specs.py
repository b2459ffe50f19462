"""Every hook of Gonglun, in one flat module.

Three kinds (see ``markers.py``): **actions** run every implementation and isolate failures;
**filters** thread their first argument through the implementations and return it; **decisions**
stop at the first non-None answer. Every hook receives ``rt`` (the Runtime: config, database,
Redis, hooks) injected by the runner; implementations take any subset of the arguments, so new
arguments never break old plugins. Deferred actions carry only ids and JSON primitives: they are
written to the outbox inside the business transaction and run on a worker after commit.

Catalog mapping (docs/requirements.md): CORE-02 payment_success, CORE-03 payment_created and
payment_guard, CORE-04/05/07 channel_adapter, CORE-06 payment_closed, CORE-08 channel_config,
CORE-09/10 refund_guard, CORE-11 refund_ok, CORE-12 refund_abnormal, CORE-14 balance_changed,
CORE-15 identify_close, CORE-16 face_guard, CORE-17 face_ok, CORE-18 account_reset, CORE-19/20
binding_changed, CORE-21 notify, CORE-24 order_access, CORE-25 user_login, user_registered,
sms_code_check, find_account, user_visits, CORE-27 client_event. CORE-01 (the result
envelope), CORE-22 (cached queries), CORE-23 (locks) and CORE-26 (helpers) are core services,
not hooks.
"""

from __future__ import annotations

from typing import Any

from gonglun.hooks.markers import action, decision, filter

# ---------------------------------------------------------------------------------------------
# Registration: called while the runtime starts. Filters, so a broken plugin fails loudly.
# ---------------------------------------------------------------------------------------------


@filter
def register_routes(rt: Any, routes: list[Any]) -> list[Any]:
    """Add REST routes: append ``gonglun.api.Route(path, resource)`` items; return the list."""


@filter
def register_actors(rt: Any, actors: list[Any]) -> list[Any]:
    """Add Dramatiq actors: append ``gonglun.tasks.ActorSpec`` items; return the list."""


@filter
def register_periodic_jobs(rt: Any, jobs: list[Any]) -> list[Any]:
    """Add timers: append ``gonglun.tasks.PeriodicJob(name, every_s, actor)``; return the list."""


@filter
def register_payment_scenes(rt: Any, scenes: dict[str, Any]) -> dict[str, Any]:
    """Add or adjust payment scenes (key → settings, decision 6); return the mapping."""


@filter
def register_notification_scenes(rt: Any, scenes: dict[str, Any]) -> dict[str, Any]:
    """Add notification scenes (key → channels, templates, daily caps); return the mapping."""


@filter
def register_commands(rt: Any, commands: list[Any]) -> list[Any]:
    """Add CLI commands: append ``gonglun.cli.Command(name, help, add_arguments, run)``."""


@filter
def register_ledger_accounts(rt: Any, accounts: dict[str, Any]) -> dict[str, Any]:
    """Declare system accounts of the ledger: add ``code → gonglun.ledger.SystemAccount(code,
    name, description)``; return the mapping. Codes are lower-case words with an optional
    ``:qualifier`` (``deposit``, ``fee:sms``); a system account may go negative by design."""


@filter
def register_settings(rt: Any, settings: list[Any]) -> list[Any]:
    """Declare the plugin's settings: append ``gonglun.settings.Setting(path, type, default,
    description, secret)`` items; undeclared settings stop start-up (docs/settings.md)."""


@filter
def register_migrations(rt: Any, locations: list[str]) -> list[str]:
    """Add Alembic version directories holding the plugin's own migrations; return the list."""


@filter
def register_models(rt: Any, modules: list[str]) -> list[str]:
    """Add module paths whose import declares the plugin's SQLAlchemy models."""


# ---------------------------------------------------------------------------------------------
# Payments (PAY, DROP)
# ---------------------------------------------------------------------------------------------


@filter
def payment_guard(
    rt: Any, errors: list[Any], session: Any, user: Any, scene: str, amount: int, method: str
) -> list[Any]:
    """Before an order is created (CORE-03): append ``GonglunError`` items to refuse it."""


@action(deferred=True)
def payment_created(rt: Any, payment: dict[str, Any]) -> None:
    """After an order is committed (CORE-03). ``payment`` is the row as JSON primitives."""


@action(deferred=True)
def payment_success(rt: Any, payment: dict[str, Any]) -> None:
    """Once per order, after a verified notification or channel query marked it paid (CORE-02).

    The payment plugin moves the money first (a channel payment's transfer to the scene's
    account, key ``payment:<id>``); the scene's handler adds its effect and must be idempotent.
    """


@action(deferred=True)
def payment_closed(rt: Any, payment: dict[str, Any], reason: str) -> None:
    """After an unpaid order was closed: ``reason`` is timeout, buyer, seller or admin (CORE-06)."""


@action(deferred=True)
def payment_late(rt: Any, payment: dict[str, Any], resolution: str) -> None:
    """A verified payment arrived for an order closed locally (decision 7): review or refund."""


@decision
def settle_payment(rt: Any, ref: str, by: str, operator_id: Any) -> Any:
    """Settle an order that pays a seller (goods received, service done): ``by`` is ``host``,
    ``admin`` or ``auto``. The payment plugin answers for scenes with ``settle``: PAY-24 guard
    first, then escrow → seller less the scene's commission → income; it returns the settled
    payment or raises ``GonglunError``. Stops at the first non-None answer."""


@action(deferred=True)
def payment_settled(rt: Any, payment: dict[str, Any], seller_amount: int, income: int) -> None:
    """After a settlement committed: the seller was credited ``seller_amount``, ``income`` the
    commission."""


@filter
def order_access(rt: Any, allow: bool, viewer: Any, payment: dict[str, Any]) -> bool:
    """May ``viewer`` see ``payment``? Owner, admins and the whitelist by default (CORE-24)."""


@filter
def payment_detail(
    rt: Any, detail: dict[str, Any], payment: dict[str, Any], viewer: Any
) -> dict[str, Any]:
    """Shape the bill-page data of one payment for ``viewer`` (PAY-2x); return the dict."""


@decision
def channel_config(rt: Any, method: str) -> Any:
    """SDK settings of the channel ``method`` (alipay, wxpay...), or None if unknown (CORE-08)."""


@decision
def channel_adapter(rt: Any, method: str, settings: dict[str, Any]) -> Any:
    """The object that speaks channel ``method`` (pay parameters, query, close, notification
    verification, statements: ``gonglun.plugins.payment.channels.base.Channel``), built from
    ``settings``; None when not yours (CORE-04, CORE-05, CORE-07). The payment plugin answers
    for alipay and wxpay; a plugin may answer first to replace one (another SDK, a proxy)."""


# ---------------------------------------------------------------------------------------------
# Refunds (REF)
# ---------------------------------------------------------------------------------------------


@filter
def refund_guard(
    rt: Any, errors: list[Any], session: Any, payment: dict[str, Any], request: dict[str, Any]
) -> list[Any]:
    """Extra checks before a refund (CORE-10); append ``GonglunError`` items to refuse it."""


@decision
def refund_reverse(
    rt: Any, session: Any, payment: dict[str, Any], refund: dict[str, Any]
) -> Any:
    """Undo the scene's effect inside the refund transaction (decision 9); answer a result."""


@decision
def refund_notice(rt: Any, method: str, notice: dict[str, Any]) -> Any:
    """A verified refund notification (WeChat ``REFUND.*``, Alipay's refund news on
    ``trade_status_sync``): the refund plugin applies it and answers the outcome (a string)."""


@action(deferred=True)
def refund_ok(rt: Any, refund: dict[str, Any], payment: dict[str, Any]) -> None:
    """After a refund succeeded, is in progress, or was forced to success (CORE-11)."""


@action(deferred=True)
def refund_abnormal(rt: Any, channel: str, refund_order: str, payment: dict[str, Any]) -> None:
    """The channel cannot pay the refund out; finance must act (CORE-12)."""


# ---------------------------------------------------------------------------------------------
# Balance (BAL)
# ---------------------------------------------------------------------------------------------


@action(deferred=True)
def balance_changed(rt: Any, posting: dict[str, Any]) -> None:
    """After a transfer touching a wallet committed (CORE-14), once per wallet side:
    ``posting`` = id (the transfer), user_id, delta, balance_after, scene, ref, remark, key."""


# ---------------------------------------------------------------------------------------------
# Appraisal, face, accounts (IDF, FACE, ACC)
# ---------------------------------------------------------------------------------------------


@action(deferred=True)
def identify_close(rt: Any, identify_id: int, refund_id: int) -> None:
    """After an appraisal order's refund completed, whatever closed it (CORE-15)."""


@filter
def face_guard(rt: Any, errors: list[Any], user: Any, scene: str) -> list[Any]:
    """Checks before a paid face verification (CORE-16); append errors to refuse it."""


@action
def face_ok(rt: Any, session: Any, face: dict[str, Any]) -> None:
    """Inside the transaction that marked a face verification ``ok`` (CORE-17)."""


@decision
def face_provider(rt: Any) -> Any:
    """The face-verification provider (``gonglun.plugins.face.FaceProvider``: start a check,
    read its verdict); the face plugin answers Tencent Cloud FaceID. A plugin answering first
    replaces it. Asked once per runtime."""


@filter
def register_face_scenes(rt: Any, scenes: dict[str, Any]) -> dict[str, Any]:
    """Add face scenes (FACE-01): key → ``gonglun.plugins.face.FaceScene`` (its gates and what
    a pass does); return the mapping."""


@action(deferred=True)
def account_reset(rt: Any, user_id: int, contacts: dict[str, str]) -> None:
    """After an account was recovered or reset (CORE-18). ``contacts`` holds the ``phone``
    and ``email`` the account had before the reset unbound them (absent when none), so their
    owner hears of it there too."""


@action(deferred=True)
def binding_changed(rt: Any, user_id: int, kind: str, change: str) -> None:
    """A phone or email was bound, rebound or unbound (CORE-19, CORE-20)."""


@action(deferred=True)
def user_registered(rt: Any, user_id: int) -> None:
    """After a user account was created (CORE-25)."""


@action
def user_login(rt: Any, user_id: int, method: str, ip: str, platform: str,
               user_agent: str) -> None:
    """After a successful login (CORE-25), committed: ``method`` is password, sms or wechat;
    ``platform`` the client's (web, h5, app, pc, mp, mini). Risk alerts listen here (OPS-09)."""


@decision
def find_account(rt: Any, kind: str, value: Any) -> Any:
    """The user id an identifier of ``kind`` (``phone``, ``login``...) belongs to; None when
    unknown (CORE-25 ``xc_find_account_hook``). The core answers phone and login."""


@action
def user_visits(rt: Any, user_id: int, platform: str, ip: str) -> None:
    """A signed-in client loaded its user (``GET /v1/me``; CORE-25 ``xc_user_visits_hook``)."""


@decision
def sms_code_check(rt: Any, phone: str, scene: str, code: str) -> Any:
    """True/False when a plugin owns verification codes for ``scene``; None otherwise
    (CORE-25). ``phone`` is the code's destination: the phone, or the email address of an
    email code scene (``bind_email``)."""


@decision
def resolve_token(rt: Any, token: str) -> Any:
    """The user a bearer token belongs to, for token kinds the core does not know."""


@filter
def user_public(rt: Any, data: dict[str, Any], user: Any) -> dict[str, Any]:
    """The ``GET /v1/me`` body of ``user``; plugins add their fields."""


# ---------------------------------------------------------------------------------------------
# Notifications and push (NTF, CORE-21, CORE-27)
# ---------------------------------------------------------------------------------------------


@action(deferred=True)
def notify(rt: Any, scene: str, user_id: int, data: dict[str, Any]) -> None:
    """Deliver notification ``scene`` to ``user_id`` over its channels (CORE-21)."""


@filter
def client_event(rt: Any, message: dict[str, Any], user_id: int) -> dict[str, Any]:
    """Shape a websocket push before it is published to the user (CORE-27)."""


@decision
def notify_provider(rt: Any, channel: str) -> Any:
    """The provider delivering notification channel ``channel`` (inbox, email, sms, wechat, app,
    websocket): a ``gonglun.plugins.notify.providers.Provider``; None when not yours. The notify
    plugin answers for its built-ins (SMTP, Tencent Cloud SMS, WeChat official account, JPush);
    a plugin answering first replaces one (another SMS vendor, a relay). Asked once per
    runtime."""


@filter
def sms_code_guard(
    rt: Any, errors: list[Any], phone: str, scene: str, user_id: int | None
) -> list[Any]:
    """Before an SMS verification code of ``scene`` is sent to ``phone`` (NTF-13/14): append
    ``GonglunError`` items to refuse it (``wechat_reg``: the phone is already bound to WeChat)."""


# ---------------------------------------------------------------------------------------------
# Red packets (RP)
# ---------------------------------------------------------------------------------------------


@decision
def redpacket_can_grab(rt: Any, packet: dict[str, Any], user_id: int) -> Any:
    """May ``user_id`` grab this group packet? The host application decides (decision 19)."""


@action(deferred=True)
def redpacket_event(rt: Any, event: str, packet_id: int, data: dict[str, Any]) -> None:
    """A red packet was sent, claimed, credited or expired (``event`` says which)."""


# ---------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------


@action(deferred=True)
def alarm(rt: Any, kind: str, message: str, data: dict[str, Any]) -> None:
    """Something needs a human: a late payment, an abnormal refund, a reconciliation gap."""


@action(deferred=True)
def cache_invalidate(rt: Any, cache: str, values: list[str]) -> None:
    """Drop ``values`` from the record cache named ``cache``; deferred when an invalidation
    failed after commit (Redis down), so the entry cannot outlive the outage. The cache's owner
    implements it and raises while Redis still fails (the outbox retries)."""


@filter
def startup_checks(rt: Any, problems: list[str]) -> list[str]:
    """When a process starts serving or working: append one line per thing the operator must
    fix (a channel without keys...); they are logged at start and printed by ``gonglun serve``."""


@filter
def audit(rt: Any, problems: list[str], session: Any) -> list[str]:
    """Money invariants (``gonglun audit``): append a line per mismatch; return the list."""


@filter
def health(rt: Any, checks: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/health`` checks: add ``name → {"ok": bool, ...}`` entries."""


@filter
def openapi(rt: Any, document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document before it is served; plugins may refine their routes' entries."""
