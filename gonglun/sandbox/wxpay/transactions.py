"""WeChat Pay orders: ``POST /v3/pay/transactions/{jsapi|app|h5|native}``, the queries by
out_trade_no and transaction_id, close, and the H5 payment page behind ``h5_url``."""

from __future__ import annotations

import html
import re
import time
import uuid
from urllib.parse import quote

from ..common import digits, fen_to_yuan, now, parse_time
from ..store import WXPAY, Trade
from .base import WxpayBase
from .wire import CLOSED, NOTPAY, OUT_TRADE_NO, REFUND, SUCCESS, Call, Reply, error


class WxpayTransactions(WxpayBase):
    """Place, query and close orders."""

    def pay(self, call: Call, kw: dict[str, str]) -> Reply:
        kind = kw["kind"]
        if kind not in ("jsapi", "app", "h5", "native"):
            return error(404, "NOT_FOUND", "无效的请求路径")
        d = call.body
        if d.get("appid") != self.appid or d.get("mchid") != self.mchid:
            return error(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        description = d.get("description")
        if not isinstance(description, str) or not description or len(description) > 127:
            return error(400, "PARAM_ERROR", "description 必填且不超过127个字符")
        out_trade_no = d.get("out_trade_no")
        if not isinstance(out_trade_no, str) or not OUT_TRADE_NO.match(out_trade_no):
            return error(400, "PARAM_ERROR", "out_trade_no 必须是6-32位字母、数字或_-|*@")
        notify_url = d.get("notify_url")
        if not isinstance(notify_url, str) or not re.match(r"^https?://", notify_url):
            return error(400, "PARAM_ERROR", "notify_url 必填且必须是URL")
        amount = d.get("amount")
        total = amount.get("total") if isinstance(amount, dict) else None
        if isinstance(total, bool) or not isinstance(total, int) or total <= 0:
            return error(400, "PARAM_ERROR", "amount.total 必须是正整数(分)")
        if amount.get("currency", "CNY") != "CNY":
            return error(400, "PARAM_ERROR", "currency 仅支持 CNY")
        openid = ""
        if kind == "jsapi":
            payer = d.get("payer")
            openid = payer.get("openid", "") if isinstance(payer, dict) else ""
            if not openid:
                return error(400, "PARAM_ERROR", "JSAPI下单 payer.openid 必填")
        if kind == "h5":
            scene = d.get("scene_info")
            if not isinstance(scene, dict) or not scene.get("payer_client_ip"):
                return error(400, "PARAM_ERROR", "H5下单 scene_info.payer_client_ip 必填")
        expire_at = None
        if isinstance(d.get("time_expire"), str):
            try:
                expire_at = parse_time(d["time_expire"])
            except ValueError:
                return error(400, "PARAM_ERROR", "time_expire 格式错误")
        trade = self._trade(out_trade_no)
        if trade is not None:
            if trade.state in (SUCCESS, REFUND):
                return error(400, "ORDERPAID", "该订单已支付")
            if trade.state == CLOSED:
                return error(400, "ORDERCLOSED", "该订单已关闭")
            if trade.amount != total or trade.subject != description:
                return error(400, "OUT_TRADE_NO_USED", "商户订单号重复")
        created = now()
        prepay_id = "wx" + time.strftime("%d%H%M%S") + digits(8) + uuid.uuid4().hex[:20]
        if trade is None:
            trade = Trade(channel=WXPAY, out_trade_no=out_trade_no, channel_no="", amount=total,
                          state=NOTPAY, app_id=self.appid, subject=description,
                          created_at=created)
        trade.kind = kind
        trade.notify_url = notify_url
        trade.payer = openid or trade.payer
        trade.attach = str(d.get("attach") or "")
        trade.expire_at = expire_at
        trade.prepay_id = prepay_id
        trade.serial_mode = call.mode
        self.sb.store.save_trade(trade)
        if kind == "native":
            return Reply(200, {"code_url": f"weixin://wxpay/bizpayurl?pr={uuid.uuid4().hex[:7]}"})
        if kind == "h5":
            url = (f"{call.prefix}/sandbox/wxpay/checkmweb?prepay_id={prepay_id}"
                   f"&package={digits(10)}")
            return Reply(200, {"h5_url": url})
        return Reply(200, {"prepay_id": prepay_id})

    def query_by_out_trade_no(self, call: Call, kw: dict[str, str]) -> Reply:
        bad = self._check_mchid(call.params.get("mchid"))
        if bad:
            return bad
        trade = self._trade(kw["out_trade_no"])
        if trade is None:
            return error(404, "ORDER_NOT_EXIST", "订单不存在")
        return Reply(200, self.transaction_view(trade))

    def query_by_transaction_id(self, call: Call, kw: dict[str, str]) -> Reply:
        bad = self._check_mchid(call.params.get("mchid"))
        if bad:
            return bad
        trade = self.sb.store.trade_by_channel_no(WXPAY, kw["transaction_id"])
        if trade is None:
            return error(404, "ORDER_NOT_EXIST", "订单不存在")
        return Reply(200, self.transaction_view(trade))

    def close(self, call: Call, kw: dict[str, str]) -> Reply:
        bad = self._check_mchid(call.body.get("mchid"))
        if bad:
            return bad
        trade = self._trade(kw["out_trade_no"])
        if trade is None:
            return error(404, "ORDER_NOT_EXIST", "订单不存在")
        if trade.state in (SUCCESS, REFUND):
            return error(400, "ORDERPAID", "订单已支付")
        if trade.state == NOTPAY:
            trade.state = CLOSED
            trade.closed_at = now()
            self.sb.store.save_trade(trade)
        return Reply(204)


def checkmweb_page(trade: Trade | None, prefix: str) -> str:
    """The H5 payment page behind ``h5_url``: the buyer confirms in "WeChat"."""
    if trade is None:
        return "<!doctype html><meta charset='utf-8'><h1>订单不存在或已过期</h1>"
    pay_url = html.escape(f"{prefix}/sandbox/wxpay/transactions/{quote(trade.out_trade_no)}/pay")
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>微信支付 (sandbox)</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
<h1>微信支付 <small>(Gonglun sandbox)</small></h1>
<p>{html.escape(trade.subject)}</p><p>订单号 {html.escape(trade.out_trade_no)}</p>
<p style="font-size:2em">¥ {fen_to_yuan(trade.amount)}</p>
<button id="pay">立即支付</button> <span id="out"></span>
<script>
document.getElementById("pay").onclick = async () => {{
  const r = await fetch("{pay_url}",
    {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: "{{}}"}});
  const j = await r.json();
  document.getElementById("out").textContent = r.ok ? "支付成功" : (j.msg || "失败");
}};
</script></body></html>"""
