"""Real-name identities: sealed at rest, found by blind index, shown masked (SEC-08, SEC-09)."""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gonglun.db import insert_ignore, insert_ignore_returning_id
from gonglun.errors import GonglunError
from gonglun.plugins.face.clock import now
from gonglun.plugins.face.crypto import keys
from gonglun.plugins.face.idcard import mask_code, mask_name
from gonglun.plugins.face.messages import MSG_MISMATCH, MSG_NO_MATCH, identity_in_use
from gonglun.plugins.face.models import FaceIdentity, FaceIdentitySlot, FaceVerification

VERIFIED_META = "face_verified"


def accounts_per_identity(rt: Any) -> int:
    return max(1, int(rt.config.get("face.accounts_per_identity", 1)))


def seal_form(rt: Any, name: str, code: str) -> dict[str, str]:
    """The columns a verification keeps of the submitted name and number."""
    ks = keys(rt)
    key_id, sealed = ks.seal(json.dumps({"name": name, "code": code}), "face_verifications")
    return {"key_id": key_id, "sealed": sealed, "code_index": ks.index(code)}


def open_form(rt: Any, face: FaceVerification) -> dict[str, str]:
    return dict(json.loads(keys(rt).open(face.key_id, face.sealed, "face_verifications")))


def reveal(rt: Any, identity: FaceIdentity) -> tuple[str, str]:
    ks = keys(rt)
    return (ks.open(identity.key_id, identity.name_sealed, "face_identities.name"),
            ks.open(identity.key_id, identity.code_sealed, "face_identities.code"))


def create_identity(rt: Any, session: Session, face: FaceVerification) -> None:
    """The real-name record of a passed ``personal`` check and the user's verified flag. The
    record takes a free slot of its ID number (``face.accounts_per_identity``) or is refused
    (``face.identity_in_use``), which undoes the caller's transaction."""
    from gonglun.accounts import set_meta

    form = open_form(rt, face)
    ks = keys(rt)
    key_id, name = ks.seal(form["name"], "face_identities.name")
    _, code = ks.seal(form["code"], "face_identities.code")
    index, at = ks.index(form["code"]), now(rt)
    identity_id = insert_ignore_returning_id(session, FaceIdentity.__table__, {
        "ref": secrets.token_hex(16), "user_id": face.user_id, "verification_id": face.id,
        "key_id": key_id, "name_sealed": name, "code_sealed": code,
        "code_index": index, "status": "ok", "created_at": at})
    if identity_id is None:
        return  # this account's record exists already: it holds its slot
    if not any(insert_ignore(session, FaceIdentitySlot.__table__, {
            "code_index": index, "slot": slot, "identity_id": identity_id, "created_at": at})
            for slot in range(accounts_per_identity(rt))):
        raise identity_in_use()
    set_meta(session, face.user_id, VERIFIED_META, "1")


def candidates(rt: Any, session: Session, code: str) -> list[dict[str, Any]]:
    """FACE-17: the identities of an ID number, masked, with their recovery references."""
    rows = session.scalars(select(FaceIdentity).where(
        FaceIdentity.code_index == keys(rt).index(code), FaceIdentity.status == "ok")
        .order_by(FaceIdentity.id)).all()
    out = []
    for row in rows:
        name, number = reveal(rt, row)
        out.append({"id": row.ref, "name": mask_name(name), "code": mask_code(number)})
    return out


def matching_identity(rt: Any, session: Session, form: Any) -> FaceIdentity:
    """FACE-08 step 3 and FACE-09: the reference and the number must match one record, then
    the record's name must be the submitted one."""
    if not form.ref:
        raise GonglunError("face.ref_required", "处理失败:非法请求", data={"field": "id"})
    identity = session.scalar(select(FaceIdentity).where(
        FaceIdentity.ref == form.ref, FaceIdentity.code_index == form.code_index,
        FaceIdentity.status == "ok"))
    if identity is None:
        raise GonglunError("face.idcard_mismatch", MSG_NO_MATCH)
    name, number = reveal(rt, identity)
    if not (hmac.compare_digest(name.encode(), form.name.encode())
            and hmac.compare_digest(number.encode(), form.code.encode())):
        raise GonglunError("face.identity_mismatch", MSG_MISMATCH)
    return identity
