"""The common face flow (CORE-16, CORE-17): checks, quota, the provider, the verdict.

``start`` runs the address limit, the input checks, the ID-number limit, the scene's gates
(``face_guard`` after them) and the quota, then opens the provider's session. ``read`` asks
the provider for the verdict of a started check and applies it once: the one request whose
conditional update moves the check out of ``started`` uses the quota unit and does the scene's
work; every other request just reads the outcome. ``cancel`` ends an unfinished check unbilled.
"""

from __future__ import annotations

import secrets
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select, update

from gonglun.errors import GonglunError
from gonglun.plugins.face import limits, quota, trail
from gonglun.plugins.face.clock import now
from gonglun.plugins.face.idcard import normalize_code, normalize_name
from gonglun.plugins.face.models import FaceVerification
from gonglun.plugins.face.provider import ProviderError, Verdict, get_provider
from gonglun.plugins.face.scenes import FaceScene, Form, get_scene
from gonglun.plugins.face.trail import Caller

MSG_UNPAID = "实名认证需先支付实名费用"
MSG_PROVIDER = "人脸识别服务暂不可用, 请稍后再试"
MSG_NOT_FOUND = "人脸识别记录不存在"
MSG_QUOTA_BUSY = "实名费用已到账, 但另一次认证正在使用, 请稍后再试"
DEFAULT_CHANNEL = {"alipay": "page", "wxpay": "native"}
#: Checks still open this long ago count against the quota (the provider's 7200 s session).
INFLIGHT_S = 7200


def view(face: FaceVerification) -> dict[str, Any]:
    return {"id": face.ref, "type": face.scene, "status": face.status, "url": face.url
            if face.status == "started" else None, "charged": face.charged,
            "err_code": face.err_code, "err_msg": face.err_msg,
            "created_at": face.created_at.isoformat(),
            "finished_at": face.finished_at.isoformat() if face.finished_at else None}


def _form(rt: Any, body: dict[str, Any]) -> Form:
    from gonglun.plugins.face.crypto import keys

    code = normalize_code(body.get("code"))
    name = normalize_name(body.get("name"))
    ref = body.get("id")
    if ref is not None and (not isinstance(ref, str) or len(ref) != 32 or not ref.isalnum()):
        ref = "-"  # matches nothing: refused as a mismatch, never looked up by id
    return Form(name, code, keys(rt).index(code), ref)


def start(rt: Any, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    limits.check(rt, "idcard_face", limits.address(caller.ip))
    scene = get_scene(rt, body.get("type", "personal"))
    target_user, outcome, face_id, identity_id = None, "started", None, None
    try:
        form = _form(rt, body)
        limits.check(rt, "idcard_face", f"id:{form.code_index}")
        face = _open(rt, scene, caller, form, body)
        face_id, identity_id, target_user = face.id, face.identity_id, face.user_id
        answer = _provider_start(rt, face, form)
        if caller.user is not None and caller.user.id == face.user_id:
            with rt.db.read() as session:  # the caller's own quota, a unit bought just now too
                answer["face_number"] = quota.read(session, face.user_id)
        return answer
    except GonglunError as exc:
        outcome = exc.error
        raise
    finally:
        if scene.audited:
            trail.record(rt, caller, "start", scene.key, outcome, user_id=target_user,
                         identity_id=identity_id, verification_id=face_id)


def _open(rt: Any, scene: FaceScene, caller: Caller, form: Form,
          body: dict[str, Any]) -> FaceVerification:
    """The check, once its gates pass and a unit of quota is free. Short of one, the server
    makes the ``face_number`` order: a channel's answers 402; one paid from the balance is
    credited at once and the check opens on the unit it bought."""
    opened = _try_open(rt, scene, caller, form, count_daily=True)
    if isinstance(opened, FaceVerification):
        return opened
    _require_payment(rt, opened, caller, body)
    again = _try_open(rt, scene, caller, form, count_daily=False)
    if isinstance(again, FaceVerification):
        return again
    # Another check of this account took the unit between the payment and now: the unit
    # stays on the account (no second order, no money taken twice).
    raise GonglunError("face.quota_busy", MSG_QUOTA_BUSY, status=409)


def _try_open(rt: Any, scene: FaceScene, caller: Caller, form: Form, *,
              count_daily: bool) -> FaceVerification | Any:
    """The new ``starting`` check, or the paying account when its quota is short."""
    from gonglun.plugins.face.identities import seal_form

    sealed = seal_form(rt, form.name, form.code)
    at = now(rt)
    with rt.db.write() as session:
        target = scene.target(rt, session, caller, form)
        errors = rt.hooks.apply_filters("face_guard", [], user=target.user, scene=scene.key)
        if errors:
            raise errors[0]
        if scene.daily_setting and count_daily:
            limits.daily(rt, scene.key, target.user.id,
                         int(rt.config.get(scene.daily_setting, 5)))
        quota.grant_free(rt, session, target.user.id)
        open_checks = session.scalar(select(func.count()).where(
            FaceVerification.user_id == target.user.id, FaceVerification.status == "started",
            FaceVerification.created_at > at - _seconds(INFLIGHT_S))) or 0
        if quota.read(session, target.user.id) - open_checks < 1:
            return SimpleNamespace(id=target.user.id)
        face = FaceVerification(
            ref=secrets.token_hex(16), scene=scene.key, user_id=target.user.id,
            requester_id=caller.user.id if caller.user else None,
            identity_id=target.identity.id if target.identity else None,
            status="starting", provider=get_provider(rt).name, ip=caller.ip[:64],
            ua_hash=caller.ua_hash, fingerprint=caller.fingerprint, created_at=at,
            charged=False, **sealed)
        session.add(face)
        session.flush()
        session.expunge(face)
        return face


def _seconds(s: float) -> Any:
    import datetime as dt

    return dt.timedelta(seconds=s)


def _require_payment(rt: Any, user: Any, caller: Caller, body: dict[str, Any]) -> None:
    """FACE-04: the server makes the ``face_number`` order for the paying account. A channel's
    order answers ``jump: payment`` (402); one paid from the balance credits its units now
    (the deferred ``payment_success`` then finds them credited) and returns. A guest pays
    through a channel, never the account's balance."""
    from gonglun.plugins.payment.orders import create_payment, parse_request
    from gonglun.plugins.payment.scenes import get_scene as payment_scene

    method = body.get("method") or "alipay"
    if caller.user is None and method == "money":
        raise GonglunError("face.balance_not_allowed", "找回账户仅支持支付宝或微信支付")
    price = int(rt.config.get("face.price"))
    # Without a channel the order is still made: the PC page / QR code one of its method.
    channel = body.get("channel")
    if channel is None and isinstance(method, str):
        channel = DEFAULT_CHANNEL.get(method)
    order = {"scene": quota.META, "amount": price, "method": method,
             "channel": channel, "title": payment_scene(rt, quota.META).name}
    req = parse_request(rt, order, user)
    payment, params, _ = create_payment(rt, req, user, ip=caller.ip,
                                        fingerprint=caller.fingerprint)
    if payment.get("state") == "ok":
        quota.credit_payment(rt, {**payment, "user_id": user.id})
        return
    raise GonglunError("face.payment_required", MSG_UNPAID, status=402, data={
        "jump": "payment", "payment": {k: payment[k] for k in (
            "id", "payment_order", "scene", "amount", "method", "channel", "state")},
        "pay_params": params})


def _provider_start(rt: Any, face: FaceVerification, form: Form) -> dict[str, Any]:
    redirect = str(rt.config.get("face.redirect_url") or rt.config.base_url).rstrip("/")
    try:
        started = get_provider(rt).start(name=form.name, id_number=form.code,
                                          redirect_url=f"{redirect}/?face={face.ref}",
                                          extra=face.ref)
    except ProviderError as exc:
        with rt.db.write() as session:
            session.execute(update(FaceVerification).where(
                FaceVerification.id == face.id, FaceVerification.status == "starting")
                .values(status="error", err_msg=f"{exc.code}: {exc.message}"[:255],
                        finished_at=now(rt)))
        raise GonglunError("face.provider_error", MSG_PROVIDER, status=502) from None
    with rt.db.write() as session:
        session.execute(update(FaceVerification).where(
            FaceVerification.id == face.id, FaceVerification.status == "starting")
            .values(status="started", biz_token=started.token, url=started.url))
        face = session.get(FaceVerification, face.id)
        assert face is not None
        return view(face)


def _load(rt: Any, caller: Caller, ref: Any) -> FaceVerification:
    """The caller's own check: the requester, or for a guest's check the same address, agent
    and fingerprint. Anything else is "not found", whether or not the reference exists."""
    face = None
    if isinstance(ref, str) and len(ref) == 32 and ref.isalnum():
        with rt.db.read() as session:
            face = session.scalar(select(FaceVerification).where(FaceVerification.ref == ref))
            if face is not None:
                session.expunge(face)
    if face is not None:
        if face.requester_id is not None:
            mine = caller.user is not None and caller.user.id == face.requester_id
        else:
            mine = caller.user is None and (face.ip, face.ua_hash, face.fingerprint) == (
                caller.ip[:64], caller.ua_hash, caller.fingerprint)
        if mine:
            return face
    raise GonglunError("face.not_found", MSG_NOT_FOUND, status=404)


def read(rt: Any, caller: Caller, ref: Any) -> dict[str, Any]:
    face = _load(rt, caller, ref)
    if face.status != "started" or not face.biz_token:
        return view(face)
    try:
        verdict = get_provider(rt).verdict(face.biz_token)
    except ProviderError:
        raise GonglunError("face.provider_error", MSG_PROVIDER, status=502) from None
    if verdict.outcome == "pending":
        return view(face)
    return _apply(rt, caller, face, verdict)


def cancel(rt: Any, caller: Caller, ref: Any) -> dict[str, Any]:
    """The user walked away: an unfinished check ends ``abandoned``, unbilled. One the
    provider finished meanwhile gets its verdict instead."""
    face = _load(rt, caller, ref)
    if face.status != "started" or not face.biz_token:
        return view(face)
    try:
        verdict = get_provider(rt).verdict(face.biz_token)
    except ProviderError:
        verdict = Verdict("pending", None, "")
    if verdict.outcome == "pending":
        verdict = Verdict("abandoned", verdict.code, "用户放弃了本次认证")
    return _apply(rt, caller, face, verdict)


def _apply(rt: Any, caller: Caller, face: FaceVerification, verdict: Verdict) -> dict[str, Any]:
    from gonglun.plugins.face.identities import open_form

    status = {"pass": "ok", "fail": "fail", "abandoned": "abandoned"}.get(verdict.outcome,
                                                                          "error")
    if status == "ok":
        form = open_form(rt, face)
        # The provider must have judged this check of this person, not another session's.
        if verdict.extra != face.ref or (verdict.id_number or form["code"]) != form["code"] or (
                verdict.name or form["name"]) != form["name"]:
            status = "error"
    try:
        return _record(rt, caller, face, verdict, status)
    except GonglunError as refusal:
        if status != "ok":
            raise
        # The scene refused the pass after the provider's verdict (e.g. the ID number's
        # accounts were taken meanwhile): everything it did is undone, the check ends as a
        # failed comparison, and the caller hears why.
        _record(rt, caller, face, Verdict("fail", verdict.code, refusal.msg, verdict.sim,
                                          billed=verdict.billed), "fail")
        raise


def _record(rt: Any, caller: Caller, face: FaceVerification, verdict: Verdict,
            status: str) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    with rt.db.write() as session:
        moved = session.execute(update(FaceVerification).where(
            FaceVerification.id == face.id, FaceVerification.status == "started").values(
            status=status, err_code=verdict.code, err_msg=verdict.message[:255] or None,
            sim=verdict.sim, charged=verdict.completed, finished_at=now(rt)),
            execution_options={"synchronize_session": False}).rowcount
        current = session.get(FaceVerification, face.id)
        assert current is not None
        if moved:
            if verdict.completed:
                quota.consume(rt, session, face.user_id, face.id)
            if status == "ok":
                extra = get_scene(rt, face.scene).on_pass(rt, session, current, caller)
                rt.hooks.do_action("face_ok", session=session, face=view(current))
            if get_scene(rt, face.scene).audited:
                trail.record(rt, caller, "verdict", face.scene, status, user_id=face.user_id,
                             identity_id=face.identity_id, verification_id=face.id,
                             session=session)
        return {**view(current), **extra}
