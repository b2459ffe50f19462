"""Jinja2 templates per scene and channel (NTF-05..10).

Templates are files: ``templates/<scene>/<channel>.j2`` in the plugin, searched first in
``notify.templates_dir`` when configured, so an operator overrides one file without copying
the rest. A template is a set of named blocks, one per part of the message:

* ``inbox``: ``title``, ``first`` (the header line), ``body``, ``rows`` (``label: value`` lines),
  ``remark``;
* ``email``: ``subject``, ``text`` (the HTML part is ``_default/email.html.j2``, autoescaped,
  built from the same text);
* ``sms``: ``p1``, ``p2``... the vendor template's parameters, in order;
* ``wechat``: one block per template field (``thing1``...), named as the WeChat template names
  them;
* ``app`` and ``websocket``: ``title``, ``body``.

A channel without its own file borrows one (``websocket`` → ``app`` → ``inbox``), then
``_default/<channel>.j2`` (``_code/sms.j2`` for verification-code scenes). Filters:
``yuan`` (fen → ``12.34元``, NTF-06), ``tail`` (the last 10 digits of an order number,
NTF-05), ``shanghai`` (a time as ``Y-m-d H:i``, Asia/Shanghai).
Templates run in Jinja's sandbox with undefined variables as errors: a missing data field
fails that delivery (logged), never sends a message with a hole.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import SandboxedEnvironment

HERE = Path(__file__).parent / "templates"
SHANGHAI = ZoneInfo("Asia/Shanghai")
BORROW = {"websocket": ("websocket", "app", "inbox"), "app": ("app", "inbox")}
_PARAM = re.compile(r"^p(\d+)$")


class RenderError(ValueError):
    """A template is missing, broken, or needs data the notification did not carry."""


def yuan(fen: Any) -> str:
    """Integer fen as yuan followed by 元, trailing zeros dropped: 3320 → ``33.2元``."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise RenderError(f"amounts are integer fen, got {fen!r}")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    text = f"{whole}.{cents:02d}".rstrip("0").rstrip(".")
    return f"{sign}{text}元"


def tail(value: Any, n: int = 10) -> str:
    return str(value or "")[-n:]


def shanghai(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise RenderError(f"not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise RenderError(f"not a time: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # times are stored in UTC (DECISIONS.md 4)
    return value.astimezone(SHANGHAI).strftime(fmt)


def environment(extra_dir: str | None) -> SandboxedEnvironment:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(HERE))]
    if extra_dir:
        loaders.insert(0, jinja2.FileSystemLoader(extra_dir))
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(yuan=yuan, tail=tail, shanghai=shanghai)
    return env


class Renderer:
    def __init__(self, templates_dir: str | None = None, link_base: str = "") -> None:
        self.env = environment(templates_dir)
        self.link_base = link_base.rstrip("/")
        self._links: dict[str, jinja2.Template] = {}

    def template(self, scene: str, channel: str, base: str = "_default") -> jinja2.Template:
        names = [f"{scene}/{c}.j2" for c in BORROW.get(channel, (channel,))]
        names.append(f"{base}/{channel}.j2")
        try:
            return self.env.select_template(names)
        except jinja2.TemplatesNotFound:
            raise RenderError(f"no template for {scene}/{channel}") from None

    def blocks(self, scene: str, channel: str, context: dict[str, Any],
               base: str = "_default") -> dict[str, str]:
        template = self.template(scene, channel, base)
        try:
            ctx = template.new_context(context)
            return {name: "".join(block(ctx)).strip()
                    for name, block in template.blocks.items() if not name.startswith("_")}
        except (jinja2.TemplateError, RenderError, TypeError, ValueError) as exc:
            raise RenderError(f"{template.name}: {type(exc).__name__}: {exc}") from exc

    def link(self, expression: str, context: dict[str, Any]) -> str:
        if not expression:
            return ""
        try:
            compiled = self._links.get(expression)
            if compiled is None:
                compiled = self._links[expression] = self.env.from_string(expression)
            target = compiled.render(context).strip()
        except jinja2.TemplateError as exc:
            raise RenderError(f"link: {exc}") from exc
        if target.startswith("/"):
            return self.link_base + target
        return target if target.startswith(("https://", "http://")) else ""

    def render(self, scene: str, channel: str, context: dict[str, Any], link: str,
               base: str = "_default") -> dict[str, Any]:
        """The content of one message: what the channel's provider needs, as JSON values.
        ``base`` is the folder of last resort (``_code`` for verification-code scenes)."""
        parts = self.blocks(scene, channel, {**context, "link": link}, base)
        if channel == "inbox":
            rows = [line.split(": ", 1) for line in parts.get("rows", "").splitlines()
                    if ": " in line]
            return {"title": parts.get("title", ""), "first": parts.get("first", ""),
                    "body": parts.get("body", ""), "rows": rows,
                    "remark": parts.get("remark", ""), "link": link}
        if channel == "email":
            subject, text = parts.get("subject", ""), parts.get("text", "")
            if not subject or not text:
                raise RenderError(f"{scene}/email: subject and text are required")
            page = self.env.get_template("_default/email.html.j2")
            paragraphs = [p.splitlines() for p in re.split(r"\n\s*\n", text) if p.strip()]
            html = page.render(subject=subject, paragraphs=paragraphs, link=link)
            return {"subject": subject, "text": text + (f"\n\n{link}" if link else ""),
                    "html": html}
        if channel == "sms":
            numbered = sorted((int(m.group(1)), v) for k, v in parts.items()
                              if (m := _PARAM.match(k)))
            return {"params": [v for _, v in numbered]}
        if channel == "wechat":
            return {"fields": parts, "url": link}
        return {"title": parts.get("title", ""), "body": parts.get("body", ""), "link": link}
