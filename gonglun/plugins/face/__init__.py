"""Face-verification quota, real-name records, account recovery and reset."""

REQUIRES: tuple[str, ...] = ("payment",)
