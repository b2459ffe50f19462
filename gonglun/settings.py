"""Every setting, in one place: its type, default, description, and whether it is secret.

This schema is the one source of defaults: ``Config.get(path)`` of an unset setting answers
its default here (the code passes no default of its own; a test compares any it does), and
values are checked against it at start (``check``): an unknown section or key, a value of the
wrong type or below its ``minimum``, is refused with the nearest valid name. ``gonglun config
show`` prints the effective configuration with each value's source and the secrets masked;
``docs/settings.md`` is rendered from here (``python -m gonglun.settings >
docs/settings.md``, kept current by a test). Third-party plugins declare theirs through the
``register_settings`` filter.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gonglun.defaults import DEFAULTS, ConfigError


@dataclass(frozen=True)
class Setting:
    path: str
    type: str  #: str, int, float, bool, list, table (free-form sub-table), auto-bool, path, url
    default: Any
    description: str
    secret: bool = False
    #: The smallest value a number setting takes (a limit that 0 turns off has 0 here).
    minimum: float | None = None

    def accepts(self, value: Any) -> bool:
        if value is None:  # unset (TOML has no null; code may pass None for "not given")
            return True
        if self.minimum is not None and self.type in ("int", "float") and isinstance(
                value, int | float) and not isinstance(value, bool) and value < self.minimum:
            return False
        t = self.type
        if t in ("str", "path", "url"):
            return isinstance(value, str)
        if t == "int":  # what a database column and a C int hold
            return isinstance(value, int) and not isinstance(value, bool) \
                and abs(value) < 2**63
        if t == "float":  # nan, inf and 1e999 (inf) make every duration overflow
            return isinstance(value, int | float) and not isinstance(value, bool) \
                and math.isfinite(value) and abs(value) < 2**63
        if t == "bool":
            return isinstance(value, bool)
        if t == "auto-bool":
            return value is None or isinstance(value, bool) or value == "auto"
        if t == "list":
            return isinstance(value, list)
        if t == "str-or-list":
            return isinstance(value, str | list)
        return isinstance(value, Mapping)  # table


def _d(path: str) -> Any:
    node: Any = DEFAULTS
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def S(path: str, type_: str, description: str, default: Any = ..., secret: bool = False,
      minimum: float | None = None) -> Setting:
    return Setting(path, type_, _d(path) if default is ... else default, description, secret,
                   minimum)


#: Vendor keys that are not strings.
_KEY_TYPES = {"port": "int", "timeout": "float", "timestamp_skew_s": "float",
              "apns_production": "bool", "time_to_live": "int"}


def _keys(section: str, keys: dict[str, str], secrets: tuple[str, ...]) -> list[Setting]:
    return [S(f"{section}.{k}", _KEY_TYPES.get(k, "str"), d, None, k in secrets)
            for k, d in keys.items()]


CORE: tuple[Setting, ...] = (
    S("database.url", "str", "SQLAlchemy URL: postgresql://, mysql:// (MariaDB); empty: SQLite "
      "in the data folder (the embedded default)", secret=True),
    S("database.echo", "bool", "log every SQL statement"),
    S("database.pool_size", "int", "connections per process (and as many overflow)"),
    S("database.pre_ping", "bool", "test each pooled connection before use (a round trip)"),
    S("redis.url", "str", "redis://host:6379/0; empty: the in-process equivalent", secret=True),
    S("redis.prefix", "str", "prefix of every key (two deployments on one Redis differ here)"),
    S("broker.url", "str", "redis:// or amqp:// Dramatiq broker; empty: the in-process worker",
      secret=True),
    S("broker.namespace", "str", "queue namespace; empty: derived from redis.prefix"),
    S("broker.worker_threads", "int", "threads per worker process"),
    S("plugins.disabled", "str-or-list", "plugins switched off (names as `gonglun plugins list`)"),
    S("server.host", "str", "address `gonglun serve` listens on"),
    S("server.port", "int", "port `gonglun serve` listens on"),
    S("server.data_dir", "path", "data folder (SQLite file, logs, sandbox keys), relative to the "
      "project"),
    S("server.threads", "int", "threads for blocking work (database, SDK calls)"),
    S("server.cpu_threads", "int", "threads for RSA signatures and verifications"),
    S("server.public_url", "url", "the https address clients and channels reach (notify URLs)"),
    S("server.max_body_bytes", "int", "largest request body (413 above)"),
    S("server.trusted_proxies", "list", "proxies whose X-Forwarded-For is believed (CIDRs)"),
    S("server.metrics_token", "str", "bearer token for /metrics and health details",
      secret=True),
    S("server.return_hosts", "list", "hosts a payment's return_url may point to"),
    S("server.embedded_services", "bool", "run the worker and scheduler inside `serve` when no "
      "broker is configured", default=True),
    S("hooks.trace", "bool", "log every hook call with its timings"),
    S("server.log_format", "str", "text (one readable line) or json (one object a line, with "
      "the request id)", default="text"),
    S("auth.token_ttl_days", "int", "lifetime of a login token"),
    S("auth.login_failures", "int", "failed logins per account and address per window"),
    S("auth.login_account_failures", "int", "failed logins per account from anywhere per window",
      default=50),
    S("auth.login_ip_failures", "int", "failed logins per address per window"),
    S("auth.login_window_s", "int", "login throttling window"),
    S("auth.lockout_s", "int", "first lockout; doubles with each further one"),
    S("auth.lockout_max_s", "int", "longest lockout"),
    S("auth.max_pending", "int", "password checks waiting before logins get 429", default=16),
    S("auth.ws_ticket_ttl_s", "int", "lifetime of a websocket ticket"),
    S("auth.ws_recheck_s", "float", "an open websocket checks its session this often (and at "
      "once when its user is signed out, and before each push); a revoked one is closed",
      default=5.0),
    S("accounts.ticket_key", "str", "HMAC key of WeChat registration tickets (embedded default: "
      "a key file in the data folder)", default="", secret=True),
    S("accounts.ticket_ttl_s", "int", "lifetime of a WeChat registration ticket", default=300),
    S("accounts.multi_device", "bool", "false: every login signs the user's other devices out",
      default=True),
    S("accounts.register_limit", "int", "registrations (and binding attempts) per address per "
      "window", default=10),
    S("accounts.register_window_s", "int", "registration throttling window", default=3600),
    S("accounts.ip_db", "path", "MaxMind-format IP database giving provinces (remote-login "
      "alert, OPS-09); empty: the alert is off", default=""),
    *[s for p in ("mp", "app", "pc", "mini") for s in _keys(
        f"accounts.wechat.{p}", {"appid": f"WeChat {p} appid", "secret": "its AppSecret"},
        ("secret",))],
    S("accounts.wechat.api_base", "url", "WeChat API base URL",
      default="https://api.weixin.qq.com/"),
    S("accounts.wechat.timeout", "float", "seconds per WeChat call", default=10),
    S("accounts.keyset", "path", "a sandbox keyset for WeChat sign-in (staging)", default=""),
    S("accounts.gateway_url", "url", "the standalone sandbox for WeChat sign-in", default=""),
    S("sandbox.enabled", "auto-bool", "the gateway sandbox: unset = on only on the embedded "
      "default; true = on (staging, announced); false = off"),
    S("sandbox.dir", "path", "the sandbox's keyset folder (default: <data_dir>/sandbox)"),
    S("sandbox.state_path", "path", "keep the sandbox's state in this SQLite file", default=""),
    S("sandbox.control_from", "list", "networks besides loopback allowed on /sandbox control "
      "routes", default=[]),
    S("scheduler.tick_s", "float", "scheduler loop period"),
    S("scheduler.lease_s", "float", "leader lease of the scheduler"),
    S("outbox.sweep_s", "float", "period of the deferred-hook sweeper"),
    S("outbox.max_retries", "int", "deliveries before a failing deferred hook is left failed"),
    S("outbox.lease_s", "float", "claim lease of a deferred hook being run"),
    S("ledger.negative_scenes", "list", "transfer codes that may drive a wallet negative "
      "(admin/system refunds, adjustments)"),
    S("ledger.shards", "int", "rows per system account (escrow, clearing) to spread writes",
      default=16),
    S("health.stale_s", "float", "a scheduler/worker silent this long is unhealthy", default=60),
    S("health.worker_beat_s", "float", "period of the workers' heartbeat job", default=15),
    S("idempotency.lock_s", "float", "lease of a request on its Idempotency-Key, renewed while "
      "it runs; a dead owner's key is taken over at once on its machine, else when the lease "
      "lapses", default=60),
    S("idempotency.keep_h", "float", "how long Idempotency-Keys are remembered", default=168),
)

_ALIPAY = {"app_id": "Alipay application id", "app_private_key": "the application's RSA "
           "private key (PEM)", "alipay_public_key": "Alipay's public key (PEM)",
           "seller_id": "the merchant's Alipay account (2088...): notifications must name it",
           "gateway": "gateway URL (default: the live one, or the sandbox's)",
           "notify_url": "notification URL (default: server.public_url + /v1/notify/alipay)",
           "timeout": "SDK timeout, seconds"}
_WXPAY = {"mchid": "merchant id", "appid": "application id", "merchant_private_key": "the "
          "merchant's API private key (PEM)", "merchant_serial_no": "its certificate serial",
          "platform_public_key": "WeChat Pay's platform public key (PEM)", "public_key_id":
          "its id (PUB_KEY_ID_...)", "apiv3_key": "APIv3 key (32 bytes)", "gateway":
          "gateway URL", "notify_url": "notification URL", "timeout": "SDK timeout, seconds",
          "timestamp_skew_s": "notifications older or newer than this are refused (300)"}

PAYMENT: tuple[Setting, ...] = (
    *_keys("payment.alipay", _ALIPAY, ("app_private_key",)),
    *_keys("payment.wxpay", _WXPAY, ("merchant_private_key", "apiv3_key")),
    S("payment.keyset", "path", "a sandbox keyset file for staging against a standalone "
      "sandbox (needs payment.gateway_url)", default=""),
    S("payment.gateway_url", "url", "the standalone sandbox's base URL (staging)", default=""),
    S("payment.scenes", "table", "payment scenes: [payment.scenes.<key>] with decision 6's "
      "fields (docs/payment.md)", default={}),
    S("payment.view_whitelist", "list", "users who may read any payment", default=[]),
    S("payment.late_payment", "str", "review | accept | refund a payment that landed after its "
      "order closed", default="review"),
    S("payment.guest_orders_per_min", "int", "orders per minute per guest address", default=10),
    S("payment.user_orders_per_min", "int", "orders per minute per user", default=60),
    S("payment.actions_per_min", "int", "closes and syncs per minute per user", default=20),
    S("payment.notify_max_body", "int", "largest channel notification body", default=65536),
    S("payment.unverified_per_min", "int", "refused notifications recorded per address a "
      "minute", default=60),
    S("payment.unverified_keep_days", "int", "days refused notifications are kept", default=7),
    S("payment.log_days", "int", "days of raw packet logs (OPS-02)", default=90),
    S("payment.cache_ttl_s", "int", "payment cache lifetime", default=600),
    S("payment.close_every_s", "float", "period of the timeout-close job", default=30),
    S("payment.drop_every_s", "float", "period of the drop-order query job", default=60),
    S("payment.drop_after_s", "int", "unpaid orders older than this are queried", default=120),
    S("payment.drop_max_attempts", "int", "queries per dropped order", default=10),
    S("payment.reconcile_every_s", "float", "period of the reconciliation job", default=3600),
    S("payment.reconcile_lock_s", "float", "lock of one day's reconciliation", default=900),
    S("payment.auto_settle_every_s", "float", "period of the automatic settlement job",
      default=3600),
)

REFUND: tuple[Setting, ...] = (
    S("refund.key", "str", "the system way's key (32+ random characters; services only)",
      default="", secret=True),
    S("refund.system_fail_cap", "int", "failures before a system refund becomes fail_refund",
      default=3),
    S("refund.confirm_failures", "int", "unsettled checks before fail_refund", default=3),
    S("refund.confirm_every_s", "table", "confirmation periods: alipay (600), wxpay (1800)",
      default={}),
)

NOTIFY: tuple[Setting, ...] = (
    *_keys("notify.smtp", {"host": "SMTP server", "port": "port", "security": "starttls | tls "
                           "| none", "username": "login", "password": "password", "sender":
                           "From address", "timeout": "seconds", "cafile": "CA bundle for TLS"},
           ("password",)),
    *_keys("notify.tencentcloud", {"secret_id": "API SecretId", "secret_key": "API SecretKey",
                                   "sms_sdk_app_id": "SMS application", "sms_sign_name":
                                   "signature", "region": "region", "endpoint": "API host",
                                   "timeout": "seconds"}, ("secret_key",)),
    *_keys("notify.wechat", {"appid": "official account appid", "secret": "its AppSecret",
                             "api_base": "API base URL", "timeout": "seconds"}, ("secret",)),
    *_keys("notify.jpush", {"app_key": "JPush AppKey", "master_secret": "Master Secret",
                            "push_url": "push API URL", "apns_production": "production APNs",
                            "time_to_live": "offline message lifetime", "alias_prefix":
                            "alias of a user is this + id", "timeout": "seconds"},
           ("master_secret",)),
    S("notify.keyset", "path", "a sandbox keyset for the providers (staging)", default=""),
    S("notify.gateway_url", "url", "the standalone sandbox for the providers", default=""),
    S("notify.scenes", "table", "scene overrides: [notify.scenes.<key>] (docs/notify.md)",
      default={}),
    S("notify.alarms", "table", "alarm thresholds per kind: [notify.alarms.<kind>]",
      default={}),
    S("notify.alarm_recipients", "list", "user ids that receive staff alarms (default: admins)",
      default=[]),
    S("notify.code_key", "str", "HMAC key of stored verification codes", default="",
      secret=True),
    S("notify.code_ip_limit", "int", "verification codes one address may request through "
      "POST /v1/codes per notify.code_ip_window_s", default=10),
    S("notify.code_ip_window_s", "int", "window of notify.code_ip_limit (s)", default=3600),
    S("notify.retry_s", "list", "delays between delivery attempts (s)",
      default=[10, 30, 120, 600, 1800]),
    S("notify.max_attempts", "int", "delivery attempts per message (unset: one more than "
      "notify.retry_s has delays)", default=6),
    S("notify.lease_s", "float", "claim of a delivery being sent (longer than any provider "
      "timeout)", default=120),
    S("notify.sweep_s", "float", "period of the delivery sweeper; lost jobs are re-sent after "
      "twice this", default=10),
    S("notify.keep_days", "int", "days of delivery log", default=180),
    S("notify.link_base", "url", "base URL of links in messages", default=""),
    S("notify.templates_dir", "path", "folder of template overrides", default=""),
)

FACE: tuple[Setting, ...] = (
    *_keys("face.tencentcloud", {"secret_id": "API SecretId", "secret_key": "API SecretKey",
                                 "rule_id": "FaceID RuleId", "region": "region", "endpoint":
                                 "API host", "timeout": "seconds"}, ("secret_key",)),
    S("face.tencentcloud.min_similarity", "float", "lowest Sim that passes (0-100)",
      default=70),
    S("face.keyset", "path", "a sandbox keyset for the provider (staging)", default=""),
    S("face.gateway_url", "url", "the standalone sandbox for the provider", default=""),
    S("face.keys", "table", "identity encryption keys: key id → 32 bytes (hex or base64)",
      default={}, secret=True),
    S("face.key_id", "str", "the key id new identity rows are sealed with", default=""),
    S("face.index_key", "str", "HMAC key of the ID-number blind index (32 bytes, hex or "
      "base64; never rotated without a rebuild)", default="", secret=True),
    S("face.personal_enabled", "bool", "real-name verification switch (FACE-07)",
      default=True),
    S("face.retrieve_enabled", "bool", "account recovery by face switch (FACE-08)",
      default=True),
    S("face.free_number", "int", "free face checks per user (FACE-05)", default=0,
      minimum=0),
    S("face.units_per_payment", "int", "face checks a paid face_number order adds",
      default=1, minimum=1),
    S("face.price", "int", "price of one face check in fen (the server-made order)",
      default=100, minimum=1),
    S("face.accounts_per_identity", "int", "accounts one ID number may verify", default=1,
      minimum=1),
    S("face.redirect_url", "url", "where the provider's page sends the user back (default: "
      "this server)", default=""),
    S("face.reset_token_ttl_s", "int", "lifetime of a recovery reset token", default=7200,
      minimum=1),
    S("face.limit_count", "int", "face checks and lookups per address / ID number per "
      "window (0: no count)", default=10, minimum=0),
    S("face.limit_window_s", "int", "that window (FACE-03; 0: no count)", default=300,
      minimum=0),
    S("face.limit_lock_s", "int", "lock after the limit is passed (0: none)", default=300,
      minimum=0),
    S("face.min_interval_s", "int", "minimum seconds between two requests (0: none)",
      default=5, minimum=0),
    S("face.retrieve_per_day", "int", "recovery face checks one account may be the target of "
      "per day, whoever starts them (each can use a quota unit or create an unpaid order; 0: "
      "no daily limit)", default=5, minimum=0),
)

BUILTIN: tuple[Setting, ...] = (*CORE, *PAYMENT, *REFUND, *NOTIFY, *FACE)


def schema(hooks: Any = None) -> dict[str, Setting]:
    """The built-in settings and every plugin's (``register_settings``)."""
    declared = list(BUILTIN)
    if hooks is not None:
        declared = hooks.apply_filters("register_settings", declared)
    return {s.path: s for s in declared}


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield path, value
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def check(given: Mapping[str, Any], declared: Mapping[str, Setting]) -> None:
    """Refuse what the schema does not know, with the nearest valid name, and wrong types."""
    tables = [p for p, s in declared.items() if s.type == "table"]
    sections = {p.rsplit(".", 1)[0] for p in declared} | {p.split(".")[0] for p in declared}
    for path, value in _leaves(given):
        if any(path == t or path.startswith(t + ".") for t in tables):
            continue
        setting = declared.get(path)
        if setting is None:
            if isinstance(value, Mapping) and path in sections:
                continue
            near = difflib.get_close_matches(path, [*declared, *sections], n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"unknown setting {path!r}{hint} (see docs/settings.md)")
        if not setting.accepts(value):
            least = "" if setting.minimum is None else f" of at least {setting.minimum:g}"
            raise ConfigError(f"setting {path!r} must be {setting.type}{least}, not {value!r}")


def render(declared: Mapping[str, Setting] | None = None) -> str:
    declared = declared or schema()
    lines = ["# Settings", "",
             "Every setting, its type, default and meaning. Set them in `gonglun.toml` "
             "(`[section]` then `key = value`) or as `GONGLUN_<SECTION>__<KEY>` (values read as "
             "TOML literals). The code reads every default from here. Unknown settings, and "
             "numbers below their minimum (shown as ≥ n), stop start-up with the nearest valid "
             "name; "
             "`gonglun config show` prints the effective values with their source, secrets "
             "masked. Generated from `gonglun/settings.py` by `python -m gonglun.settings > "
             "docs/settings.md`.", ""]
    section = None
    for path in sorted(declared):
        s = declared[path]
        head = path.rsplit(".", 1)[0] if path.count(".") > 1 else path.split(".")[0]
        if head != section:
            section = head
            lines += ["", f"## `[{head}]`", "", "| setting | type | default | meaning |",
                      "|---|---|---|---|"]
        default = "—" if s.default in (None, "", [], {}) else f"`{s.default!r}`"
        flag = " **secret**" if s.secret else ""
        least = "" if s.minimum is None else f" (≥ {s.minimum:g})"
        lines.append(f"| `{path}` | {s.type} | {default} | {s.description}{least}{flag} |")
    return "\n".join(lines) + "\n"


def mask(setting: Setting | None, value: Any) -> Any:
    """A secret as ``***``; a URL keeps everything but its password."""
    if setting is None or not setting.secret or value in (None, ""):
        return value
    if isinstance(value, str) and "://" in value:
        scheme, rest = value.split("://", 1)
        if "@" not in rest:
            return value
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else value
    return "***"


if __name__ == "__main__":
    print(render(), end="")
