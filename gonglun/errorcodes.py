"""The error catalogue: every error id the API can answer, its status, meaning and messages.

The ids come from the code itself (``scan``: every ``GonglunError(...)`` and the helpers that
build one, read from the source with ``ast``), their meanings and English messages from
``errors.toml`` beside this module. ``docs/errors.md`` is rendered from both
(``python -m gonglun.errorcodes > docs/errors.md``) and a test keeps it current and every id
described. Messages default to the seeds' Chinese; a client that prefers English
(``Accept-Language: en``) gets the catalogue's English, its ``{field}``-style placeholders
filled from the error's ``data``.
"""

from __future__ import annotations

import ast
import functools
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gonglun.storage import KINDS as STORAGE

ROOT = Path(__file__).resolve().parent
CATALOG = ROOT / "errors.toml"
#: Callables whose first argument (or ``error=``) is an error id.
BUILDERS = frozenset({"GonglunError", "not_found", "forbidden", "conflict", "_refuse",
                      "RateLimited", "LockBusy", "ChannelRefusal"})
#: Ids built outside a call site (the HTTP layer's own).
FIXED = {
    "route.not_found": (404, "接口不存在"), "route.method_not_allowed": (405, "不支持的请求方法"),
    "request.unsupported_media_type": (415, "不支持的内容类型"),
    "server.error": (500, "服务器内部错误 (请求 <id>)"), "rate_limited": (429, "请求过于频繁"),
    "lock.busy": (409, "重复请求"),
    **{f"storage.{kind}": (503, msg) for kind, (_, msg) in STORAGE.items()},
}


@dataclass
class Site:
    path: str
    line: int
    status: int
    message: str


@dataclass
class Entry:
    id: str
    sites: list[Site] = field(default_factory=list)

    @property
    def statuses(self) -> list[int]:
        return sorted({s.status for s in self.sites})

    @property
    def messages(self) -> list[str]:
        return list(dict.fromkeys(s.message for s in self.sites if s.message))


def _constants(tree: ast.Module) -> dict[str, str]:
    """A module's ``NAME = "text"`` assignments: ids and messages passed by name resolve."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


class _Names(dict):  # type: ignore[type-arg]
    """This module's constants first, then any module's (imported names)."""

    def __init__(self, own: dict[str, str], every: dict[str, str]):
        super().__init__(own)
        self.every = every

    def __missing__(self, key: str) -> str | None:
        return self.every.get(key)


def _text(node: ast.AST | None, names: Any) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.Attribute):  # module.CONSTANT
        return names[node.attr]
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "<…>" for v in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr == "format":
        return _text(node.func.value, names)
    return None


def _status(call: ast.Call, name: str) -> int:
    for kw in call.keywords:
        if kw.arg == "status" and isinstance(kw.value, ast.Constant):
            return int(kw.value.value)
    return {"not_found": 404, "forbidden": 403, "conflict": 409, "_refuse": 409,
            "RateLimited": 429, "LockBusy": 409, "require": 429, "lock_or_fail": 409,
            }.get(name, 400)


def scan(root: Path = ROOT) -> dict[str, Entry]:
    """Every error id raised in ``root`` (the sandbox excluded: its errors are the vendors')."""
    files = [p for p in root.rglob("*.py") if "sandbox" not in p.relative_to(root).parts]
    trees = {path: ast.parse(path.read_text("utf-8")) for path in files}
    every: dict[str, str] = {}
    for tree in trees.values():
        for key, value in _constants(tree).items():
            every.setdefault(key, value)
    entries: dict[str, Entry] = defaultdict(lambda: Entry(""))
    for path, tree in trees.items():
        names = _Names(_constants(tree), every)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            error = _text(node.args[0], names) if name in BUILDERS and node.args else None
            msg_node = node.args[1] if name in BUILDERS and len(node.args) > 1 else None
            for kw in node.keywords:
                if kw.arg == "error":
                    error = _text(kw.value, names) or error
                if kw.arg == "msg":
                    msg_node = kw.value
            if not error or ("." not in error and error != "rate_limited"):
                continue
            entry = entries[error]
            entry.id = error
            called = name or ""
            if called == "run_sync" and node.args:  # run_sync(limiter.require, ...): its status
                called = getattr(node.args[0], "attr", None) or getattr(node.args[0], "id", "")
            entry.sites.append(Site(str(path.relative_to(root.parent)), node.lineno,
                                    _status(node, called), _text(msg_node, names) or ""))
    for error, (status, msg) in FIXED.items():
        entries[error].id = error
        entries[error].sites.append(Site("gonglun/api/app.py", 0, status, msg))
    return dict(sorted(entries.items()))


@functools.cache
def catalog() -> dict[str, dict[str, str]]:
    """``id -> {"meaning", "en"}`` from errors.toml."""
    data = tomllib.loads(CATALOG.read_text("utf-8"))
    return {key: dict(value) for key, value in data.items()}


class _Blank(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return ""


def english(error: str, data: Any = None) -> str | None:
    """The English message of ``error``, placeholders from ``data``; None when not catalogued."""
    text = catalog().get(error, {}).get("en")
    if not text:
        return None
    values = _Blank(data) if isinstance(data, dict) else _Blank()
    try:
        return text.format_map(values)
    except (ValueError, IndexError):
        return text


def prefers_english(header: str | None) -> bool:
    """``Accept-Language`` asks for English before any Chinese (q-values honoured)."""
    if not header:
        return False
    ranked = []
    for n, part in enumerate(header.split(",")):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, n, lang.strip().lower()))
    for _, _, lang in sorted(ranked):
        if lang.startswith("en"):
            return True
        if lang.startswith("zh") or lang == "*":
            return False
    return False


def render() -> str:
    described = catalog()
    lines = [
        "# Error reference",
        "",
        "Every error the API answers: `{\"code\": <non-zero>, \"error\": \"<id>\", \"msg\": "
        "\"<text>\", \"data\"?: {...}}` with the HTTP status below (decision 3, "
        "docs/design.md). Messages are the seeds' Chinese by default; send "
        "`Accept-Language: en` for English. `<…>` marks a "
        "part filled in at run time. Generated by `python -m gonglun.errorcodes > "
        "docs/errors.md` from the code and `gonglun/errors.toml`; a test keeps it current.",
        "",
    ]
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in scan().values():
        groups[entry.id.split(".")[0]].append(entry)
    for group in sorted(groups):
        lines += [f"## {group}", "", "| id | status | meaning | message (zh) | message (en) |",
                  "|---|---|---|---|---|"]
        for entry in groups[group]:
            info = described.get(entry.id, {})
            statuses = ", ".join(map(str, entry.statuses))
            zh = " / ".join(m.replace("\n", "\\n").replace("|", "\\|") for m in entry.messages)
            lines.append(f"| `{entry.id}` | {statuses} | {info.get('meaning', '')} | {zh} | "
                         f"{info.get('en', '')} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
