"""Daily statements shaped like each channel's, for reconciliation jobs to parse.

A statement day is a Shanghai calendar day. Payments appear on the day they were paid (whatever
happened to them later), refunds on the day they succeeded. Money is yuan text in the CSVs, as
in the channels' files, and integer fen in the JSON variant.

Alipay (业务明细): ``#`` comment lines around one CSV table; refund rows have 业务类型 ``退款``,
the trade's 订单金额 and a negative 商家实收, and the refund's request number in
``退款批次号/请求号``. Its download is a zip of two GBK files, 业务明细 and 业务明细(汇总), for
days and months that are over (T+1). WeChat (trade bill ``ALL``): a header, one row per payment
or refund with every value prefixed by a backtick as WeChat writes them, then a totals header
and row.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .common import alipay_time, day_of, fen_to_yuan, local, now
from .store import ALIPAY, WXPAY, Refund, Trade

if TYPE_CHECKING:
    from .app import Sandbox

#: The 业务明细 table's header, as Alipay writes it (full-width parentheses).
ALIPAY_HEADER = [
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
    "门店名称", "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）",
    "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）",
    "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号", "服务费（元）",
    "分润（元）", "备注",
]
#: The 业务明细(汇总) table's header.
ALIPAY_SUMMARY_HEADER = [
    "门店编号", "门店名称", "交易订单总笔数", "退款订单总笔数", "订单金额（元）", "商家实收（元）",
    "支付宝优惠（元）", "商家优惠（元）", "卡消费金额（元）", "服务费（元）", "分润（元）",
    "实收净额（元）",
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
#: WeChat Pay's fund-flow bill (资金账单, ``GET /v3/bill/fundflowbill``): one row per movement
#: of the merchant's account, then the totals.
FUNDFLOW_HEADER = [
    "记账时间", "微信支付业务单号", "资金流水单号", "业务名称", "业务类型", "收支类型",
    "收支金额(元)", "账户结余(元)", "资金变更提交申请人", "备注", "业务凭证号",
]
FUNDFLOW_TOTALS_HEADER = ["资金流水总笔数", "收入笔数", "收入金额", "支出笔数", "支出金额"]
#: Account types of the fund-flow bill; payments and refunds move the basic account only.
FUND_ACCOUNTS = ("BASIC", "OPERATION", "FEES")


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


def period_bounds(period: str) -> tuple[dt.date, dt.date] | None:
    """The first day of ``YYYY-MM-DD`` or ``YYYY-MM`` and the day after its last; None when
    the text names no such day or month."""
    try:
        if len(period) == 7:
            first = dt.date.fromisoformat(period + "-01")
            after = (first + dt.timedelta(days=31)).replace(day=1)
            return first, after
        day = dt.date.fromisoformat(period)
    except ValueError:
        return None
    return day, day + dt.timedelta(days=1)


def period_ready(period: str, *, partial: bool = False) -> bool:
    """Whether a statement of the period exists: Alipay serves days and months that are over
    (T+1) and never the future; ``partial`` also serves the current day and month."""
    bounds = period_bounds(period)
    if bounds is None:
        return False
    today = local(now()).date()
    first, after = bounds
    return first <= today and (partial or after <= today)


def _cn_time(day: dt.date) -> str:
    return f"{day.year}年{day.month:02d}月{day.day:02d}日 00:00:00"


@dataclass
class AlipayTotals:
    payments: int = 0
    paid: int = 0
    refunds: int = 0
    refunded: int = 0


def _alipay_frame(sb: Sandbox, period: str, title: str, table: str) -> tuple[str, str]:
    """The ``#`` lines Alipay writes before and after a statement's table."""
    bounds = period_bounds(period)
    assert bounds is not None, f"not a statement period: {period!r}"
    first, after = bounds
    head = (f"#支付宝{title}查询\n#账号：[{bill_account(sb)}]\n"
            f"#起始日期：[{_cn_time(first)}]   终止日期：[{_cn_time(after)}]\n"
            f"#-----------------------------------------{table}列表"
            "----------------------------------------\n")
    tail = (f"#-----------------------------------------{table}列表结束"
            "------------------------------------\n")
    return head, tail


def _exported() -> str:
    return f"#导出时间：[{local(now()).strftime('%Y年%m月%d日 %H:%M:%S')}]\n"


def bill_account(sb: Sandbox) -> str:
    """The account a statement is issued to: the seller's PID and Alipay's ``0156`` suffix."""
    return sb.alipay.seller_id + "0156"


def _alipay_row(e: Entry, totals: AlipayTotals) -> list[str]:
    """One 业务明细 line; identifiers carry the trailing tab Alipay adds (so spreadsheets keep
    them as text)."""
    t, zero, blank = e.trade, "0.00", "\t"
    if e.refund is None:
        totals.payments += 1
        totals.paid += t.amount
        kind, received, number = "交易", fen_to_yuan(t.amount), ""
    else:
        totals.refunds += 1
        totals.refunded += e.refund.amount
        kind, received = "退款", fen_to_yuan(-e.refund.amount)
        number = e.refund.out_refund_no + "\t"
    return [
        t.channel_no + "\t", t.out_trade_no + "\t", kind + "\t", t.subject,
        alipay_time(t.created_at), alipay_time(e.at), blank, blank, blank, blank,
        "tes***@sandbox.com\t", fen_to_yuan(t.amount), received, zero, zero, zero, zero, zero, "",
        zero, zero, number, zero, zero, "",
    ]


def alipay_detail(sb: Sandbox, period: str) -> tuple[str, AlipayTotals]:
    """The 业务明细 file's text and its totals."""
    head, tail = _alipay_frame(sb, period, "业务明细", "业务明细")
    buf = io.StringIO()
    buf.write(head)
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ALIPAY_HEADER)
    totals = AlipayTotals()
    for e in entries(sb, ALIPAY, period):
        writer.writerow(_alipay_row(e, totals))
    buf.write(tail)
    buf.write(f"#交易合计：{totals.payments}笔，商家实收共：{fen_to_yuan(totals.paid)}元，"
              "商家优惠共：0.00元\n")
    buf.write(f"#退款合计：{totals.refunds}笔，商家实收退款共：{fen_to_yuan(-totals.refunded)}元，"
              "商家优惠退款共：0.00元\n")
    buf.write(_exported())
    return buf.getvalue(), totals


def alipay_csv(sb: Sandbox, period: str) -> str:
    return alipay_detail(sb, period)[0]


def alipay_summary_csv(sb: Sandbox, period: str, totals: AlipayTotals) -> str:
    """The 业务明细(汇总) file: one line for the (only, unnamed) store, then 合计."""
    head, tail = _alipay_frame(sb, period, "业务汇总", "业务汇总")
    net = fen_to_yuan(totals.paid - totals.refunded)
    figures = [str(totals.payments), str(totals.refunds), fen_to_yuan(totals.paid), net,
               "0.00", "0.00", "0.00", "0.00", "0.00", net]
    buf = io.StringIO()
    buf.write(head)
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ALIPAY_SUMMARY_HEADER)
    writer.writerow(["\t", "\t", *figures])
    writer.writerow(["合计", "", *figures])
    buf.write(tail)
    buf.write(_exported())
    return buf.getvalue()


class _GbkNamed(zipfile.ZipInfo):
    """A member named in GBK without the UTF-8 flag, as in Alipay's statement zips (zipfile
    itself would write UTF-8 and set the flag)."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits


def _gbk_member(name: str, text: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = _GbkNamed(name, date_time=local(now()).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    return info, text.encode("gbk", errors="replace")


def alipay_zip(sb: Sandbox, period: str) -> tuple[str, bytes]:
    """The statement as Alipay's download serves it: ``<account>_<date>.csv.zip`` holding
    ``<account>_<date>_业务明细.csv`` and ``<account>_<date>_业务明细(汇总).csv``, GBK."""
    stem = f"{bill_account(sb)}_{period.replace('-', '')}"
    detail, totals = alipay_detail(sb, period)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in ((f"{stem}_业务明细.csv", detail),
                           (f"{stem}_业务明细(汇总).csv", alipay_summary_csv(sb, period, totals))):
            info, data = _gbk_member(name, text)
            archive.writestr(info, data)
    return f"{stem}.csv.zip", buf.getvalue()


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


def wxpay_fundflow_csv(sb: Sandbox, period: str, account_type: str = "BASIC") -> str:
    """The merchant account's movements of a day: each payment in (交易, 收入), each refund
    out (退款, 支出), with the balance after it; the other accounts did not move."""
    wx = sb.wxpay
    rows = entries(sb, WXPAY, period) if account_type == "BASIC" else []
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
