"""Identity fields at rest (decision 17): AES-256-GCM ciphertexts and a keyed HMAC blind index.

``face.keys`` maps key ids to 32-byte keys (64 hex characters or base64); ``face.key_id`` names
the one new rows are written with, so a key is rotated by adding one and switching the id: old
rows still decrypt under the id they were written with. ``face.index_key`` keys the blind index
(HMAC-SHA256 of the normalised ID number): it cannot rotate without rebuilding the index. On
the embedded default, without configuration, a key file under ``server.data_dir`` is made on
first use; anywhere else the plugin refuses to store or look up identities (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gonglun.errors import GonglunError


class KeyError_(ValueError):
    """The configuration lacks usable face keys (the message says what)."""


@dataclass(frozen=True)
class Keys:
    current: str
    keys: dict[str, bytes]
    index_key: bytes

    def seal(self, plaintext: str, context: str) -> tuple[str, str]:
        """``(key_id, base64(nonce || ciphertext))``; ``context`` is bound as associated data."""
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(),
                                                         context.encode())
        return self.current, base64.b64encode(nonce + sealed).decode()

    def open(self, key_id: str, blob: str, context: str) -> str:
        key = self.keys.get(key_id)
        if key is None:
            raise KeyError_(f"face key {key_id!r} is not configured (face.keys)")
        raw = base64.b64decode(blob)
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag:
            raise KeyError_(f"a ciphertext under face key {key_id!r} does not verify") from None

    def index(self, code: str) -> str:
        return hmac.new(self.index_key, b"idcard:" + code.encode(), hashlib.sha256).hexdigest()


def _key_bytes(value: Any, name: str) -> bytes:
    text = str(value or "").strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise KeyError_(f"{name} must be 32 bytes (64 hex characters or base64)")
    return raw


def _key_file(rt: Any) -> dict[str, str]:
    from gonglun.keyfiles import made_once

    text = made_once(rt.config.data_dir / "face" / "keys.json", lambda: json.dumps({
        "key_id": "local1", "key": secrets.token_hex(32), "index_key": secrets.token_hex(32)}))
    return dict(json.loads(text))


def load_keys(rt: Any) -> Keys:
    """The configured keys; raises ``KeyError_`` when they are missing or malformed."""
    configured = dict(rt.config.get("face.keys") or {})
    index = rt.config.get("face.index_key")
    if configured or index:
        current = str(rt.config.get("face.key_id") or "")
        keys = {str(k): _key_bytes(v, f"face.keys.{k}") for k, v in configured.items()}
        if current not in keys:
            raise KeyError_("face.key_id must name one of face.keys")
        if not index:
            raise KeyError_("face.index_key is not set")
        return Keys(current, keys, _key_bytes(index, "face.index_key"))
    if not rt.config.embedded_default:
        raise KeyError_("set face.keys, face.key_id and face.index_key (32 random bytes each, "
                        "the same on every process) to verify identities")
    data = _key_file(rt)
    return Keys(data["key_id"], {data["key_id"]: bytes.fromhex(data["key"])},
                bytes.fromhex(data["index_key"]))


def keys(rt: Any) -> Keys:
    """The keys, loaded once per runtime; refusal (503) when unusable."""
    cached = rt.__dict__.get("_face_keys")
    if cached is None:
        try:
            cached = rt.__dict__["_face_keys"] = load_keys(rt)
        except KeyError_:
            raise GonglunError("face.unavailable", "实名认证服务暂不可用", status=503) from None
    return cached
