"""Appraisal orders, experts, deadline close with system refund."""

REQUIRES: tuple[str, ...] = ("payment", "refund")
