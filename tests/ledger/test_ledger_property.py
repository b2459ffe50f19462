"""Property: any sequence of postings, repeats and refusals keeps the ledger's invariants.

A plain Python model (balance, keys seen) predicts every outcome; the database must agree after
each step, and the audit must stay clean.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonglun.errors import GonglunError
from gonglun.ledger import balance, post, postings, run_audit

step = st.tuples(
    st.integers(-300, 300).filter(bool),  # delta, never 0
    st.booleans(),  # allow_negative (with a scene that may go negative)
    st.integers(0, 4),  # 0: repeat an earlier key instead of a new posting
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_random_sequences_keep_the_invariants(rt: Any, new_user: Any, steps: list[Any]) -> None:
    uid = new_user()  # a fresh account per example; the database is shared across examples
    model = 0
    posted: list[tuple[str, int, str]] = []  # key, delta, scene
    for n, (delta, allow, repeat) in enumerate(steps):
        if repeat == 0 and posted:
            key, delta, scene = posted[n % len(posted)]
            with rt.db.write() as session:
                result = post(rt, session, user_id=uid, delta=delta, scene=scene, ref="", key=key)
            assert not result.created and result.posting.idempotency_key == key
        else:
            key, scene = f"u{uid}-{n}", "admin_adjust" if allow else "pay"
            try:
                with rt.db.write() as session:
                    result = post(
                        rt,
                        session,
                        user_id=uid,
                        delta=delta,
                        scene=scene,
                        ref="",
                        key=key,
                        allow_negative=allow,
                    )
            except GonglunError as exc:
                assert exc.error == "ledger.insufficient_balance"
                assert delta < 0 and model + delta < 0 and not allow
            else:
                assert delta > 0 or model + delta >= 0 or allow
                model += delta
                assert result.created and result.posting.balance_after == model
                posted.append((key, delta, scene))
        with rt.db.read() as session:
            assert balance(session, uid) == model
    with rt.db.read() as session:
        rows = postings(session, uid, limit=500)
    assert sum(p.delta for p in rows) == model
    assert len(rows) == len(posted)
    assert run_audit(rt) == []
