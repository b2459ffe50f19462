"""REST resources of the notify plugin: the inbox, notification settings, the delivery log."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import func, select, update

from gonglun.api.util import INT64_MAX, json_body, ok, query_int, run_sync
from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.notify import prefs
from gonglun.plugins.notify.models import STATUSES, Delivery, Message
from gonglun.plugins.notify.providers import mask
from gonglun.plugins.notify.scenes import CHANNELS

_SCENE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_IDS = 500
def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def message_dict(m: Message) -> dict[str, Any]:
    return {"id": m.id, "scene": m.scene, "category": m.category, "account": m.account,
            "account_name": m.account_name, "title": m.title, "first": m.first,
            "body": m.body, "rows": json.loads(m.rows or "[]"), "remark": m.remark,
            "link": m.link, "created_at": _iso(m.created_at), "read_at": _iso(m.read_at)}


def delivery_dict(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "scene": d.scene, "user_id": d.user_id, "channel": d.channel,
            "provider": d.provider, "address": mask(d.address), "status": d.status,
            "reason": d.reason, "attempts": d.attempts, "provider_id": d.provider_id,
            "error": d.error, "day": d.day, "created_at": _iso(d.created_at),
            "sent_at": _iso(d.sent_at), "next_attempt_at": _iso(d.next_attempt_at)}


def _choice(req: Any, name: str, allowed: Any) -> str | None:
    value = req.get_param(name)
    if value is None:
        return None
    if value not in allowed:
        raise GonglunError("request.invalid_choice", f"参数 {name} 取值无效",
                           data={"field": name})
    return str(value)


def _unread(session: Any, user_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(Message).where(
        Message.user_id == user_id, Message.read_at.is_(None))) or 0)


class Messages:
    """``GET /v1/me/messages``: the caller's inbox and service-account messages."""

    def __init__(self, rt: Any):
        self.rt = rt

    def _list(self, user_id: int, limit: int, before: int, unread: bool,
              scene: str | None) -> dict[str, Any]:
        query = select(Message).where(Message.user_id == user_id)
        if before:
            query = query.where(Message.id < before)
        if unread:
            query = query.where(Message.read_at.is_(None))
        if scene:
            query = query.where(Message.scene == scene)
        with self.rt.db.read() as session:
            rows = list(session.scalars(query.order_by(Message.id.desc()).limit(limit)))
            return {"messages": [message_dict(m) for m in rows],
                    "unread": _unread(session, user_id),
                    "next_before": rows[-1].id if len(rows) == limit else None}

    async def on_get(self, req: Any, resp: Any) -> None:
        """The caller's messages, newest first, with the unread count.

        ``limit`` (1-100, default 20) and ``before`` (a message id) page; ``unread=true``
        lists unread ones only; ``scene`` filters by scene.
        """
        limit = query_int(req, "limit", 20, minimum=1, maximum=100)
        before = query_int(req, "before", 0, minimum=0, maximum=INT64_MAX)
        unread = _choice(req, "unread", ("true", "false", "1", "0")) in ("true", "1")
        scene = req.get_param("scene")
        if scene is not None and not _SCENE.match(scene):
            raise GonglunError("request.invalid_choice", "参数 scene 取值无效",
                               data={"field": "scene"})
        ok(resp, await run_sync(self._list, req.context.user.id, limit, before, unread, scene))


class MessagesRead:
    """``POST /v1/me/messages/read``: mark the caller's messages read."""

    def __init__(self, rt: Any):
        self.rt = rt

    def _mark(self, user_id: int, ids: list[int] | None) -> dict[str, Any]:
        stmt = update(Message).where(Message.user_id == user_id, Message.read_at.is_(None))
        if ids is not None:
            stmt = stmt.where(Message.id.in_(ids))
        with self.rt.db.write() as session:
            marked = session.execute(stmt.values(read_at=utcnow()),
                                     execution_options={"synchronize_session": False}).rowcount
            return {"marked": int(marked), "unread": _unread(session, user_id)}

    async def on_post(self, req: Any, resp: Any) -> None:
        """``{"ids": [...]}`` (at most 500) or ``{"all": true}``; another user's ids are
        ignored. Answers how many were marked and the unread count left."""
        body = await json_body(req)
        ids, everything = body.get("ids"), body.get("all")
        if everything is not None and not isinstance(everything, bool):
            raise GonglunError("request.invalid_type", "参数 all 必须是布尔值",
                               data={"field": "all"})
        if everything:
            ok(resp, await run_sync(self._mark, req.context.user.id, None))
            return
        if not isinstance(ids, list) or not ids:
            raise GonglunError("request.missing_field", "缺少参数: ids", data={"field": "ids"})
        if len(ids) > MAX_IDS or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 < i <= INT64_MAX for i in ids
        ):
            raise GonglunError("request.invalid_type", f"参数 ids 必须是 1-{MAX_IDS} 个消息 id",
                               data={"field": "ids"})
        ok(resp, await run_sync(self._mark, req.context.user.id, sorted(set(ids))))


class Settings:
    """``GET/PUT /v1/me/notification-settings``."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Every scene the caller may receive, with each channel's state; ``locked`` channels
        (money and security notices, the inbox) cannot be switched off."""
        ok(resp, await run_sync(prefs.view, self.rt, req.context.user))

    async def on_put(self, req: Any, resp: Any) -> None:
        """``{"scenes": {"identify_close": {"app": false}}}``: switch channels on or off.

        Checked whole first: an unknown scene or channel, or switching off a locked one, is a
        400 and nothing changes. Answers the settings as ``GET`` does.
        """
        user = req.context.user
        changes = prefs.parse(self.rt, user, await json_body(req))
        await run_sync(prefs.save, self.rt, user, changes)
        ok(resp, await run_sync(prefs.view, self.rt, user))


class Deliveries:
    """``GET /v1/notifications/deliveries``: the delivery log (admins)."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    def _list(self, filters: dict[str, Any], limit: int, before: int) -> dict[str, Any]:
        query = select(Delivery)
        for name, value in filters.items():
            if value is not None:
                query = query.where(getattr(Delivery, name) == value)
        if before:
            query = query.where(Delivery.id < before)
        with self.rt.db.read() as session:
            rows = list(session.scalars(query.order_by(Delivery.id.desc()).limit(limit)))
        return {"deliveries": [delivery_dict(d) for d in rows],
                "next_before": rows[-1].id if len(rows) == limit else None}

    async def on_get(self, req: Any, resp: Any) -> None:
        """Deliveries newest first: scene, user, channel, provider, masked address, status,
        why (``reason``), attempts, the provider's id, the last error.

        Filters: ``scene``, ``user_id``, ``channel``, ``status``; ``limit`` (1-500, default
        50) and ``before`` (a delivery id) page.
        """
        scene = req.get_param("scene")
        if scene is not None and not _SCENE.match(scene):
            raise GonglunError("request.invalid_choice", "参数 scene 取值无效",
                               data={"field": "scene"})
        user_id = query_int(req, "user_id", 0, minimum=0, maximum=INT64_MAX) or None
        filters = {"scene": scene, "user_id": user_id,
                   "channel": _choice(req, "channel", CHANNELS),
                   "status": _choice(req, "status", STATUSES)}
        limit = query_int(req, "limit", 50, minimum=1, maximum=500)
        before = query_int(req, "before", 0, minimum=0, maximum=INT64_MAX)
        ok(resp, await run_sync(self._list, filters, limit, before))


READ_SCHEMA = {
    "type": "object",
    "properties": {
        "ids": {"type": "array", "minItems": 1, "maxItems": MAX_IDS,
                "items": {"type": "integer", "minimum": 1}},
        "all": {"type": "boolean"},
    },
}
SETTINGS_SCHEMA = {
    "type": "object",
    "required": ["scenes"],
    "properties": {"scenes": {
        "type": "object", "minProperties": 1,
        "additionalProperties": {"type": "object", "minProperties": 1,
                                 "additionalProperties": {"type": "boolean"}},
    }},
}
