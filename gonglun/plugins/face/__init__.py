"""Face-verification quota, real-name records, account recovery and reset.

Scenes (``personal``, ``retrieve``, more through ``register_face_scenes``) share one flow
(``flow.py``); the provider is an adapter chosen by ``face_provider`` (Tencent Cloud FaceID
built in). Names and ID numbers are stored sealed with a blind index (decision 17); recovery
issues single-use reset tokens (decision 16). See docs/face.md.
"""

from gonglun.plugins.face.plugin import (
    face_provider,
    payment_success,
    register_migrations,
    register_models,
    register_routes,
    startup_checks,
    user_public,
    user_registered,
)
from gonglun.plugins.face.provider import FaceProvider, Started, Verdict
from gonglun.plugins.face.scenes import FaceScene, Form, Target

REQUIRES: tuple[str, ...] = ("payment",)

__all__ = [
    "REQUIRES",
    "FaceProvider",
    "FaceScene",
    "Form",
    "Started",
    "Target",
    "Verdict",
    "face_provider",
    "payment_success",
    "register_migrations",
    "register_models",
    "register_routes",
    "startup_checks",
    "user_public",
    "user_registered",
]
