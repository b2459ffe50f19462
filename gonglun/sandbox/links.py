"""Short-lived signed download links, as channels hand out for statement files.

A link's query carries a millisecond ``timestamp`` and a ``token``: an HMAC-SHA256 over the other
parameters, keyed by a secret that lives only in this process (a restarted sandbox voids every
link it gave out, which at a lifetime of seconds changes nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from .common import now


class LinkSigner:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _token(self, params: Mapping[str, str]) -> str:
        text = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "token")
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def sign(self, params: Mapping[str, str]) -> dict[str, str]:
        """``params`` with ``timestamp`` (now, in ms) and ``token`` added."""
        out = {**params, "timestamp": str(int(now() * 1000))}
        out["token"] = self._token(out)
        return out

    def refusal(self, params: Mapping[str, str], ttl_s: float) -> str | None:
        """None when the link is genuine and younger than ``ttl_s``, else why not."""
        token = params.get("token", "")
        if not token or not hmac.compare_digest(token, self._token(params)):
            return "invalid"
        try:
            issued = int(params.get("timestamp", "")) / 1000
        except ValueError:
            return "invalid"
        return "expired" if now() > issued + ttl_s else None
