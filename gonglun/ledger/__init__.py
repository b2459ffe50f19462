"""The balance ledger: append-only postings, one balance per account, money invariants.

Plugins move money only through ``post`` (CORE-14) and read it through ``balance``/``postings``.
"""

from gonglun.ledger.audit import ledger_problems, run_audit
from gonglun.ledger.models import Balance, Posting
from gonglun.ledger.service import (
    INSUFFICIENT_MSG,
    MAX_DELTA,
    NEGATIVE_BALANCE_ERROR,
    NEGATIVE_BALANCE_MSG,
    PostingResult,
    balance,
    check_not_negative,
    negative_blocks,
    post,
    posting_dict,
    postings,
    write_failure_log,
)

__all__ = [
    "INSUFFICIENT_MSG",
    "MAX_DELTA",
    "NEGATIVE_BALANCE_ERROR",
    "NEGATIVE_BALANCE_MSG",
    "Balance",
    "Posting",
    "PostingResult",
    "balance",
    "check_not_negative",
    "ledger_problems",
    "negative_blocks",
    "post",
    "posting_dict",
    "postings",
    "run_audit",
    "write_failure_log",
]
