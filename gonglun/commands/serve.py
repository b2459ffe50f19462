"""The long-running processes: ``serve`` (the REST API), ``worker`` (Dramatiq workers for
deferred hooks and jobs) and ``scheduler`` (periodic jobs)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from gonglun.commands.base import ensure_schema, make_runtime, preflight
from gonglun.config import Config


def cmd_serve(rt: Any, args: argparse.Namespace) -> int:
    import uvicorn

    from gonglun.api import create_app

    host = args.host or rt.config.get("server.host", "127.0.0.1")
    port = int(args.port or rt.config.get("server.port", 8000))
    # Notify URLs and the embedded gateway are derived from where we actually listen.
    rt.config.data["server"].update(host=host, port=port)
    ensure_schema(rt)
    preflight(rt)
    app = create_app(rt=rt)
    banner(rt, host, port)
    logging.getLogger("uvicorn.access").addFilter(RedactQuery())
    # NOTE: proxy_headers off: uvicorn would otherwise rewrite the client address from
    # X-Forwarded-For for loopback peers, under every limit; server.trusted_proxies decides.
    uvicorn.run(app, host=host, port=port, ws="auto", lifespan="on",
                log_level=args.log_level, proxy_headers=False)
    return 0


class RedactQuery(logging.Filter):
    """Access-log lines never carry credentials: ``token=``/``ticket=`` values are masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        import re

        if isinstance(record.args, tuple):
            record.args = tuple(
                re.sub(r"((?:token|ticket)=)[^&\s]+", r"\1***", a) if isinstance(a, str) else a
                for a in record.args)
        return True


def banner(rt: Any, host: str, port: int) -> None:
    """What this server is: where, on what, with which channels; loud if payments are fake."""
    from gonglun.embedded import SIMULATED

    mode = "embedded default" if rt.config.embedded_default else "configured services"
    lines = [f"gonglun: serving http://{host}:{port} ({mode}, database {rt.db.dialect})"]
    if rt.config.sandbox_enabled:
        lines.append("gonglun: gateway sandbox ON at /sandbox, /gateway.do, /v3: payments are "
                     "simulated")
    elif rt.config.simulated_payments:
        lines.append("gonglun: channels use the sandbox keyset of payment.keyset: payments are "
                     "simulated")
    for problem in rt.startup_problems():
        lines.append(f"gonglun: WARNING: {problem}")
    if rt.config.sandbox_explicit:
        bar = "!" * 78
        lines = [bar, f"!! {SIMULATED}", bar, *lines]
    print("\n".join(lines), file=sys.stderr, flush=True)


def cmd_worker(rt: Any, args: argparse.Namespace) -> int:
    import dramatiq

    preflight(rt)
    rt.startup_problems()
    threads = args.threads or int(rt.config.get("broker.worker_threads", 4))
    if args.processes > 1:
        import multiprocessing

        procs = [
            multiprocessing.Process(target=_worker_process, args=(rt.config.data, threads))
            for _ in range(args.processes)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return 0
    worker = dramatiq.Worker(rt.broker, worker_threads=threads)
    worker.start()
    rt.outbox.sweep()
    logging.getLogger("gonglun").info("worker started: %d threads, actors %s", threads,
                                      ", ".join(rt.actor_names))
    wait_for_signal()
    worker.stop()
    return 0


def _worker_process(config_data: dict[str, Any], threads: int) -> None:
    import dramatiq

    rt = make_runtime(Config(config_data))
    worker = dramatiq.Worker(rt.broker, worker_threads=threads)
    worker.start()
    wait_for_signal()
    worker.stop()


def cmd_scheduler(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.scheduler import Scheduler

    preflight(rt)
    scheduler = Scheduler(rt)
    thread = scheduler.start_thread()
    wait_for_signal()
    scheduler.stop()
    thread.join(timeout=5)
    return 0


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1):
        pass

