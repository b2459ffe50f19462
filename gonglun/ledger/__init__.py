"""The double-entry ledger: accounts, append-only transfers, balances, money invariants.

Money only moves: every change is a transfer from one account to another (``transfer``,
``transfer_many``, or ``post`` for one wallet against a named counter-account). Plugins read it
through ``balance``/``postings``/``positions`` and prove it with ``run_audit``.
"""

from gonglun.ledger.accounts import (
    DEFAULT_SYSTEM_ACCOUNTS,
    ESCROW,
    INCOME,
    MANUAL,
    SystemAccount,
    system_accounts,
    wallet,
    wallet_user,
)
from gonglun.ledger.audit import audit_session, ledger_problems, run_audit
from gonglun.ledger.failures import failure_line, write_failure_log
from gonglun.ledger.models import Account, AccountBalance, Transfer
from gonglun.ledger.moves import Move, TransferResult, TransferRow
from gonglun.ledger.queue import submit
from gonglun.ledger.reads import (
    NEGATIVE_BALANCE_ERROR,
    NEGATIVE_BALANCE_MSG,
    Posting,
    account_balance,
    balance,
    check_not_negative,
    held,
    list_accounts,
    list_transfers,
    negative_blocks,
    positions,
    posting_dict,
    postings,
    transfers_by_key,
)
from gonglun.ledger.transfers import (
    INSUFFICIENT_MSG,
    MAX_AMOUNT,
    hold,
    release,
    transfer,
    transfer_many,
)
from gonglun.ledger.wallets import PostingResult, post

__all__ = [
    "DEFAULT_SYSTEM_ACCOUNTS",
    "ESCROW",
    "INCOME",
    "INSUFFICIENT_MSG",
    "MANUAL",
    "MAX_AMOUNT",
    "NEGATIVE_BALANCE_ERROR",
    "NEGATIVE_BALANCE_MSG",
    "Account",
    "AccountBalance",
    "Move",
    "Posting",
    "PostingResult",
    "SystemAccount",
    "Transfer",
    "TransferResult",
    "TransferRow",
    "account_balance",
    "audit_session",
    "balance",
    "check_not_negative",
    "failure_line",
    "held",
    "hold",
    "ledger_problems",
    "list_accounts",
    "list_transfers",
    "negative_blocks",
    "positions",
    "post",
    "posting_dict",
    "postings",
    "release",
    "run_audit",
    "submit",
    "system_accounts",
    "transfer",
    "transfer_many",
    "transfers_by_key",
    "wallet",
    "wallet_user",
    "write_failure_log",
]
