"""Alipay statements as production serves them: a short-lived signed URL for days that are over,
downloading a zip of GBK CSV files (业务明细 and its 汇总)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
import zipfile
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from alipay import AliPay

from gonglun.sandbox.common import SHANGHAI

from .conftest import Env
from .test_sandbox_notify_faults import ali_paid

BILL = "alipay.data.dataservice.bill.downloadurl.query"


def day(offset: int = 0) -> str:
    return (dt.datetime.now(SHANGHAI).date() + dt.timedelta(days=offset)).isoformat()


def month(offset: int = 0) -> str:
    first = dt.datetime.now(SHANGHAI).date().replace(day=1)
    if offset < 0:
        first = (first - dt.timedelta(days=1)).replace(day=1)
    elif offset > 0:
        first = (first + dt.timedelta(days=31)).replace(day=1)
    return first.isoformat()[:7]


def bill_url(ali: AliPay, bill_date: str, bill_type: str = "trade") -> dict[str, str]:
    return ali.server_api(BILL, {"bill_type": bill_type, "bill_date": bill_date})


def members(data: bytes) -> dict[str, str]:
    """Member name -> text, reading names and contents as GBK like Alipay writes them."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            assert not info.flag_bits & 0x800  # GBK name, no UTF-8 flag
            name = info.filename.encode("cp437").decode("gbk")
            out[name] = archive.read(info).decode("gbk")
    return out


def table(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def test_the_download_is_a_zip_of_gbk_csv_files(env: Env, ali: AliPay) -> None:
    env.control("POST", "/sandbox/config", json={"partial_bills": True})
    no = "202401010000000800"
    ali_paid(env, ali, no, "3.21")
    ali.api_alipay_trade_refund("1.00", out_trade_no=no, out_request_no="b1")
    answer = bill_url(ali, day())
    assert answer["code"] == "10000"
    url = answer["bill_download_url"]
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    account = env.sandbox.alipay.seller_id + "0156"
    stamp = day().replace("-", "")
    assert parts.path == "/downloadBillFile.resource"
    assert {k: query[k] for k in ("bizType", "fileType", "bizDates", "downloadFileName")} == {
        "bizType": "trade", "fileType": "csv.zip", "bizDates": stamp,
        "downloadFileName": f"{account}_{stamp}.csv.zip"}
    assert query["token"] and query["timestamp"]

    download = httpx.get(url, trust_env=False)
    assert download.status_code == 200
    assert f"{account}_{stamp}.csv.zip" in download.headers["content-disposition"]
    files = members(download.content)
    detail_name = f"{account}_{stamp}_业务明细.csv"
    summary_name = f"{account}_{stamp}_业务明细(汇总).csv"
    assert sorted(files) == sorted([detail_name, summary_name])

    detail = files[detail_name]
    lines = detail.splitlines()
    assert lines[0] == "#支付宝业务明细查询" and lines[1] == f"#账号：[{account}]"
    assert lines[2].startswith("#起始日期：[") and "终止日期" in lines[2]
    assert lines[-3].startswith("#交易合计：1笔，商家实收共：3.21元")
    assert lines[-2].startswith("#退款合计：1笔，商家实收退款共：-1.00元")
    assert lines[-1].startswith("#导出时间：[")
    rows = table(detail)
    assert list(rows[0])[:13] == [
        "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
        "门店名称", "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）"]
    assert [(r["商户订单号"], r["业务类型"], r["订单金额（元）"], r["商家实收（元）"],
             r["退款批次号/请求号"]) for r in rows] == [
        (no + "\t", "交易\t", "3.21", "3.21", ""), (no + "\t", "退款\t", "3.21", "-1.00", "b1\t")]

    summary = table(files[summary_name])
    assert summary[-1]["门店编号"] == "合计"
    assert (summary[-1]["交易订单总笔数"], summary[-1]["退款订单总笔数"],
            summary[-1]["实收净额（元）"]) == ("1", "1", "2.21")

    # The control API serves the same files, and the 业务明细 text alone.
    same = env.control("GET", f"/sandbox/bills/alipay/{day()}", params={"format": "zip"})
    assert sorted(members(same.content)) == sorted(files)
    text = env.control("GET", f"/sandbox/bills/alipay/{day()}").text
    assert table(text) == rows


def test_statements_exist_only_for_days_and_months_that_are_over(env: Env, ali: AliPay) -> None:
    env.control("POST", "/sandbox/alipay/trades", json={
        "out_trade_no": "202401010000000810", "amount": 500, "paid_at": f"{day(-1)} 10:00:00"})
    not_yet = {"code": "40004", "msg": "Business Failed", "sub_code": "isp.bill_not_exist",
               "sub_msg": "账单不存在"}
    for bill_date in (day(), day(1), month(), month(1)):
        assert bill_url(ali, bill_date) == not_yet, bill_date
    assert bill_url(ali, day(-1), "signcustomer") == not_yet  # only trade bills are emulated
    for bill_date in (day(-1), day(-40), month(-1)):
        assert bill_url(ali, bill_date)["code"] == "10000", bill_date
    for bad_date in ("2024-02-30", "2024-13", "yesterday"):
        assert bill_url(ali, bad_date)["sub_code"] == "isv.invalid-parameter"
    assert bill_url(ali, day(-1), "fund")["sub_code"] == "isv.invalid-parameter"

    rows = table(members(httpx.get(bill_url(ali, day(-1))["bill_download_url"],
                                   trust_env=False).content)[
        f"{env.sandbox.alipay.seller_id}0156_{day(-1).replace('-', '')}_业务明细.csv"])
    assert [(r["商户订单号"].strip(), r["商家实收（元）"]) for r in rows] == [
        ("202401010000000810", "5.00")]

    # Tests that reconcile what just happened may ask for partial statements; never the future.
    env.control("POST", "/sandbox/config", json={"partial_bills": True})
    assert bill_url(ali, day())["code"] == "10000"
    assert bill_url(ali, month())["code"] == "10000"
    assert bill_url(ali, day(1)) == not_yet


def test_download_links_expire_and_cannot_be_altered(env: Env, ali: AliPay) -> None:
    r = env.control("POST", "/sandbox/config", json={"bill_url_ttl_s": 0.5})
    assert r.json()["data"]["bill_url_ttl_s"] == 0.5
    url = bill_url(ali, day(-2))["bill_download_url"]
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    altered = f"{parts.scheme}://{parts.netloc}{parts.path}?" + urlencode(
        dict(query, bizDates=day(-1).replace("-", "")))
    assert httpx.get(altered, trust_env=False).status_code == 403
    assert httpx.get(url, trust_env=False).status_code == 200
    time.sleep(0.6)
    expired = httpx.get(url, trust_env=False)
    assert expired.status_code == 403 and "0.5 s" in expired.text
