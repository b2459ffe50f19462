"""Accounts: users, password login, API tokens, bans and per-user meta (the core's, not a plugin's).

Other modules and plugins use only what this package exports.
"""

from gonglun.accounts.models import ROLES, STATUSES, ApiToken, User, UserMeta
from gonglun.accounts.service import (
    all_meta,
    authenticate,
    ban,
    create_user,
    delete_meta,
    delete_user,
    get_meta,
    get_user,
    issue_token,
    normalize_login,
    revoke_all_tokens,
    revoke_token,
    set_meta,
    set_password,
    token_hash,
    unban,
    user_by_login,
    user_dict,
    user_for_token,
)

__all__ = [
    "ROLES",
    "STATUSES",
    "ApiToken",
    "User",
    "UserMeta",
    "all_meta",
    "authenticate",
    "ban",
    "create_user",
    "delete_meta",
    "delete_user",
    "get_meta",
    "get_user",
    "issue_token",
    "normalize_login",
    "revoke_all_tokens",
    "revoke_token",
    "set_meta",
    "set_password",
    "token_hash",
    "unban",
    "user_by_login",
    "user_dict",
    "user_for_token",
]
