"""Racing registrations (ACC-04, ACC-05): the database, not the checks, keeps one account.

Every thread passes the read-only checks (nickname free, phone free) before any of them writes,
held at the SMS-code step by a barrier; the unique indexes then let exactly one through and
the others get the catalogue's conflict, with nothing of theirs written.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from gonglun.accounts import registration
from gonglun.accounts.login import Client
from gonglun.accounts.models import User
from gonglun.errorcodes import scan
from gonglun.errors import GonglunError

THREADS = 4


def race(rt: Any, monkeypatch: pytest.MonkeyPatch, bodies: list[dict[str, Any]]) -> list[Any]:
    """Register every body at once; each answer is the 201 data or the GonglunError."""
    barrier = threading.Barrier(len(bodies), timeout=20)
    monkeypatch.setattr(registration, "_check_code", lambda *_: barrier.wait())

    def one(body: dict[str, Any]) -> Any:
        try:
            return registration.register(rt, body, Client(ip="127.0.0.1"))
        except GonglunError as exc:
            return exc

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def assert_one_winner(answers: list[Any], error: str) -> None:
    won = [a for a in answers if not isinstance(a, GonglunError)]
    lost = [a for a in answers if isinstance(a, GonglunError)]
    assert len(won) == 1 and len(lost) == THREADS - 1, answers
    (message,) = scan()[error].messages
    for exc in lost:
        assert (exc.error, exc.status, exc.msg) == (error, 409, message)


def users(rt: Any) -> int:
    with rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(User)))


def test_one_nickname_one_account(rt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [{"type": "phone", "phone": f"1390000000{i}", "code": "123456",
               "nickname": "抢注"} for i in range(THREADS)]
    bodies[1]["nickname"] = " 抢注 "  # the same nickname, however it is spaced
    assert_one_winner(race(rt, monkeypatch, bodies), "account.nickname_taken")
    assert users(rt) == 1


def test_one_phone_one_account(rt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [{"type": "phone", "phone": "13900000009", "code": "123456",
               "nickname": f"Racer{i}"} for i in range(THREADS)]
    assert_one_winner(race(rt, monkeypatch, bodies), "account.phone_taken")
    assert users(rt) == 1


def test_nickname_case_is_one_nickname(rt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [{"type": "phone", "phone": f"1391000000{i}", "code": "123456",
               "nickname": "CaseRacer".upper() if i % 2 else "caseracer"}
              for i in range(THREADS)]
    assert_one_winner(race(rt, monkeypatch, bodies), "account.nickname_taken")
    assert users(rt) == 1


def test_one_unionid_one_account_across_platforms(rt: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One WeChat user signing up at once from the official account, the app, the PC site and
    the mini program: four openids, one unionid, one account (decision 18)."""
    from gonglun.accounts import tickets

    rt.config.data.setdefault("accounts", {})["ticket_key"] = "k" * 32
    bodies = []
    for i, platform in enumerate(("mp", "app", "pc", "mini")[:THREADS]):
        ticket, _ = tickets.issue(rt, platform, f"openid-{platform}", "union-racer", "", "")
        bodies.append({"type": "wechat", "ticket": ticket, "phone": f"1392000000{i}",
                       "code": "123456", "nickname": f"Union{i}"})
    assert_one_winner(race(rt, monkeypatch, bodies), "account.wechat_bound")
    assert users(rt) == 1
