"""Unified payment: scenes, orders, channels, callbacks, query, close, drop orders, reconciliation.

The implementation lands with issue 4; until then the plugin registers no hooks.
"""

REQUIRES: tuple[str, ...] = ()
