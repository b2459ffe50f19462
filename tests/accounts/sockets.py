"""A real websocket client (the ``websockets`` package) on ``WS /v1/ws`` of a served app."""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


def open_socket(base: str, *, headers: dict[str, str] | None = None, ticket: str | None = None,
                subprotocol_token: str | None = None) -> ClientConnection:
    """Opened and greeted (``hello``), with a header, a ticket or the bearer subprotocols."""
    url = base.replace("http", "ws", 1) + "/v1/ws" + (f"?ticket={ticket}" if ticket else "")
    ws = connect(url, additional_headers=headers, open_timeout=10,
                 subprotocols=["bearer", subprotocol_token] if subprotocol_token else None)
    ws.__enter__()  # closed by the server, or by the test's ``close()``
    assert json.loads(ws.recv(timeout=10))["event"] == "hello"
    return ws


def closed(ws: ClientConnection, within: float) -> tuple[list[dict[str, Any]], int]:
    """Every message until the server closes the socket, and the close code; fails when it
    is still open after ``within`` seconds."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"socket still open after {within} s: {messages}")
            messages.append(json.loads(ws.recv(timeout=left)))
    except TimeoutError as exc:
        raise AssertionError(f"socket still open after {within} s: {messages}") from exc
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return messages, exc.rcvd.code


def signed_out(ws: ClientConnection, within: float = 4.0) -> list[dict[str, Any]]:
    """The socket was told it was signed out and closed with 4401; what it got before."""
    messages, code = closed(ws, within)
    assert code == 4401, (code, messages)
    assert messages and messages[-1] == {"event": "signed_out"}, messages
    return messages[:-1]


def receives_push(rt: Any, ws: ClientConnection, user_id: int, marker: int) -> None:
    """A push published for the user reaches this socket."""
    for _ in range(50):
        if rt.push(user_id, {"event": "probe", "n": marker}):
            break
        time.sleep(0.05)
    while True:
        got = json.loads(ws.recv(timeout=5))
        if got.get("event") == "probe" and got.get("n") == marker:
            return
