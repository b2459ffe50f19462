"""A live deployment for face tests: the API over HTTP, the gateway sandbox as its own server
(FaceID emulator, payment channels), a Dramatiq worker for deferred hooks, a movable clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
from sqlalchemy import update

from gonglun.api import create_app
from gonglun.db import utcnow
from gonglun.sandbox.testing import UvicornThread, running_sandbox
from tests.notify.conftest import MailBox, mail_server
from tests.payment.conftest import wait_until

#: Valid GB 11643 numbers (checksums right).
ID_A = "11010519491231002X"
ID_B = "440524198001010013"
NAME_A = "张三丰"
NAME_B = "李四"
FACE_KEYS = {"keys": {"k1": "11" * 32}, "key_id": "k1", "index_key": "22" * 32}
UA = "Mozilla/5.0 (face tests)"
#: The operator's account_reset SMS template, approved in the sandbox.
RESET_SMS = {"id": "2300001", "params": 1, "name": "账户重置通知",
             "text": "你的账户{1}已通过人脸识别重置, 原绑定手机号和邮箱已解除。"
                     "如非本人操作请立即联系客服。"}
FP = "fp-0123456789abcdef"


@dataclass
class FaceLive:
    rt: Any
    base: str
    sandbox_url: str
    http: httpx.Client
    sb: httpx.Client
    mail: MailBox
    offset: list[float] = field(default_factory=lambda: [0.0])

    def tick(self, seconds: float) -> None:
        """Move the face plugin's clock (rate limits, token expiry): no sleeps."""
        self.offset[0] += seconds

    def user(self, login: str, *, phone: str | None = None, email: str | None = None,
             quota: int = 0) -> tuple[int, dict[str, str]]:
        from gonglun.accounts import create_user, issue_token, set_meta
        from gonglun.accounts.models import User

        with self.rt.db.write() as session:
            user = create_user(session, login, "long enough password", nickname=login)
            session.execute(update(User).where(User.id == user.id).values(phone=phone,
                                                                         email=email))
            if quota:
                set_meta(session, user.id, "face_number", str(quota))
            return user.id, self.headers(issue_token(session, user.id))

    @staticmethod
    def headers(token: str | None = None, *, ua: str = UA, fp: str = FP,
                ip: str | None = None) -> dict[str, str]:
        out = {"User-Agent": ua, "X-Fingerprint": fp}
        if token:
            out["Authorization"] = f"Bearer {token}"
        if ip:
            out["X-Forwarded-For"] = ip
        return out

    def quota(self, user_id: int) -> int:
        from gonglun.plugins.face.quota import read

        with self.rt.db.read() as session:
            return read(session, user_id)

    def start(self, headers: dict[str, str], **body: Any) -> httpx.Response:
        self.tick(6)  # past the 5 s minimum interval of FACE-03
        return self.http.post("/v1/face/verifications", json=body, headers=headers)

    def play(self, url: str, result: str) -> None:
        token = url.rsplit("/", 1)[-1]
        answer = self.sb.post(f"/sandbox/tencentcloud/faceid/{token}", json={"result": result})
        assert answer.status_code == 200, answer.text

    def verify(self, headers: dict[str, str], result: str, **body: Any) -> dict[str, Any]:
        """Start a check, play the person, read the verdict."""
        started = self.start(headers, **body)
        assert started.status_code == 201, started.text
        data = started.json()["data"]
        self.play(data["url"], result)
        answer = self.http.get(f"/v1/face/verifications/{data['id']}", headers=headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["data"])

    def sms(self, phone: str) -> list[dict[str, Any]]:
        """The SMS the sandbox's Tencent Cloud took for ``phone`` (request and text)."""
        answer = self.sb.get("/sandbox/tencentcloud/requests", params={"action": "SendSms"})
        return [r for r in answer.json()["data"]
                if "+86" + phone in r["request"]["PhoneNumberSet"]]

    def mails(self, address: str) -> list[Any]:
        """The emails the SMTP server took for ``address``."""
        with self.mail.lock:
            return [m for m in self.mail.messages if m["To"].addresses[0].addr_spec == address]

    def pay(self, payment: dict[str, Any]) -> None:
        order = payment["payment_order"]
        path = "wxpay/transactions" if payment["method"] == "wxpay" else "alipay/trades"
        answer = self.sb.post(f"/sandbox/{path}/{order}/pay")
        assert answer.status_code == 200, answer.text

    def settle(self, timeout: float = 20) -> None:
        from sqlalchemy import func, select

        from gonglun.hooks.deferred import OutboxEvent

        def pending() -> bool:
            with self.rt.db.read() as session:
                return not session.scalar(select(func.count()).where(
                    OutboxEvent.state == "pending"))

        wait_until(pending, timeout, "deferred hooks still pending")


@pytest.fixture
def face(make_rt: Any, tmp_path: Path) -> Iterator[FaceLive]:
    keys = tmp_path / "sandbox"
    with running_sandbox(keys) as (sandbox_url, _sandbox, _keyset), \
            mail_server(tmp_path) as (box, smtp):
        keyset = str(keys / "sandbox.json")
        rt = make_rt(payment={"gateway_url": sandbox_url, "keyset": keyset},
                     face={"gateway_url": sandbox_url, "keyset": keyset, **FACE_KEYS},
                     notify={"keyset": keyset, "gateway_url": sandbox_url, "smtp": smtp,
                             "code_key": "a face test key that is long enough",
                             "scenes": {"account_reset": {"channels": {
                                 "sms": {"template_id": RESET_SMS["id"]}}}}},
                     server={"trusted_proxies": ["127.0.0.1"]})
        offset = [0.0]
        rt.face_clock = lambda: utcnow() + dt.timedelta(seconds=offset[0])
        server = UvicornThread(create_app(rt=rt))
        base = server.start()
        rt.config.data["server"]["public_url"] = base
        rt.__dict__.pop("_payment_channels", None)
        worker = dramatiq.Worker(rt.broker, worker_threads=2, worker_timeout=100)
        worker.start()
        http = httpx.Client(base_url=base, timeout=30, trust_env=False)
        sb = httpx.Client(base_url=sandbox_url, timeout=30, trust_env=False)
        approved = sb.post("/sandbox/tencentcloud/templates", json=RESET_SMS)
        assert approved.status_code == 201, approved.text
        try:
            yield FaceLive(rt, base, sandbox_url, http, sb, box, offset)
        finally:
            http.close()
            sb.close()
            worker.stop()
            server.stop()
