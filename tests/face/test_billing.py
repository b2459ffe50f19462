"""What a face check costs: only the codes Tencent Cloud bills (0, 1002, 2006, 2016) use a unit
of quota; the service's failures end the check unbilled; a check paid from the balance starts
at once; face limits at 0 are off, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.face.conftest import ID_A, ID_B, NAME_A, NAME_B, FaceLive

#: The sandbox's results, the vendor's code for each and whether Tencent Cloud bills it.
BILLED = [("not_alive", 1002, "疑似非真人录制"),
          ("id_mismatch", 2006, "姓名和身份证号不匹配,请核实身份后重试"),
          ("not_same_person", 2016, "无法判断为同一人,请确认身份后重试(相似度未达到通过阈值)")]
OUTAGES = [("engine_timeout", 1001), ("id_database_error", 1006), ("network_unstable", 1008),
           ("compare_timeout", 2001), ("identity_not_found", 2005), ("source_upgrading", 2017)]


@pytest.mark.parametrize(("result", "code", "message"), BILLED)
def test_billed_failures_use_one_unit_with_the_vendors_code(face: FaceLive, result: str,
                                                           code: int, message: str) -> None:
    uid, headers = face.user("alice", quota=2)
    failed = face.verify(headers, result, name=NAME_A, code=ID_A)
    assert (failed["status"], failed["charged"]) == ("fail", True)
    assert (failed["err_code"], failed["err_msg"]) == (code, message)
    assert face.quota(uid) == 1


@pytest.mark.parametrize(("result", "code"), OUTAGES)
def test_provider_outages_are_never_charged(face: FaceLive, result: str, code: int) -> None:
    uid, headers = face.user("bob", quota=1)
    ended = face.verify(headers, result, name=NAME_A, code=ID_A)
    assert (ended["status"], ended["charged"], ended["err_code"]) == ("error", False, code)
    assert face.quota(uid) == 1
    again = face.http.get(f"/v1/face/verifications/{ended['id']}", headers=headers)
    assert again.json()["data"]["status"] == "error" and face.quota(uid) == 1
    # The unit is still there: the next check runs on it and is billed once.
    passed = face.verify(headers, "pass", name=NAME_A, code=ID_A)
    assert passed["status"] == "ok" and passed["charged"] is True and face.quota(uid) == 0


def test_an_unbilled_failure_of_the_person_is_not_charged(face: FaceLive) -> None:
    uid, headers = face.user("erin", quota=1)
    failed = face.verify(headers, "face_failed", name=NAME_A, code=ID_A)
    assert (failed["status"], failed["charged"], failed["err_code"]) == ("fail", False, 1004)
    assert face.quota(uid) == 1


def test_a_person_may_retry_on_the_page_after_an_outage(face: FaceLive) -> None:
    """The vendor's page lets the person try again after the service failed them: the check
    ends with the last verdict the provider gives."""
    uid, headers = face.user("fay", quota=1)
    started = face.start(headers, name=NAME_A, code=ID_A).json()["data"]
    face.play(started["url"], "engine_timeout")
    face.play(started["url"], "pass")
    passed = face.http.get(f"/v1/face/verifications/{started['id']}", headers=headers)
    assert passed.json()["data"]["status"] == "ok" and face.quota(uid) == 0


def test_a_check_paid_from_the_balance_starts_with_the_new_quota(face: FaceLive) -> None:
    from gonglun.testing import fund_wallet

    uid, headers = face.user("dora")
    fund_wallet(face.rt, uid, 250)
    started = face.start(headers, name=NAME_B, code=ID_B, method="money")
    assert started.status_code == 201, started.text
    data = started.json()["data"]
    assert data["status"] == "started" and data["url"] and data["face_number"] == 1
    me = face.http.get("/v1/me", headers=headers).json()["data"]
    assert me["face_number"] == 1
    face.settle()  # the deferred payment_success finds the unit already credited
    assert face.quota(uid) == 1
    face.play(data["url"], "pass")
    passed = face.http.get(f"/v1/face/verifications/{data['id']}", headers=headers)
    assert passed.json()["data"]["status"] == "ok" and face.quota(uid) == 0
    # Paid once: 100 fen left, and no payment is left waiting.
    from sqlalchemy import select

    from gonglun.plugins.payment.models import Payment

    with face.rt.db.read() as session:
        states = list(session.scalars(select(Payment.state).where(Payment.user_id == uid)))
    assert states == ["ok"]
    assert wallet(face, uid) == 150


def test_a_short_balance_pays_nothing(face: FaceLive) -> None:
    from gonglun.testing import fund_wallet

    uid, headers = face.user("gus")
    fund_wallet(face.rt, uid, 50)
    refused = face.start(headers, name=NAME_B, code=ID_B, method="money")
    assert 400 <= refused.status_code < 500 and refused.status_code != 402, refused.text
    assert face.quota(uid) == 0 and wallet(face, uid) == 50


def wallet(face: FaceLive, user_id: int) -> int:
    from gonglun.ledger import balance

    with face.rt.db.read() as session:
        return balance(session, user_id)


@pytest.mark.parametrize("setting", ["min_interval_s", "limit_count", "limit_window_s",
                                     "limit_lock_s", "retrieve_per_day"])
def test_face_limits_at_zero_are_off(face: FaceLive, setting: str) -> None:
    face.rt.config.data["face"][setting] = 0
    _, headers = face.user("hal", quota=1)
    for _ in range(3):  # no tick between them: the gap is off or the answer is a clean 429
        answer = face.http.post("/v1/face/verifications", json={"name": NAME_A, "code": ID_A},
                                headers=headers)
        assert answer.status_code in (201, 402, 429), answer.text
    looked = face.http.post("/v1/account/recovery/lookup", json={"code": ID_A},
                            headers=face.headers(ip="10.9.9.9"))
    assert looked.status_code < 500, looked.text


@pytest.mark.parametrize("setting", ["min_interval_s", "limit_count", "limit_window_s",
                                     "limit_lock_s", "retrieve_per_day", "price",
                                     "units_per_payment", "accounts_per_identity"])
def test_negative_face_limits_are_refused_at_start(setting: str) -> None:
    from gonglun.config import Config, ConfigError
    from gonglun.runtime import Runtime

    with pytest.raises(ConfigError, match=f"face.{setting}' must be int of at least"):
        Runtime(Config({"face": {setting: -1}}))


def test_min_interval_zero_lets_checks_follow_at_once(face: FaceLive) -> None:
    face.rt.config.data["face"]["min_interval_s"] = 0
    _, headers = face.user("ivy", quota=3)
    answers: list[Any] = [face.http.post("/v1/face/verifications",
                                         json={"name": NAME_A, "code": ID_A}, headers=headers)
                          for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201], answers[-1].text


def test_retrieve_per_day_zero_is_no_daily_limit(face: FaceLive) -> None:
    """Recovery checks against one account with the daily limit off: each one is the order to
    pay (402), never a 500 from a zero-sized limit."""
    _, alice = face.user("jay", quota=1)
    assert face.verify(alice, "pass", name=NAME_A, code=ID_A)["status"] == "ok"
    face.rt.config.data["face"]["retrieve_per_day"] = 0
    face.tick(6)
    [candidate] = face.http.post("/v1/account/recovery/lookup", json={"code": ID_A},
                                 headers=face.headers()).json()["data"]
    answers = [face.start(face.headers(ip=f"10.0.1.{i}"), type="retrieve", id=candidate["id"],
                          name=NAME_A, code=ID_A, method="wxpay", channel="native")
               for i in range(3)]
    assert [a.status_code for a in answers] == [402, 402, 402], answers[-1].text
