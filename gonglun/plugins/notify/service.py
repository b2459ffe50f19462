"""Fan-out: one ``notify`` becomes one delivery row per recipient and channel.

Everything a notification decides is decided here, in one transaction, and written down:
who receives it (by role), on which channels, what each message says (rendered now, so every
retry sends the same words), and why a channel sends nothing (switched off, no address, no
provider, no template, the daily cap). Rows that are ``queued`` are handed to the
``notify.deliver`` actor after commit; a lost hand-off is found by the sweeper.

Idempotency: a delivery's key is the event's key (the outbox event being run, or a digest of
the call), the scene, the recipient and the channel, under a unique constraint. A redelivered
event inserts nothing, counts nothing against a cap and sends nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gonglun.accounts.models import User
from gonglun.db import insert_ignore_returning_id
from gonglun.hooks.deferred import current_key
from gonglun.plugins.notify.counters import day_of, now, take
from gonglun.plugins.notify.models import Delivery, Preference
from gonglun.plugins.notify.providers import ProviderUnavailable, get_provider
from gonglun.plugins.notify.render import Renderer, RenderError
from gonglun.plugins.notify.scenes import TEMPLATED, Scene, scenes_for

log = logging.getLogger(__name__)

DELIVER_ACTOR = "notify.deliver"
_D = Delivery.__table__


def event_key(*parts: Any) -> str:
    """The outbox key of the deferred event being run, else a digest of ``parts``."""
    key = current_key()
    if key:
        return key
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return "h:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def delivery_key(event: str, scene: str, user_id: int | None, channel: str) -> str:
    raw = f"{event}|{scene}|{user_id}|{channel}"
    return raw if len(raw) <= 191 else "s:" + hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str | None = None
    address: str | None = None
    provider: str = ""
    payload: dict[str, Any] | None = None
    error: str | None = None


class Notifier:
    """The notify plugin's service for one runtime (``service(rt)``)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        cfg = rt.config
        link_base = cfg.get("notify.link_base") or cfg.base_url
        self.renderer = Renderer(cfg.get("notify.templates_dir") or None, str(link_base))
        self.retry_s = tuple(float(s) for s in cfg.get("notify.retry_s"))
        self.max_attempts = int(cfg.get("notify.max_attempts", len(self.retry_s) + 1))
        self.lease_s = float(cfg.get("notify.lease_s"))
        self.grace_s = float(cfg.get("notify.sweep_s")) * 2

    # -- recipients ----------------------------------------------------------------------

    def recipients(self, session: Session, scene: Scene, user_id: Any,
                   data: dict[str, Any]) -> list[tuple[User, str]]:
        wanted: list[tuple[int, str]] = []
        for role in scene.recipients:
            if role == "user":
                ids = [user_id]
            elif role == "admins":
                ids = self.admins(session)
            else:  # data:<field>: the id a plugin put in the data, never a client
                ids = [data.get(role.partition(":")[2])]
            wanted += [(i, role) for i in ids
                       if isinstance(i, int) and not isinstance(i, bool) and i > 0]
        users = {u.id: u for u in session.scalars(
            select(User).where(User.id.in_({i for i, _ in wanted})))}
        seen: set[int] = set()
        found = []
        for uid, role in wanted:
            if uid in users and uid not in seen:
                seen.add(uid)
                found.append((users[uid], role))
        return found

    def admins(self, session: Session) -> list[int]:
        configured = self.rt.config.get("notify.alarm_recipients")
        if configured:
            return [int(i) for i in configured]
        return list(session.scalars(
            select(User.id).where(User.role.in_(("admin", "superadmin")),
                                  User.status == "active").order_by(User.id)))

    # -- one channel of one recipient ------------------------------------------------------

    def judge(self, session: Session, scene: Scene, channel: str, user: User,
              context: dict[str, Any], link: str, switched_off: set[str],
              address: str | None = None) -> Verdict:
        if user.status == "deleted":
            return Verdict("skipped", "the account is deleted")
        if channel in switched_off and not scene.locked and channel != "inbox":
            return Verdict("skipped", "switched off in the user's notification settings")
        try:
            provider = get_provider(self.rt, channel)
        except ProviderUnavailable as exc:
            return Verdict("unavailable", f"no {channel} provider: {exc}"[:255])
        rule = scene.channels[channel]
        if channel in TEMPLATED and provider.needs_template and not rule.template_id:
            return Verdict("unavailable", f"scene {scene.key} has no {channel} template_id "
                           f"(notify.scenes.{scene.key}.channels.{channel}.template_id)",
                           provider=provider.name)
        address = address or provider.address(session, user)
        if not address:
            return Verdict("skipped", f"the user has no {channel} address", provider=provider.name)
        try:
            payload = self.renderer.render(scene.key, channel, context, link)
        except RenderError as exc:
            return Verdict("failed", "template error", address, provider.name, error=str(exc))
        return Verdict("queued", None, address, provider.name, payload)

    # -- fan-out -----------------------------------------------------------------------------

    def fan_out(self, session: Session, scene_key: str, user_id: Any, data: dict[str, Any],
                event: str, addresses: dict[str, str] | None = None) -> list[int]:
        """Write the deliveries of one notification; answers the ids to hand to workers.
        ``addresses`` (channel → address) reach the ``user`` recipient where the account no
        longer does: a plugin's, never a client's (the contacts a reset unbound)."""
        scene = scenes_for(self.rt).get(scene_key)
        if scene is None or scene.kind == "code":
            log.warning("notify: no notification scene %r (user %s); nothing sent",
                        scene_key, user_id)
            return []
        at = now(self.rt)
        day = day_of(at)
        data = {k: v for k, v in (data or {}).items() if k != "notice"}
        try:
            link = self.renderer.link(scene.link, data)
        except RenderError:
            log.warning("notify %s: the link could not be rendered", scene.key, exc_info=True)
            link = ""
        queued = []
        for user, role in self.recipients(session, scene, user_id, data):
            context = {**data, "notice": {
                "scene": scene.key, "scene_name": scene.name, "category": scene.category,
                "role": role, "user": {"id": user.id, "nickname": user.nickname}}}
            off = set() if scene.locked else set(session.scalars(
                select(Preference.channel).where(Preference.user_id == user.id,
                                                 Preference.scene == scene.key,
                                                 Preference.enabled.is_(False))))
            for channel, rule in scene.channels.items():
                verdict = self.judge(session, scene, channel, user, context, link, off,
                                     (addresses or {}).get(channel) if role == "user" else None)
                new_id = insert_ignore_returning_id(session, _D, {
                    "key": delivery_key(event, scene.key, user.id, channel),
                    "scene": scene.key, "user_id": user.id, "channel": channel,
                    "provider": verdict.provider, "address": verdict.address,
                    "status": verdict.status, "reason": verdict.reason, "attempts": 0,
                    "next_attempt_at": at, "claimed_until": None, "provider_id": None,
                    "error": verdict.error,
                    "payload": json.dumps(verdict.payload or {}, ensure_ascii=False),
                    "day": day, "created_at": at, "sent_at": None,
                })
                if new_id is None or verdict.status != "queued":
                    continue  # already fanned out by an earlier run of this event, or decided
                if rule.cap is not None and not take(
                        session, f"cap:{user.id}:{scene.key}:{channel}:{day}", day,
                        limit=rule.cap, at=at):
                    session.execute(_D.update().where(_D.c.id == new_id).values(
                        status="capped",
                        reason=f"daily cap of {rule.cap} {channel} messages reached for this "
                               f"user and scene ({day}, Asia/Shanghai)"))
                    continue
                queued.append(new_id)
        return queued

    def notify(self, scene_key: str, user_id: Any, data: dict[str, Any],
               addresses: dict[str, str] | None = None) -> list[int]:
        """The ``notify`` hook: fan out in one transaction, then hand the deliveries over."""
        event = event_key("notify", scene_key, user_id, data)
        with self.rt.db.write() as session:
            ids = self.fan_out(session, scene_key, user_id, data, event, addresses)
        self.enqueue(ids)
        return ids

    def enqueue(self, ids: list[int], delay_s: float = 0) -> None:
        if not ids:
            return
        try:
            actor = self.rt.actor(DELIVER_ACTOR)
            for delivery_id in ids:
                if delay_s > 0:
                    actor.send_with_options(args=(delivery_id,), delay=int(delay_s * 1000))
                else:
                    actor.send(delivery_id)
        except Exception:  # the broker is down: the sweeper sends them when it is back
            log.warning("notify: broker unavailable, %d deliveries left to the sweeper",
                        len(ids), exc_info=True)


def service(rt: Any) -> Notifier:
    found = rt.__dict__.get("_notify_service")
    if found is None:
        found = rt.__dict__["_notify_service"] = Notifier(rt)
    return found
