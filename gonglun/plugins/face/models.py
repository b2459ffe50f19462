"""The face plugin's tables: verifications, real-name identities and their slots, quota
events, reset tokens and the recovery audit trail. Names and ID numbers exist only as AES-GCM
ciphertexts and a keyed blind index (decision 17); tokens only as SHA-256 digests (decision
16)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gonglun.accounts.models import ID
from gonglun.db import Base, UTCDateTime, utcnow

STATUSES = ("starting", "started", "ok", "fail", "abandoned", "error")


class FaceVerification(Base):
    """One face check (the seeds' ``xc_face``): who asked, for whom, the provider's verdict."""

    __tablename__ = "face_verifications"
    __table_args__ = (
        CheckConstraint("status IN ('starting', 'started', 'ok', 'fail', 'abandoned', "
                        "'error')", name="status"),
        Index("ix_face_verifications_user_status", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: The public reference: 128 random bits, never the id (FACE-16).
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    scene: Mapped[str] = mapped_column(String(32))
    #: Whose quota pays and whose account the verdict concerns (the matched one in retrieve).
    user_id: Mapped[int] = mapped_column(ID)
    #: The logged-in requester; None for a guest (retrieve).
    requester_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    #: The real-name identity the check was made against (retrieve).
    identity_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="starting")
    provider: Mapped[str] = mapped_column(String(32))
    biz_token: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The submitted name and number, sealed (the record is made from them on success).
    key_id: Mapped[str] = mapped_column(String(32))
    sealed: Mapped[str] = mapped_column(Text)
    code_index: Mapped[str] = mapped_column(String(64), index=True)
    err_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    err_msg: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sim: Mapped[float | None] = mapped_column(Float, nullable=True)
    charged: Mapped[bool] = mapped_column(default=False)
    ip: Mapped[str] = mapped_column(String(64))
    ua_hash: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class FaceIdentity(Base):
    """A verified real name (the real-name record table): one per account."""

    __tablename__ = "face_identities"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: The recovery page's reference (FACE-16): random, so records cannot be enumerated.
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ID, unique=True)
    verification_id: Mapped[int] = mapped_column(ID, unique=True)
    key_id: Mapped[str] = mapped_column(String(32))
    name_sealed: Mapped[str] = mapped_column(Text)
    code_sealed: Mapped[str] = mapped_column(Text)
    #: HMAC of the ID number under ``face.index_key``: the lookup (FACE-17).
    code_index: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FaceIdentitySlot(Base):
    """One of the ``face.accounts_per_identity`` places an ID number has (slots 0..N-1): an
    identity exists only with a slot of its number, claimed by an insert-ignore in the
    transaction that creates it. The unique (blind index, slot) makes the limit hold however
    many checks of one number pass at once, on every backend."""

    __tablename__ = "face_identity_slots"
    __table_args__ = (UniqueConstraint("code_index", "slot"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    code_index: Mapped[str] = mapped_column(String(64))
    slot: Mapped[int] = mapped_column(Integer)
    identity_id: Mapped[int] = mapped_column(ID, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FaceQuotaEvent(Base):
    """Every change of a user's ``face_number``, once per key (``payment:<id>``, ``free:<user>``,
    ``use:<verification>``): the unique key makes each grant and each use happen once."""

    __tablename__ = "face_quota_events"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ID, index=True)
    delta: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FaceResetToken(Base):
    """A recovery's reset token (decision 16): only its SHA-256, single use, bound to the
    user, the face check, and the address, agent and fingerprint that passed it."""

    __tablename__ = "face_reset_tokens"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ID, index=True)
    verification_id: Mapped[int] = mapped_column(ID, unique=True)
    ip: Mapped[str] = mapped_column(String(64))
    ua_hash: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class FaceAudit(Base):
    """Every recovery attempt and its outcome, for the admins (who, from where, what)."""

    __tablename__ = "face_audit"
    __table_args__ = (Index("ix_face_audit_user", "user_id", "id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(32))  #: lookup, start, verdict, reset
    scene: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(64))  #: ok, or the refusal's error id
    user_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    requester_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    identity_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    verification_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    fingerprint: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
