"""Helpers every resource uses: the success envelope, JSON bodies, validation, thread offload."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from gonglun.errors import GonglunError

T = TypeVar("T")

#: Largest amount accepted anywhere unless configured lower: 10 million yuan, in fen.
MAX_AMOUNT_FEN = 1_000_000_000


def ok(resp: Any, data: Any = None, *, status: int = 200, msg: str = "ok") -> None:
    """Write the success envelope ``{"code": 0, "msg": ..., "data": ...}``."""
    resp.status = status
    resp.media = {"code": 0, "msg": msg, "data": data}


async def json_body(req: Any) -> dict[str, Any]:
    """The request's JSON object; malformed or non-object bodies are a clear 400."""
    raw = await req.stream.read()
    if not raw:
        return {}
    import json

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise GonglunError("request.invalid_json", "请求体不是合法的 JSON") from None
    if not isinstance(data, dict):
        raise GonglunError("request.invalid_json", "请求体必须是 JSON 对象")
    return data


def get_str(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    max_len: int = 255,
    choices: tuple[str, ...] | None = None,
    default: str | None = None,
) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise GonglunError("request.missing_field", f"缺少参数: {name}", data={"field": name})
        return default
    if not isinstance(value, str):
        raise GonglunError("request.invalid_type", f"参数 {name} 必须是字符串",
                           data={"field": name})
    if len(value) > max_len:
        raise GonglunError("request.too_long", f"参数 {name} 过长", data={"field": name})
    if choices is not None and value not in choices:
        raise GonglunError(
            "request.invalid_choice",
            f"参数 {name} 取值无效, 可选: {', '.join(choices)}",
            data={"field": name, "choices": list(choices)},
        )
    return value


def get_int(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
) -> int | None:
    """An integer field; floats, booleans and numeric strings are refused (money is fen)."""
    value = body.get(name)
    if value is None:
        if required:
            raise GonglunError("request.missing_field", f"缺少参数: {name}", data={"field": name})
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise GonglunError("request.invalid_type", f"参数 {name} 必须是整数", data={"field": name})
    if minimum is not None and value < minimum:
        raise GonglunError("request.out_of_range", f"参数 {name} 不能小于 {minimum}",
                           data={"field": name})
    if maximum is not None and value > maximum:
        raise GonglunError("request.out_of_range", f"参数 {name} 不能大于 {maximum}",
                           data={"field": name})
    return value


def query_int(req: Any, name: str, default: int, *, minimum: int = 0, maximum: int = 10**9) -> int:
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise GonglunError("request.invalid_type", f"参数 {name} 必须是整数",
                           data={"field": name}) from None
    if not minimum <= value <= maximum:
        raise GonglunError("request.out_of_range", f"参数 {name} 超出范围", data={"field": name})
    return value


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run blocking work (SQLAlchemy, SDK calls) off the event loop."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


def require_role(req: Any, *roles: str) -> Any:
    user = req.context.user
    if user is None:
        raise GonglunError("auth.required", "请先登录", status=401)
    if roles and user.role not in roles:
        raise GonglunError("auth.forbidden", "非法请求", status=403)
    return user


__all__ = [
    "MAX_AMOUNT_FEN",
    "get_int",
    "get_str",
    "json_body",
    "ok",
    "query_int",
    "require_role",
    "run_sync",
]
