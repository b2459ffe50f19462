"""Alipay's statements: ``alipay.data.dataservice.bill.downloadurl.query``, the signed
download link it answers and the zip behind it, and the statement files themselves.

业务明细: ``#`` comment lines around one CSV table; refund rows have 业务类型 ``退款``, the
trade's 订单金额 and a negative 商家实收, and the refund's request number in
``退款批次号/请求号``. The download is a zip of two GBK files, 业务明细 and 业务明细(汇总), for
days and months that are over (T+1). What a statement day holds: ``bills.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import falcon.asgi

from ..bills import Entry, entries, period_bounds, period_ready
from ..common import alipay_time, fen_to_yuan, local, now
from ..store import ALIPAY
from .base import AlipayBase
from .wire import business_error

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


def _cn_time(day: dt.date) -> str:
    return f"{day.year}年{day.month:02d}月{day.day:02d}日 00:00:00"


@dataclass
class AlipayTotals:
    payments: int = 0
    paid: int = 0
    refunds: int = 0
    refunded: int = 0


def _alipay_frame(channel: AlipayBase, period: str, title: str, table: str) -> tuple[str, str]:
    """The ``#`` lines Alipay writes before and after a statement's table."""
    bounds = period_bounds(period)
    assert bounds is not None, f"not a statement period: {period!r}"
    first, after = bounds
    head = (f"#支付宝{title}查询\n#账号：[{bill_account(channel)}]\n"
            f"#起始日期：[{_cn_time(first)}]   终止日期：[{_cn_time(after)}]\n"
            f"#-----------------------------------------{table}列表"
            "----------------------------------------\n")
    tail = (f"#-----------------------------------------{table}列表结束"
            "------------------------------------\n")
    return head, tail


def _exported() -> str:
    return f"#导出时间：[{local(now()).strftime('%Y年%m月%d日 %H:%M:%S')}]\n"


def bill_account(channel: AlipayBase) -> str:
    """The account a statement is issued to: the seller's PID and Alipay's ``0156`` suffix."""
    return channel.seller_id + "0156"


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


def alipay_detail(channel: AlipayBase, period: str) -> tuple[str, AlipayTotals]:
    """The 业务明细 file's text and its totals."""
    head, tail = _alipay_frame(channel, period, "业务明细", "业务明细")
    buf = io.StringIO()
    buf.write(head)
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ALIPAY_HEADER)
    totals = AlipayTotals()
    for e in entries(channel.sb, ALIPAY, period):
        writer.writerow(_alipay_row(e, totals))
    buf.write(tail)
    buf.write(f"#交易合计：{totals.payments}笔，商家实收共：{fen_to_yuan(totals.paid)}元，"
              "商家优惠共：0.00元\n")
    buf.write(f"#退款合计：{totals.refunds}笔，商家实收退款共：{fen_to_yuan(-totals.refunded)}元，"
              "商家优惠退款共：0.00元\n")
    buf.write(_exported())
    return buf.getvalue(), totals


def alipay_csv(channel: AlipayBase, period: str) -> str:
    return alipay_detail(channel, period)[0]


def alipay_summary_csv(channel: AlipayBase, period: str, totals: AlipayTotals) -> str:
    """The 业务明细(汇总) file: one line for the (only, unnamed) store, then 合计."""
    head, tail = _alipay_frame(channel, period, "业务汇总", "业务汇总")
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


def alipay_zip(channel: AlipayBase, period: str) -> tuple[str, bytes]:
    """The statement as Alipay's download serves it: ``<account>_<date>.csv.zip`` holding
    ``<account>_<date>_业务明细.csv`` and ``<account>_<date>_业务明细(汇总).csv``, GBK."""
    stem = f"{bill_account(channel)}_{period.replace('-', '')}"
    detail, totals = alipay_detail(channel, period)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        summary = alipay_summary_csv(channel, period, totals)
        for name, text in ((f"{stem}_业务明细.csv", detail),
                           (f"{stem}_业务明细(汇总).csv", summary)):
            info, data = _gbk_member(name, text)
            archive.writestr(info, data)
    return f"{stem}.csv.zip", buf.getvalue()


class AlipayStatements(AlipayBase):
    """The statement download URL and the file behind it."""

    def bill_url(self, biz: dict[str, Any], prefix: str) -> dict[str, Any]:
        """A download URL for a finished day's (or month's) statement, valid for
        ``settings.bill_url_ttl_s``; days not over yet have no statement."""
        bill_date = str(biz.get("bill_date") or "")
        if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", bill_date) or not period_bounds(bill_date):
            return business_error("isv.invalid-parameter",
                                  "bill_date 格式错误 (yyyy-MM-dd 或 yyyy-MM)")
        bill_type = str(biz.get("bill_type") or "trade")
        if bill_type not in ("trade", "signcustomer"):
            return business_error("isv.invalid-parameter", "bill_type 只能是 trade 或 signcustomer")
        # Only the trade bill is emulated; signcustomer reads as a day without fund movements.
        if bill_type != "trade" or not period_ready(bill_date,
                                                    partial=self.sb.settings.partial_bills):
            return business_error("isp.bill_not_exist", "账单不存在")
        return {"code": "10000", "msg": "Success",
                "bill_download_url": self._bill_link(bill_date, prefix)}

    def _bill_link(self, period: str, prefix: str) -> str:
        account, stamp = bill_account(self), period.replace("-", "")
        params = self.sb.links.sign({
            "bizType": "trade", "userId": self.seller_id, "fileType": "csv.zip",
            "bizDates": stamp, "downloadFileName": f"{account}_{stamp}.csv.zip",
            "fileId": f"/trade/{account}/{stamp}.csv.zip",
        })
        return f"{prefix}/downloadBillFile.resource?{urlencode(params)}"

    def bill_file(self, params: dict[str, str]) -> tuple[str, bytes] | None:
        """``(file name, zip)`` for a fresh, genuine download link; None otherwise."""
        if self.sb.links.refusal(params, self.sb.settings.bill_url_ttl_s) is not None:
            return None
        stamp = params.get("bizDates", "")
        period = f"{stamp[:4]}-{stamp[4:6]}" + (f"-{stamp[6:]}" if len(stamp) == 8 else "")
        return alipay_zip(self, period) if period_bounds(period) else None


class AlipayBillFileResource:
    """``GET /downloadBillFile.resource?...``: the statement behind a ``bill_download_url``,
    a zip of GBK CSV files, while the signed link is fresh (Alipay's host
    dwbillcenter.alipay.com serves the same path)."""

    auth = "public"

    def __init__(self, channel: AlipayStatements) -> None:
        self.channel = channel
        self.sb = channel.sb

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = dict(parse_qsl(req.query_string, keep_blank_values=True))
        download = self.channel.bill_file(params)
        if download is None:
            resp.status = 403
            resp.content_type = "text/plain; charset=utf-8"
            resp.text = "账单下载链接无效或已过期 (bill_download_url is valid for " \
                f"{self.sb.settings.bill_url_ttl_s:g} s)"
            return
        name, data = download
        resp.content_type = "application/octet-stream"
        resp.set_header("Content-Disposition", f'attachment; filename="{name}"')
        resp.data = data
