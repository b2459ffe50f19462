"""WeChat Pay API v3 (``/v3/...``) as wechatpayv3 2.0 meets it on the wire.

Requests carry ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,signature=..,
timestamp=..,serial_no=..`` over ``"{METHOD}\\n{path?query}\\n{ts}\\n{nonce}\\n{body}\\n"``,
verified with the merchant's public key. Every answer, 204 and errors included, carries the five
``Wechatpay-*`` headers signed with the platform key over ``"{ts}\\n{nonce}\\n{body}\\n"``.

Two verification modes coexist, as during WeChat's 2024 migration: a merchant that sends
``Wechatpay-Serial: <public_key_id>`` (public-key mode) gets answers whose ``Wechatpay-Serial``
is that id; one that sends no serial (platform-certificate mode) gets the serial of the platform
certificate served by ``GET /v3/certificates``. Notifications for an order use the mode the
merchant used when it created the order. Both modes sign with the same platform key.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import falcon
import falcon.asgi
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .common import (
    digits,
    fen_to_yuan,
    now,
    parse_time,
    wechat_nonce,
    wechat_refund_id,
    wechat_time,
    wechat_transaction_id,
)
from .faults import RefundVocabulary
from .keys import platform_certificate, public_pem_of, rsa_oaep_decrypt, rsa_sign, rsa_verify
from .store import WXPAY, Refund, Trade
from .web import MAX_BODY, ControlError

if TYPE_CHECKING:
    from .app import Sandbox

NOTPAY, SUCCESS, CLOSED, REFUND = "NOTPAY", "SUCCESS", "CLOSED", "REFUND"
STATE_DESC = {
    NOTPAY: "订单未支付",
    SUCCESS: "支付成功",
    CLOSED: "订单已关闭",
    REFUND: "转入退款",
    "PAYERROR": "支付失败",
    "USERPAYING": "用户支付中",
    "REVOKED": "已撤销",
}
TRADE_TYPES = {"jsapi": "JSAPI", "app": "APP", "h5": "MWEB", "native": "NATIVE",
               "control": "NATIVE"}
REFUND_SUMMARY = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}
#: Refusals ``next_refund`` can arm, with the HTTP status and description of the refund API's
#: error table (POST /v3/refund/domestic/refunds); nothing is recorded, so a retry with the
#: same out_refund_no may pass.
REFUND_FAILURES: dict[str, tuple[int, str]] = {
    "FREQUENCY_LIMITED": (429, "频率限制"),
    "NOT_ENOUGH": (403, "余额不足"),
    "USER_ACCOUNT_ABNORMAL": (403, "退款请求失败"),
    "NO_AUTH": (403, "没有退款权限"),
    "INVALID_REQUEST": (400, "请求参数符合参数格式，但不符合业务规则"),
    "SYSTEM_ERROR": (500, "系统超时"),
}
REFUND_VOCABULARY = RefundVocabulary(
    default="PROCESSING",
    accepted=frozenset({"SUCCESS", "PROCESSING", "ABNORMAL", "CLOSED"}),
    settling=frozenset({"SUCCESS", "PROCESSING"}),
    failures=frozenset(REFUND_FAILURES),
    aliases={"PENDING": "PROCESSING"},
)
#: How apply-abnormal-refund redirects an ABNORMAL refund.
ABNORMAL_TYPES = ("USER_BANK_CARD", "MERCHANT_BANK_CARD")
BANK_NAMES = {"ICBC": "工商银行", "ABC": "农业银行", "BOC": "中国银行", "CCB": "建设银行",
              "COMM": "交通银行", "CMB": "招商银行", "SPDB": "浦发银行", "CITIC": "中信银行",
              "CEB": "光大银行", "CMBC": "民生银行", "CIB": "兴业银行", "GDB": "广发银行",
              "PSBC": "邮储银行", "PAB": "平安银行", "NBCB": "宁波银行"}
ORIGINAL_ACCOUNT = "支付用户零钱"
PUBLIC_KEY, CERTIFICATE = "public_key", "certificate"
SIGN_TYPE = "WECHATPAY2-SHA256-RSA2048"
#: WeChat refuses requests whose timestamp is more than five minutes off.
MAX_CLOCK_SKEW = 300
_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{6,32}$")
_AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Reply:
    status: int
    payload: dict[str, Any] | None = None  #: None: empty body (204)
    raw: bytes | None = None  #: a file download (bills), sent as is
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message})


@dataclass
class Call:
    """One authenticated v3 request, as handlers see it."""

    method: str
    params: dict[str, str]
    body: dict[str, Any]
    prefix: str
    mode: str


Handler = Callable[[Call, dict[str, str]], Reply]


class WxpayChannel:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        cfg = sandbox.keyset["wxpay"]
        self.mchid: str = cfg["mchid"]
        self.appid: str = cfg["appid"]
        self.merchant_serial_no: str = cfg["merchant_serial_no"]
        self.merchant_public_key = public_pem_of(cfg["merchant_private_key"])
        self.platform_private_key: str = cfg["platform_private_key"]
        self.public_key_id: str = cfg["public_key_id"]
        self.apiv3_key: bytes = cfg["apiv3_key"].encode()
        self.cert_serial, self.cert_pem = platform_certificate(self.platform_private_key,
                                                               self.mchid)
        sandbox.notifier.signers[WXPAY] = lambda d: self.sign_headers(
            d.body, d.summary.get("serial_mode", PUBLIC_KEY))
        sandbox.faults.register_refunds(WXPAY, REFUND_VOCABULARY)

    # --- signatures --------------------------------------------------------------------

    def serial_for(self, mode: str) -> str:
        return self.public_key_id if mode == PUBLIC_KEY else self.cert_serial

    def sign_headers(self, body: str, mode: str) -> dict[str, str]:
        ts = str(int(time.time()))
        nonce = wechat_nonce()
        return {
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": rsa_sign(self.platform_private_key, f"{ts}\n{nonce}\n{body}\n"),
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Serial": self.serial_for(mode),
            "Wechatpay-Signature-Type": SIGN_TYPE,
        }

    def mode_of(self, serial_header: str | None) -> str | None:
        """The verification mode a request asks for; None for a serial WeChat never issued."""
        if not serial_header:
            return CERTIFICATE
        if serial_header == self.public_key_id:
            return PUBLIC_KEY
        if serial_header.upper() == self.cert_serial:
            return CERTIFICATE
        return None

    def authenticate(self, method: str, path_qs: str, authorization: str, body: str) -> str | None:
        """None when the merchant's signature holds, else why it does not."""
        scheme, _, rest = authorization.partition(" ")
        if scheme != SIGN_TYPE:
            return "Authorization 头缺失或认证类型不正确"
        fields = dict(_AUTH_FIELD.findall(rest))
        missing = [k for k in ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
                   if not fields.get(k)]
        if missing:
            return f"Authorization 缺少 {', '.join(missing)}"
        if fields["mchid"] != self.mchid:
            return "商户号与签名不匹配"
        if fields["serial_no"].upper() != self.merchant_serial_no.upper():
            return "商户证书序列号有误"
        try:
            skew = abs(time.time() - int(fields["timestamp"]))
        except ValueError:
            return "timestamp 格式错误"
        if skew > MAX_CLOCK_SKEW:
            return "请求时间戳已过期"
        message = f"{method}\n{path_qs}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body}\n"
        if not rsa_verify(self.merchant_public_key, message, fields["signature"]):
            return "签名错误，请检查签名私钥与商户证书序列号是否匹配"
        return None

    # --- the request pipeline ----------------------------------------------------------

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

    # --- payments ----------------------------------------------------------------------

    def _expire(self, trade: Trade) -> None:
        if trade.state == NOTPAY and trade.expire_at and now() > trade.expire_at:
            trade.state = CLOSED
            trade.closed_at = trade.expire_at
            self.sb.store.save_trade(trade)

    def _trade(self, out_trade_no: str) -> Trade | None:
        trade = self.sb.store.trade(WXPAY, out_trade_no)
        if trade is not None:
            self._expire(trade)
        return trade

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
        if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.match(out_trade_no):
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

    def _check_mchid(self, value: Any) -> Reply | None:
        if value != self.mchid:
            return error(400, "PARAM_ERROR", "mchid 与调用商户号不一致")
        return None

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

    def transaction_view(self, trade: Trade) -> dict[str, Any]:
        out: dict[str, Any] = {
            "appid": trade.app_id or self.appid,
            "mchid": self.mchid,
            "out_trade_no": trade.out_trade_no,
            "trade_state": trade.state,
            "trade_state_desc": STATE_DESC.get(trade.state, trade.state),
            "attach": trade.attach,
            "amount": {"total": trade.amount, "currency": "CNY", "payer_currency": "CNY"},
        }
        if trade.paid_at is not None:
            out.update({
                "transaction_id": trade.channel_no,
                "trade_type": TRADE_TYPES.get(trade.kind, "NATIVE"),
                "bank_type": "OTHERS",
                "success_time": wechat_time(trade.paid_at),
                "payer": {"openid": trade.payer or "o" + hashlib.md5(
                    trade.out_trade_no.encode()).hexdigest()[:27]},
                "promotion_detail": [],
            })
            coupon = int(trade.extra.get("coupon") or 0)
            out["amount"]["payer_total"] = trade.amount - coupon
            if coupon:
                # A merchant-funded cash coupon: the order's total is paid in full, the buyer's
                # own money (payer_total) is smaller by the coupon.
                out["promotion_detail"] = [{
                    "coupon_id": "1" + trade.channel_no[-9:], "name": "代金券",
                    "scope": "SINGLE", "type": "CASH", "amount": coupon,
                    "stock_id": "9865000", "wechatpay_contribute": 0,
                    "merchant_contribute": coupon, "other_contribute": 0, "currency": "CNY",
                }]
        return out

    # --- refunds -----------------------------------------------------------------------

    def _committed(self, trade: Trade) -> int:
        """Refunds holding money (closed ones gave it back to the merchant)."""
        return sum(r.amount for r in self.sb.store.refunds_of(WXPAY, trade.out_trade_no)
                   if r.status != "CLOSED")

    def refund(self, call: Call, kw: dict[str, str]) -> Reply:
        request = self._refund_request(call.body)
        if isinstance(request, Reply):
            return request
        trade, out_refund_no, refund_fen = request
        existing = self.sb.store.refund(WXPAY, out_refund_no)
        if existing is not None:  # the same out_refund_no again: the same refund
            if existing.out_trade_no != trade.out_trade_no or existing.amount != refund_fen:
                return error(400, "INVALID_REQUEST", "订单金额或退款金额与之前请求不一致")
            return Reply(200, self.refund_view(existing))
        refusal = self._refund_refusal(trade, call.body["amount"]["total"], refund_fen)
        if refusal is not None:
            return refusal
        outcome = self.sb.next_refund(WXPAY)
        if outcome in REFUND_FAILURES:
            status, message = REFUND_FAILURES[outcome]
            return error(status, outcome, message)
        refund = self._new_refund(call, trade, out_refund_no, refund_fen, outcome)
        if refund.status != "CLOSED":
            trade.state = REFUND
            self.sb.store.save_trade(trade)
        if refund.status != "PROCESSING":
            self.notify_refund(trade, refund)
        return Reply(200, self.refund_view(refund))

    def _refund_request(self, d: dict[str, Any]) -> tuple[Trade, str, int] | Reply:
        """The order, out_refund_no and amount a refund request names, or the error."""
        out_refund_no = d.get("out_refund_no")
        if not isinstance(out_refund_no, str) or not out_refund_no or len(out_refund_no) > 64:
            return error(400, "PARAM_ERROR", "out_refund_no 必填")
        amount = d.get("amount")
        if not isinstance(amount, dict):
            return error(400, "PARAM_ERROR", "amount 必填")
        for value in (amount.get("refund"), amount.get("total")):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                return error(400, "PARAM_ERROR", "amount.refund 与 amount.total 必须是正整数(分)")
        if d.get("transaction_id"):
            trade = self.sb.store.trade_by_channel_no(WXPAY, str(d["transaction_id"]))
        elif d.get("out_trade_no"):
            trade = self._trade(str(d["out_trade_no"]))
        else:
            return error(400, "PARAM_ERROR", "transaction_id 与 out_trade_no 必填其一")
        if trade is None:
            return error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        return trade, out_refund_no, amount["refund"]

    def _refund_refusal(self, trade: Trade, total_fen: int, refund_fen: int) -> Reply | None:
        if trade.state not in (SUCCESS, REFUND):
            return error(400, "INVALID_REQUEST", "订单未支付或已关闭，不能退款")
        if total_fen != trade.amount:
            return error(400, "INVALID_REQUEST", "订单金额与实际支付金额不一致")
        if self._committed(trade) + refund_fen > trade.amount:
            return error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        return None

    def _new_refund(self, call: Call, trade: Trade, out_refund_no: str, refund_fen: int,
                    status: str) -> Refund:
        created = now()
        refund = Refund(
            channel=WXPAY, out_trade_no=trade.out_trade_no, out_refund_no=out_refund_no,
            refund_id=wechat_refund_id(created), amount=refund_fen, total=trade.amount,
            status=status, channel_no=trade.channel_no,
            reason=str(call.body.get("reason") or ""),
            notify_url=str(call.body.get("notify_url") or ""), created_at=created,
            serial_mode=call.mode,
        )
        if status == "SUCCESS":
            refund.success_at = created
        self.sb.store.save_refund(refund)
        return refund

    def query_refund(self, call: Call, kw: dict[str, str]) -> Reply:
        refund = self.sb.store.refund(WXPAY, kw["ref"])
        if refund is None:
            return error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return Reply(200, self.refund_view(refund))

    def apply_abnormal_refund(self, call: Call, kw: dict[str, str]) -> Reply:
        """``POST /v3/refund/domestic/refunds/{refund_id}/apply-abnormal-refund``: send an
        ABNORMAL refund to the buyer's bank card (``USER_BANK_CARD``, with ``bank_type`` and
        the encrypted ``bank_account`` and ``real_name``) or to the merchant's settlement
        account (``MERCHANT_BANK_CARD``). The refund is PROCESSING again until settled."""
        refund = next((r for r in self.sb.store.refunds.values()
                       if r.channel == WXPAY and r.refund_id == kw["ref"]), None)
        if refund is None:
            return error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        d = call.body
        if d.get("out_refund_no") != refund.out_refund_no:
            return error(400, "PARAM_ERROR", "out_refund_no 与微信退款单号不匹配")
        target = self._abnormal_target(d)
        if isinstance(target, Reply):
            return target
        if refund.status == "PROCESSING" and refund.extra.get("abnormal_type") == d["type"]:
            return Reply(200, self.refund_view(refund))  # the same request again
        if refund.status != "ABNORMAL":
            return error(400, "INVALID_REQUEST", f"退款单状态为{refund.status}，仅退款异常的退款单"
                         "可发起异常退款")
        refund.status = "PROCESSING"
        refund.extra.update({"abnormal_type": d["type"], "channel": "OTHER_BANKCARD",
                             "account": target})
        self.sb.store.save_refund(refund)
        return Reply(200, self.refund_view(refund))

    def _abnormal_target(self, d: dict[str, Any]) -> str | Reply:
        """The account an abnormal refund goes to, as ``user_received_account`` shows it."""
        if d.get("type") not in ABNORMAL_TYPES:
            return error(400, "PARAM_ERROR", f"type 只能是 {' 或 '.join(ABNORMAL_TYPES)}")
        if d["type"] == "MERCHANT_BANK_CARD":
            return "商户结算银行账户"
        bank_type = d.get("bank_type")
        if not isinstance(bank_type, str) or not bank_type or len(bank_type) > 16:
            return error(400, "PARAM_ERROR", "退款至用户银行卡时 bank_type 必填")
        plain = [rsa_oaep_decrypt(self.platform_private_key, str(d.get(name) or ""))
                 for name in ("bank_account", "real_name")]
        if None in plain or not all(plain):
            return error(400, "PARAM_ERROR",
                         "bank_account 与 real_name 必填，且须用微信支付公钥加密")
        account = str(plain[0])
        bank = BANK_NAMES.get(bank_type.split("_")[0], bank_type)
        return f"{bank}借记卡{account[-4:]}"

    def refund_view(self, refund: Refund) -> dict[str, Any]:
        out: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.channel_no,
            "out_trade_no": refund.out_trade_no,
            "channel": refund.extra.get("channel", "ORIGINAL"),
            "user_received_account": refund.extra.get("account", ORIGINAL_ACCOUNT),
            "create_time": wechat_time(refund.created_at),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund.total,
                "refund": refund.amount,
                "from": [],
                "payer_total": refund.total,
                "payer_refund": refund.amount,
                "settlement_refund": refund.amount,
                "settlement_total": refund.total,
                "discount_refund": 0,
                "currency": "CNY",
                "refund_fee": 0,
            },
            "promotion_detail": [],
        }
        if refund.success_at is not None:
            out["success_time"] = wechat_time(refund.success_at)
        return out

    # --- certificates and bills --------------------------------------------------------

    def certificates(self, call: Call, kw: dict[str, str]) -> Reply:
        nonce = wechat_nonce(12)
        ad = "certificate"
        ciphertext = AESGCM(self.apiv3_key).encrypt(nonce.encode(), self.cert_pem.encode(),
                                                    ad.encode())
        from .keys import CERT_NOT_AFTER, CERT_NOT_BEFORE

        return Reply(200, {"data": [{
            "serial_no": self.cert_serial,
            "effective_time": wechat_time(CERT_NOT_BEFORE.timestamp()),
            "expire_time": wechat_time(CERT_NOT_AFTER.timestamp()),
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": nonce,
                "associated_data": ad,
                "ciphertext": base64.b64encode(ciphertext).decode(),
            },
        }]})

    def tradebill(self, call: Call, kw: dict[str, str]) -> Reply:
        bill_date = call.params.get("bill_date", "")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", bill_date):
            return error(400, "PARAM_ERROR", "bill_date 格式应为 yyyy-MM-DD")
        bill_type = call.params.get("bill_type", "ALL").upper()
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            return error(400, "PARAM_ERROR", "bill_type 只能是 ALL、SUCCESS 或 REFUND")
        return self._bill_answer(call, {"d": bill_date, "t": bill_type,
                                        "z": call.params.get("tar_type", "")})

    def fundflowbill(self, call: Call, kw: dict[str, str]) -> Reply:
        """申请资金账单: the merchant account's movements of a day, as ``tradebill``."""
        from .bills import FUND_ACCOUNTS

        bill_date = call.params.get("bill_date", "")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", bill_date):
            return error(400, "PARAM_ERROR", "bill_date 格式应为 yyyy-MM-DD")
        account = call.params.get("account_type") or "BASIC"
        if account not in FUND_ACCOUNTS:
            return error(400, "PARAM_ERROR", "account_type 只能是 BASIC、OPERATION 或 FEES")
        return self._bill_answer(call, {"d": bill_date, "f": account,
                                        "z": call.params.get("tar_type", "")})

    def _bill_answer(self, call: Call, spec: dict[str, str]) -> Reply:
        """``download_url`` (a token naming the bill) and the hash of the file it serves."""
        if spec["z"] not in ("", "GZIP"):
            return error(400, "PARAM_ERROR", "tar_type 只能是 GZIP")
        token = base64.urlsafe_b64encode(json.dumps(spec).encode()).decode().rstrip("=")
        content = self._bill_file(spec)
        return Reply(200, {
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(content).hexdigest(),
            "download_url": f"{call.prefix}/v3/billdownload/file?token={token}",
        })

    def billfile(self, call: Call, kw: dict[str, str]) -> Reply:
        token = call.params.get("token", "")
        try:
            spec = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            content = self._bill_file(spec)
        except (ValueError, KeyError, TypeError, AttributeError):
            return error(400, "PARAM_ERROR", "token 无效")
        return Reply(200, raw=content)

    def _bill_file(self, spec: dict[str, str]) -> bytes:
        from .bills import FUND_ACCOUNTS, wxpay_csv, wxpay_fundflow_csv

        if "f" in spec:
            if spec["f"] not in FUND_ACCOUNTS:
                raise ValueError("account_type")
            text = wxpay_fundflow_csv(self.sb, str(spec["d"]), spec["f"])
        else:
            text = wxpay_csv(self.sb, str(spec["d"]), str(spec["t"]))
        data = text.encode("utf-8")
        # mtime=0: the same statement compresses to the same bytes, so the hash holds.
        return gzip.compress(data, mtime=0) if spec["z"] == "GZIP" else data

    # --- control: the buyer and the bank -----------------------------------------------

    def control_pay(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The buyer pays (``POST /sandbox/wxpay/transactions/{no}/pay``)."""
        total = _fen(data, "total")
        trade = self._trade(out_trade_no)
        if trade is None:
            if total is None:
                raise ControlError(
                    404, "trade_not_found",
                    f"no WeChat Pay order {out_trade_no!r}; give total (fen) to create and pay it",
                )
            trade = self._control_trade(out_trade_no, total, data)
        elif trade.state != NOTPAY:
            raise ControlError(409, "trade_state", f"order {out_trade_no} is {trade.state}")
        elif total is not None and total != trade.amount:
            raise ControlError(409, "amount_mismatch",
                               f"order {out_trade_no} is {trade.amount} fen")
        if data.get("openid"):
            trade.payer = str(data["openid"])
        coupon = _fen(data, "coupon")
        if coupon is not None:
            if coupon >= trade.amount:
                raise ControlError(400, "bad_amount", "coupon must be less than the total")
            trade.extra["coupon"] = coupon
        self._mark_paid(trade, data)
        out = self.control_view(trade)
        out.update(self.sb.notifier.report(self.notify_payment(trade)))
        return out

    def _control_trade(self, out_trade_no: str, total: int, data: dict[str, Any]) -> Trade:
        """An order the control API creates: it notifies the sandbox's configured URL."""
        mode = str(data.get("serial_mode") or PUBLIC_KEY)
        if mode not in (PUBLIC_KEY, CERTIFICATE):
            raise ControlError(400, "bad_field", "serial_mode must be public_key or certificate")
        return Trade(
            channel=WXPAY, out_trade_no=out_trade_no, channel_no="", amount=total, state=NOTPAY,
            app_id=self.appid, subject=str(data.get("description") or "sandbox order"),
            kind="control", notify_url=self.sb.notify_urls.get(WXPAY, ""),
            payer=str(data.get("openid") or ""), created_at=now(), serial_mode=mode,
        )

    def _mark_paid(self, trade: Trade, data: dict[str, Any]) -> None:
        paid_at = now()
        if data.get("paid_at"):
            try:
                paid_at = parse_time(str(data["paid_at"]))
            except ValueError as exc:
                raise ControlError(400, "bad_time", f"paid_at: {exc}") from exc
        trade.state = SUCCESS
        trade.paid_at = paid_at
        trade.channel_no = trade.channel_no or wechat_transaction_id(paid_at)
        self.sb.store.save_trade(trade)

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Inject an order paid at WeChat (``POST /sandbox/wxpay/trades``)."""
        total = _fen(data, "total") or _fen(data, "amount")
        if total is None:
            raise ControlError(400, "bad_amount", "total (fen) is required")
        out_trade_no = str(data.get("out_trade_no") or digits(20))
        if self.sb.store.trade(WXPAY, out_trade_no) is not None:
            raise ControlError(409, "trade_exists", f"order {out_trade_no} already exists")
        state = str(data.get("state") or SUCCESS)
        if state not in (NOTPAY, SUCCESS, CLOSED):
            raise ControlError(400, "bad_state", "state must be NOTPAY, SUCCESS or CLOSED")
        trade = self._control_trade(out_trade_no, total, data)
        if state == SUCCESS:
            self._mark_paid(trade, data)
        else:
            trade.state = state
            trade.closed_at = now() if state == CLOSED else None
            self.sb.store.save_trade(trade)
        out = self.control_view(trade)
        if state == SUCCESS and data.get("notify"):
            out.update(self.sb.notifier.report(self.notify_payment(trade)))
        return out

    def adjust(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        trade = self.sb.store.trade(WXPAY, out_trade_no)
        if trade is None:
            raise ControlError(404, "trade_not_found", f"no WeChat Pay order {out_trade_no!r}")
        total = _fen(data, "total") or _fen(data, "amount")
        if total is not None:
            trade.amount = total
        if data.get("paid_at"):
            try:
                trade.paid_at = parse_time(str(data["paid_at"]))
            except ValueError as exc:
                raise ControlError(400, "bad_time", f"paid_at: {exc}") from exc
        self.sb.store.save_trade(trade)
        return self.control_view(trade)

    def console_refund(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The merchant refunds from the merchant platform, outside its own system
        (``POST /sandbox/wxpay/transactions/{no}/refund``, ``amount`` fen): the v3 refund as
        the platform makes it, with its own ``out_refund_no`` (default ``console-<n>``),
        PROCESSING until the bank settles it (``/sandbox/wxpay/refunds/{no}/settle``) unless
        armed otherwise."""
        amount = data.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ControlError(400, "bad_amount", "amount must be a positive integer (fen)")
        trade = self._trade(out_trade_no)
        if trade is None:
            raise ControlError(404, "trade_not_found", f"no WeChat Pay order {out_trade_no!r}")
        number = str(data.get("out_refund_no") or
                     f"console-{len(self.sb.store.refunds_of(WXPAY, out_trade_no)) + 1}")[:64]
        body = {"out_trade_no": out_trade_no, "out_refund_no": number,
                "amount": {"refund": amount, "total": trade.amount, "currency": "CNY"}}
        reply = self.refund(Call("POST", {}, body, "", trade.serial_mode), {})
        if reply.status != 200 or reply.payload is None:
            payload = reply.payload or {}
            raise ControlError(409, "refund_refused",
                               f"{payload.get('code')}: {payload.get('message') or ''}")
        return reply.payload

    def settle(self, out_refund_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The bank settles a PROCESSING refund (a new one, or an ABNORMAL one redirected by
        apply-abnormal-refund): SUCCESS, ABNORMAL or CLOSED; the REFUND.* notification goes
        out."""
        status = data.get("status")
        if status not in ("SUCCESS", "ABNORMAL", "CLOSED"):
            raise ControlError(400, "bad_status", "status must be SUCCESS, ABNORMAL or CLOSED")
        refund = self.sb.store.refund(WXPAY, out_refund_no)
        if refund is None:
            raise ControlError(404, "refund_not_found", f"no WeChat Pay refund {out_refund_no!r}")
        if refund.status != "PROCESSING":
            raise ControlError(409, "refund_state", f"refund {out_refund_no} is {refund.status}")
        refund.status = status
        if status == "SUCCESS":
            refund.success_at = now()
        self.sb.store.save_refund(refund)
        trade = self.sb.store.trade(WXPAY, refund.out_trade_no)
        assert trade is not None
        if status == "CLOSED" and self._committed(trade) == 0 and trade.state == REFUND:
            trade.state = SUCCESS
            self.sb.store.save_trade(trade)
        out = self.refund_view(refund)
        out.update(self.sb.notifier.report(self.notify_refund(trade, refund)))
        return out

    def control_view(self, trade: Trade) -> dict[str, Any]:
        self._expire(trade)
        out = self.transaction_view(trade)
        out["transaction_id"] = trade.channel_no or None
        out["notify_url"] = trade.notify_url
        out["refunds"] = [self.refund_view(r)
                          for r in self.sb.store.refunds_of(WXPAY, trade.out_trade_no)]
        return out

    # --- notifications -----------------------------------------------------------------

    def _encrypt(self, plain: dict[str, Any], ad: str) -> dict[str, str]:
        nonce = wechat_nonce(12)
        text = json.dumps(plain, ensure_ascii=False, separators=(",", ":"))
        ciphertext = AESGCM(self.apiv3_key).encrypt(nonce.encode(), text.encode(), ad.encode())
        return {
            "original_type": ad,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": ad,
            "nonce": nonce,
        }

    def _send(self, *, url: str, event: str, summary_text: str, resource: dict[str, Any],
              original_type: str, mode: str, summary: dict[str, Any]) -> list[str]:
        ident = str(uuid.uuid4())
        body = json.dumps({
            "id": ident,
            "create_time": wechat_time(now()),
            "resource_type": "encrypt-resource",
            "event_type": event,
            "summary": summary_text,
            "resource": self._encrypt(resource, original_type),
        }, ensure_ascii=False, separators=(",", ":"))
        summary = {"event_type": event, **summary, "serial_mode": mode}
        return self.sb.notifier.enqueue(
            channel=WXPAY, event=event, url=url, body=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            summary=summary, notify_id=ident,
        )

    def notify_payment(self, trade: Trade) -> list[str] | None:
        if not trade.notify_url:
            return None
        return self._send(
            url=trade.notify_url, event="TRANSACTION.SUCCESS", summary_text="支付成功",
            resource=self.transaction_view(trade), original_type="transaction",
            mode=trade.serial_mode,
            summary={"out_trade_no": trade.out_trade_no, "transaction_id": trade.channel_no,
                     "trade_state": trade.state, "amount": trade.amount},
        )

    def notify_refund(self, trade: Trade, refund: Refund) -> list[str] | None:
        url = refund.notify_url or trade.notify_url
        if not url or refund.status not in REFUND_SUMMARY:
            return None
        resource: dict[str, Any] = {
            "mchid": self.mchid,
            "out_trade_no": trade.out_trade_no,
            "transaction_id": trade.channel_no,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
            "user_received_account": refund.extra.get("account", ORIGINAL_ACCOUNT),
            "amount": {"total": refund.total, "refund": refund.amount,
                       "payer_total": refund.total, "payer_refund": refund.amount},
        }
        if refund.success_at is not None:
            resource["success_time"] = wechat_time(refund.success_at)
        return self._send(
            url=url, event=f"REFUND.{refund.status}", summary_text=REFUND_SUMMARY[refund.status],
            resource=resource, original_type="refund", mode=refund.serial_mode,
            summary={"out_trade_no": trade.out_trade_no, "out_refund_no": refund.out_refund_no,
                     "refund_status": refund.status, "refund": refund.amount},
        )


def _fen(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ControlError(400, "bad_amount", f"{name} must be a positive integer (fen)")
    return value


class V3Resource:
    """One ``/v3`` route: GET and/or POST handlers run through the signed pipeline."""

    #: Mounted into Gonglun's API on the embedded default: the gateway has no users.
    auth = "public"

    def __init__(self, channel: WxpayChannel, *, get: Handler | None = None,
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


def checkmweb_page(trade: Trade | None, prefix: str) -> str:
    """The H5 payment page behind ``h5_url``: the buyer confirms in "WeChat"."""
    import html

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
