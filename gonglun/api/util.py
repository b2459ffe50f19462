"""Helpers every resource uses: the success envelope, JSON bodies, validation, thread offload.

The checks of values (``get_str``, ``get_int``...) live in ``gonglun.fields`` and the thread
offload (``run_sync``, ``run_cpu``) in ``gonglun.concurrency``, below the API, so the layers
under it use them too; they are re-exported here for the resources and the plugins."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from gonglun.concurrency import cpu_pool, run_cpu, run_sync
from gonglun.errors import GonglunError
from gonglun.fields import (
    INT64_MAX,
    MAX_AMOUNT_FEN,
    ascii_ref,
    clean_text,
    get_int,
    get_str,
    path_id,
)

#: Bodies larger than this are refused before they are read (``server.max_body_bytes``).
DEFAULT_MAX_BODY = 1_048_576
#: JSON nested deeper than this is refused (nothing the API takes needs more than 3 levels).
MAX_JSON_DEPTH = 32


def ok(resp: Any, data: Any = None, *, status: int = 200, msg: str = "ok") -> None:
    """Write the success envelope ``{"code": 0, "msg": ..., "data": ...}``."""
    resp.status = status
    resp.media = {"code": 0, "msg": msg, "data": data}


def too_large(limit: int) -> GonglunError:
    return GonglunError("request.too_large", f"请求体过大 (上限 {limit} 字节)", status=413,
                        data={"max_bytes": limit})


async def read_body(req: Any, limit: int | None = None) -> bytes:
    """The raw body, refused with 413 once it passes ``limit`` bytes.

    The limit is the route's (``max_body`` on the resource, set by the middleware) or
    ``server.max_body_bytes``. A declared ``Content-Length`` above it is refused before a byte
    is read; a chunked body is read only up to the limit.
    """
    limit = limit or getattr(req.context, "max_body", None) or DEFAULT_MAX_BODY
    length = req.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in req.stream:
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _depth_ok(value: Any, limit: int) -> bool:
    """Iterative: a recursive walk would itself overflow on what it is meant to refuse."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return False
            items = node.values() if isinstance(node, dict) else node
            stack.extend((item, depth + 1) for item in items if isinstance(item, dict | list))
    return True


def parse_json(raw: bytes) -> dict[str, Any]:
    """A JSON object from ``raw``; anything else (bad UTF-8, bad JSON, too deep) is a 400."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise GonglunError("request.invalid_json", "请求体不是合法的 JSON") from None
    if not isinstance(data, dict):
        raise GonglunError("request.invalid_json", "请求体必须是 JSON 对象")
    if not _depth_ok(data, MAX_JSON_DEPTH):
        raise GonglunError("request.too_deep", f"JSON 嵌套不能超过 {MAX_JSON_DEPTH} 层")
    try:
        # ``"\ud800"`` parses into a lone surrogate, which no database or encoder accepts.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise GonglunError("request.invalid_json", "请求体含有无效的 Unicode 字符") from None
    return data


async def json_body(req: Any) -> dict[str, Any]:
    """The request's JSON object; malformed, too deep or too large bodies are a clear 4xx.

    The parsed body is kept on ``req.context.json`` (the idempotency fingerprint uses it).
    """
    data = parse_json(await read_body(req))
    req.context.json = data
    return data


def query_str(req: Any, name: str, *, max_len: int = 64,
              choices: tuple[str, ...] | None = None) -> str | None:
    """A query-string value: bounded, printable, one of ``choices`` when given; None if absent."""
    raw = req.get_param(name)
    if raw is None or raw == "":
        return None
    return get_str({name: raw}, name, max_len=max_len, choices=choices)


def header_text(req: Any, name: str, max_len: int = 128) -> str | None:
    """An advisory header (a device fingerprint...): kept only when short printable ASCII."""
    raw = req.get_header(name)
    if not raw or len(raw) > max_len or not raw.isascii() or not raw.isprintable():
        return None
    return raw


def query_int(req: Any, name: str, default: int, *, minimum: int = 0, maximum: int = 10**9) -> int:
    raw = req.get_param(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw.strip()):
        raise GonglunError("request.invalid_type", f"参数 {name} 必须是整数",
                           data={"field": name})
    value = int(raw)
    if not minimum <= value <= maximum:
        raise GonglunError("request.out_of_range", f"参数 {name} 超出范围", data={"field": name})
    return value


def client_ip(req: Any, trusted: list[Any] | None = None) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy.

    ``X-Forwarded-For`` is read only when the peer is in ``server.trusted_proxies`` (off by
    default), and then from the right: the first address that is not itself a trusted proxy
    is the client (the left part of the header is whatever the client wrote).
    """
    peer = req.remote_addr or ""
    trusted = trusted if trusted is not None else getattr(req.context, "trusted_proxies", [])
    if not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in (req.get_header("X-Forwarded-For") or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop if _valid_ip(hop) else peer
    return hops[0] if hops and _valid_ip(hops[0]) else peer


def parse_networks(values: Any) -> list[Any]:
    """``server.trusted_proxies`` entries (addresses or CIDRs) as networks; bad ones raise."""
    items = [values] if isinstance(values, str) else list(values or [])
    return [ipaddress.ip_network(str(v), strict=False) for v in items]


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _in(address: str, networks: list[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def require_role(req: Any, *roles: str) -> Any:
    user = req.context.user
    if user is None:
        raise GonglunError("auth.required", "请先登录", status=401)
    if roles and user.role not in roles:
        raise GonglunError("auth.forbidden", "非法请求", status=403)
    return user


__all__ = [
    "INT64_MAX",
    "MAX_AMOUNT_FEN",
    "ascii_ref",
    "clean_text",
    "client_ip",
    "cpu_pool",
    "get_int",
    "get_str",
    "header_text",
    "json_body",
    "ok",
    "parse_json",
    "path_id",
    "query_int",
    "query_str",
    "read_body",
    "require_role",
    "run_cpu",
    "run_sync",
]
