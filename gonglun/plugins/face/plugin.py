"""The face plugin's hook implementations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gonglun.hooks import hookimpl

HERE = Path(__file__).parent


@hookimpl
def register_models(modules: list[str]) -> list[str]:
    return [*modules, "gonglun.plugins.face.models"]


@hookimpl
def register_migrations(locations: list[str]) -> list[str]:
    return [*locations, str(HERE / "migrations")]


@hookimpl
def register_routes(rt: Any, routes: list[Any]) -> list[Any]:
    from gonglun.api.routes import Route
    from gonglun.plugins.face import resources as r

    ref = {"ref": r.FACE_REF}
    return [
        *routes,
        Route("/v1/face/verifications", r.Verifications(rt), tags=("face",),
              schemas={"post": r.START_SCHEMA}),
        Route("/v1/face/verifications/{ref}", r.Verification(rt), tags=("face",), params=ref),
        Route("/v1/face/verifications/{ref}/cancel", r.VerificationCancel(rt), tags=("face",),
              params=ref),
        Route("/v1/account/recovery/lookup", r.RecoveryLookup(rt), tags=("face",),
              schemas={"post": r.LOOKUP_SCHEMA}),
        Route("/v1/account/reset", r.AccountReset(rt), tags=("face",),
              schemas={"post": r.RESET_SCHEMA}),
        Route("/v1/face/audit", r.AuditLog(rt), tags=("face", "admin")),
    ]


@hookimpl
def face_provider(rt: Any) -> Any:
    """Tencent Cloud FaceID, unless another plugin answered first."""
    from gonglun.plugins.face.provider import TencentFaceProvider

    return TencentFaceProvider.from_config(rt)


@hookimpl
def payment_success(rt: Any, payment: dict[str, Any]) -> None:
    """PAY-14: a paid ``face_number`` order adds its units, once per payment."""
    from gonglun.plugins.face.quota import credit_payment

    credit_payment(rt, payment)


@hookimpl
def user_registered(rt: Any, user_id: int) -> None:
    """FACE-05: ``face.free_number`` free checks, once per user."""
    from gonglun.plugins.face.quota import grant_free

    with rt.db.write() as session:
        grant_free(rt, session, user_id)


@hookimpl
def user_public(rt: Any, data: dict[str, Any], user: Any) -> dict[str, Any]:
    """``GET /v1/me``: the quota and the real-name flag."""
    from gonglun.accounts import get_meta
    from gonglun.plugins.face.quota import read

    with rt.db.read() as session:
        data["face_number"] = read(session, user.id)
        data["face_verified"] = get_meta(session, user.id, "face_verified") == "1"
    return data


@hookimpl
def startup_checks(rt: Any, problems: list[str]) -> list[str]:
    """Identity keys (outside the embedded default they must be configured) and the provider."""
    from gonglun.plugins.face.crypto import KeyError_, load_keys

    try:
        load_keys(rt)
    except KeyError_ as exc:
        problems.append(f"face verification unavailable: {exc}")
    try:
        from gonglun.plugins.face.provider import get_provider

        get_provider(rt)
    except Exception as exc:  # a provider without keys is reported, not raised
        problems.append(f"face provider unavailable: {exc}")
    return problems
