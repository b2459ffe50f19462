"""WeChat official-account template messages (NTF-09) through ``wechatpy``.

``[notify.wechat]``: ``appid``, ``secret`` required; ``api_base`` (default
https://api.weixin.qq.com/), ``timeout``. The access token is cached in Redis (wechatpy's
``RedisStorage``), so every worker shares one token instead of each fetching its own and
invalidating the others'. wechatpy's own retry on 40001/42001 recurses for as long as the
server keeps refusing; it is switched off and the token is refreshed and the call retried once
here. The recipient is the user's official-account openid (user meta ``weixin_uid``, ACC-07).
"""

from __future__ import annotations

from typing import Any

import requests
from sqlalchemy.orm import Session

from gonglun.plugins.notify.providers.base import (
    DeliveryError,
    Outbound,
    PermanentError,
    Provider,
    TransientError,
)
from gonglun.vendors import bounded, vendor_settings

REQUIRED = ("appid", "secret")
LIVE_BASE = "https://api.weixin.qq.com/"
OPENID_META = "weixin_uid"
#: The token is stale: fetch a new one and try once more.
STALE_TOKEN = frozenset({40001, 40014, 42001})
#: -1 system busy, 45009 daily quota (tomorrow is another day), 45047 customer-message limit.
TRANSIENT: dict[int, float | None] = {-1: None, 45009: 3600.0, 45047: 60.0}


def classify(errcode: Any, errmsg: Any) -> DeliveryError:
    code = f"wechat_{errcode}"
    if errcode is None:  # an HTTP error: wechatpy gives no errcode
        return TransientError("wechat_http", str(errmsg))
    if errcode in TRANSIENT or errcode in STALE_TOKEN:
        return TransientError(code, str(errmsg), retry_after=TRANSIENT.get(errcode))
    return PermanentError(code, str(errmsg))


class _TimeoutSession(requests.Session):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["timeout"] = kwargs.get("timeout") or self.default_timeout
        return super().request(*args, **kwargs)


class WeChatTemplateProvider(Provider):
    channel = "wechat"
    name = "wechat"
    needs_template = True

    def __init__(self, settings: dict[str, Any], redis: Any, prefix: str) -> None:
        from wechatpy import WeChatClient
        from wechatpy.session.redisstorage import RedisStorage

        base = (f"{settings['gateway']}/" if settings.get("gateway")
                else str(settings.get("api_base") or LIVE_BASE))
        base = base if base.endswith("/") else base + "/"
        self.base = base
        timeout = bounded(settings.get("timeout"), "notify.wechat.timeout", 10, 1, 60)

        class Client(WeChatClient):  # type: ignore[misc]
            # wechatpy hard-codes the token URL; both URLs follow the configured base.
            API_BASE_URL = base + "cgi-bin/"

            def fetch_access_token(self) -> Any:
                return self._fetch_access_token(
                    url=base + "cgi-bin/token",
                    params={"grant_type": "client_credential", "appid": self.appid,
                            "secret": self.secret})

        self.client = Client(settings["appid"], settings["secret"],
                             session=RedisStorage(redis, prefix=prefix), timeout=timeout,
                             auto_retry=False)
        # The token fetch passes no timeout: a stalled server would hold a worker forever.
        self.client._http = _TimeoutSession(timeout)

    @classmethod
    def from_config(cls, rt: Any) -> WeChatTemplateProvider:
        return cls(vendor_settings(rt, "wechat", REQUIRED), rt.redis, rt.keys("wechatpy"))

    def describe(self) -> str:
        return f"wechat {self.base}"

    def address(self, session: Session, user: Any) -> str | None:
        from gonglun.accounts import get_meta

        return get_meta(session, user.id, OPENID_META)

    def _send(self, message: Outbound) -> Any:
        fields = {k: {"value": v} for k, v in message.content.get("fields", {}).items()}
        return self.client.message.send_template(
            message.address, message.template_id, fields,
            url=message.content.get("url") or None)

    def send(self, rt: Any, message: Outbound) -> str:
        from wechatpy.exceptions import WeChatClientException

        for attempt in (1, 2):
            try:
                result = self._send(message)
            except WeChatClientException as exc:
                if exc.errcode in STALE_TOKEN and attempt == 1:
                    self.client.session.delete(self.client.access_token_key)
                    continue
                raise classify(exc.errcode, exc.errmsg) from None
            except requests.RequestException as exc:
                raise TransientError("wechat_network", f"{type(exc).__name__}: {exc}") from None
            return str(result.get("msgid", ""))
        raise TransientError("wechat_token", "the access token was refused twice")
