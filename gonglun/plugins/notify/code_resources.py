"""``POST /v1/codes``: send a verification code of a code scene (NTF-13, NTF-14), the one REST
door to the code service for every scene: SMS scenes (``register``, ``login``, ``wechat_reg``,
``wechat_bind``, ``bind_phone``...) and email ones (``bind_email``)."""

from __future__ import annotations

from typing import Any

from gonglun.api.routes import responds
from gonglun.api.util import client_ip, get_str, json_body, ok, run_sync

CODE_SCHEMA = {
    "type": "object",
    "required": ["scene", "to"],
    "properties": {"scene": {"type": "string", "maxLength": 32},
                   "to": {"type": "string", "maxLength": 191}},
}


class Codes:
    """The scene's rules decide who may ask (``bind_phone`` and ``bind_email`` need a login,
    ``login`` a bound phone) and limit each destination; this limits each client address to
    ``notify.code_ip_limit`` per ``notify.code_ip_window_s`` (429 ``notify.code_ip_limited``),
    before anything is looked up, so neither many numbers nor "who has an account" can be
    harvested from one address. The code itself is never answered."""

    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    def _limit(self, ip: str) -> None:
        from gonglun.accounts.throttle import address_bucket
        from gonglun.kv import RateLimiter

        limiter = RateLimiter(self.rt.redis, self.rt.keys, fail_open=False)
        limiter.require(f"notify_code:{address_bucket(ip)}",
                        int(self.rt.config.get("notify.code_ip_limit", 10)),
                        float(self.rt.config.get("notify.code_ip_window_s", 3600)),
                        error="notify.code_ip_limited", msg="验证码请求过于频繁, 请稍后再试")

    def _send(self, to: Any, scene: Any, user_id: int | None, ip: str) -> dict[str, Any]:
        from gonglun.plugins.notify.codes import normalize_phone, send_code

        self._limit(ip)
        extra: dict[str, Any] = {}
        if scene == "wechat_reg":
            # NTF-14: a phone whose account has no WeChat yet: the registration becomes a
            # binding, the code a binding code, and the client shows the account's avatar.
            from gonglun.accounts.profile import avatar_of
            from gonglun.accounts.wechat import phone_has_wechat, phone_owner

            to = normalize_phone(to)
            owner = phone_owner(self.rt, to)
            if owner is not None and not phone_has_wechat(self.rt, to, "mp"):
                scene = "wechat_bind"
                with self.rt.db.read() as session:
                    extra = {"bind": True, "avatar": avatar_of(session, owner)["avatar_url"]}
        answer = send_code(self.rt, to, scene, user_id=user_id, ip=ip)
        return {**answer, "bind": False, **extra}

    @responds(201, description="the code was sent")
    async def on_post(self, req: Any, resp: Any) -> None:
        """``{"scene", "to"}``: a code of a code scene to a mainland phone (SMS scenes) or an
        email address (email scenes). ``wechat_reg`` for a phone that already has an account
        without WeChat is sent as a ``wechat_bind`` code (the answer says ``bind: true`` and
        gives ``avatar``); one that already has WeChat is refused. Per-destination intervals
        and daily caps, and the per-address limit, are 429s."""
        body = await json_body(req)
        scene = get_str(body, "scene", max_len=32)
        user = getattr(req.context, "user", None)
        data = await run_sync(self._send, body.get("to"), scene,
                              user.id if user is not None else None, client_ip(req))
        ok(resp, data, status=201)
