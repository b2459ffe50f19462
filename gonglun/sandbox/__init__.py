"""The gateway sandbox: a local Alipay openapi gateway and WeChat Pay API v3 server.

The real python-alipay-sdk and wechatpayv3 run against it end to end, with signed requests,
signed responses and encrypted, signed, retried notifications; a control API under
``/sandbox`` plays the buyer and the bank. See docs/sandbox.md.
"""

from .app import Sandbox, create_sandbox_app
from .keys import init_keyset, load_keyset

__all__ = ["Sandbox", "create_sandbox_app", "init_keyset", "load_keyset"]
