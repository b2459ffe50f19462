"""Phone and email bindings through the one core function and its REST routes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from gonglun.errors import GonglunError


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
    code = client.simulate_post("/v1/me/bindings/phone", json={"phone": "13600136000",
                                                               "code": "123456"},
                                headers=headers)
    assert code.status_code == 400 and code.json["error"] == "binding.bad_code"
    with rt.db.read() as session:
        assert session.get(User, a).email is None and session.get(User, a).phone == "13800138000"
        assert session.get(User, b).phone == "13900139000"
