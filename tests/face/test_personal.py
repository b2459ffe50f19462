"""Real-name verification (``personal``): pass, fail, abandon, quota bought through a payment."""

from __future__ import annotations

from typing import Any

from tests.face.conftest import ID_A, ID_B, NAME_A, NAME_B, FaceLive


def test_pass_fail_abandon_each_charged_as_the_catalog_says(face: FaceLive) -> None:
    uid, headers = face.user("alice", quota=3)
    failed = face.verify(headers, "not_same_person", name=NAME_A, code=ID_A)
    assert failed["status"] == "fail" and failed["charged"] is True
    assert face.quota(uid) == 2
    started = face.start(headers, name=NAME_A, code=ID_A)
    ref = started.json()["data"]["id"]
    face.play(started.json()["data"]["url"], "abandon")
    pending = face.http.get(f"/v1/face/verifications/{ref}", headers=headers).json()["data"]
    assert pending["status"] == "started"
    gone = face.http.post(f"/v1/face/verifications/{ref}/cancel", headers=headers)
    assert gone.json()["data"]["status"] == "abandoned" and face.quota(uid) == 2
    passed = face.verify(headers, "pass", name=NAME_A, code=ID_A)
    assert passed["status"] == "ok" and face.quota(uid) == 1
    again = face.http.get(f"/v1/face/verifications/{passed['id']}", headers=headers)
    assert again.json()["data"]["status"] == "ok" and face.quota(uid) == 1  # charged once
    me = face.http.get("/v1/me", headers=headers).json()["data"]
    assert me["face_verified"] is True and me["face_number"] == 1
    twice = face.start(headers, name=NAME_A, code=ID_A)
    assert twice.status_code == 409 and twice.json()["error"] == "face.already_verified"
    # The same ID number cannot verify a second account (face.accounts_per_identity = 1).
    _, bob = face.user("bob", quota=1)
    taken = face.start(bob, name=NAME_A, code=ID_A)
    assert taken.status_code == 409 and taken.json()["error"] == "face.identity_in_use"


def test_short_quota_jumps_to_a_payment_that_credits_once(face: FaceLive) -> None:
    uid, headers = face.user("carol")
    short = face.start(headers, name=NAME_B, code=ID_B, method="wxpay", channel="native")
    assert short.status_code == 402, short.text
    body: dict[str, Any] = short.json()
    assert body["error"] == "face.payment_required" and body["msg"] == "实名认证需先支付实名费用"
    assert body["data"]["jump"] == "payment"
    payment = body["data"]["payment"]
    assert payment["scene"] == "face_number" and payment["state"] == "wait_pay"
    face.pay(payment)
    face.settle()
    from tests.payment.conftest import wait_until

    wait_until(lambda: face.quota(uid) == 1, 20, "the quota credit")
    face.rt.hooks.do_action("payment_success", payment={**payment, "user_id": uid,
                                                        "state": "ok"})
    assert face.quota(uid) == 1  # a second delivery credits nothing
    passed = face.verify(headers, "pass", name=NAME_B, code=ID_B)
    assert passed["status"] == "ok" and face.quota(uid) == 0


def test_accounts_per_identity_holds_under_concurrent_passes(face: FaceLive) -> None:
    """Several accounts pass a check of one ID number at the same moment: exactly
    ``face.accounts_per_identity`` get an identity, on every backend (slots, not a count)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from sqlalchemy import func, select

    from gonglun.plugins.face.models import FaceIdentity, FaceIdentitySlot

    face.rt.config.data["face"]["accounts_per_identity"] = 2
    checks = []
    for i in range(5):
        _, headers = face.user(f"twin{i}", quota=1)
        started = face.start(headers, name=NAME_A, code=ID_A)
        assert started.status_code == 201, started.text
        face.play(started.json()["data"]["url"], "pass")
        checks.append((headers, started.json()["data"]["id"]))

    def verdict(check: tuple[dict[str, str], str]) -> httpx.Response:
        with httpx.Client(base_url=face.base, timeout=30, trust_env=False) as http:
            return http.get(f"/v1/face/verifications/{check[1]}", headers=check[0])

    with ThreadPoolExecutor(len(checks)) as pool:
        answers = list(pool.map(verdict, checks))
    passed = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    assert len(passed) == 2 and all(a.json()["data"]["status"] == "ok" for a in passed)
    assert {(a.status_code, a.json()["error"]) for a in refused} == {
        (409, "face.identity_in_use")}
    ends = sorted(face.http.get(f"/v1/face/verifications/{ref}", headers=headers).json()[
        "data"]["status"] for headers, ref in checks)
    assert ends == ["fail", "fail", "fail", "ok", "ok"]  # the losers: failed comparisons
    with face.rt.db.read() as session:
        assert session.scalar(select(func.count()).select_from(FaceIdentity)) == 2
        assert sorted(session.scalars(select(FaceIdentitySlot.slot))) == [0, 1]


def test_short_quota_without_a_channel_still_answers_the_order(face: FaceLive) -> None:
    from tests.face.conftest import ID_B, NAME_B

    _, headers = face.user("nochannel")
    short = face.start(headers, name=NAME_B, code=ID_B)
    assert short.status_code == 402, short.text
    data = short.json()["data"]
    assert data["jump"] == "payment" and data["payment"]["method"] == "alipay"
    assert data["payment"]["channel"] == "page" and data["pay_params"]
