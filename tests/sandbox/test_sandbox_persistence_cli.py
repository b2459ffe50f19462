"""State that survives a restart, and the ``gonglun sandbox`` command."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from wechatpayv3 import WeChatPayType

from gonglun.sandbox.cli import add_parser, notify_urls_for, run
from gonglun.sandbox.clients import alipay_client, wechat_client
from gonglun.sandbox.testing import notify_receiver, running_sandbox


def test_state_survives_a_restart(tmp_path: Path, keyset: dict) -> None:
    state = str(tmp_path / "state.db")
    with notify_receiver() as rcv:
        with running_sandbox(tmp_path, keyset=keyset, state_path=state) as (base, _, ks):
            ali = alipay_client(ks, base, notify_url=rcv.url + "/a")
            order = ali.api_alipay_trade_page_pay("x", "202401010000000600", "20.00")
            httpx.get(base + "/gateway.do?" + order, trust_env=False)
            httpx.post(base + "/sandbox/alipay/trades/202401010000000600/pay", json={},
                       trust_env=False)
            ali.api_alipay_trade_refund("5.00", out_trade_no="202401010000000600",
                                        out_request_no="r1")
            wx = wechat_client(ks, base, notify_url=rcv.url + "/w")
            wx.pay(description="x", out_trade_no="WX0000000600", amount={"total": 700},
                   pay_type=WeChatPayType.NATIVE)
            rcv.wait_for(2)
            time.sleep(0.2)

        with running_sandbox(tmp_path, keyset=keyset, state_path=state) as (base, _, ks):
            ali = alipay_client(ks, base)
            answer = ali.api_alipay_trade_query(out_trade_no="202401010000000600")
            assert (answer["trade_status"], answer["total_amount"]) == ("TRADE_SUCCESS", "20.00")
            again = ali.api_alipay_trade_refund("5.00", out_trade_no="202401010000000600",
                                                out_request_no="r1")
            assert (again["fund_change"], again["refund_fee"]) == ("N", "5.00")
            wx = wechat_client(ks, base)
            assert json.loads(wx.query(out_trade_no="WX0000000600")[1])["trade_state"] == "NOTPAY"
            r = httpx.post(base + "/sandbox/wxpay/transactions/WX0000000600/pay", json={},
                           trust_env=False)
            assert r.status_code == 200  # the notify_url was remembered too
            rcv.wait_for(3)
            log = httpx.get(base + "/sandbox/notifications", trust_env=False).json()["data"]
            assert len(log) >= 3


def test_pending_deliveries_resume_after_a_restart(tmp_path: Path, keyset: dict) -> None:
    state = str(tmp_path / "state.db")
    with notify_receiver(replies=[(503, "busy")]) as rcv:
        urls = {"wxpay": rcv.url + "/w"}
        with running_sandbox(tmp_path, keyset=keyset, state_path=state,
                             retry_schedule=(1.0,), notify_urls=urls) as (base, _, _ks):
            httpx.post(base + "/sandbox/wxpay/transactions/WX0000000610/pay",
                       json={"total": 1}, trust_env=False)
            rcv.wait_for(1)  # first attempt refused; the retry is a second away
        with running_sandbox(tmp_path, keyset=keyset, state_path=state,
                             retry_schedule=(1.0,), notify_urls=urls) as (base, _, _ks):
            rcv.wait_for(2, timeout=5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                log = httpx.get(base + "/sandbox/notifications", trust_env=False).json()["data"]
                if log and log[-1]["outcome"] == "acked":
                    break
                time.sleep(0.05)
            assert [a["outcome"] for a in log] == ["retry", "acked"]


def test_a_resumed_delivery_obeys_the_current_allowlist(tmp_path: Path, keyset: dict) -> None:
    """Deliveries are checked before every attempt, not only when queued."""
    state = str(tmp_path / "state.db")
    with notify_receiver(replies=[(503, "busy")]) as rcv:
        with running_sandbox(tmp_path, keyset=keyset, state_path=state, retry_schedule=(1.0,),
                             notify_urls={"wxpay": rcv.url + "/w"}) as (base, _, _ks):
            httpx.post(base + "/sandbox/wxpay/transactions/WX0000000620/pay",
                       json={"total": 1}, trust_env=False)
            rcv.wait_for(1)
        with running_sandbox(tmp_path, keyset=keyset, state_path=state, retry_schedule=(1.0,),
                             notify_hosts=["pay.example"]) as (base, _, _ks):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                log = httpx.get(base + "/sandbox/notifications", trust_env=False).json()["data"]
                if log and log[-1]["outcome"] != "retry":
                    break
                time.sleep(0.05)
            assert [(a["outcome"], a["error"]) for a in log][1:] == [
                ("refused", "refused: host not allowed")]
            time.sleep(0.5)
        assert len(rcv.received) == 1


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gonglun")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_init(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = parse(["sandbox", "init", "--dir", str(tmp_path / "k")])
    assert args.func is run
    assert run(args) == 0
    keyset = json.loads((tmp_path / "k" / "sandbox.json").read_text())
    assert set(keyset) == {"alipay", "wxpay", "tencentcloud", "wechat", "jpush",
                           "wechat_login"}
    assert run(args) == 0
    assert "kept existing" in capsys.readouterr().out
    assert json.loads((tmp_path / "k" / "sandbox.json").read_text()) == keyset
    serve_args = parse(["sandbox", "--port", "9", "--dir", str(tmp_path), "--host", "0.0.0.0"])
    assert (serve_args.port, serve_args.dir, serve_args.host) == (9, str(tmp_path), "0.0.0.0")
    assert serve_args.sandbox_command is None
    assert (serve_args.notify_base, serve_args.notify_host) == (None, None)
    notify_args = parse(["sandbox", "--notify-base", "https://app.example/", "--notify-host",
                         "hooks.example", "--notify-host", "[::1]:9"])
    assert notify_args.notify_base == "https://app.example/"
    assert notify_args.notify_host == ["hooks.example", "[::1]:9"]
    assert notify_urls_for(notify_args.notify_base) == {
        "alipay": "https://app.example/v1/notify/alipay",
        "wxpay": "https://app.example/v1/notify/wxpay"}


@pytest.mark.parametrize("argv", [["--notify-base", "app.example"],
                                  ["--notify-base", "ftp://app.example"],
                                  ["--notify-host", "http://app.example/"],
                                  ["--notify-host", "app.example:99999"]])
def test_cli_refuses_bad_notify_options(tmp_path: Path, capsys, argv: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert run(parse(["sandbox", "--dir", str(tmp_path / "k"), *argv])) == 2
    assert "notify" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()  # refused before writing anything


def test_cli_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gonglun.sandbox.cli", "sandbox", "--port", "0", "--dir",
         str(tmp_path), "--memory", "--notify-base", "http://app.internal:8000"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        base = None
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and base is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if m:
                base = m.group(1)
        assert base, "the sandbox did not start"
        info = httpx.get(base + "/sandbox/info", trust_env=False).json()["data"]
        keyset = json.loads((tmp_path / "sandbox.json").read_text())
        assert info["alipay"]["app_id"] == keyset["alipay"]["app_id"]
        assert info["notify"] == {
            "urls": {"alipay": "http://app.internal:8000/v1/notify/alipay",
                     "wxpay": "http://app.internal:8000/v1/notify/wxpay"},
            "hosts": ["127.0.0.1", "::1", "app.internal:8000", "localhost"]}
        ali = alipay_client(keyset, base)
        assert ali.api_alipay_trade_query(out_trade_no="202401010000000700")["code"] == "40004"
    finally:
        proc.terminate()
        proc.wait(10)
