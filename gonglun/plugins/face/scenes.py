"""Face scenes (FACE-01): the common flow asks a scene whose check it is and what a pass does.

``personal`` verifies the logged-in user's real name; ``retrieve`` recovers an account by its
verified identity, for guests. A plugin adds a scene (unlocking an account by face...) through
``register_face_scenes`` with a ``FaceScene`` subclass: ``target`` runs the scene's gates and
names the account, ``on_pass`` does the scene's work inside the verdict's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gonglun.accounts.models import User
from gonglun.errors import GonglunError
from gonglun.plugins.face.identities import (
    accounts_per_identity,
    create_identity,
    matching_identity,
)
from gonglun.plugins.face.messages import (
    MSG_DELETED,
    MSG_NO_MATCH,
    MSG_PERSONAL_OFF,
    identity_in_use,
    refuse_retrieve,
)
from gonglun.plugins.face.models import FaceIdentity, FaceIdentitySlot, FaceVerification
from gonglun.plugins.face.recovery import issue_token, reset_account
from gonglun.plugins.face.trail import Caller


@dataclass(frozen=True)
class Form:
    name: str
    code: str
    code_index: str
    #: The recovery page's identity reference (retrieve).
    ref: str | None = None


@dataclass(frozen=True)
class Target:
    user: User
    identity: FaceIdentity | None = None


class FaceScene:
    key = "scene"
    #: Refusals of this scene go to the audit trail (account recovery and the like).
    audited = False
    #: Setting naming how many checks a day one account may be the target of (None: no cap).
    daily_setting: str | None = None

    def target(self, rt: Any, session: Session, caller: Caller, form: Form) -> Target:
        raise NotImplementedError

    def on_pass(self, rt: Any, session: Session, face: FaceVerification,
                caller: Caller) -> dict[str, Any]:
        """The scene's work after a pass; answers extra response fields."""
        return {}


def banned_message(user: User) -> str:
    until = user.banned_until.strftime("%Y-%m-%d %H:%M:%S") if user.banned_until else "永久"
    return (f"你的帐号【{user.nickname or user.login}】已被限制登录,封禁时间:{until}\n"
            f"封禁原因:{user.ban_reason or ''}")


def refuse_inactive(user: User) -> None:
    """FACE-10: banned and deleted accounts cannot be recovered (or verified)."""
    if user.status == "deleted":
        raise GonglunError("face.account_deleted", MSG_DELETED, status=403)
    if user.status == "banned":
        raise GonglunError("face.account_banned", banned_message(user), status=403)


class Personal(FaceScene):
    key = "personal"

    def target(self, rt: Any, session: Session, caller: Caller, form: Form) -> Target:
        if not rt.config.get("face.personal_enabled", True):
            raise GonglunError("face.personal_disabled", MSG_PERSONAL_OFF, status=403)
        if caller.user is None:
            raise GonglunError("auth.required", "请先登录", status=401)
        user = session.get(User, caller.user.id)
        assert user is not None
        refuse_inactive(user)
        if session.scalar(select(FaceIdentity.id).where(FaceIdentity.user_id == user.id)):
            raise GonglunError("face.already_verified", "您已完成实名认证", status=409)
        # Early refusal only; the identity's slot (create_identity) is the guarantee.
        used = session.scalar(select(func.count()).where(
            FaceIdentitySlot.code_index == form.code_index)) or 0
        if used >= accounts_per_identity(rt):
            raise identity_in_use()
        return Target(user)

    def on_pass(self, rt: Any, session: Session, face: FaceVerification,
                caller: Caller) -> dict[str, Any]:
        create_identity(rt, session, face)
        return {}


class Retrieve(FaceScene):
    key = "retrieve"
    audited = True
    daily_setting = "face.retrieve_per_day"

    def target(self, rt: Any, session: Session, caller: Caller, form: Form) -> Target:
        refuse_retrieve(rt, caller)
        identity = matching_identity(rt, session, form)
        user = session.get(User, identity.user_id)
        if user is None:
            raise GonglunError("face.idcard_mismatch", MSG_NO_MATCH)
        refuse_inactive(user)
        return Target(user, identity)

    def on_pass(self, rt: Any, session: Session, face: FaceVerification,
                caller: Caller) -> dict[str, Any]:
        reset_account(rt, session, face.user_id)
        token = issue_token(rt, session, face, caller)
        return {"token": token, "msg": "刷脸成功:前往重置账户"}


def scenes_for(rt: Any) -> dict[str, FaceScene]:
    cached = rt.__dict__.get("_face_scenes")
    if cached is None:
        base: dict[str, FaceScene] = {"personal": Personal(), "retrieve": Retrieve()}
        cached = rt.__dict__["_face_scenes"] = rt.hooks.apply_filters(
            "register_face_scenes", base)
    return cached


def get_scene(rt: Any, key: Any) -> FaceScene:
    scene = scenes_for(rt).get(key) if isinstance(key, str) else None
    if scene is None:
        raise GonglunError("face.unknown_scene", "人脸识别场景不存在", data={"field": "type"})
    return scene
