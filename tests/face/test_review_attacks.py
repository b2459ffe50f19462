"""What an attacker's review found, kept from coming back: one ID number in two spellings,
a guest burning someone else's quota, a ticket in two spellings."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.face.conftest import ID_A, NAME_A, FaceLive

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def test_full_width_digits_are_the_same_number(face: FaceLive) -> None:
    _, alice = face.user("alice", quota=1)
    assert face.verify(alice, "pass", name=NAME_A, code=ID_A)["status"] == "ok"
    _, bob = face.user("bob", quota=1)
    wide = ID_A[0] + ID_A[1:].translate(FULL_WIDTH)
    answer = face.start(bob, name=NAME_A, code=wide)
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "face.identity_in_use"
    # Looked up in either spelling, it is the one record (and one rate-limit subject).
    face.tick(6)
    found = face.http.post("/v1/account/recovery/lookup", json={"code": wide},
                           headers=face.headers())
    assert found.status_code == 200 and len(found.json()["data"]) == 1
    # Digits of other scripts are not digits of an ID number.
    arabic = ID_A[:-4] + "١٢٣٤"
    face.tick(6)
    bad = face.start(bob, name=NAME_A, code=arabic)
    assert bad.status_code == 400 and bad.json()["error"] == "face.invalid_idcard"


def test_a_guest_can_target_an_account_only_so_often_a_day(face: FaceLive) -> None:
    from gonglun.plugins.payment.models import Payment

    uid, alice = face.user("carol", quota=1)
    assert face.verify(alice, "pass", name=NAME_A, code=ID_A)["status"] == "ok"
    face.rt.config.data.setdefault("face", {})["retrieve_per_day"] = 2
    face.tick(6)
    [candidate] = face.http.post("/v1/account/recovery/lookup", json={"code": ID_A},
                                 headers=face.headers()).json()["data"]

    def attempt(ip: str) -> Any:
        return face.start(face.headers(ip=ip), type="retrieve", id=candidate["id"],
                          name=NAME_A, code=ID_A, method="wxpay", channel="native")

    def orders() -> int:
        with face.rt.db.read() as session:
            return int(session.scalar(select(func.count()).select_from(Payment).where(
                Payment.user_id == uid)) or 0)

    before = orders()
    assert [attempt(f"10.0.0.{i}").status_code for i in (1, 2)] == [402, 402]
    refused = attempt("10.0.0.3")
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "face.daily_limit"
    assert int(refused.headers["Retry-After"]) > 0
    assert orders() == before + 2 and face.quota(uid) == 0
    face.tick(86400)
    assert attempt("10.0.0.4").status_code == 402


@pytest.mark.parametrize("spoil", [lambda t: t + "=", lambda t: t.replace(".", ".=", 1),
                                   lambda t: t + " ", lambda t: t[:-1] + "+"])
def test_a_ticket_has_one_spelling(face: FaceLive, spoil: Any) -> None:
    from gonglun.accounts import tickets
    from gonglun.errors import GonglunError

    face.rt.config.data.setdefault("accounts", {})["ticket_key"] = "k" * 32
    text, _ = tickets.issue(face.rt, "mp", "openid-1", "union-1", "nick", "")
    assert tickets.read(face.rt, text).openid == "openid-1"
    with pytest.raises(GonglunError) as refused:
        tickets.read(face.rt, spoil(text))
    assert refused.value.error == "account.invalid_ticket"
