"""Phone and email bindings through the one core function and its REST routes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import update

from gonglun.errors import GonglunError
from tests.face.conftest import FaceLive
from tests.payment.conftest import wait_until


def _user(rt: Any, login: str, phone: str | None, email: str | None) -> tuple[int, dict]:
    from gonglun.accounts import create_user, issue_token
    from gonglun.accounts.models import User

    with rt.db.write() as session:
        user = create_user(session, login, "long enough password")
        session.execute(update(User).where(User.id == user.id).values(phone=phone, email=email))
        return user.id, {"Authorization": f"Bearer {issue_token(session, user.id)}"}


def test_bind_rebind_unbind_are_conditional_and_unique(rt: Any, client: Any) -> None:
    from gonglun.accounts.bindings import change_binding
    from gonglun.accounts.models import User

    a, headers = _user(rt, "ann", "13800138000", "ann@example.com")
    b, _ = _user(rt, "ben", None, None)
    with rt.db.write() as session:
        change_binding(rt, session, b, "phone", "bind", "13900139000")
    for args, error in ((("phone", "bind", "13700137000"), "binding.state"),
                        (("phone", "rebind", "13800138000"), "binding.taken"),
                        (("email", "unbind"), "binding.state"),
                        (("fax", "unbind"), "binding.invalid_kind")):
        with pytest.raises(GonglunError) as refused, rt.db.write() as session:
            change_binding(rt, session, b, *args)
        assert refused.value.error == error
    wrong = client.simulate_post("/v1/me/bindings/email/unbind", json={"password": "nope"},
                                 headers=headers)
    assert wrong.status_code == 403 and wrong.json["error"] == "binding.bad_password"
    done = client.simulate_post("/v1/me/bindings/email/unbind",
                                json={"password": "long enough password"}, headers=headers)
    assert done.status_code == 200, done.text
    code = client.simulate_post("/v1/me/bindings/phone", json={
        "phone": "13600136000", "code": "123456", "password": "long enough password"},
        headers=headers)
    assert code.status_code == 400 and code.json["error"] == "binding.bad_code"
    with rt.db.read() as session:
        assert session.get(User, a).email is None and session.get(User, a).phone == "13800138000"
        assert session.get(User, b).phone == "13900139000"


CODE = re.compile(r"验证码: (\d{6})")


def _mail_code(face: FaceLive, address: str) -> str:
    wait_until(lambda: face.mails(address), 10, f"a code mailed to {address}")
    body = face.mails(address)[-1].get_body(preferencelist=("plain",)).get_content()
    found = CODE.search(body)
    assert found, body
    return found.group(1)


def _sms_code(face: FaceLive, phone: str) -> str:
    (*_, last) = face.sms(phone)
    return str(last["request"]["TemplateParamSet"][0])


def _bind_by_code(face: FaceLive, headers: dict[str, str], kind: str, value: str) -> Any:
    """Ask for the ``bind_<kind>`` code of ``value``, read it where it arrived, bind with it."""
    sent = face.http.post("/v1/codes", json={"scene": f"bind_{kind}", "to": value},
                          headers=headers)
    assert sent.status_code == 201, sent.text
    code = _mail_code(face, value) if kind == "email" else _sms_code(face, value)
    body = {kind: value, "code": code, "password": "long enough password"}
    return face.http.post(f"/v1/me/bindings/{kind}", json=body, headers=headers)


def _stored(face: FaceLive, user_id: int) -> tuple[str | None, str | None]:
    from gonglun.accounts.models import User

    with face.rt.db.read() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.phone, user.email


def test_email_bind_rebind_unbind_with_codes_over_smtp(face: FaceLive) -> None:
    from sqlalchemy import select

    from gonglun.plugins.notify.models import SmsCode

    ann, headers = face.user("ann")
    face.user("ben", email="ben@example.com")
    sent = face.http.post("/v1/codes", json={"scene": "bind_email", "to": "Ann@Example.COM"},
                          headers=headers)
    assert sent.status_code == 201 and sent.json()["data"]["email"] == "a***@example.com"
    code = _mail_code(face, "ann@example.com")
    with face.rt.db.read() as session:
        row = session.scalars(select(SmsCode)).one()
    assert (row.destination, row.scene) == ("ann@example.com", "bind_email")
    assert code not in row.code_hash and len(row.code_hash) == 64
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for body, status, error in (
            ({"email": "ann@example.com", "code": wrong}, 400, "binding.bad_code"),
            ({"email": "not an address", "code": code}, 400, "binding.invalid_value"),
            ({"email": "other@example.com", "code": code}, 400, "binding.bad_code")):
        refused = face.http.post("/v1/me/bindings/email", json=body, headers=headers)
        assert (refused.status_code, refused.json()["error"]) == (status, error), refused.text
    assert _stored(face, ann) == (None, None)  # nothing changed
    done = face.http.post("/v1/me/bindings/email", json={"email": "ann@EXAMPLE.com",
                                                         "code": code}, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json()["data"]["change"] == "bind"
    assert _stored(face, ann) == (None, "ann@example.com")
    # single use
    again = face.http.post("/v1/me/bindings/email", json={
        "email": "ANN@example.com", "code": code, "password": "long enough password"},
        headers=headers)
    assert again.json()["error"] == "binding.bad_code"

    # Rebind to an address another account holds: refused after the code, nothing changed.
    taken = _bind_by_code(face, headers, "email", "ben@example.com")
    assert (taken.status_code, taken.json()["error"]) == (409, "binding.taken")
    assert taken.json()["msg"] == "该邮箱已绑定其它账户"
    moved = _bind_by_code(face, headers, "email", "ann2@example.com")
    assert moved.status_code == 200 and moved.json()["data"]["change"] == "rebind"
    assert _stored(face, ann) == (None, "ann2@example.com")
    gone = face.http.post("/v1/me/bindings/email/unbind",
                          json={"password": "long enough password"}, headers=headers)
    assert gone.status_code == 200, gone.text
    assert _stored(face, ann) == (None, None)


def test_phone_bind_rebind_unbind_with_real_sms_codes(face: FaceLive) -> None:
    ann, headers = face.user("ann")
    face.user("ben", phone="13900139000")
    guest = face.http.post("/v1/codes", json={"scene": "bind_phone", "to": "13700137000"})
    assert (guest.status_code, guest.json()["error"]) == (401, "auth.required")
    sent = face.http.post("/v1/codes", json={"scene": "bind_phone", "to": "+8613700137000"},
                          headers=headers)
    assert sent.status_code == 201 and sent.json()["data"]["phone"] == "137****7000", sent.text
    code = _sms_code(face, "13700137000")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    refused = face.http.post("/v1/me/bindings/phone", json={"phone": "13700137000",
                                                            "code": wrong}, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (400, "binding.bad_code")
    assert _stored(face, ann) == (None, None)
    done = face.http.post("/v1/me/bindings/phone", json={"phone": "13700137000", "code": code},
                          headers=headers)
    assert done.status_code == 200 and done.json()["data"]["change"] == "bind", done.text
    assert _stored(face, ann) == ("13700137000", None)

    taken = _bind_by_code(face, headers, "phone", "13900139000")
    assert (taken.status_code, taken.json()["error"]) == (409, "binding.taken")
    assert taken.json()["msg"] == "该手机号已绑定其它账户"
    assert _stored(face, ann) == ("13700137000", None)
    moved = _bind_by_code(face, headers, "phone", "13600136000")
    assert moved.status_code == 200 and moved.json()["data"]["change"] == "rebind"
    assert _stored(face, ann) == ("13600136000", None)
    gone = face.http.post("/v1/me/bindings/phone/unbind",
                          json={"password": "long enough password"}, headers=headers)
    assert gone.status_code == 200, gone.text
    assert _stored(face, ann) == (None, None)


def test_replacing_a_bound_phone_takes_the_password(face: FaceLive) -> None:
    """A stolen session alone cannot move the account's phone (its SMS login and recovery
    contact): a rebind takes the password, throttled as logins are; nothing changes before."""
    ann, headers = face.user("cleo", phone="13500135000")
    sent = face.http.post("/v1/codes", json={"scene": "bind_phone", "to": "13400134000"},
                          headers=headers)
    assert sent.status_code == 201, sent.text
    code = _sms_code(face, "13400134000")
    body = {"phone": "13400134000", "code": code}
    missing = face.http.post("/v1/me/bindings/phone", json=body, headers=headers)
    assert (missing.status_code, missing.json()["error"]) == (403, "binding.password_required")
    wrong = face.http.post("/v1/me/bindings/phone", json={**body, "password": "guess"},
                           headers=headers)
    assert (wrong.status_code, wrong.json()["error"]) == (403, "binding.bad_password")
    assert _stored(face, ann) == ("13500135000", None)
    done = face.http.post("/v1/me/bindings/phone",
                          json={**body, "password": "long enough password"}, headers=headers)
    assert done.status_code == 200 and done.json()["data"]["change"] == "rebind", done.text
    assert _stored(face, ann) == ("13400134000", None)
    # Guessing is throttled like logins: after auth.login_failures wrong ones, 429.
    answers = [face.http.post("/v1/me/bindings/phone/unbind", json={"password": f"g{i}"},
                              headers=headers).status_code for i in range(6)]
    assert answers[:5] == [403] * 5 and answers[5] == 429, answers
    assert _stored(face, ann) == ("13400134000", None)


@pytest.mark.parametrize("spelling,same", [("１３４００１３４００１", True),
                                           ("1340013400\u0661", False)])
def test_a_phone_has_one_spelling(face: FaceLive, spelling: str, same: bool) -> None:
    from gonglun.accounts.contacts import mainland_phone

    assert mainland_phone(spelling) == ("13400134001" if same else None)
    _, headers = face.user("dora")
    answer = face.http.post("/v1/codes", json={"scene": "bind_phone", "to": spelling},
                            headers=headers)
    if same:
        assert answer.status_code == 201 and answer.json()["data"]["phone"] == "134****4001"
    else:
        assert (answer.status_code, answer.json()["error"]) == (400, "notify.invalid_phone")
