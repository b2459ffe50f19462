"""APP push through JPush's official client (NTF-10).

``[notify.jpush]``: ``app_key``, ``master_secret`` required; ``push_url`` (default
https://api.jpush.cn/v3/), ``alias_prefix`` (default ``u``: the app sets alias ``u<user id>``
at login), ``apns_production`` (default true with live keys, false against a sandbox),
``time_to_live`` (s, default 86400), ``timeout``. The client takes its URLs from its zone
table, so a zone named after the URL is registered for it (docs/notify.md).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from sqlalchemy.orm import Session

from gonglun.plugins.notify.providers.base import (
    DeliveryError,
    Outbound,
    PermanentError,
    Provider,
    TransientError,
)
from gonglun.vendors import bounded, vendor_settings

REQUIRED = ("app_key", "master_secret")
LIVE_PUSH_URL = "https://api.jpush.cn/v3/"
#: 1000 internal error, 1030 internal timeout, 2002 rate limited (HTTP 429).
TRANSIENT: dict[int, float | None] = {1000: None, 1030: None, 2002: 60.0}
_zones = threading.Lock()


def zone_for(push_url: str) -> str:
    """The jpush zone serving ``push_url`` (registered once per URL, process-wide)."""
    from jpush import common

    name = "GONGLUN_" + hashlib.sha256(push_url.encode()).hexdigest()[:12].upper()
    with _zones:
        if name not in common.ZONES:
            common.ZONES[name] = dict(common.ZONES["DEFAULT"], PUSH=push_url)
    return name


def classify(status: int | None, code: Any, detail: Any) -> DeliveryError:
    if code in TRANSIENT or (status is not None and (status >= 500 or status == 429)):
        return TransientError(f"jpush_{code}", str(detail), retry_after=TRANSIENT.get(code))
    return PermanentError(f"jpush_{code}", str(detail))


class JPushProvider(Provider):
    channel = "app"
    name = "jpush"

    def __init__(self, settings: dict[str, Any]) -> None:
        import jpush

        gateway = settings.get("gateway")
        self.push_url = f"{gateway}/v3/" if gateway else str(settings.get("push_url")
                                                            or LIVE_PUSH_URL)
        self.alias_prefix = str(settings.get("alias_prefix", "u"))
        self.production = bool(settings.get("apns_production", not gateway))
        self.ttl = int(bounded(settings.get("time_to_live"), "notify.jpush.time_to_live",
                               86400, 0, 864000))
        timeout = int(bounded(settings.get("timeout"), "notify.jpush.timeout", 10, 1, 60))
        self.client = jpush.JPush(settings["app_key"], settings["master_secret"],
                                  timeout=timeout, zone=zone_for(self.push_url))

    @classmethod
    def from_config(cls, rt: Any) -> JPushProvider:
        return cls(vendor_settings(rt, "jpush", REQUIRED))

    def describe(self) -> str:
        return f"jpush {self.push_url}"

    def address(self, session: Session, user: Any) -> str | None:
        return f"{self.alias_prefix}{user.id}"

    def send(self, rt: Any, message: Outbound) -> str:
        import jpush
        from jpush import common

        c = message.content
        extras = {"scene": message.scene, "link": c.get("link", "")}
        push = self.client.create_push()
        push.platform = jpush.all_
        push.audience = jpush.audience(jpush.alias(message.address))
        push.notification = jpush.notification(
            alert=c.get("body", ""),
            android=jpush.android(alert=c.get("body", ""), title=c.get("title", ""),
                                  extras=extras),
            ios=jpush.ios(alert={"title": c.get("title", ""), "body": c.get("body", "")},
                          extras=extras),
        )
        push.options = {"sendno": message.delivery_id % 2**31, "time_to_live": self.ttl,
                        "apns_production": self.production}
        try:
            response = push.send()
        except common.Unauthorized:
            raise PermanentError("jpush_1004", "app_key / master_secret refused") from None
        except common.JPushFailure as exc:
            status = getattr(exc.response, "status_code", None)
            raise classify(status, exc.error_code, exc.details) from None
        except (common.APIConnectionException, common.APIRequestException) as exc:
            raise TransientError("jpush_network", str(exc)) from None
        except (TypeError, ValueError) as exc:
            # The client fails to log an error reply that is not JSON (a proxy's 502 page):
            # json.dumps(bytes) raises instead of JPushFailure. Still a failed server.
            raise TransientError("jpush_bad_reply", f"{type(exc).__name__}: {exc}") from None
        return str(response.payload.get("msg_id", ""))
