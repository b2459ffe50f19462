"""Verification codes as the accounts check them: through the ``sms_code_check`` decision of
the plugin owning codes (``notify``). With no such plugin (``notify`` disabled) a code-based
flow answers ``notify.unavailable`` (503), not "wrong code": the code may well be right."""

from __future__ import annotations

from typing import Any

from gonglun.errors import GonglunError

MSG_UNAVAILABLE = "验证码服务暂不可用,无法使用验证码注册、登录或绑定"


def code_accepted(rt: Any, phone: str, scene: str, code: Any) -> bool:
    """Whether the owner of codes accepts ``code`` (and consumes it); refused with 503 when
    no plugin owns codes."""
    if not rt.hooks.implementations("sms_code_check"):
        raise GonglunError("notify.unavailable", MSG_UNAVAILABLE, status=503)
    return rt.hooks.decide("sms_code_check", phone=phone, scene=scene, code=code) is True


__all__ = ["MSG_UNAVAILABLE", "code_accepted"]
