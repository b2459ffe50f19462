"""Work off the event loop: blocking calls on asyncio's thread pool (``run_sync``), CPU-heavy
ones on small named pools (``run_cpu``). Below the API: the idempotency keys, the accounts and the
plugins use them as the REST resources do (they are re-exported from ``gonglun.api.util``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run blocking work (SQLAlchemy, SDK calls) off the event loop."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


#: CPU-heavy work runs on small named pools: ``crypto`` (RSA of channel notifications and
#: signatures) and ``auth`` (Argon2). A burst of one queues on its own pool instead of taking
#: every core from the event loop, the I/O pool, or the other.
_CPU_POOLS: dict[str, ThreadPoolExecutor] = {}
_CPU_THREADS = {"crypto": 2, "auth": 1}


def cpu_pool(name: str = "crypto", threads: int | None = None) -> ThreadPoolExecutor:
    pool = _CPU_POOLS.get(name)
    if pool is None:
        size = max(1, threads or _CPU_THREADS.get(name, 1))
        pool = _CPU_POOLS.setdefault(
            name, ThreadPoolExecutor(size, thread_name_prefix=f"gonglun-{name}"))
    return pool


async def run_cpu(fn: Callable[..., T], /, *args: Any, pool: str = "crypto",
                  **kwargs: Any) -> T:
    """Run CPU-heavy work on the named CPU pool (``server.cpu_threads`` for ``crypto``)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(cpu_pool(pool), functools.partial(fn, *args, **kwargs))


__all__ = ["cpu_pool", "run_cpu", "run_sync"]
