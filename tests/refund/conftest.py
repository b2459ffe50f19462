"""Refund tests run on the payment tests' live deployment (API over HTTP, separate sandbox,
real SDKs, a worker)."""

from __future__ import annotations

from tests.payment.conftest import day_over, live  # noqa: F401 - the fixtures, shared
