"""Process logging: quiet libraries, plain or JSON lines, request ids, plain failure messages.

``server.log_format = "json"`` (or ``GONGLUN_SERVER__LOG_FORMAT=json``) writes one JSON object
a line with the time, level, logger, message and the request id of the request being served
(``X-Request-Id``), for log collectors; the default is one readable line.
"""

from __future__ import annotations

import contextvars
import errno
import json
import logging
from typing import Any

#: The id of the request this thread or task serves (set by the API middleware).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("gonglun_request_id",
                                                                 default="")
#: Libraries whose INFO lines say nothing an operator needs.
QUIET = ("pika", "alembic", "urllib3", "httpx", "httpcore", "dramatiq.broker",
         "tencentcloud_sdk_common", "wechatpy", "jpush", "asyncio")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            data["request_id"] = rid
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def plain_failure(exc: BaseException, config: Any) -> str | None:
    """One line for the failures an operator causes (a wrong URL, a database not migrated, a
    service down), with what to do; None for anything else (a bug: the traceback is wanted)."""
    from sqlalchemy.exc import DataError, DBAPIError, OperationalError, ProgrammingError

    from gonglun.storage import StartupError, classify

    if isinstance(exc, StartupError):
        return str(exc)
    failure = classify(exc)
    if failure is not None:
        return failure.line()
    text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0][:200] if str(exc) \
        else type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, ProgrammingError | OperationalError) and any(
            m in lowered for m in ("no such table", "does not exist", "doesn't exist",
                                   "undefinedtable")):
        return f"the database is not migrated ({text}): run `gonglun migrate`"
    if isinstance(exc, DataError) or isinstance(getattr(exc, "orig", exc), OverflowError):
        return f"a value is out of range ({text}): check the numbers and dates given"
    if isinstance(exc, OperationalError | DBAPIError):
        return (f"cannot use the database ({text}): check database.url "
                f"(GONGLUN_DATABASE_URL) and that the server runs")
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS,
                                                  errno.ENOSPC):
        return (f"cannot write {exc.filename or 'a file'} ({exc.strerror}): make the data "
                f"folder (server.data_dir, GONGLUN_DATA_DIR) writable by this user, with space "
                f"left")
    module = type(exc).__module__
    if module.startswith("redis"):
        return (f"cannot reach Redis ({text}): check redis.url (GONGLUN_REDIS_URL) and that "
                f"Redis runs")
    if module.startswith(("pika", "dramatiq")) or "amqp" in lowered:
        return (f"cannot reach the broker ({text}): check broker.url (GONGLUN_BROKER_URL) and "
                f"that it runs")
    if isinstance(exc, ConnectionError | OSError) and "connect" in lowered:
        return f"a service could not be reached ({text}): `gonglun doctor` says which"
    return None
