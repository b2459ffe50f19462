"""Users' notification settings (Part 5): which channels of which scenes they receive.

Users may switch channels of ordinary scenes off; money and security notices (``locked``
scenes: refunds, payments, resets) cannot be switched off, nor can the inbox, which is the
record of every notice. Staff scenes are shown to admins only; code scenes to nobody.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from gonglun.db import insert_ignore, utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.notify.models import Preference
from gonglun.plugins.notify.scenes import Scene, scenes_for

MSG_LOCKED = "资金和账户安全通知不能关闭"


def visible(rt: Any, role: str) -> list[Scene]:
    staff = role in ("admin", "superadmin")
    return [s for s in scenes_for(rt).values()
            if s.kind == "notice" or (s.kind == "staff" and staff)]


def view(rt: Any, user: Any) -> dict[str, Any]:
    scenes = visible(rt, user.role)
    with rt.db.read() as session:
        chosen = {(p.scene, p.channel): p.enabled for p in session.scalars(
            select(Preference).where(Preference.user_id == user.id))}
    return {"scenes": [{
        "scene": s.key, "name": s.name, "category": s.category, "locked": s.locked,
        "channels": {c: {"enabled": True if s.locked or c == "inbox"
                         else chosen.get((s.key, c), True),
                         "locked": s.locked or c == "inbox"}
                     for c in s.channels},
    } for s in scenes]}


def parse(rt: Any, user: Any, body: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """``{"scenes": {scene: {channel: bool}}}`` checked whole before anything changes."""
    wanted = body.get("scenes")
    if not isinstance(wanted, dict) or not wanted:
        raise GonglunError("request.missing_field", "缺少参数: scenes", data={"field": "scenes"})
    known = {s.key: s for s in visible(rt, user.role)}
    changes = []
    for key, channels in wanted.items():
        scene = known.get(key)
        if scene is None:
            raise GonglunError("notify.unknown_scene", f"通知场景不存在: {str(key)[:32]}",
                               data={"scene": str(key)[:32]})
        if not isinstance(channels, dict) or not channels:
            raise GonglunError("request.invalid_type", f"参数 scenes.{key} 必须是对象",
                               data={"field": f"scenes.{key}"})
        for channel, enabled in channels.items():
            if channel not in scene.channels:
                raise GonglunError("notify.unknown_channel",
                                   f"场景 {key} 没有渠道: {str(channel)[:16]}",
                                   data={"scene": key, "channel": str(channel)[:16]})
            if not isinstance(enabled, bool):
                raise GonglunError("request.invalid_type",
                                   f"参数 scenes.{key}.{channel} 必须是布尔值",
                                   data={"field": f"scenes.{key}.{channel}"})
            if not enabled and (scene.locked or channel == "inbox"):
                raise GonglunError("notify.setting_locked", MSG_LOCKED,
                                   data={"scene": key, "channel": channel})
            changes.append((key, channel, enabled))
    return changes


def save(rt: Any, user: Any, changes: list[tuple[str, str, bool]]) -> None:
    at = utcnow()
    with rt.db.write() as session:
        for scene, channel, enabled in changes:
            if not insert_ignore(session, Preference.__table__, {
                "user_id": user.id, "scene": scene, "channel": channel, "enabled": enabled,
                "updated_at": at,
            }):
                session.execute(update(Preference).where(
                    Preference.user_id == user.id, Preference.scene == scene,
                    Preference.channel == channel).values(enabled=enabled, updated_at=at))
