"""Notification scenes as configuration (NTF-01..14, DECISIONS.md 20).

A scene is a key plus: its channels (each with a per-user daily cap, and for SMS and WeChat the
vendor's template id), its category, whether users may switch it off (money and security notices
may not), its link target, who receives it (by role) and, for SMS verification-code scenes, the
code rules. Defaults below carry the catalog's values; operators override any field in
``[notify.scenes.<key>]`` (``[notify.scenes.<key>.channels.<channel>]`` for a channel,
``enabled = false`` to drop a scene or a channel); plugins add scenes through the
``register_notification_scenes`` filter, which runs before the operator's configuration.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gonglun.errors import GonglunError

#: Every channel the plugin knows, in fan-out order.
CHANNELS = ("inbox", "email", "sms", "wechat", "app", "websocket")
#: Channels whose messages are vendor templates: they need a ``template_id``.
TEMPLATED = ("sms", "wechat")
KINDS = ("notice", "staff", "code")
#: The channels a verification code goes out on: one per code scene, to a phone or an email.
CODE_CHANNELS = ("sms", "email")
#: ``user``: the ``user_id`` the hook was fired for; ``admins``: every active admin (or the
#: ``notify.alarm_recipients`` ids); ``data:<field>``: the user id in that data field.
ROLE = re.compile(r"^(user|admins|data:[a-z_][a-z0-9_]{0,31})$")
KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class ChannelRule:
    #: Messages per user per Asia/Shanghai day; None is unlimited.
    cap: int | None = None
    #: The vendor's template (Tencent Cloud SMS template id, WeChat template id).
    template_id: str = ""


@dataclass(frozen=True)
class CodeRule:
    """Verification codes of one scene (NTF-13): per destination (phone or email) and scene."""

    daily_cap: int = 5
    validity_s: int = 300
    interval_s: int = 60
    #: Only a phone (email, for an email scene) bound to an active account may receive it.
    require_bound_phone: bool = False
    login_required: bool = False
    length: int = 6
    #: Wrong guesses before the code is dead and a new one must be requested.
    max_attempts: int = 5


@dataclass(frozen=True)
class Scene:
    key: str
    name: str
    category: str
    kind: str = "notice"
    #: Money and security notices: no user setting may switch any of their channels off.
    locked: bool = False
    channels: dict[str, ChannelRule] = field(default_factory=dict)
    recipients: tuple[str, ...] = ("user",)
    #: Where "查看详情" leads: a Jinja2 expression over the data, a path (joined to
    #: ``notify.link_base``) or a full URL. Empty: no link.
    link: str = ""
    #: The service account the inbox message comes from (NTF-04): key and display name.
    account: str = ""
    account_name: str = ""
    code: CodeRule | None = None
    description: str = ""

    @property
    def code_channel(self) -> str:
        """The one channel a code scene sends its code on (``sms`` or ``email``)."""
        return next(iter(self.channels))

    def public(self) -> dict[str, Any]:
        return {
            "scene": self.key, "name": self.name, "category": self.category, "kind": self.kind,
            "locked": self.locked, "recipients": list(self.recipients), "link": self.link,
            "account": self.account, "account_name": self.account_name,
            "channels": {c: {"cap": r.cap, "template_id": r.template_id}
                         for c, r in self.channels.items()},
            "code": vars(self.code) if self.code else None,
        }


def _rules(**channels: ChannelRule) -> dict[str, ChannelRule]:
    return dict(channels)


#: NTF-09's WeChat template, and the Tencent Cloud SMS templates of NTF-07 and NTF-13.
REFUND_WECHAT_TEMPLATE = "NyqU2_oGQYHG6NW71NFjom29OQsCHKmwHaIJdX-Lyg4"
REFUND_SMS_TEMPLATE = "2207734"
CODE_SMS_TEMPLATE = "1667287"

DEFAULT_SCENES: dict[str, Scene] = {
    "payment_refund": Scene(
        "payment_refund", "退款通知", "资金变动通知", locked=True,
        channels=_rules(inbox=ChannelRule(), email=ChannelRule(cap=5),
                        sms=ChannelRule(cap=10, template_id=REFUND_SMS_TEMPLATE),
                        wechat=ChannelRule(cap=10, template_id=REFUND_WECHAT_TEMPLATE),
                        app=ChannelRule(cap=20), websocket=ChannelRule()),
        link="/pay_details.php?order={{ payment_order | urlencode }}", account="refund",
        account_name="退款通知",
        description="每笔退款一条 (NTF-02..10): 服务号消息、站内信、邮件、短信、公众号模板消息、"
                    "APP推送",
    ),
    "payment_success": Scene(
        "payment_success", "支付成功", "资金变动通知", locked=True,
        channels=_rules(inbox=ChannelRule(), app=ChannelRule(cap=20)),
        link="/pay_details.php?order={{ payment_order | urlencode }}", account="pay",
        account_name="支付通知",
    ),
    "identify_close": Scene(
        "identify_close", "鉴定订单关闭", "鉴定通知",
        channels=_rules(inbox=ChannelRule(), app=ChannelRule(cap=20),
                        websocket=ChannelRule()),
        recipients=("user", "data:appraiser_id"), account="identify", account_name="鉴定通知",
    ),
    "identify_timeout_close": Scene(
        "identify_timeout_close", "【鉴定】订单超时未处理关闭", "鉴定通知",
        channels=_rules(inbox=ChannelRule(), app=ChannelRule(cap=20),
                        websocket=ChannelRule()),
        recipients=("user", "data:appraiser_id"), account="identify", account_name="鉴定通知",
    ),
    "account_reset": Scene(
        "account_reset", "账户已重置", "账户安全通知", locked=True,
        # email and SMS reach the phone and email the reset unbound; the SMS template is the
        # operator's (the catalog names none).
        channels=_rules(inbox=ChannelRule(), email=ChannelRule(cap=5), sms=ChannelRule(cap=5),
                        app=ChannelRule(cap=20), websocket=ChannelRule()),
        account="security", account_name="账户安全",
    ),
    # OPS-03 / NTF-12: SMS (on), email, official account and APP; the SMS and WeChat
    # templates are the operator's (the catalog names none).
    "alarm": Scene(
        "alarm", "系统告警", "系统告警", kind="staff",
        channels=_rules(inbox=ChannelRule(), sms=ChannelRule(), email=ChannelRule(),
                        wechat=ChannelRule(), app=ChannelRule()),
        recipients=("admins",), account="alarm", account_name="系统告警",
    ),
    # NTF-13: the one verification template the catalog shows; binding codes use it until the
    # operator configures their own.
    "wechat_reg": Scene(
        "wechat_reg", "微信公众号注册验证码", "验证码", kind="code", locked=True,
        channels=_rules(sms=ChannelRule(template_id=CODE_SMS_TEMPLATE)), code=CodeRule(),
    ),
    "wechat_bind": Scene(
        "wechat_bind", "微信绑定验证码", "验证码", kind="code", locked=True,
        channels=_rules(sms=ChannelRule(template_id=CODE_SMS_TEMPLATE)),
        code=CodeRule(require_bound_phone=True),
    ),
    "register": Scene(
        "register", "注册验证码", "验证码", kind="code", locked=True,
        channels=_rules(sms=ChannelRule(template_id=CODE_SMS_TEMPLATE)), code=CodeRule(),
    ),
    "login": Scene(
        "login", "登录验证码", "验证码", kind="code", locked=True,
        channels=_rules(sms=ChannelRule(template_id=CODE_SMS_TEMPLATE)),
        code=CodeRule(require_bound_phone=True),
    ),
    # OPS-09: the remote-login alert (the user turns it on; accounts/risk.py decides).
    "login_alert": Scene(
        "login_alert", "异地登录提醒", "账户安全通知", locked=True,
        channels=_rules(inbox=ChannelRule(), app=ChannelRule(cap=20), websocket=ChannelRule()),
        account="security", account_name="账户安全",
    ),
    "bind_phone": Scene(
        "bind_phone", "绑定手机验证码", "验证码", kind="code", locked=True,
        channels=_rules(sms=ChannelRule(template_id=CODE_SMS_TEMPLATE)),
        code=CodeRule(login_required=True),
    ),
    "bind_email": Scene(
        "bind_email", "绑定邮箱验证码", "验证码", kind="code", locked=True,
        channels=_rules(email=ChannelRule()), code=CodeRule(login_required=True),
    ),
}


def validate(scene: Scene) -> Scene:
    problems = []
    if not KEY.match(scene.key):
        problems.append("key must be 1-32 lower-case letters, digits or _")
    if scene.kind not in KINDS:
        problems.append(f"kind must be one of {', '.join(KINDS)}")
    unknown = [c for c in scene.channels if c not in CHANNELS]
    if unknown:
        problems.append(f"unknown channels {unknown} (known: {', '.join(CHANNELS)})")
    for name, rule in scene.channels.items():
        if rule.cap is not None and (isinstance(rule.cap, bool) or not isinstance(rule.cap, int)
                                     or rule.cap < 0):
            problems.append(f"{name}.cap must be a non-negative integer")
    if not scene.recipients or not all(ROLE.match(r) for r in scene.recipients):
        problems.append("recipients must be user, admins or data:<field>")
    if scene.kind == "code" and (scene.code is None or len(scene.channels) != 1
                                 or next(iter(scene.channels)) not in CODE_CHANNELS):
        problems.append("a code scene has code rules and exactly one channel, sms or email")
    if scene.code is not None and not (4 <= scene.code.length <= 6
                                       and scene.code.validity_s > 0
                                       and scene.code.max_attempts > 0):
        problems.append("code: length 4..6, validity_s and max_attempts positive")
    if problems:
        raise ValueError(f"notification scene {scene.key!r}: " + "; ".join(problems))
    return scene


def _overlay(base: Scene | None, key: str, values: dict[str, Any]) -> Scene | None:
    """``base`` with the operator's ``[notify.scenes.<key>]`` applied; None drops the scene."""
    if values.get("enabled") is False:
        return None
    scene = base or Scene(key, key, "通知")
    known = {f.name for f in fields(Scene)} - {"key", "channels", "code", "recipients"}
    changes: dict[str, Any] = {k: v for k, v in values.items() if k in known}
    if "recipients" in values:
        changes["recipients"] = tuple(values["recipients"])
    if "code" in values:
        changes["code"] = replace(scene.code or CodeRule(), **dict(values["code"]))
    if "channels" in values:
        channels = dict(scene.channels)
        for name, rule in dict(values["channels"]).items():
            if rule is False or (isinstance(rule, dict) and rule.get("enabled") is False):
                channels.pop(name, None)
                continue
            settings = {k: v for k, v in dict(rule or {}).items() if k != "enabled"}
            channels[name] = replace(channels.get(name, ChannelRule()), **settings)
        changes["channels"] = channels
    return replace(scene, **changes)


def load_scenes(rt: Any) -> dict[str, Scene]:
    """Defaults, then plugins' ``register_notification_scenes``, then ``[notify.scenes.*]``."""
    scenes = rt.hooks.apply_filters("register_notification_scenes",
                                    copy.deepcopy(DEFAULT_SCENES))
    # A plugin may register a scene as a plain mapping of the same fields as the TOML table.
    scenes = {k: v if isinstance(v, Scene) else _overlay(None, k, dict(v))
              for k, v in scenes.items()}
    scenes = {k: v for k, v in scenes.items() if v is not None}
    for key, values in (rt.config.get("notify.scenes") or {}).items():
        try:
            overlaid = _overlay(scenes.get(key), key,
                                values if isinstance(values, dict) else {"enabled": values})
        except TypeError as exc:  # an unknown field in a channel or code table
            raise ValueError(f"notify.scenes.{key}: {exc}") from None
        if overlaid is None:
            scenes.pop(key, None)
        else:
            scenes[key] = overlaid
    return {key: validate(scene) for key, scene in scenes.items()}


def scenes_for(rt: Any) -> dict[str, Scene]:
    cached = rt.__dict__.get("_notify_scenes")
    if cached is None:
        cached = rt.__dict__["_notify_scenes"] = load_scenes(rt)
    return cached


def get_scene(rt: Any, key: Any) -> Scene:
    scene = scenes_for(rt).get(key) if isinstance(key, str) else None
    if scene is None:
        raise GonglunError("notify.unknown_scene", f"通知场景不存在: {str(key)[:32]}",
                           data={"scene": str(key)[:32]})
    return scene


def channels_used(rt: Any) -> list[str]:
    """The channels some configured scene uses, in fan-out order."""
    used = {c for scene in scenes_for(rt).values() for c in scene.channels}
    return [c for c in CHANNELS if c in used]
