"""``post``: the single-entry call of CORE-14 (``xc_update_money_hook``), kept honest.

A balance change is still one call with a signed ``delta``, but it names its ``counter``
account: a credit moves money from ``counter`` into the wallet, a debit from the wallet to
``counter``. It is a ``transfer`` underneath, so money never appears or vanishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from gonglun.errors import GonglunError
from gonglun.ledger.accounts import wallet
from gonglun.ledger.reads import Posting, posting_view
from gonglun.ledger.transfers import transfer


@dataclass(frozen=True)
class PostingResult:
    posting: Posting
    #: False when ``key`` had already been used: nothing changed this time.
    created: bool

    @property
    def balance_after(self) -> int | None:
        return self.posting.balance_after


def post(
    rt: Any,
    session: Session,
    *,
    user_id: int,
    delta: int,
    scene: str,
    ref: str,
    key: str,
    counter: str,
    remark: str = "",
    allow_negative: bool = False,
    operator_id: int | None = None,
) -> PostingResult:
    """Apply ``delta`` fen to ``user_id``'s wallet against ``counter``, once per ``key``."""
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise GonglunError("ledger.invalid_argument", "用户ID无效", data={"field": "user_id"})
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise GonglunError("ledger.invalid_amount", "金额必须是整数(分)")
    if delta == 0:
        raise GonglunError("ledger.invalid_amount", "金额不能为0")
    mine = wallet(user_id)
    debit, credit = (counter, mine) if delta > 0 else (mine, counter)
    result = transfer(rt, session, debit=debit, credit=credit, amount=abs(delta), code=scene,
                      key=key, ref=ref, remark=remark, allow_negative=allow_negative,
                      operator_id=operator_id)
    return PostingResult(posting_view(result.transfer, user_id), result.created)
