"""Red packets: send, grab, credit, expire."""

REQUIRES: tuple[str, ...] = ()
