"""``POST /v1/sms/codes``: send an SMS verification code of a scene (NTF-13, NTF-14)."""

from __future__ import annotations

from typing import Any

from gonglun.api.routes import responds
from gonglun.api.util import client_ip, get_str, json_body, ok, run_sync

CODES_SCHEMA = {
    "type": "object", "required": ["phone", "scene"],
    "properties": {"phone": {"type": "string", "maxLength": 20},
                   "scene": {"type": "string", "maxLength": 32}},
}


class SmsCodes:
    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    def _send(self, phone: Any, scene: str, user_id: int | None, ip: str) -> dict[str, Any]:
        from gonglun.plugins.notify.codes import normalize_phone, send_code

        number = normalize_phone(phone)
        extra: dict[str, Any] = {}
        if scene == "wechat_reg":
            # NTF-14: a phone whose account has no WeChat yet: the registration becomes a
            # binding, the code a binding code, and the client shows the account's avatar.
            from gonglun.accounts.profile import avatar_of
            from gonglun.accounts.wechat import phone_has_wechat, phone_owner

            owner = phone_owner(self.rt, number)
            if owner is not None and not phone_has_wechat(self.rt, number, "mp"):
                scene = "wechat_bind"
                with self.rt.db.read() as session:
                    extra = {"bind": True, "avatar": avatar_of(session, owner)["avatar_url"]}
        answer = send_code(self.rt, number, scene, user_id=user_id, ip=ip)
        return {**answer, "bind": False, **extra}

    @responds(201, description="the code was sent")
    async def on_post(self, req: Any, resp: Any) -> None:
        """``{"phone", "scene"}``: a code of a code scene (``register``, ``login``,
        ``wechat_reg``, ``wechat_bind``, ``bind_phone``...) to a mainland phone.

        ``wechat_reg`` for a phone that already has an account without WeChat is sent as a
        ``wechat_bind`` code (the answer says ``bind: true`` and gives ``avatar``); one that
        already has WeChat is refused. Intervals and daily caps are 429s.
        """
        body = await json_body(req)
        phone = body.get("phone")  # strings only: anything else is notify.invalid_phone
        scene = get_str(body, "scene", max_len=32)
        user = req.context.user
        data = await run_sync(self._send, phone, scene, user.id if user else None,
                              client_ip(req))
        ok(resp, data, status=201)
