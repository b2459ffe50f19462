"""Unified refund, refund records, refund query, wait_refund confirmation, abnormal refunds."""

REQUIRES: tuple[str, ...] = ("payment",)
