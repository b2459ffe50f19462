"""Ledger accounts: codes, the system accounts (built-in and plugin-declared), ids.

An account is named by its code everywhere in the API: ``user:<id>`` for a user's wallet
(``wallet(7)``), a stable code for a system account. Plugins declare their own system
accounts through the ``register_ledger_accounts`` filter; accounts are created in the database
on first use (in the caller's transaction) and their ids are cached per runtime once seen
committed, so the hot path resolves codes without a query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gonglun.accounts.models import User
from gonglun.db import insert_ignore, utcnow
from gonglun.errors import GonglunError
from gonglun.ledger.models import Account, AccountBalance

WALLET_PREFIX = "user:"
ESCROW, INCOME, MANUAL = "escrow", "income", "manual"
#: A system account code: lower-case words, optionally one ``:`` qualifier (``channel:alipay``).
SYSTEM_CODE = re.compile(r"^[a-z][a-z0-9_]{0,30}(:[a-z0-9_]{1,31})?$")
#: Ids created inside the current transaction: not cached until seen committed.
_CREATED = "gonglun_ledger_created"
_CACHE_MAX = 100_000


@dataclass(frozen=True)
class SystemAccount:
    """A platform account (no owner); may go negative by design."""

    code: str
    name: str
    description: str = ""


DEFAULT_SYSTEM_ACCOUNTS: tuple[SystemAccount, ...] = (
    SystemAccount("channel:alipay", "支付宝清算",
                  "money that entered or left through Alipay: negative = Alipay owes us"),
    SystemAccount("channel:wxpay", "微信支付清算",
                  "money that entered or left through WeChat Pay: negative = WeChat owes us"),
    SystemAccount(ESCROW, "担保托管",
                  "money held for an order until settled or refunded; other holds by reference"),
    SystemAccount(INCOME, "平台收入", "platform revenue: commissions, fees"),
    SystemAccount(MANUAL, "人工处理",
                  "payouts and adjustments done by staff outside the system (note + admin)"),
)


def wallet(user_id: int) -> str:
    """The code of ``user_id``'s wallet."""
    return f"{WALLET_PREFIX}{int(user_id)}"


def wallet_user(code: str) -> int | None:
    """The user id of a wallet code, or None for a system account code."""
    if not code.startswith(WALLET_PREFIX):
        return None
    tail = code[len(WALLET_PREFIX):]
    return int(tail) if tail.isdigit() and not tail.startswith("0") else None


def system_accounts(rt: Any) -> dict[str, SystemAccount]:
    """The built-in system accounts plus every plugin's (``register_ledger_accounts``)."""
    cached = rt.__dict__.get("_ledger_system_accounts")
    if cached is not None:
        return cached
    declared = {a.code: a for a in DEFAULT_SYSTEM_ACCOUNTS}
    declared = rt.hooks.apply_filters("register_ledger_accounts", declared)
    for code, account in declared.items():
        if not isinstance(account, SystemAccount) or account.code != code:
            raise ValueError(f"ledger account {code!r}: declare a SystemAccount with that code")
        if not SYSTEM_CODE.match(code) or code.startswith(WALLET_PREFIX):
            raise ValueError(f"ledger account code {code!r} is not a valid system code")
    rt.__dict__["_ledger_system_accounts"] = declared
    return declared


def check_code(rt: Any, code: Any) -> str:
    """``code`` if it names a wallet or a declared system account; a 400 otherwise."""
    if isinstance(code, str) and (wallet_user(code) is not None or code in system_accounts(rt)):
        return code
    raise GonglunError("ledger.unknown_account", f"账户不存在: {str(code)[:64]}",
                       data={"account": str(code)[:64]})


# -- ids -----------------------------------------------------------------------------------

_A = Account.__table__
_ID_BY_CODE = select(_A.c.id).where(_A.c.code == bindparam("c"))


def _cache(rt: Any) -> dict[str, int]:
    cache: dict[str, int] = rt.__dict__.setdefault("_ledger_account_ids", {})
    if len(cache) > _CACHE_MAX:
        cache.clear()
    return cache


def account_id(rt: Any, session: Session, code: str, *, create: bool = True) -> int | None:
    """The id of account ``code``, created (with its first balance row) when missing."""
    cache = _cache(rt)
    found = cache.get(code)
    if found is not None:
        return found
    row = session.connection().execute(_ID_BY_CODE, {"c": code}).first()
    created: set[str] = session.info.setdefault(_CREATED, set())
    if row is not None:
        if code not in created:
            cache[code] = int(row.id)
        return int(row.id)
    if not create:
        return None
    new_id = _create(rt, session, code)
    created.add(code)
    return new_id


def _create(rt: Any, session: Session, code: str) -> int:
    user_id = wallet_user(code)
    if user_id is not None:
        if session.scalar(select(User.id).where(User.id == user_id)) is None:
            raise GonglunError("ledger.unknown_user", "用户不存在", status=404,
                               data={"user_id": user_id})
        values = {"code": code, "kind": "wallet", "user_id": user_id, "name": "",
                  "created_at": utcnow()}
    else:
        spec = system_accounts(rt).get(code)
        if spec is None:
            raise GonglunError("ledger.unknown_account", f"账户不存在: {code}",
                               data={"account": code})
        values = {"code": code, "kind": "system", "user_id": None, "name": spec.name,
                  "created_at": utcnow()}
    insert_ignore(session, _A, values)
    row = session.connection().execute(_ID_BY_CODE, {"c": code}).first()
    assert row is not None
    ensure_balance_row(session, int(row.id), 0)
    return int(row.id)


def ensure_balance_row(session: Session, account: int, shard: int, balance: int = 0) -> bool:
    """Insert a balance row unless it exists; True when this call inserted it.

    On MariaDB ``INSERT IGNORE`` would leave a shared lock on the duplicate, and two such
    waiters upgrading to an exclusive lock for their UPDATE deadlock; a no-op ``ON DUPLICATE KEY
    UPDATE`` takes the exclusive lock directly.
    """
    table = AccountBalance.__table__
    values = {"account_id": account, "shard": shard, "balance": balance, "updated_at": utcnow()}
    if session.get_bind().dialect.name == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table).values(**values)
        result = session.execute(stmt.on_duplicate_key_update(account_id=table.c.account_id))
        return bool(result.rowcount == 1)
    return insert_ignore(session, table, values)


def ensure_system_accounts(rt: Any, session: Session) -> None:
    """Create every declared system account that does not exist yet (listing, migrations)."""
    for code in system_accounts(rt):
        account_id(rt, session, code)


def codes_by_id(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Account.id, Account.code).where(Account.id.in_(ids)))
    return {int(i): c for i, c in rows}
