"""WeChat Pay's statements: the trade bill (``GET /v3/bill/tradebill``) and the fund-flow
bill (``GET /v3/bill/fundflowbill``), each answered with a ``download_url`` and the hash of
the file behind it (``GET /v3/billdownload/file``), optionally gzipped.

The trade bill ``ALL``: a header, one row per payment or refund with every value prefixed by
a backtick as WeChat writes them, then a totals header and row. What a statement day holds:
``bills.py``.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import re

from ..bills import entries
from ..common import fen_to_yuan, local
from ..store import WXPAY
from .base import WxpayBase
from .wire import TRADE_TYPES, Call, Reply, error

WXPAY_HEADER = [
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号",
    "商户订单号", "用户标识", "交易类型", "交易状态", "付款银行", "货币种类",
    "应结订单金额", "代金券金额", "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额",
    "退款类型", "退款状态", "商品名称", "商户数据包", "手续费", "费率",
    "订单金额", "申请退款金额", "费率备注",
]
WXPAY_TOTALS_HEADER = [
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额",
    "申请退款总金额",
]
#: WeChat Pay's fund-flow bill (资金账单, ``GET /v3/bill/fundflowbill``): one row per movement
#: of the merchant's account, then the totals.
FUNDFLOW_HEADER = [
    "记账时间", "微信支付业务单号", "资金流水单号", "业务名称", "业务类型", "收支类型",
    "收支金额(元)", "账户结余(元)", "资金变更提交申请人", "备注", "业务凭证号",
]
FUNDFLOW_TOTALS_HEADER = ["资金流水总笔数", "收入笔数", "收入金额", "支出笔数", "支出金额"]
#: Account types of the fund-flow bill; payments and refunds move the basic account only.
FUND_ACCOUNTS = ("BASIC", "OPERATION", "FEES")


def wxpay_csv(wx: WxpayBase, period: str, bill_type: str = "ALL") -> str:
    rows = entries(wx.sb, WXPAY, period)
    if bill_type == "SUCCESS":
        rows = [e for e in rows if e.refund is None]
    elif bill_type == "REFUND":
        rows = [e for e in rows if e.refund is not None]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(WXPAY_HEADER)
    paid = refunded = n = 0
    for e in rows:
        t = e.trade
        n += 1
        base = [
            local(e.at).strftime("%Y-%m-%d %H:%M:%S"), t.app_id or wx.appid, wx.mchid, "0", "",
            t.channel_no, t.out_trade_no, t.payer, TRADE_TYPES.get(t.kind, "NATIVE"),
        ]
        if e.refund is None:
            paid += t.amount
            row = [
                *base,
                "SUCCESS", "OTHERS", "CNY", fen_to_yuan(t.amount), "0.00", "0", "0", "0.00",
                "0.00", "", "", t.subject, t.attach, "0.00000", "0.60%", fen_to_yuan(t.amount),
                "0.00", "",
            ]
        else:
            r = e.refund
            refunded += r.amount
            row = [
                *base,
                "REFUND", "OTHERS", "CNY", fen_to_yuan(t.amount), "0.00", r.refund_id,
                r.out_refund_no, fen_to_yuan(r.amount), "0.00", "ORIGINAL", r.status, t.subject,
                t.attach, "0.00000", "0.60%", fen_to_yuan(t.amount), fen_to_yuan(r.amount), "",
            ]
        writer.writerow(["`" + v for v in row])
    writer.writerow(WXPAY_TOTALS_HEADER)
    writer.writerow(["`" + v for v in (
        str(n), fen_to_yuan(paid), fen_to_yuan(refunded), "0.00", "0.00000", fen_to_yuan(paid),
        fen_to_yuan(refunded),
    )])
    return buf.getvalue()


def wxpay_fundflow_csv(wx: WxpayBase, period: str, account_type: str = "BASIC") -> str:
    """The merchant account's movements of a day: each payment in (交易, 收入), each refund
    out (退款, 支出), with the balance after it; the other accounts did not move."""
    rows = entries(wx.sb, WXPAY, period) if account_type == "BASIC" else []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(FUNDFLOW_HEADER)
    balance = income = expense = n_in = n_out = 0
    for e in rows:
        t, r = e.trade, e.refund
        amount = t.amount if r is None else r.amount
        balance += amount if r is None else -amount
        if r is None:
            income, n_in = income + amount, n_in + 1
        else:
            expense, n_out = expense + amount, n_out + 1
        flow_no = hashlib.sha1(f"{t.channel_no}:{r.refund_id if r else ''}".encode()).hexdigest()
        writer.writerow(["`" + v for v in (
            local(e.at).strftime("%Y-%m-%d %H:%M:%S"),
            t.channel_no if r is None else r.refund_id,
            str(int(flow_no[:15], 16)).rjust(19, "0")[:19],
            "交易" if r is None else "退款",
            "交易" if r is None else "退款",
            "收入" if r is None else "支出",
            fen_to_yuan(amount), fen_to_yuan(balance),
            "system" if r is None else f"{wx.mchid}API",
            "" if r is None else "退款总金额" + fen_to_yuan(r.amount) + "元",
            t.out_trade_no if r is None else r.out_refund_no,
        )])
    writer.writerow(FUNDFLOW_TOTALS_HEADER)
    writer.writerow(["`" + v for v in (
        str(n_in + n_out), str(n_in), fen_to_yuan(income), str(n_out), fen_to_yuan(expense))])
    return buf.getvalue()


class WxpayStatements(WxpayBase):
    """The bill APIs and the download behind their ``download_url``."""

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
        if "f" in spec:
            if spec["f"] not in FUND_ACCOUNTS:
                raise ValueError("account_type")
            text = wxpay_fundflow_csv(self, str(spec["d"]), spec["f"])
        else:
            text = wxpay_csv(self, str(spec["d"]), str(spec["t"]))
        data = text.encode("utf-8")
        # mtime=0: the same statement compresses to the same bytes, so the hash holds.
        return gzip.compress(data, mtime=0) if spec["z"] == "GZIP" else data
