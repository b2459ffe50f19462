"""The gateway sandbox as Gonglun's core reaches it: through the ``gonglun.gateway_sandbox``
entry point (pyproject.toml), never by an import.

The core (``gonglun.embedded``) defines what it asks of a gateway sandbox (``GatewaySandbox``)
and looks the entry point up; this module answers it, so the dependency points from the
sandbox to nothing of the core's and the core imports no sandbox module (the contracts in
``.importlinter``, docs/design.md).
"""

from __future__ import annotations

from pathlib import Path

from .app import Sandbox
from .cli import add_parser, run
from .keys import init_keyset, load_keyset

__all__ = ["add_parser", "create", "run"]


def create(directory: Path, *, state_path: str | None,
           notify_urls: dict[str, str]) -> Sandbox:
    """The sandbox on the keyset in ``directory`` (written there first if absent; a present one
    is kept and gains the keys of newer vendors), notifying only ``notify_urls``."""
    init_keyset(directory)
    return Sandbox(load_keyset(directory), state_path=state_path, notify_urls=notify_urls)

