"""Users, login, tokens, bans and user meta."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, update

from gonglun.accounts import (
    ApiToken,
    User,
    UserMeta,
    all_meta,
    authenticate,
    ban,
    create_user,
    delete_meta,
    delete_user,
    get_meta,
    issue_token,
    passwords,
    revoke_all_tokens,
    revoke_token,
    set_meta,
    set_password,
    token_hash,
    unban,
    user_dict,
    user_for_token,
)
from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.hooks.deferred import OutboxEvent

PW = "correct horse"


def make(rt: Any, login: str = "alice", **kw: Any) -> User:
    with rt.db.write() as session:
        return create_user(session, login, PW, **kw)


def login_error(rt: Any, login: Any, password: Any) -> GonglunError:
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        authenticate(session, login, password)
    return err.value


# -- creating users ------------------------------------------------------------------------


def test_create_user_and_public_fields(rt: Any) -> None:
    user = make(rt, " Alice ", role="admin", nickname="爱丽丝")
    assert (user.login, user.role, user.status) == ("alice", "admin", "active")
    assert user.nickname == "爱丽丝"
    assert user.password_hash.startswith("$argon2id$") and PW not in user.password_hash
    data = user_dict(user)
    assert data["id"] == user.id and data["login"] == "alice" and data["role"] == "admin"
    assert "password_hash" not in data and PW not in str(data)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("bob", "short"), "user.password_too_short"),
        (("bob", "x" * 257), "user.password_too_long"),
        (("bob", ["not", "a", "string"]), "user.invalid_password"),
        (("b", PW), "user.invalid_login"),
        (("bob smith", PW), "user.invalid_login"),
        ((["bob"], PW), "user.invalid_login"),
        (("x" * 65, PW), "user.invalid_login"),
    ],
)
def test_create_user_validates(rt: Any, args: tuple[Any, Any], error: str) -> None:
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        create_user(session, *args)
    assert err.value.error == error


def test_invalid_role(rt: Any) -> None:
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        create_user(session, "bob", PW, role="root")
    assert err.value.error == "user.invalid_role"


def test_login_taken_case_insensitively(rt: Any) -> None:
    make(rt, "alice")
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        create_user(session, "ALICE", PW)
    assert err.value.error == "user.login_taken" and err.value.status == 409


def test_user_registered_is_deferred_with_a_runtime(rt: Any) -> None:
    with rt.db.write() as session:
        user = create_user(session, "carol", PW, rt=rt)
    with rt.db.read() as session:
        keys = list(session.scalars(select(OutboxEvent.key)))
    assert keys == [f"user_registered:{user.id}"]


# -- authentication ------------------------------------------------------------------------


def test_authenticate(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        assert authenticate(session, "ALICE", PW).id == user.id


def test_unknown_login_and_wrong_password_look_the_same(rt: Any) -> None:
    make(rt)
    wrong = login_error(rt, "alice", "wrong password")
    unknown = login_error(rt, "nobody", PW)
    odd = login_error(rt, {"login": "alice"}, PW)
    for err in (wrong, unknown, odd):
        assert (err.error, err.status) == ("auth.invalid_credentials", 401)
        assert err.msg == "账号或密码错误"


def test_password_is_rehashed_when_parameters_change(rt: Any) -> None:
    user = make(rt)
    old_hash = user.password_hash
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    previous = passwords.use(stronger)
    try:
        with rt.db.write() as session:
            authenticate(session, "alice", PW)
        with rt.db.read() as session:
            new_hash = session.get(User, user.id).password_hash
        assert new_hash != old_hash and not stronger.check_needs_rehash(new_hash)
        with rt.db.write() as session:
            assert authenticate(session, "alice", PW).id == user.id
    finally:
        passwords.use(previous)


def test_set_password(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        set_password(session, user.id, "a new password")
    assert login_error(rt, "alice", PW).error == "auth.invalid_credentials"
    with rt.db.write() as session:
        assert authenticate(session, "alice", "a new password").id == user.id


# -- bans and deletion ---------------------------------------------------------------------


def test_banned_user_is_refused_with_until_and_reason(rt: Any) -> None:
    user = make(rt)
    until = dt.datetime(2099, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with rt.db.write() as session:
        ban(session, user.id, until, "刷单")
    err = login_error(rt, "alice", PW)
    assert err.error == "auth.banned" and err.status == 403
    assert err.msg == "账号已被封禁,解封时间:2099-01-02 11:04:05,原因:刷单"
    assert err.data == {"banned_until": until.isoformat(), "reason": "刷单"}
    # A wrong password never reveals the ban.
    assert login_error(rt, "alice", "wrong password").error == "auth.invalid_credentials"


def test_permanent_ban_and_unban(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        ban(session, user.id, None, "欺诈")
    assert login_error(rt, "alice", PW).msg == "账号已被永久封禁,原因:欺诈"
    with rt.db.write() as session:
        assert unban(session, user.id) and not unban(session, user.id)
        assert authenticate(session, "alice", PW).status == "active"


def test_expired_ban_is_lifted_at_login(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        ban(session, user.id, utcnow() - dt.timedelta(seconds=1), "过期")
    with rt.db.write() as session:
        authenticate(session, "alice", PW)
    with rt.db.read() as session:
        row = session.get(User, user.id)
        assert (row.status, row.banned_until, row.ban_reason) == ("active", None, None)


def test_ban_validates(rt: Any) -> None:
    user = make(rt)
    for until, reason in [(dt.datetime(2099, 1, 1), "naive"), (None, ""), (None, "x" * 256)]:
        with pytest.raises(GonglunError) as err, rt.db.write() as session:
            ban(session, user.id, until, reason)
        assert err.value.error == "user.invalid_ban"
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        ban(session, 12345, None, "nobody")
    assert err.value.error == "user.not_found"


def test_deleted_user_is_refused_and_cannot_be_banned(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        token = issue_token(session, user.id)
        assert delete_user(session, user.id) and not delete_user(session, user.id)
    err = login_error(rt, "alice", PW)
    assert (err.error, err.status) == ("auth.account_deleted", 403)
    with rt.db.read() as session:
        assert user_for_token(session, token) is None
    with pytest.raises(GonglunError) as ban_err, rt.db.write() as session:
        ban(session, user.id, None, "too late")
    assert ban_err.value.error == "user.deleted"


# -- tokens --------------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_resolve(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        token = issue_token(session, user.id, ttl_days=1, label="phone")
    assert len(token) >= 43
    with rt.db.read() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.token_hash == token_hash(token) and token not in row.token_hash
        assert row.label == "phone"
        assert dt.timedelta(hours=23) < row.expires_at - row.created_at <= dt.timedelta(days=1)
        assert user_for_token(session, token).id == user.id
        assert user_for_token(session, token + "x") is None
        assert user_for_token(session, "") is None
        assert user_for_token(session, None) is None  # type: ignore[arg-type]


def test_expired_token_is_refused(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        token = issue_token(session, user.id)
        session.execute(update(ApiToken).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    with rt.db.read() as session:
        assert user_for_token(session, token) is None


def test_revocation(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        tokens = [issue_token(session, user.id) for _ in range(3)]
    with rt.db.write() as session:
        assert revoke_token(session, tokens[0]) and not revoke_token(session, tokens[0])
        assert revoke_all_tokens(session, user.id, keep=tokens[2]) == 1
    with rt.db.read() as session:
        assert [user_for_token(session, t) is not None for t in tokens] == [False, False, True]


def test_token_of_banned_user_stops_and_resumes(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        token = issue_token(session, user.id)
        ban(session, user.id, None, "调查中")
    with rt.db.read() as session:
        assert user_for_token(session, token) is None
    with rt.db.write() as session:
        session.execute(update(User).values(banned_until=utcnow() - dt.timedelta(seconds=1)))
    with rt.db.read() as session:
        assert user_for_token(session, token).id == user.id  # the ban is over


def test_issue_token_validates(rt: Any) -> None:
    user = make(rt)
    for ttl in (0, -1, True, "30", 10_000):
        with pytest.raises(GonglunError) as err, rt.db.write() as session:
            issue_token(session, user.id, ttl_days=ttl)
        assert err.value.error == "token.invalid_ttl"
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        issue_token(session, 999)
    assert err.value.error == "user.not_found"


# -- meta ----------------------------------------------------------------------------------


def test_meta_roundtrip(rt: Any) -> None:
    user = make(rt)
    with rt.db.write() as session:
        assert get_meta(session, user.id, "weixin_uid") is None
        assert get_meta(session, user.id, "weixin_uid", "none") == "none"
        set_meta(session, user.id, "weixin_uid", "o-123")
        set_meta(session, user.id, "face_number", "2")
        set_meta(session, user.id, "face_number", "1")
        assert get_meta(session, user.id, "face_number") == "1"
        assert all_meta(session, user.id) == {"face_number": "1", "weixin_uid": "o-123"}
        assert delete_meta(session, user.id, "weixin_uid")
        assert not delete_meta(session, user.id, "weixin_uid")
        assert all_meta(session, user.id) == {"face_number": "1"}
    with pytest.raises(TypeError), rt.db.write() as session:
        set_meta(session, user.id, "face_number", 3)  # type: ignore[arg-type]
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        set_meta(session, user.id, "k" * 65, "v")
    assert err.value.error == "user.invalid_meta_key"


def test_meta_upsert_race(rt: Any) -> None:
    """Many writers and deleters on one key at once: no error, never two rows."""
    user = make(rt)
    writers, start = 12, threading.Barrier(12)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            for i in range(10):
                with rt.db.write() as session:
                    if n % 4 == 3 and i % 2:
                        delete_meta(session, user.id, "login_security")
                    else:
                        set_meta(session, user.id, "login_security", f"{n}:{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with rt.db.write() as session:
        rows = session.scalar(select(func.count()).select_from(UserMeta))
        assert rows <= 1
        set_meta(session, user.id, "login_security", "final")
    with rt.db.read() as session:
        assert all_meta(session, user.id) == {"login_security": "final"}
