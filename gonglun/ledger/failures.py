"""The BAL-02 failure log: one line per balance change that failed for a reason other than the
caller's input (a database error, a key conflict, a concurrent-update conflict).

``<server.data_dir>/log/balance/YYYY-MM-DD.log`` (Asia/Shanghai day)::

    [时间 - 2024-07-22 09:02:03] [余额场景 - (refund:99)] [金额 - 1234] [动作 - 扣除]
    [备注 - ...] [用户 - 7]          (one line in the file)

The amount is in fen; the action is seen from the wallet (增加 credit, 扣除 debit). A transfer
between system accounts names its debit account where the seeds name a user.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gonglun.db import utcnow
from gonglun.errors import GonglunError

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")

#: Refusals that are the caller's input, not a failed update: not written to the log.
NOT_LOGGED = frozenset({
    "ledger.invalid_amount",
    "ledger.invalid_argument",
    "ledger.unknown_account",
    "ledger.unknown_user",
    "ledger.same_account",
    "ledger.insufficient_balance",
    "ledger.negative_not_allowed",
    "ledger.note_required",
    "ledger.operator_required",
    "ledger.hold_insufficient",
})
_log_lock = threading.Lock()


def failure_line(
    user: int | str, delta: int, scene: str, ref: str, remark: str, reason: str,
    when: dt.datetime,
) -> str:
    """One BAL-02 line; the amount is in fen, the action says which way it was meant to go."""
    action = "增加" if delta > 0 else "扣除"
    text = f"{remark} | 失败原因: {reason}" if remark else f"失败原因: {reason}"
    text = " ".join(text.split())  # one record per line, whatever the error said
    stamp = when.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"[时间 - {stamp}] [余额场景 - ({scene}:{ref})] [金额 - {abs(delta)}] "
        f"[动作 - {action}] [备注 - {text}] [用户 - {user}]"
    )


def write_failure_log(rt: Any, line: str) -> Path | None:
    """Append ``line`` to today's file; never raises."""
    log.error("balance change failed: %s", line)
    config = getattr(rt, "config", None)
    if config is None:
        return None
    day = utcnow().astimezone(SHANGHAI).strftime("%Y-%m-%d")
    path = Path(config.data_dir) / "log" / "balance" / f"{day}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # NOTE: one write() of one line in append mode: lines from several processes never mix.
        with _log_lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        log.exception("cannot write the balance failure log %s", path)
        return None
    return path


def _lines(moves: Sequence[Any], reason: str) -> Iterator[str]:
    from gonglun.ledger.accounts import wallet_user

    now = utcnow()
    for m in moves:
        who: int | str | None = wallet_user(m.debit)
        delta = -m.amount
        if who is None and wallet_user(m.credit) is not None:
            who, delta = wallet_user(m.credit), m.amount
        yield failure_line(m.debit if who is None else who, delta, m.code, m.ref, m.remark,
                           reason, now)


@contextmanager
def logged_failures(rt: Any, moves: Sequence[Any]) -> Iterator[None]:
    """Write a line per move when the block fails for a reason other than the input."""
    try:
        yield
    except GonglunError as exc:
        if exc.error not in NOT_LOGGED:
            for line in _lines(moves, exc.msg):
                write_failure_log(rt, line)
        raise
    except Exception as exc:
        for line in _lines(moves, f"{type(exc).__name__}: {exc}"):
            write_failure_log(rt, line)
        raise
