"""The signed ``/v3`` request pipeline: the merchant's signature and the serial it asks for,
the handler, and an answer signed with the platform key (errors and 204 included)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote

import falcon
import falcon.asgi

from ..store import WXPAY
from ..web import MAX_BODY
from .base import WxpayBase
from .wire import CERTIFICATE, Call, Handler, Reply, error


class WxpayPipeline(WxpayBase):
    """Authenticate a ``/v3`` request, run its handler, sign the answer."""

    async def serve(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                    handler: Handler, kw: dict[str, str]) -> None:
        self.sb.notifier.ensure_started()
        mode = self.mode_of(req.get_header("Wechatpay-Serial"))
        reply: Reply
        if await self.sb.http_fault(WXPAY):
            reply = error(500, "SYSTEM_ERROR", "系统错误")
        else:
            raw = await req.stream.read(MAX_BODY + 1)  # bounded: never a whole unbounded body
            reply = error(413, "PARAM_ERROR", "请求体过大") if len(raw) > MAX_BODY else (
                self._checked(req, raw.decode("utf-8", errors="replace"), handler, mode, kw))
        self.finish(resp, reply, mode or CERTIFICATE)

    def _checked(self, req: falcon.asgi.Request, body: str, handler: Handler, mode: str | None,
                 kw: dict[str, str]) -> Reply:
        """The merchant's signature and the serial it asks for, then the handler."""
        raw_path = req.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else quote(req.path)
        path_qs = f"{path}?{req.query_string}" if req.query_string else path
        why = self.authenticate(req.method, path_qs, req.get_header("Authorization") or "", body)
        if why is not None:
            return error(401, "SIGN_ERROR", why)
        if mode is None:
            return error(400, "PARAM_ERROR", "Wechatpay-Serial 无效")
        return self._call(handler, req, body, mode, kw)

    def _call(self, handler: Handler, req: falcon.asgi.Request, body: str, mode: str,
              kw: dict[str, str]) -> Reply:
        data: Any = {}
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError:
                return error(400, "PARAM_ERROR", "请求体不是合法的JSON")
            if not isinstance(data, dict):
                return error(400, "PARAM_ERROR", "请求体必须是JSON对象")
        params = dict(parse_qsl(req.query_string, keep_blank_values=True))
        return handler(Call(req.method, params, data, req.prefix, mode), kw)

    def finish(self, resp: falcon.asgi.Response, reply: Reply, mode: str) -> None:
        resp.status = reply.status
        resp.set_header("Request-ID", uuid.uuid4().hex)
        for name, value in reply.headers.items():
            resp.set_header(name, value)
        if reply.raw is not None:
            resp.content_type = "application/octet-stream"
            resp.data = reply.raw
            return
        text = "" if reply.payload is None else json.dumps(
            reply.payload, ensure_ascii=False, separators=(",", ":"))
        for name, value in self.sign_headers(text, mode).items():
            resp.set_header(name, value)
        if reply.payload is None:
            resp.content_type = None  # a bare 204, as WeChat sends it
            resp.text = ""
        else:
            resp.content_type = "application/json; charset=utf-8"
            resp.text = text


class V3Resource:
    """One ``/v3`` route: GET and/or POST handlers run through the signed pipeline."""

    #: Mounted into Gonglun's API on the embedded default: the gateway has no users.
    auth = "public"

    def __init__(self, channel: WxpayPipeline, *, get: Handler | None = None,
                 post: Handler | None = None) -> None:
        self.channel = channel
        self._get = get
        self._post = post

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                     **kw: str) -> None:
        if self._get is None:
            raise falcon.HTTPMethodNotAllowed(["POST"])
        await self.channel.serve(req, resp, self._get, kw)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                      **kw: str) -> None:
        if self._post is None:
            raise falcon.HTTPMethodNotAllowed(["GET"])
        await self.channel.serve(req, resp, self._post, kw)
