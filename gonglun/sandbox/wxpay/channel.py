"""The WeChat Pay channel, composed of its API families, and the routes it registers:
``/v3/...`` as wechatpayv3 calls them and ``/sandbox/wxpay/...``."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from .control import WxpayControl, WxpayControlResource
from .pipeline import V3Resource, WxpayPipeline
from .statements import WxpayStatements


class WxpayChannel(WxpayPipeline, WxpayControl, WxpayStatements):
    """WeChat Pay API v3 with the buyer and the bank behind it."""

    def add_routes(self, app: falcon.asgi.App) -> None:
        """Mount the ``/v3`` routes and the control routes on ``app``."""
        wx = self
        app.add_route("/v3/certificates", V3Resource(wx, get=wx.certificates))
        app.add_route("/v3/pay/transactions/{kind}", V3Resource(wx, post=wx.pay))
        app.add_route("/v3/pay/transactions/out-trade-no/{out_trade_no}",
                      V3Resource(wx, get=wx.query_by_out_trade_no))
        app.add_route("/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
                      V3Resource(wx, post=wx.close))
        app.add_route("/v3/pay/transactions/id/{transaction_id}",
                      V3Resource(wx, get=wx.query_by_transaction_id))
        app.add_route("/v3/refund/domestic/refunds", V3Resource(wx, post=wx.refund))
        # One field name for both: Falcon refuses two names at the same level. A query names
        # the merchant's out_refund_no there, the abnormal-refund call WeChat's refund_id.
        app.add_route("/v3/refund/domestic/refunds/{ref}", V3Resource(wx, get=wx.query_refund))
        app.add_route("/v3/refund/domestic/refunds/{ref}/apply-abnormal-refund",
                      V3Resource(wx, post=wx.apply_abnormal_refund))
        app.add_route("/v3/bill/tradebill", V3Resource(wx, get=wx.tradebill))
        app.add_route("/v3/bill/fundflowbill", V3Resource(wx, get=wx.fundflowbill))
        app.add_route("/v3/billdownload/file", V3Resource(wx, get=wx.billfile))
        control = WxpayControlResource(self)
        app.add_route("/sandbox/wxpay/trades", control, suffix="trades")
        app.add_route("/sandbox/wxpay/trades/{no}", control, suffix="trade")
        app.add_route("/sandbox/wxpay/transactions/{no}/pay", control, suffix="pay")
        app.add_route("/sandbox/wxpay/transactions/{no}/refund", control, suffix="refund")
        app.add_route("/sandbox/wxpay/refunds/{no}/settle", control, suffix="settle")
        app.add_route("/sandbox/wxpay/checkmweb", control, suffix="checkmweb")

    def info(self, prefix: str) -> dict[str, Any]:
        """Public identifiers for ``GET /sandbox/info``."""
        return {"mchid": self.mchid, "appid": self.appid, "public_key_id": self.public_key_id,
                "platform_cert_serial": self.cert_serial, "base_url": prefix}
