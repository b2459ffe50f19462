"""Notification scenes and channels (inbox, SMS, email, WeChat template, app push, websocket)."""

REQUIRES: tuple[str, ...] = ()
