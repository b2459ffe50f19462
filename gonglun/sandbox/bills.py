"""Daily statements shaped like each channel's, for reconciliation jobs to parse.

A statement day is a Shanghai calendar day. Payments appear on the day they were paid (whatever
happened to them later), refunds on the day they succeeded. Money is yuan text in the CSVs, as
in the channels' files, and integer fen in the JSON variant.

Alipay (业务明细): ``#`` comment lines around one CSV table; refund rows have 业务类型 ``退款``,
the trade's 订单金额 and a negative 商家实收, and the refund's request number in
``退款批次号/请求号``. WeChat (trade bill ``ALL``): a header, one row per payment or refund with
every value prefixed by a backtick as WeChat writes them, then a totals header and row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .common import alipay_time, day_of, fen_to_yuan, local, now
from .store import ALIPAY, WXPAY, Refund, Trade

if TYPE_CHECKING:
    from .app import Sandbox

ALIPAY_HEADER = [
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
    "门店名称", "操作员", "终端号", "对方账户", "订单金额(元)", "商家实收(元)", "支付宝红包(元)",
    "集分宝(元)", "支付宝优惠(元)", "商家优惠(元)", "券核销金额(元)", "券名称",
    "商家红包消费金额(元)", "卡消费金额(元)", "退款批次号/请求号", "服务费(元)", "分润(元)", "备注",
]
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


@dataclass
class Entry:
    trade: Trade
    refund: Refund | None
    at: float

    @property
    def kind(self) -> str:
        return "refund" if self.refund else "payment"


def entries(sb: Sandbox, channel: str, period: str) -> list[Entry]:
    """Payments and successful refunds of a day (``YYYY-MM-DD``) or a month (``YYYY-MM``)."""

    def within(ts: float | None) -> bool:
        return ts is not None and day_of(ts).startswith(period)

    out: list[Entry] = []
    for trade in sb.store.trades.values():
        if trade.channel == channel and within(trade.paid_at):
            assert trade.paid_at is not None
            out.append(Entry(trade, None, trade.paid_at))
    for refund in sb.store.refunds.values():
        if refund.channel == channel and refund.status == "SUCCESS" and within(refund.success_at):
            trade = sb.store.trade(channel, refund.out_trade_no)
            if trade is not None:
                assert refund.success_at is not None
                out.append(Entry(trade, refund, refund.success_at))
    out.sort(key=lambda e: e.at)
    return out


def as_json(sb: Sandbox, channel: str, period: str) -> dict[str, Any]:
    records = []
    for e in entries(sb, channel, period):
        rec: dict[str, Any] = {
            "type": e.kind,
            "out_trade_no": e.trade.out_trade_no,
            "channel_no": e.trade.channel_no,
            "amount": e.trade.amount,
            "subject": e.trade.subject,
            "time": local(e.at).isoformat(timespec="seconds"),
        }
        if e.refund is not None:
            rec.update({"out_refund_no": e.refund.out_refund_no, "refund_id": e.refund.refund_id,
                        "refund_amount": e.refund.amount, "status": e.refund.status})
        else:
            rec["status"] = "SUCCESS"
        records.append(rec)
    pays = [r for r in records if r["type"] == "payment"]
    refunds = [r for r in records if r["type"] == "refund"]
    return {
        "channel": channel,
        "date": period,
        "records": records,
        "totals": {
            "payments": len(pays),
            "payment_amount": sum(r["amount"] for r in pays),
            "refunds": len(refunds),
            "refund_amount": sum(r["refund_amount"] for r in refunds),
        },
    }


def _cn_date(period: str) -> tuple[str, str]:
    """The statement's start and end, written the way Alipay's header writes them."""
    parts = [int(p) for p in period.split("-")]
    if len(parts) == 2:
        y, m = parts
        start = f"{y}年{m:02d}月01日 00:00:00"
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        return start, f"{ny}年{nm:02d}月01日 00:00:00"
    import datetime as dt

    day = dt.date(*parts)
    nxt = day + dt.timedelta(days=1)
    return (f"{day.year}年{day.month:02d}月{day.day:02d}日 00:00:00",
            f"{nxt.year}年{nxt.month:02d}月{nxt.day:02d}日 00:00:00")


def alipay_csv(sb: Sandbox, period: str) -> str:
    rows = entries(sb, ALIPAY, period)
    buf = io.StringIO()
    start, end = _cn_date(period)
    buf.write("#支付宝业务明细查询\n")
    buf.write(f"#账号：[{sb.alipay.seller_id}]\n")
    buf.write(f"#起始日期：[{start}]   终止日期：[{end}]\n")
    buf.write("#-----------------------------------------业务明细列表"
              "----------------------------------------\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ALIPAY_HEADER)
    paid = refunded = 0
    n_pay = n_refund = 0
    for e in rows:
        t = e.trade
        zero = "0.00"
        if e.refund is None:
            n_pay += 1
            paid += t.amount
            kind, received, number = "交易", fen_to_yuan(t.amount), ""
        else:
            n_refund += 1
            refunded += e.refund.amount
            kind, received, number = "退款", fen_to_yuan(-e.refund.amount), e.refund.out_refund_no
        writer.writerow([
            t.channel_no, t.out_trade_no, kind, t.subject, alipay_time(t.created_at),
            alipay_time(e.at), "", "", "", "", "tes***@sandbox.com", fen_to_yuan(t.amount),
            received, zero, zero, zero, zero, zero, "", zero, zero, number, zero, zero, "",
        ])
    buf.write("#-----------------------------------------业务明细列表结束"
              "------------------------------------\n")
    buf.write(f"#交易合计：{n_pay}笔，商家实收共：{fen_to_yuan(paid)}元，商家优惠共：0.00元\n")
    buf.write(f"#退款合计：{n_refund}笔，商家实收退款共：{fen_to_yuan(-refunded)}元，"
              "商家优惠退款共：0.00元\n")
    buf.write(f"#导出时间：[{local(now()).strftime('%Y年%m月%d日 %H:%M:%S')}]\n")
    return buf.getvalue()


def wxpay_csv(sb: Sandbox, period: str, bill_type: str = "ALL") -> str:
    from .wxpay import TRADE_TYPES

    wx = sb.wxpay
    rows = entries(sb, WXPAY, period)
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
