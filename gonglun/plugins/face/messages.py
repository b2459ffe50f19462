"""Catalog messages (FACE-07, FACE-08, FACE-09, FACE-10), ``\\n`` for ``<br>``, and the refusals
more than one module gives with them. Scenes, identities and recovery all read this; it imports
none of them."""

from __future__ import annotations

from typing import Any

from gonglun.errors import GonglunError
from gonglun.plugins.face.trail import Caller

MSG_PERSONAL_OFF = "管理员已关闭了【人脸识别认证】接口"
MSG_RETRIEVE_OFF = "认证失败:管理员关闭了人脸找回账户功能"
MSG_LOGGED_IN = "认证失败:找回账户前请先退出登录"
MSG_NO_MATCH = "认证失败:身份证信息不匹配"
MSG_MISMATCH = "身份证信息不匹配,无法完成验证"
MSG_DELETED = "该帐号已被注销,无法找回"
MSG_NOT_BOUND = "查询失败:该身份证未绑定任何账户"
MSG_IN_USE = "该身份证已认证过其他账户"


def identity_in_use() -> GonglunError:
    return GonglunError("face.identity_in_use", MSG_IN_USE, status=409)


def refuse_retrieve(rt: Any, caller: Caller) -> None:
    """Account recovery's first gates: switched on, and asked for by a guest."""
    if not rt.config.get("face.retrieve_enabled", True):
        raise GonglunError("face.retrieve_disabled", MSG_RETRIEVE_OFF, status=403)
    if caller.user is not None:
        raise GonglunError("face.logged_in", MSG_LOGGED_IN, status=403)
