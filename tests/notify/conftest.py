"""A live deployment for notify tests: the API over HTTP, the gateway sandbox as its own server
(Tencent Cloud SMS, WeChat official account, JPush emulators), a real SMTP server (aiosmtpd),
and a Dramatiq worker for the outbox and the delivery jobs."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gonglun.api import create_app
from gonglun.sandbox.testing import UvicornThread, running_sandbox
from tests.payment.conftest import wait_until

ACTIVE = ("queued", "sending", "retry")
REFUND_DATA = {
    "refund_id": 7, "payment_id": 41, "payment_order": "202611301405001234567890",
    "pay_order": "4200001234202611301234567890", "title": "【淘货】民国景德镇出产的红彩山水纹碟",
    "amount": 3320, "pay_amount": 5000, "reason": "系统超时自动退款", "method": "wxpay",
    "payment_scene": "tao", "refund_time": "2026-11-30T06:05:00+00:00", "way": "system",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(tmp: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (the SMTP server's) and its key, as file paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "smtp.crt", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@dataclass
class MailBox:
    """What a real SMTP server (aiosmtpd) accepted."""

    port: int = 0
    messages: list[Any] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    refuse: int | None = None  #: answer RCPT with this code instead of accepting
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.refuse:
            return f"{self.refuse} mailbox refused by the test"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.envelopes.append(envelope)
            self.messages.append(email.message_from_bytes(envelope.content,
                                                          policy=email.policy.default))
        return "250 Message accepted for delivery"

    start: Any = None  #: makes the controller (a stopped one cannot be started again)
    controller: Any = None

    def up(self) -> None:
        self.controller = self.start()
        self.controller.start()

    def down(self) -> None:
        """Stop listening: senders now get "connection refused" (the server is down)."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait(self, count: int, timeout: float = 20) -> list[Any]:
        wait_until(lambda: len(self.messages) >= count, timeout, f"{count} email(s)")
        return list(self.messages)


@contextmanager
def mail_server(tmp: Path, *, security: str = "none", user: str = "",
                password: str = "") -> Iterator[tuple[MailBox, dict[str, Any]]]:
    """A real SMTP server on 127.0.0.1 and the ``[notify.smtp]`` settings that reach it."""
    box = MailBox(port=free_port())
    kwargs: dict[str, Any] = {}
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": box.port, "security": security,
                                "sender": "宫论 <noreply@gonglun.test>", "timeout": 5}
    if security != "none":
        cert, key = self_signed(tmp)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        settings["cafile"] = cert
        kwargs["ssl_context" if security == "tls" else "tls_context"] = context
        if security == "starttls":
            kwargs["require_starttls"] = True
    if user:
        def check(server: Any, session: Any, envelope: Any, mechanism: str,
                  data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                user.encode(), password.encode())
            return AuthResult(success=ok, handled=False)  # the server answers 235 or 535

        # PLAIN only: smtplib would go on to LOGIN after a refusal, which aiosmtpd answers
        # by waiting for more input instead of a 535.
        kwargs.update(authenticator=check, auth_required=True,
                      auth_exclude_mechanism=["LOGIN"],
                      # aiosmtpd only counts STARTTLS as TLS; implicit TLS is TLS from byte one
                      auth_require_tls=security != "tls")
        settings.update(username=user, password=password)
    box.start = lambda: Controller(box, hostname="127.0.0.1", port=box.port, **kwargs)
    box.up()
    try:
        yield box, settings
    finally:
        box.down()


@dataclass
class NotifyLive:
    rt: Any
    base: str
    sandbox_url: str
    sandbox: Any
    keyset: dict[str, Any]
    mail: MailBox
    http: httpx.Client
    sb: httpx.Client
    worker: Any = None

    def user(self, login: str, *, role: str = "user", phone: str | None = "13800138000",
             email_address: str | None = "", openid: str | None = "") -> tuple[int, dict[str, str]]:
        from sqlalchemy import update

        from gonglun.accounts import create_user, issue_token, set_meta
        from gonglun.accounts.models import User

        with self.rt.db.write() as session:
            user = create_user(session, login, "long enough password", role=role,
                               nickname=login)
            session.execute(update(User).where(User.id == user.id).values(
                phone=phone, email=f"{login}@example.com" if email_address == "" else
                email_address))
            if openid is not None:
                set_meta(session, user.id, "weixin_uid", openid or f"oGonglun_{login:_<19}")
            return user.id, {"Authorization": f"Bearer {issue_token(session, user.id)}"}

    def fire(self, scene: str, user_id: int | None, data: dict[str, Any],
             key: str | None = None) -> str:
        with self.rt.db.write() as session:
            return str(self.rt.hooks.defer(session, "notify", key=key, scene=scene,
                                           user_id=user_id, data=data))

    def deliveries(self, **match: Any) -> list[Any]:
        from sqlalchemy import select

        from gonglun.plugins.notify.models import Delivery

        query = select(Delivery).order_by(Delivery.id)
        for name, value in match.items():
            query = query.where(getattr(Delivery, name) == value)
        with self.rt.db.read() as session:
            return list(session.scalars(query))

    def settle(self, timeout: float = 30) -> None:
        """Wait until the outbox and every delivery job have run."""
        from sqlalchemy import func, select

        from gonglun.hooks.deferred import OutboxEvent
        from gonglun.plugins.notify.models import Delivery

        def busy() -> int:
            with self.rt.db.read() as session:
                return int(session.scalar(select(func.count()).where(
                    OutboxEvent.state == "pending")) or 0) + int(session.scalar(
                        select(func.count()).where(Delivery.status.in_(ACTIVE))) or 0)

        wait_until(lambda: busy() == 0, timeout, "notifications still in flight")

    def requests(self, vendor: str, **match: str) -> list[dict[str, Any]]:
        answer = self.sb.get(f"/sandbox/{vendor}/requests", params=match)
        return list(answer.json()["data"])

    def fault(self, **spec: Any) -> None:
        answer = self.sb.post("/sandbox/faults", json=spec)
        assert answer.status_code == 200, answer.text

    def shift_clock(self, days: float) -> None:
        from gonglun.db import utcnow

        self.rt.notify_clock = lambda: utcnow() + dt.timedelta(days=days)


def notify_settings(sandbox_dir: Path, sandbox_url: str, smtp: dict[str, Any],
                    **extra: Any) -> dict[str, Any]:
    return {"keyset": str(sandbox_dir / "sandbox.json"), "gateway_url": sandbox_url,
            "smtp": smtp, "retry_s": [0.3, 0.6, 1.0], "max_attempts": 4, "sweep_s": 0.5,
            "lease_s": 10, "code_key": "a test key that is long enough", **extra}


@pytest.fixture
def notify_live(make_rt: Any, tmp_path: Path) -> Iterator[NotifyLive]:
    yield from _live(make_rt, tmp_path)


def _live(make_rt: Any, tmp_path: Path, **notify: Any) -> Iterator[NotifyLive]:
    keys = tmp_path / "sandbox"
    with running_sandbox(keys) as (sandbox_url, sandbox, keyset), \
            mail_server(tmp_path) as (box, smtp):
        rt = make_rt(notify=notify_settings(keys, sandbox_url, smtp, **notify))
        server = UvicornThread(create_app(rt=rt))
        base = server.start()
        worker = dramatiq.Worker(rt.broker, worker_threads=4, worker_timeout=100)
        worker.start()
        http = httpx.Client(base_url=base, timeout=30, trust_env=False)
        sb = httpx.Client(base_url=sandbox_url, timeout=30, trust_env=False)
        live = NotifyLive(rt, base, sandbox_url, sandbox, keyset, box, http, sb, worker)
        try:
            yield live
        finally:
            http.close()
            sb.close()
            worker.stop()
            server.stop()


@pytest.fixture
def live_factory(make_rt: Any, tmp_path: Path) -> Iterator[Callable[..., NotifyLive]]:
    """A live deployment with extra ``[notify]`` settings (scenes, alarms...)."""
    made: list[Iterator[NotifyLive]] = []

    def factory(**notify: Any) -> NotifyLive:
        gen = _live(make_rt, tmp_path, **notify)
        made.append(gen)
        return next(gen)

    yield factory
    for gen in made:
        for _ in gen:
            pass


def poll(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    return wait_until(check, timeout, what)

