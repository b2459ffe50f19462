"""Providers fail closed, use exactly the keys configured, speak real SMTP (plain, STARTTLS,
TLS, with auth), and can be replaced by another plugin through ``notify_provider``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gonglun.plugins.notify.providers import (
    Outbound,
    PermanentError,
    ProviderUnavailable,
    TransientError,
    get_provider,
    provider_problems,
)
from tests.notify.conftest import mail_server

VENDOR_CHANNELS = ["email", "sms", "wechat", "app"]


def test_nothing_configured_means_unavailable_with_a_clear_line(rt: Any) -> None:
    problems = provider_problems(rt, VENDOR_CHANNELS)
    assert problems["email"].startswith("no SMTP server: set [notify.smtp] host and sender")
    assert problems["sms"] == (
        "no keys: set [notify.tencentcloud] (secret_id, secret_key, sms_sdk_app_id, "
        "sms_sign_name), or notify.keyset to a sandbox keyset file for staging")
    assert problems["wechat"].startswith("no keys: set [notify.wechat] (appid, secret)")
    assert problems["app"].startswith("no keys: set [notify.jpush] (app_key, master_secret)")
    lines = rt.startup_problems()
    assert f"notify channel sms unavailable: {problems['sms']}" in lines
    with pytest.raises(ProviderUnavailable):
        get_provider(rt, "sms")
    assert get_provider(rt, "inbox").name == "inbox"


@pytest.mark.parametrize(("notify", "channel", "why"), [
    ({"tencentcloud": {"secret_id": "AKIDx"}}, "sms",
     "[notify.tencentcloud] lacks secret_key, sms_sdk_app_id, sms_sign_name (it names "
     "secret_id)"),
    ({"keyset": "KEYSET"}, "wechat",
     "notify.keyset names sandbox keys but notify.gateway_url is not set"),
    ({"keyset": "MISSING", "gateway_url": "http://127.0.0.1:9"}, "app", "notify.keyset"),
    ({"tencentcloud": {"secret_id": "a", "secret_key": "b", "sms_sdk_app_id": "1",
                       "sms_sign_name": "s", "timeout": 0}}, "sms", "timeout must be"),
    ({"keyset": "KEYSET", "gateway_url": "http://127.0.0.1:9/prefix"}, "sms", "no path"),
    ({"smtp": {"host": "mail.example.com", "sender": "a@b.c", "security": "none",
               "username": "u", "password": "p"}}, "email", "in clear text"),
    ({"smtp": {"host": "mail.example.com", "sender": "a@b.c", "security": "ssl3"}}, "email",
     "security must be"),
    ({"smtp": {"host": "mail.example.com", "sender": "nobody"}}, "email", "an address"),
])
def test_partial_or_odd_settings_are_refused(make_rt: Any, tmp_path: Path,
                                             notify: dict[str, Any], channel: str,
                                             why: str) -> None:
    from gonglun.sandbox import init_keyset

    init_keyset(tmp_path / "keys")
    paths = {"KEYSET": str(tmp_path / "keys" / "sandbox.json"),
             "MISSING": str(tmp_path / "nowhere.json")}
    notify = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in notify.items()}
    rt = make_rt(notify=notify)
    assert why in provider_problems(rt, [channel])[channel]


def test_the_bundled_sandbox_serves_only_where_it_runs(make_rt: Any, tmp_path: Path) -> None:
    from gonglun.sandbox import init_keyset

    init_keyset(tmp_path / "var" / "sandbox")
    on = make_rt(sandbox={"enabled": True}, server={"port": 8123})
    for channel in VENDOR_CHANNELS[1:]:
        assert "127.0.0.1:8123" in get_provider(on, channel).describe()
    off = make_rt()  # the same files, but the sandbox does not run here: no fallback
    assert set(provider_problems(off, VENDOR_CHANNELS)) == set(VENDOR_CHANNELS)


def _message(address: str, **content: Any) -> Outbound:
    body = {"subject": "主题\r\nBcc: x@example.com", "text": "正文", "html": "<p>正文</p>",
            **content}
    return Outbound(1, "k", "payment_refund", 1, address, body)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # implicit TLS
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_smtp_with_tls_and_auth(make_rt: Any, tmp_path: Path, security: str) -> None:
    with mail_server(tmp_path, security=security, user="mailer", password="s3cret") as (
            box, smtp):
        rt = make_rt(notify={"smtp": smtp})
        provider = get_provider(rt, "email")
        message_id = provider.send(rt, _message("buyer@example.com"))
        (mail,) = box.wait(1)
        assert mail["Message-ID"] == message_id
        assert mail["Subject"] == "主题 Bcc: x@example.com"  # folded, never a second header
        assert mail["Bcc"] is None and box.envelopes[0].rcpt_tos == ["buyer@example.com"]

        wrong = make_rt(notify={"smtp": {**smtp, "password": "wrong"}})
        with pytest.raises(PermanentError, match="smtp_535"):
            get_provider(wrong, "email").send(wrong, _message("buyer@example.com"))
        untrusted = make_rt(notify={"smtp": {**smtp, "cafile": None}})
        with pytest.raises(PermanentError, match="smtp_config"):
            get_provider(untrusted, "email").send(untrusted, _message("buyer@example.com"))


def test_smtp_refusals_by_class(make_rt: Any, tmp_path: Path) -> None:
    with mail_server(tmp_path) as (box, smtp):
        rt = make_rt(notify={"smtp": smtp})
        provider = get_provider(rt, "email")
        box.refuse = 550
        with pytest.raises(PermanentError, match="smtp_550"):
            provider.send(rt, _message("gone@example.com"))
        box.refuse = 451
        with pytest.raises(TransientError, match="smtp_451"):
            provider.send(rt, _message("busy@example.com"))
        with pytest.raises(PermanentError, match="bad_address"):
            provider.send(rt, _message("not an address"))
        box.down()
        with pytest.raises(TransientError, match="smtp_unreachable"):
            provider.send(rt, _message("down@example.com"))


class RelaySms:
    """A third party's SMS provider: another vendor, answered before the built-in."""

    channel, name, needs_template = "sms", "relay", True
    sent: ClassVar[list[Outbound]] = []

    def address(self, session: Any, user: Any) -> str | None:
        return user.phone

    def send(self, rt: Any, message: Outbound) -> str:
        self.sent.append(message)
        return f"relay-{len(self.sent)}"

    def describe(self) -> str:
        return "relay"


def test_another_plugin_replaces_a_provider(make_rt: Any) -> None:
    from gonglun.hooks import PluginManager, hookimpl

    class Plugin:
        @hookimpl(priority=5)
        def notify_provider(self, channel: str) -> Any:
            return RelaySms() if channel == "sms" else None

    pm = PluginManager()
    pm.load([], entry_points=False)
    pm.register(Plugin(), "relay")
    rt = make_rt(pm=pm)
    from gonglun.plugins.notify import delivery
    from gonglun.plugins.notify.service import service
    from tests.notify.test_api import make_user

    user_id, _ = make_user(rt, "relayed")
    from sqlalchemy import update

    from gonglun.accounts.models import User

    with rt.db.write() as session:
        session.execute(update(User).where(User.id == user_id).values(phone="13800000001"))
        ids = service(rt).fan_out(session, "payment_refund", user_id,
                                  json.loads(json.dumps(_refund())), "relay:1")
    for delivery_id in ids:
        delivery.deliver(rt, delivery_id)
    (sent,) = RelaySms.sent
    assert sent.template_id == "2207734" and sent.address == "13800000001"
    assert sent.content["params"][1] == "33.2元,退款原因:系统超时自动退款"


def _refund() -> dict[str, Any]:
    from tests.notify.conftest import REFUND_DATA

    return dict(REFUND_DATA)
