"""The Alipay channel, composed of its API families, and the routes it registers: the
``/gateway.do`` dispatch, the cashier page, the bill download and ``/sandbox/alipay/...``."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qsl

import falcon.asgi

from ..store import ALIPAY
from ..web import read_body
from .control import AlipayControl, AlipayControlResource
from .statements import AlipayBillFileResource, AlipayStatements
from .wire import CASHIER_METHODS


class AlipayChannel(AlipayControl, AlipayStatements):
    """Alipay's openapi gateway with the buyer and the bank behind it."""

    def add_routes(self, app: falcon.asgi.App) -> None:
        """Mount the gateway, the bill download and the control routes on ``app``."""
        app.add_route("/gateway.do", AlipayGatewayResource(self))
        app.add_route("/downloadBillFile.resource", AlipayBillFileResource(self))
        control = AlipayControlResource(self)
        app.add_route("/sandbox/alipay/trades", control, suffix="trades")
        app.add_route("/sandbox/alipay/trades/{no}", control, suffix="trade")
        app.add_route("/sandbox/alipay/trades/{no}/pay", control, suffix="pay")
        app.add_route("/sandbox/alipay/trades/{no}/refund", control, suffix="refund")
        app.add_route("/sandbox/alipay/refunds/{no}/settle", control, suffix="settle")

    def info(self, prefix: str) -> dict[str, Any]:
        """Public identifiers for ``GET /sandbox/info``."""
        return {"app_id": self.app_id, "seller_id": self.seller_id,
                "gateway": f"{prefix}/gateway.do"}

    # --- dispatch ----------------------------------------------------------------------

    def handle(self, params: dict[str, str], prefix: str) -> tuple[str, dict[str, Any] | None]:
        """Answer one signed server call: returns ``(response text, cashier info or None)``.

        Cashier methods (page/wap/app pay) return their trade info instead of a signed text,
        which the resource renders as HTML or JSON.
        """
        refusal = self.check_request(params)
        if refusal is not None:
            return refusal, None
        method = params["method"]
        sign_type = params["sign_type"]
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            inner = {"code": "40002", "msg": "Invalid Arguments",
                     "sub_code": "isv.invalid-biz-content", "sub_msg": "biz_content格式错误"}
            return self.signed(method, inner, sign_type), None
        if method in CASHIER_METHODS:
            return "", self.open_cashier(method, params, biz, prefix)
        handler = {
            "alipay.trade.query": self.query,
            "alipay.trade.close": self.close,
            "alipay.trade.refund": self.refund,
            "alipay.trade.fastpay.refund.query": self.refund_query,
            "alipay.trade.precreate": lambda b: self.precreate(b, params, prefix),
            "alipay.data.dataservice.bill.downloadurl.query": lambda b: self.bill_url(b, prefix),
        }.get(method)
        if handler is None:
            inner = {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method",
                     "sub_msg": "不存在的方法名"}
            return self.signed(method, inner, sign_type), None
        return self.signed(method, handler(biz), sign_type), None


class AlipayGatewayResource:
    """``GET|POST /gateway.do``: server calls answer signed JSON; cashier methods (the order
    strings page/wap/app pay build) open the cashier, as HTML for a browser or JSON for a
    client that asks for ``application/json``."""

    #: Mounted into Gonglun's API on the embedded default: the gateway has no users.
    auth = "public"

    def __init__(self, channel: AlipayChannel) -> None:
        self.channel = channel
        self.sb = channel.sb

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._serve(req, resp, b"")

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._serve(req, resp, await read_body(req))

    async def _serve(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                     body: bytes) -> None:
        self.sb.notifier.ensure_started()
        if await self.sb.http_fault(ALIPAY):
            resp.status = 500
            resp.content_type = "text/html; charset=utf-8"
            resp.text = "<html><body><h1>500 Internal Server Error</h1></body></html>"
            return
        params = dict(parse_qsl(req.query_string, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body.decode("utf-8", errors="replace"),
                                    keep_blank_values=True))
        text, cashier = self.channel.handle(params, req.prefix)
        accept = req.get_header("Accept") or ""
        if cashier is not None and "application/json" not in accept:
            resp.content_type = "text/html; charset=utf-8"
            resp.text = cashier_page(cashier)
        elif cashier is not None:
            resp.content_type = "application/json; charset=utf-8"
            resp.text = json.dumps(cashier, ensure_ascii=False)
        else:
            resp.content_type = "application/json; charset=utf-8"
            resp.text = text


def cashier_page(info: dict[str, Any]) -> str:
    """A small stand-in for Alipay's cashier: shows the order and a button that pays it."""
    if info.get("code") != "10000":
        return (
            "<!doctype html><meta charset='utf-8'><title>支付宝 - 错误</title>"
            f"<h1>支付错误</h1><p>错误代码 {html.escape(str(info.get('sub_code')))}</p>"
            f"<p>{html.escape(str(info.get('sub_msg')))}</p>"
        )
    pay_url = html.escape(info["pay_url"], quote=True)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>支付宝收银台 (sandbox)</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
<h1>支付宝收银台 <small>(Gonglun sandbox)</small></h1>
<p>{html.escape(info['subject'])}</p>
<p>订单号 {html.escape(info['out_trade_no'])}<br>交易号 {html.escape(info['trade_no'])}</p>
<p style="font-size:2em">¥ {html.escape(info['total_amount'])}</p>
<button id="pay">确认付款</button> <span id="out"></span>
<script>
document.getElementById("pay").onclick = async () => {{
  const r = await fetch("{pay_url}",
    {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: "{{}}"}});
  const j = await r.json();
  if (r.ok && j.data && j.data.return_url) {{ location.href = j.data.return_url; return; }}
  document.getElementById("out").textContent = r.ok ? "支付成功" : (j.msg || "失败");
}};
</script></body></html>"""
