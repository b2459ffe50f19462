"""Account recovery end to end, and the attacks it must refuse."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, select, text

from tests.face.conftest import FP, ID_A, ID_B, NAME_A, NAME_B, UA, FaceLive


def verified(face: FaceLive, login: str, name: str, code: str, **kw: Any) -> tuple[int, dict]:
    uid, headers = face.user(login, quota=1, **kw)
    assert face.verify(headers, "pass", name=name, code=code)["status"] == "ok"
    return uid, headers


def lookup(face: FaceLive, code: str, headers: dict | None = None) -> Any:
    face.tick(6)
    return face.http.post("/v1/account/recovery/lookup", json={"code": code},
                          headers=headers or face.headers())


def state(face: FaceLive, uid: int) -> tuple[Any, ...]:
    from gonglun.accounts.models import User

    with face.rt.db.read() as session:
        user = session.get(User, uid)
        return user.phone, user.email, user.password_hash, user.status


def test_a_guest_recovers_an_account_end_to_end(face: FaceLive) -> None:
    uid, old = verified(face, "dora", NAME_A, ID_A, phone="13800138000", email="d@example.com")
    from gonglun.accounts import set_meta

    with face.rt.db.write() as session:
        set_meta(session, uid, "login_security", '{"password": false}')
    found = lookup(face, ID_A.lower())
    assert found.status_code == 200, found.text
    [candidate] = found.json()["data"]
    assert candidate["name"] == "张**" and candidate["code"] == "110***********002X"
    assert len(candidate["id"]) == 32 and candidate["id"] != str(uid)
    guest = face.headers()
    short = face.start(guest, type="retrieve", id=candidate["id"], name=NAME_A, code=ID_A,
                       method="wxpay", channel="native")
    assert short.status_code == 402 and short.json()["data"]["jump"] == "payment"
    face.pay(short.json()["data"]["payment"])
    face.settle()
    from tests.payment.conftest import wait_until

    wait_until(lambda: face.quota(uid) == 1, 20, "the quota credit")
    passed = face.verify(guest, "pass", type="retrieve", id=candidate["id"], name=NAME_A,
                         code=ID_A)
    assert passed["status"] == "ok" and passed["msg"] == "刷脸成功:前往重置账户"
    token = passed["token"]
    assert face.quota(uid) == 0
    assert face.http.get("/v1/me", headers=old).status_code == 401  # old sessions dead
    phone, email, _, _ = state(face, uid)
    assert phone is None and email is None
    # The old phone and email are told, though the account no longer holds them.
    wait_until(lambda: face.sms("13800138000") and face.mails("d@example.com"), 20,
               "the account_reset SMS and email")
    [sms] = face.sms("13800138000")
    assert sms["request"]["TemplateId"] == "2300001" and "dora" in sms["text"]
    [mail] = face.mails("d@example.com")
    assert "已通过人脸识别完成重置" in mail.get_body(preferencelist=("plain",)).get_content()
    # Not from another address, agent or fingerprint; not from a logged-in user.
    for other in (face.headers(ip="10.9.8.7"), face.headers(ua="curl/8"),
                  face.headers(fp="fp-other")):
        refused = face.http.post("/v1/account/reset", json={"token": token,
                                                            "password": "a new password 1"},
                                 headers=other)
        assert refused.status_code == 403 and refused.json()["msg"] == "非法请求"
        assert refused.json()["error"] == "face.reset_invalid"
    reset = face.http.post("/v1/account/reset", json={"token": token,
                                                      "password": "a new password 1"},
                           headers=guest)
    assert reset.status_code == 200, reset.text
    replay = face.http.post("/v1/account/reset", json={"token": token,
                                                       "password": "another password 2"},
                            headers=guest)
    assert replay.status_code == 403 and replay.json()["msg"] == "非法请求"
    login = face.http.post("/v1/sessions", json={"login": "dora",
                                                 "password": "a new password 1"})
    assert login.status_code in (200, 201), login.text
    with face.rt.db.read() as session:
        from gonglun.accounts import get_meta

        assert get_meta(session, uid, "login_security") is None
    audit = face.http.get("/v1/face/audit", headers=admin(face)).json()["data"]
    actions = [(a["action"], a["outcome"]) for a in audit]
    assert ("verdict", "ok") in actions and ("reset", "ok") in actions
    assert ("reset", "face.reset_invalid") in actions


def admin(face: FaceLive) -> dict[str, str]:
    from gonglun.accounts import create_user, issue_token

    with face.rt.db.write() as session:
        user = create_user(session, f"admin{face.offset[0]:.0f}", "long enough password",
                           role="admin")
        return {"Authorization": f"Bearer {issue_token(session, user.id)}"}


def test_the_reset_token_expires_after_two_hours(face: FaceLive) -> None:
    uid, _ = verified(face, "erin", NAME_B, ID_B)
    [candidate] = lookup(face, ID_B).json()["data"]
    guest = face.headers()
    from gonglun.accounts import set_meta

    with face.rt.db.write() as session:
        set_meta(session, uid, "face_number", "1")
    passed = face.verify(guest, "pass", type="retrieve", id=candidate["id"], name=NAME_B,
                         code=ID_B)
    before = state(face, uid)
    face.tick(7201)
    late = face.http.post("/v1/account/reset", json={"token": passed["token"],
                                                     "password": "a new password 1"},
                          headers=guest)
    assert late.status_code == 403 and late.json()["msg"] == "非法请求"
    assert state(face, uid) == before
    forged = face.http.post("/v1/account/reset", json={"token": "A" * 43,
                                                       "password": "a new password 1"},
                            headers=guest)
    assert forged.status_code == 403 and forged.json()["error"] == "face.reset_invalid"


def test_recovery_attacks_are_refused_and_change_nothing(face: FaceLive) -> None:
    uid, headers = verified(face, "fred", NAME_A, ID_A, phone="13900139000")
    [candidate] = lookup(face, ID_A).json()["data"]
    before = state(face, uid)

    def start(h: dict | None = None, **body: Any) -> Any:
        base = {"type": "retrieve", "id": candidate["id"], "name": NAME_A, "code": ID_A}
        return face.start(h or face.headers(), **{**base, **body})

    def refused(answer: Any, status: int, error: str, msg: str | None = None) -> None:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"] == error
        if msg:
            assert answer.json()["msg"] == msg

    # A logged-in user may not look up or recover.
    refused(lookup(face, ID_A, headers), 403, "face.logged_in", "认证失败:找回账户前请先退出登录")
    refused(start(headers), 403, "face.logged_in")
    # Enumeration: the database id, a guessed reference, no reference.
    refused(start(id=str(uid)), 400, "face.idcard_mismatch", "认证失败:身份证信息不匹配")
    refused(start(id="0" * 32), 400, "face.idcard_mismatch")
    refused(start(id=None), 400, "face.ref_required")
    # The right reference with another number, or another name.
    refused(start(code=ID_B), 400, "face.idcard_mismatch")
    refused(start(name=NAME_B), 400, "face.identity_mismatch", "身份证信息不匹配,无法完成验证")
    # A number bound to nobody.
    refused(lookup(face, "362102199003071238"), 404, "face.idcard_not_bound",
            "查询失败:该身份证未绑定任何账户")
    refused(lookup(face, "362102199003071230"), 400, "face.invalid_idcard")
    # Banned, then deleted.
    from gonglun.accounts import ban, delete_user

    with face.rt.db.write() as session:
        ban(session, uid, None, "刷单")
    answer = start()
    refused(answer, 403, "face.account_banned")
    assert "刷单" in answer.json()["msg"] and "fred" in answer.json()["msg"]
    with face.rt.db.write() as session:
        delete_user(session, uid)
    refused(start(), 403, "face.account_deleted", "该帐号已被注销,无法找回")
    # Switched off.
    face.rt.config.data.setdefault("face", {})["retrieve_enabled"] = False
    refused(start(), 403, "face.retrieve_disabled", "认证失败:管理员关闭了人脸找回账户功能")
    face.rt.config.data["face"]["retrieve_enabled"] = True
    # Nobody else's check can be read: by id, or from elsewhere.
    assert face.http.get("/v1/face/verifications/1", headers=face.headers()).status_code == 404
    assert state(face, uid)[:3] == before[:3]
    with face.rt.db.read() as session:
        from gonglun.plugins.face.models import FaceResetToken

        assert session.scalar(select(FaceResetToken.id)) is None


def test_brute_force_of_id_numbers_hits_the_rate_limit(face: FaceLive) -> None:
    from gonglun.plugins.face.idcard import check_digit

    codes = [f"11010519900101{i:03d}" for i in range(12)]
    answers = []
    for prefix in codes:
        answers.append(lookup(face, prefix + check_digit(prefix)))
    assert [a.status_code for a in answers[:10]] == [404] * 10
    blocked = answers[10]
    assert blocked.status_code == 429 and blocked.json()["error"] == "face.too_fast"
    assert "秒后再试" in blocked.json()["msg"] and int(blocked.headers["Retry-After"]) > 0
    # Too fast: under the 5 s minimum interval.
    face.tick(400)
    first = face.http.post("/v1/account/recovery/lookup", json={"code": ID_A},
                           headers=face.headers())
    fast = face.http.post("/v1/account/recovery/lookup", json={"code": ID_A},
                          headers=face.headers())
    assert first.status_code == 404 and fast.status_code == 429
    assert fast.json()["msg"].endswith("秒后再试")


def test_no_plaintext_identity_in_any_table(face: FaceLive) -> None:
    verified(face, "gina", NAME_A, ID_A)
    lookup(face, ID_A)
    needles = (NAME_A, ID_A, ID_A[6:14], NAME_A.encode("unicode_escape").decode())
    engine = face.rt.db.engine
    with engine.connect() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f"SELECT * FROM {quote(table)}")):
                flat = " ".join(str(v) for v in row)
                assert not any(n in flat for n in needles), (table, flat[:200])
    assert UA and FP
