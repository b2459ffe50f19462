"""The embedded default: where the gateway sandbox runs, and the keys it hands out.

With no broker configured, the serving process also applies migrations, runs a Dramatiq worker
and the scheduler in threads (against the in-process Redis equivalent), and mounts the gateway
sandbox so the channels have somewhere real to talk to (``gonglun.api.embedded`` does that). In
production none of this runs: ``gonglun worker`` and ``gonglun scheduler`` are their own
processes and no sandbox route exists. This module is below the API: the keysets providers and
channels read (``named_keyset``), whether the sandbox runs, and how it is found.

The core imports no sandbox module: it says here what it asks of a gateway sandbox
(``GatewaySandbox``) and finds one through the ``gonglun.gateway_sandbox`` entry point, which
the bundled sandbox fills (``gonglun.sandbox.embed``, declared in pyproject.toml). An install
without it has no gateway and no ``gonglun sandbox`` command (docs/design.md, "Layers").
"""

from __future__ import annotations

import argparse
import logging
from functools import cache
from pathlib import Path
from typing import Any, Protocol, cast

log = logging.getLogger(__name__)

GATEWAY_GROUP = "gonglun.gateway_sandbox"


class GatewaySandbox(Protocol):
    """What the core asks of a gateway sandbox (a module or an object)."""

    def create(self, directory: Path, *, state_path: str | None,
               notify_urls: dict[str, str]) -> Any:
        """A sandbox on the keyset in ``directory`` (written if absent), notifying only
        ``notify_urls``: it has ``keyset``, ``add_routes(app)`` and async ``start``/``stop``."""

    def add_parser(self, subparsers: Any) -> argparse.ArgumentParser:
        """Add the ``sandbox`` command to the CLI's subparsers."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the ``sandbox`` command; the exit status."""


@cache
def gateway_sandbox() -> GatewaySandbox | None:
    """The installed gateway sandbox (the ``gonglun.gateway_sandbox`` entry point; the first by
    name if several), or None where none is installed or it cannot be imported."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=GATEWAY_GROUP), key=lambda e: e.name):
        try:
            return cast(GatewaySandbox, ep.load())
        except ImportError as exc:  # a stripped install: the metadata without the package
            log.warning("gateway sandbox %s cannot be imported: %s", ep.value, exc)
    return None


def sandbox_dir(rt: Any) -> Path:
    return rt.config.path("sandbox.dir") or rt.config.data_dir / "sandbox"


def named_keyset(rt: Any, setting: str) -> tuple[dict[str, Any], str] | None:
    """The keyset file ``setting`` names, else the bundled sandbox's own where the sandbox runs
    in this configuration; None when neither (DECISIONS.md 23: never a fallback keyset).
    Answers the keys and where they came from; raises ``ValueError`` for a file it cannot
    use. Providers and channels without keys of their own read their sandbox keys here."""
    import json

    named = rt.config.path(setting)
    if named is None and not rt.config.sandbox_enabled:
        return None
    sandbox = getattr(rt, "sandbox", None)
    if named is None and sandbox is not None:
        return dict(sandbox.keyset), "the bundled sandbox"
    path = named or sandbox_dir(rt) / "sandbox.json"
    try:
        return json.loads(path.read_text("utf-8")), str(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{setting if named else 'sandbox keyset'} {path}: {exc}") from exc


def sandbox_enabled(rt: Any) -> bool:
    """Only where asked for: on the embedded default, or with ``sandbox.enabled = true``."""
    return rt.config.sandbox_enabled


SIMULATED = ("PAYMENTS ARE SIMULATED: the channels talk to a gateway sandbox; no real money "
             "moves and anybody who reaches its /sandbox/... control routes can pay any order")


def announce_sandbox(rt: Any) -> None:
    """Say loudly, at start, that payments are simulated where that is not obvious (staging)."""
    if rt.config.sandbox_explicit:
        log.warning(SIMULATED)
