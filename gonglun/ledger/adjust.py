"""Staff adjustments of a wallet (BAL-05: how a negative balance is repaired; how a payout made
outside the system is recorded): one transfer between ``user:<id>`` and ``manual``, once per
key, written to the admin audit log in the same transaction.

A positive amount credits the wallet from ``manual``, a negative one debits it to ``manual``;
``manual`` is a system account, so the ledger's sum stays zero and no money is created. A
debit never leaves the wallet below zero unless the caller says so (``allow_negative``).

The key names the adjustment: the same key with the same user, amount and reason answers the
stored adjustment again and moves nothing; with anything else it is refused. Used by
``POST /v1/ledger/adjustments`` (super admins) and ``gonglun ledger adjust``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from gonglun.errors import GonglunError
from gonglun.ledger.accounts import MANUAL, wallet
from gonglun.ledger.moves import Move, TransferRow
from gonglun.ledger.transfers import MAX_AMOUNT

#: The transfer code of an adjustment (listed in ``ledger.negative_scenes`` by default).
CODE = "admin_adjust"
#: Transfer keys of adjustments are ``adjust:<key>``; their reference ``adjust:<user id>``.
PREFIX = "adjust:"
MAX_REASON = 200
MAX_KEY = 128
FIELDS = ("user_id", "amount", "reason", "key", "allow_negative")
INT64_MAX = 2**63 - 1
_KEY = re.compile(r"[\x21-\x7e]+")
_HTML = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>|&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")
#: Control, format (bidi overrides), separator and surrogate characters: not plain text.
_NOT_PLAIN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


@dataclass(frozen=True)
class Adjustment:
    user_id: int
    #: Signed fen: positive credits the wallet, negative debits it.
    amount: int
    reason: str
    key: str
    allow_negative: bool = False

    def move(self) -> Move:
        mine = wallet(self.user_id)
        debit, credit = (MANUAL, mine) if self.amount > 0 else (mine, MANUAL)
        return Move(debit, credit, abs(self.amount), CODE, PREFIX + self.key,
                    f"{PREFIX}{self.user_id}", self.reason, self.allow_negative)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_amount(value: Any) -> int:
    msg = ("金额必须是整数(分),正数增加、负数扣减" if not _is_int(value)
           else "调整金额不能为0" if value == 0
           else "金额超出单笔上限" if abs(value) > MAX_AMOUNT else "")
    if msg:
        raise GonglunError("ledger.invalid_amount", msg, data={"field": "amount"})
    return int(value)


def check_reason(value: Any) -> str:
    """Plain text on one line, 1-200 characters once trimmed, no HTML."""
    text = value.strip() if isinstance(value, str) else ""
    if (not text or len(text) > MAX_REASON or _HTML.search(text)
            or any(unicodedata.category(c) in _NOT_PLAIN for c in text)):
        raise GonglunError(
            "ledger.invalid_reason",
            f"请填写调整原因:1-{MAX_REASON}个字符的单行纯文本(不含HTML和控制字符)",
            data={"field": "reason"})
    return text


def check_key(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY or not _KEY.fullmatch(value):
        raise GonglunError("ledger.invalid_key",
                           f"幂等键 key 须为1-{MAX_KEY}个可打印ASCII字符(不含空格)",
                           data={"field": "key"})
    return value


def _field(ok: bool, field: str, msg: str) -> None:
    if not ok:
        raise GonglunError("ledger.invalid_argument", msg, data={"field": field})


def parse(body: Any) -> Adjustment:
    """The request body ``{"user_id", "amount", "reason", "key", "allow_negative"?}``."""
    _field(isinstance(body, dict), "body", "请求体须为JSON对象")
    unknown = sorted(str(k) for k in body if k not in FIELDS)
    first = unknown[0][:64] if unknown else ""
    _field(not unknown, first, f"未知参数: {first}")
    user_id = body.get("user_id")
    _field(_is_int(user_id) and 0 < user_id <= INT64_MAX, "user_id", "user_id 须为正整数")
    allow = body.get("allow_negative", False)
    _field(isinstance(allow, bool), "allow_negative", "allow_negative 须为布尔值")
    return Adjustment(user_id, check_amount(body.get("amount")), check_reason(body.get("reason")),
                      check_key(body.get("key")), allow)


def adjustment_view(row: TransferRow) -> dict[str, Any]:
    """An adjustment as the API and the CLI show it (the same on every replay)."""
    credit = row.credit != MANUAL
    user = int((row.credit if credit else row.debit).split(":", 1)[1])
    after = row.credit_after if credit else row.debit_after
    return {"id": row.id, "user_id": user, "amount": row.amount if credit else -row.amount,
            "reason": row.remark, "key": row.key[len(PREFIX):], "balance_after": after,
            "operator_id": row.operator_id, "transfer": row.to_dict()}


def adjust(rt: Any, adj: Adjustment, *, actor: tuple[int | None, str, str],
           console: bool = False) -> tuple[dict[str, Any], bool]:
    """Make ``adj`` once: ``(adjustment, created)``. ``actor`` is (staff user id or None, who,
    from where) as the admin audit log records it; ``console`` allows no staff user (the CLI).
    """
    from gonglun.ledger.transfers import transfer

    with rt.db.write() as session:
        _check_operator(session, actor[0], console)
        if actor[0] == adj.user_id:  # four eyes: nobody moves money into their own wallet
            raise GonglunError("ledger.own_wallet", "不能调整自己的余额,请由另一位超级管理员操作",
                               status=403, data={"field": "user_id"})
        user = _user(session, adj.user_id)
        move = adj.move()
        row = _same(session, adj, move)
        if row is not None:
            return adjustment_view(row), False
        if user.status == "deleted":
            raise GonglunError("ledger.user_deleted", "该用户已注销,不能调整其余额", status=409,
                               data={"field": "user_id"})
        try:
            result = transfer(rt, session, debit=move.debit, credit=move.credit,
                              amount=move.amount, code=CODE, key=move.key, ref=move.ref,
                              remark=move.remark, allow_negative=adj.allow_negative,
                              operator_id=actor[0], console=console)
        except GonglunError as exc:
            raise _clearer(exc) from None
        if not result.created:  # a concurrent request with this key committed first
            return adjustment_view(_compare(adj, move, result.transfer)), False
        view = adjustment_view(result.transfer)
        from gonglun.accounts.admin import record

        record(session, actor_id=actor[0], actor=actor[1], source=actor[2],
               action="ledger_adjust", target=adj.user_id, amount=adj.amount,
               reason=adj.reason, key=adj.key, transfer_id=view["id"],
               balance_after=view["balance_after"], allow_negative=adj.allow_negative)
        return view, True


def _user(session: Any, user_id: int) -> Any:
    from gonglun.accounts.models import User

    user = session.get(User, user_id)
    if user is None:
        raise GonglunError("user.not_found", "用户不存在", status=404, data={"field": "user_id"})
    return user


def _check_operator(session: Any, operator_id: int | None, console: bool) -> None:
    from gonglun.accounts.models import User

    if operator_id is None and console:
        return
    staff = session.get(User, operator_id) if operator_id is not None else None
    if staff is None or staff.role != "superadmin" or staff.status != "active":
        raise GonglunError("auth.forbidden", "余额调整须由超级管理员操作", status=403)


def _same(session: Any, adj: Adjustment, move: Move) -> TransferRow | None:
    from gonglun.ledger.reads import transfers_by_key

    found = transfers_by_key(session, [move.key])
    return _compare(adj, move, found[0]) if found else None


def _compare(adj: Adjustment, move: Move, row: TransferRow) -> TransferRow:
    """``row`` if it is this adjustment made before; a key used for another, refused."""
    if not row.same_as(move) or row.remark != move.remark or row.ref != move.ref:
        raise GonglunError("ledger.adjustment_mismatch",
                           "该幂等键已用于另一笔余额调整(用户、金额或原因不同);请换一个新的键",
                           status=422, data={"field": "key", "adjustment_id": row.id})
    return row


def _clearer(exc: GonglunError) -> GonglunError:
    if exc.error == "ledger.insufficient_balance":
        return GonglunError(
            "ledger.adjustment_negative",
            "扣减后余额将为负数;如确需如此(平台垫付),请明确设置 allow_negative",
            status=409, data=exc.data)
    return exc


__all__ = ["CODE", "PREFIX", "Adjustment", "adjust", "adjustment_view", "check_amount",
           "check_key", "check_reason", "parse"]
