"""Verification codes (NTF-13, NTF-14), the one code component every flow uses: SMS codes
to a mainland phone, email codes to an address (a scene's one channel says which).

``send_code(rt, to, scene)`` checks the scene's rules (the destination's form, login, bound
destination, the ``sms_code_guard`` filter), then in one transaction the interval since the last
code and the daily cap, stores the code's keyed HMAC only, and sends it through the channel's
provider (Tencent Cloud SMS, SMTP) while the caller waits (a code that arrives minutes later is
worthless, so it is never retried or re-sent; its delivery row keeps no code). ``verify_code``
checks the newest live code of the destination and scene, counting every attempt: after
``max_attempts`` wrong ones the code is dead.

The HMAC key is ``notify.code_key`` (the same on every process); on the embedded default a
key file under ``server.data_dir`` is made on first use. Without either, codes are refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from gonglun.accounts.contacts import email_address, mainland_phone
from gonglun.accounts.models import User
from gonglun.db import insert_ignore_returning_id
from gonglun.errors import GonglunError
from gonglun.plugins.notify.counters import day_of, last_at, now, take
from gonglun.plugins.notify.models import Delivery, SmsCode
from gonglun.plugins.notify.providers import (
    DeliveryError,
    Outbound,
    ProviderUnavailable,
    SettingsError,
    get_provider,
    mask,
)
from gonglun.plugins.notify.scenes import Scene, scenes_for
from gonglun.plugins.notify.service import service

MSG_PHONE = "请输入正确的手机号\n注:目前仅支持国内手机号码段"
MSG_EMAIL = "请输入正确的邮箱地址"


@dataclass(frozen=True)
class Destination:
    """Where a code goes: ``value`` as stored and matched (11-digit phone, or the email),
    ``address`` as the provider sends to (``+86...`` or the email)."""

    channel: str
    value: str

    @property
    def address(self) -> str:
        return "+86" + self.value if self.channel == "sms" else self.value

    @property
    def field(self) -> str:
        return "phone" if self.channel == "sms" else "email"


def normalize_phone(phone: Any) -> str:
    """The 11-digit mainland number; anything else (arrays included, ACC-09) is refused."""
    number = mainland_phone(phone)
    if number is None:
        raise GonglunError("notify.invalid_phone", MSG_PHONE)
    return number


def destination(channel: str, value: Any) -> Destination:
    """``value`` in its stored form for a code on ``channel``; refused when it is not one."""
    if channel == "sms":
        return Destination("sms", normalize_phone(value))
    found = email_address(value)
    if found is None:
        raise GonglunError("notify.invalid_email", MSG_EMAIL)
    return Destination("email", found)


def code_scene(rt: Any, key: Any) -> Scene | None:
    scene = scenes_for(rt).get(key) if isinstance(key, str) else None
    return scene if scene is not None and scene.kind == "code" else None


def code_key(rt: Any) -> bytes:
    from gonglun.keyfiles import KeyMissing, key_from

    try:
        return key_from(rt, "notify.code_key", "notify/code.key",
                        " to send verification codes")
    except KeyMissing as exc:
        raise SettingsError(str(exc)) from None


def _digest(key: bytes, scene: str, to: str, code: str) -> str:
    return hmac.new(key, f"{scene}:{to}:{code}".encode(), hashlib.sha256).hexdigest()


def _refuse_sender(rt: Any, scene: Scene, to: Destination, user_id: int | None) -> None:
    rule = scene.code
    assert rule is not None
    if rule.login_required and user_id is None:
        raise GonglunError("auth.required", "请先登录", status=401)
    if rule.require_bound_phone:
        held = (User.phone.in_((to.value, to.address)) if to.channel == "sms"
                else User.email == to.value)
        with rt.db.read() as session:
            bound = session.scalar(select(User.id).where(held, User.status == "active"))
        if bound is None:
            raise GonglunError("notify.phone_not_bound", "手机号未找到绑定账户,请重新提交"
                               if to.channel == "sms" else "邮箱未找到绑定账户,请重新提交")
    # ``phone`` is the destination: the phone, or the email address of an email scene.
    errors = rt.hooks.apply_filters("sms_code_guard", [], phone=to.value, scene=scene.key,
                                    user_id=user_id)
    if errors:
        raise errors[0]


def _unavailable(channel: str) -> GonglunError:
    if channel == "email":
        return GonglunError("notify.email_unavailable", "邮件服务暂不可用, 请稍后再试", status=503)
    return GonglunError("notify.sms_unavailable", "短信服务暂不可用, 请稍后再试", status=503)


def _failed(channel: str, provider_code: str) -> GonglunError:
    data = {"provider_code": provider_code}
    if channel == "email":
        return GonglunError("notify.email_failed", "邮件发送失败, 请稍后再试", status=502,
                            data=data)
    return GonglunError("notify.sms_failed", "短信发送失败, 请稍后再试", status=502, data=data)


def send_code(rt: Any, to: Any, scene: Any, *, user_id: int | None = None,
              ip: str | None = None) -> dict[str, Any]:
    """Send a verification code of ``scene`` to ``to`` (a phone, or an email for an email
    scene); raises ``GonglunError`` when the rules refuse (``notify.code_too_soon`` and
    ``notify.code_daily_cap`` are 429s)."""
    found = code_scene(rt, scene)
    if found is None:
        raise GonglunError("notify.unknown_code_scene", f"验证码场景不存在: {str(scene)[:32]}")
    channel = found.code_channel
    dest = destination(channel, to)
    rule, rules = found.code, found.channels[channel]
    assert rule is not None
    _refuse_sender(rt, found, dest, user_id)
    try:
        provider = get_provider(rt, channel)
        key = code_key(rt)
    except (ProviderUnavailable, SettingsError):
        raise _unavailable(channel) from None
    if channel == "sms" and not rules.template_id:
        raise _unavailable(channel)
    at, code = now(rt), f"{secrets.randbelow(10**rule.length):0{rule.length}d}"
    content = service(rt).renderer.render(found.key, channel, {"code": code, "notice": {
        "scene": found.key, "scene_name": found.name, "role": "user", "user": None,
        "minutes": max(1, rule.validity_s // 60)}}, "", base="_code")
    code_id, delivery_id = _record(rt, found, dest, key, code, user_id=user_id, ip=ip, at=at,
                                   provider=provider.name, content=content)
    message = Outbound(delivery_id, f"code:{code_id}", found.key, user_id, dest.address,
                       content, template_id=rules.template_id)
    try:
        serial = provider.send(rt, message)
    except DeliveryError as exc:
        _settle(rt, delivery_id, code_id, failed=f"{exc.code}: {exc.message}")
        raise _failed(channel, exc.code) from None
    _settle(rt, delivery_id, None, provider_id=serial)
    return {"scene": found.key, dest.field: mask(dest.value), "expires_in": rule.validity_s,
            "interval_s": rule.interval_s, "delivery_id": delivery_id}


def _record(rt: Any, scene: Scene, dest: Destination, key: bytes, code: str, *,
            user_id: int | None, ip: str | None, at: dt.datetime, provider: str,
            content: dict[str, Any]) -> tuple[int, int]:
    """The interval and the daily cap taken, the code's HMAC and its delivery row written, in
    one transaction; answers (code id, delivery id)."""
    rule = scene.code
    assert rule is not None
    day, to = day_of(at), dest.value
    with rt.db.write() as session:
        if not take(session, f"codeint:{scene.key}:{to}", day, at=at,
                    interval_s=rule.interval_s):
            last = last_at(session, f"codeint:{scene.key}:{to}") or at
            wait = max(1, int(rule.interval_s - (at - last).total_seconds()))
            raise GonglunError("notify.code_too_soon", f"验证码发送过于频繁, 请{wait}秒后再试",
                               status=429, data={"retry_after": wait},
                               headers={"Retry-After": str(wait)})
        if not take(session, f"code:{scene.key}:{to}:{day}", day, limit=rule.daily_cap, at=at):
            raise GonglunError("notify.code_daily_cap", "今日验证码发送次数已达上限, 请明天再试",
                               status=429)
        code_id = insert_ignore_returning_id(session, SmsCode.__table__, {
            "destination": to, "scene": scene.key,
            "code_hash": _digest(key, scene.key, to, code), "user_id": user_id,
            "ip": (ip or "")[:64] or None, "attempts": 0, "created_at": at,
            "expires_at": at + dt.timedelta(seconds=rule.validity_s), "consumed_at": None,
        })
        # The log keeps no code: SMS parameters masked, an email by its subject only.
        masked = ({"params": ["*" * len(p) for p in content["params"]], "resend": False}
                  if dest.channel == "sms" else {"subject": content["subject"], "resend": False})
        delivery_id = insert_ignore_returning_id(session, Delivery.__table__, {
            "key": f"code:{code_id}", "scene": scene.key, "user_id": user_id,
            "channel": dest.channel, "provider": provider, "address": dest.address,
            "status": "sending", "reason": None, "attempts": 1, "next_attempt_at": at,
            "claimed_until": None, "provider_id": None, "error": None,
            "payload": json.dumps(masked, ensure_ascii=False), "day": day, "created_at": at,
            "sent_at": None,
        })
    assert code_id is not None and delivery_id is not None
    return code_id, delivery_id


def _settle(rt: Any, delivery_id: int, dead_code: int | None, *, failed: str | None = None,
            provider_id: str | None = None) -> None:
    at = now(rt)
    with rt.db.write() as session:
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
            status="failed" if failed else "sent", error=failed,
            provider_id=provider_id, sent_at=None if failed else at))
        if dead_code is not None:  # never delivered: it must not be guessable either
            session.execute(update(SmsCode).where(SmsCode.id == dead_code).values(
                consumed_at=at))


def verify_code(rt: Any, to: Any, scene: Any, code: Any, *, consume: bool = True) -> bool:
    """Whether ``code`` is the live code of ``to`` (phone or email) and ``scene``; a match is
    consumed (single use) unless ``consume`` is false. Every call counts as an attempt."""
    found = code_scene(rt, scene)
    if found is None or not isinstance(code, str) or not code.isascii() or not code.isdigit():
        return False
    try:
        dest = destination(found.code_channel, to).value
        key = code_key(rt)
    except (GonglunError, SettingsError):
        return False
    rule = found.code
    assert rule is not None
    at = now(rt)
    with rt.db.write() as session:
        row = session.execute(
            select(SmsCode.id, SmsCode.code_hash)
            .where(SmsCode.destination == dest, SmsCode.scene == found.key,
                   SmsCode.consumed_at.is_(None), SmsCode.expires_at > at)
            .order_by(SmsCode.id.desc()).limit(1)).first()
        if row is None:
            return False
        counted = session.execute(
            update(SmsCode).where(SmsCode.id == row.id, SmsCode.consumed_at.is_(None),
                                  SmsCode.attempts < rule.max_attempts)
            .values(attempts=SmsCode.attempts + 1),
            execution_options={"synchronize_session": False}).rowcount
        if not counted:
            return False
        if not hmac.compare_digest(row.code_hash, _digest(key, found.key, dest, code)):
            return False
        if consume:
            return bool(session.execute(
                update(SmsCode).where(SmsCode.id == row.id, SmsCode.consumed_at.is_(None))
                .values(consumed_at=at),
                execution_options={"synchronize_session": False}).rowcount)
        return True
