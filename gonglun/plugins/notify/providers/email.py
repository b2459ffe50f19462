"""Email over a real SMTP server (NTF-08): implicit TLS, STARTTLS or plain, with or without
authentication; every message has a text and an HTML part.

``[notify.smtp]``: ``host``, ``sender`` ("宫论 <noreply@example.com>") required; ``port``
(465 for ``tls``, 587 for ``starttls``, 25 for ``none``), ``security`` (default ``starttls``),
``username``/``password``, ``timeout`` (s, default 15), ``cafile`` (a CA bundle to trust, for a
private relay). Credentials are never sent in clear text to anything but loopback.
"""

from __future__ import annotations

import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

from sqlalchemy.orm import Session

from gonglun.plugins.notify.providers.base import (
    Outbound,
    PermanentError,
    Provider,
    TransientError,
)
from gonglun.vendors import SettingsError, bounded

SECURITY = {"tls": 465, "starttls": 587, "none": 25}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class SmtpProvider(Provider):
    channel = "email"
    name = "smtp"

    def __init__(self, host: str, port: int, security: str, sender: str, *,
                 username: str = "", password: str = "", timeout: float = 15.0,
                 cafile: str | None = None) -> None:
        self.host, self.port, self.security = host, port, security
        self.sender, self.username, self.password = sender, username, password
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile)
        self.domain = parseaddr(sender)[1].rpartition("@")[2]

    @classmethod
    def from_config(cls, rt: Any) -> SmtpProvider:
        cfg = dict(rt.config.get("notify.smtp") or {})
        if not cfg.get("host") or not cfg.get("sender"):
            raise SettingsError("no SMTP server: set [notify.smtp] host and sender (port, "
                                "security = starttls|tls|none, username, password)")
        security = str(cfg.get("security", "starttls"))
        if security not in SECURITY:
            raise SettingsError("notify.smtp.security must be starttls, tls or none")
        host, username = str(cfg["host"]), str(cfg.get("username") or "")
        if security == "none" and username and host not in LOOPBACK:
            raise SettingsError(f"refusing to send SMTP credentials in clear text to {host}: "
                                "use security = starttls or tls")
        if "@" not in parseaddr(str(cfg["sender"]))[1]:
            raise SettingsError("notify.smtp.sender must be an address (宫论 <noreply@...>)")
        port = int(bounded(cfg.get("port"), "notify.smtp.port", SECURITY[security], 1, 65535))
        return cls(host, port, security, str(cfg["sender"]), username=username,
                   password=str(cfg.get("password") or ""),
                   timeout=bounded(cfg.get("timeout"), "notify.smtp.timeout", 15, 1, 120),
                   cafile=cfg.get("cafile") or None)

    def describe(self) -> str:
        return f"smtp {self.host}:{self.port} ({self.security})"

    def address(self, session: Session, user: Any) -> str | None:
        return user.email or None

    def _message(self, message: Outbound) -> EmailMessage:
        c = message.content
        mail = EmailMessage()
        mail["Subject"] = " ".join(str(c["subject"]).split())  # no header injection by newline
        mail["From"] = self.sender
        try:
            mail["To"] = Address(addr_spec=str(message.address))
        except (ValueError, IndexError) as exc:
            raise PermanentError("bad_address", f"not an email address: {exc}") from None
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(idstring=f"d{message.delivery_id}", domain=self.domain)
        mail.set_content(str(c["text"]))
        mail.add_alternative(str(c["html"]), subtype="html")
        return mail

    def send(self, rt: Any, message: Outbound) -> str:
        mail = self._message(message)
        try:
            if self.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                      context=self.context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self.context)
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise _by_code(code, reply) from None
        except smtplib.SMTPResponseException as exc:  # auth, sender, data refusals
            raise _by_code(exc.smtp_code, exc.smtp_error) from None
        except (smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as exc:
            raise PermanentError("smtp_config", f"{type(exc).__name__}: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out
            raise TransientError("smtp_unreachable", f"{type(exc).__name__}: {exc}") from None
        return str(mail["Message-ID"])


def _by_code(code: int, reply: Any) -> Exception:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    if 400 <= code < 500:  # "try again later" in SMTP's own words
        return TransientError(f"smtp_{code}", text)
    return PermanentError(f"smtp_{code}", text)
