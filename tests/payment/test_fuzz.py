"""Schemathesis against the served OpenAPI document: no 5xx, every answer as documented.

Runs the ``schemathesis`` command (bounded: a fixed number of examples per operation and a
wall-clock timeout) against a live server with the real channels behind it, as an anonymous
caller, a user and an admin. Afterwards the money invariants still hold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.payment.conftest import Live

EXAMPLES = os.environ.get("GONGLUN_FUZZ_EXAMPLES", "25")


def schemathesis_cmd() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "schemathesis.cli"]


@pytest.mark.slow
@pytest.mark.parametrize("who", ["anonymous", "user", "admin"])
def test_schemathesis_finds_no_server_error(live: Live, who: str, tmp_path: Path,
                                            day_over: None) -> None:
    headers: list[str] = []
    if who != "anonymous":
        _, auth = live.user(f"fuzz_{who}", role=who)
        headers = ["-H", f"Authorization: {auth['Authorization']}"]
    # Statements are of finished days only; the check below reconciles today (day_over).
    assert live.sb.post("/sandbox/config", json={"partial_bills": True}).is_success
    # Limits would turn most of the run into 429s: the fuzzer tests validation, not limits.
    live.rt.config.data["payment"].update(guest_orders_per_min=100000,
                                          user_orders_per_min=100000)
    result = subprocess.run(
        [*schemathesis_cmd(), "run", f"{live.base}/v1/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", EXAMPLES, "--seed", "20261130", "--no-color",
         "--request-timeout", "20", *headers],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "generated" in result.stdout
    live.settle_outbox()
    from gonglun.db import utcnow
    from gonglun.ledger import run_audit
    from gonglun.plugins.payment.money import SHANGHAI
    from gonglun.plugins.payment.reconcile import reconcile

    assert run_audit(live.rt) == []
    today = utcnow().astimezone(SHANGHAI).strftime("%Y-%m-%d")
    for channel in ("alipay", "wxpay"):
        report = reconcile(live.rt, today, channel)
        assert report.open == 0, report.to_dict()
