"""Fixtures: a real sandbox on a free port, a merchant receiver, and the real SDK clients."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alipay import AliPay
from wechatpayv3 import WeChatPay

from gonglun.sandbox import Sandbox
from gonglun.sandbox.clients import alipay_client, wechat_client
from gonglun.sandbox.keys import new_keypair, new_keyset
from gonglun.sandbox.testing import NotifyReceiver, notify_receiver, running_sandbox


@pytest.fixture(scope="session")
def keyset() -> dict[str, Any]:
    return new_keyset()


@pytest.fixture(scope="session")
def stranger_keypair() -> tuple[str, str]:
    """A keypair nobody registered: requests signed with it must be refused."""
    return new_keypair()


class Env:
    def __init__(self, base: str, sandbox: Sandbox, keyset: dict[str, Any]) -> None:
        self.base = base
        self.sandbox = sandbox
        self.keyset = keyset
        self.http = httpx.Client(base_url=base, timeout=10, trust_env=False)

    def control(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def attempts(self, **params: str) -> list[dict[str, Any]]:
        r = self.http.get("/sandbox/notifications", params=params)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def keyset_with(self, section: str, **changes: str) -> dict[str, Any]:
        ks = copy.deepcopy(self.keyset)
        ks[section].update(changes)
        return ks


@pytest.fixture
def env(tmp_path: Path, keyset: dict[str, Any]) -> Iterator[Env]:
    with running_sandbox(tmp_path, keyset=keyset) as (base, sandbox, ks):
        e = Env(base, sandbox, ks)
        try:
            yield e
        finally:
            e.http.close()


@pytest.fixture
def receiver() -> Iterator[NotifyReceiver]:
    with notify_receiver() as r:
        yield r


def receiver_urls(receiver: NotifyReceiver) -> dict[str, str]:
    """The sandbox's ``notify_urls`` for a receiver: ``/notify/alipay`` and ``/notify/wxpay``."""
    return {"alipay": receiver.url + "/notify/alipay", "wxpay": receiver.url + "/notify/wxpay"}


@pytest.fixture
def notifying_env(tmp_path: Path, keyset: dict[str, Any],
                  receiver: NotifyReceiver) -> Iterator[Env]:
    """A sandbox whose control-created orders notify ``receiver`` (``notify_urls``)."""
    with running_sandbox(tmp_path, keyset=keyset,
                         notify_urls=receiver_urls(receiver)) as (base, sandbox, ks):
        e = Env(base, sandbox, ks)
        try:
            yield e
        finally:
            e.http.close()


@pytest.fixture
def ali(env: Env, receiver: NotifyReceiver) -> AliPay:
    return alipay_client(env.keyset, env.base, notify_url=receiver.url + "/notify/alipay",
                         timeout=5)


@pytest.fixture
def wx(env: Env, receiver: NotifyReceiver) -> WeChatPay:
    return wechat_client(env.keyset, env.base, notify_url=receiver.url + "/notify/wxpay",
                         timeout=5)
