"""The session pod's configuration, read once from environment variables.

Owns parsing and validation only: ``load_config(environ)`` returns a
``Config`` or raises ``ConfigError`` naming the variable and what is wrong
with it (one line, fit for a log and the status hash). Every variable name
comes from ``wasp.contract``; nothing here touches Redis.

The two secrets, the Redis URL (it carries the pod's password) and the auth
key, come either from a plain variable (``WASP_REDIS_URL``, ``WASP_AUTH_KEY``:
sandbox mode on a laptop) or from a file that a ``*_FILE`` variable names
(``WASP_REDIS_URL_FILE``, ``WASP_AUTH_KEY_FILE``: a pod, whose Secrets are
mounted as files and whose spec holds no secret). The file's content is used
with surrounding whitespace stripped. Setting both forms of one secret is a
configuration error: which one wins would be a guess, and a guess about a
credential is how a pod ends up talking to the wrong Redis. Reading a file is
the only I/O here; an error never quotes a secret.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from wasp import contract
from wasp.errors import InvalidTemplateError
from wasp.templates import validate_template
from wasp_session.delivery.context import DeliverySettings
from wasp_session.errors import ConfigError

_TENANT = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # DNS-1123 label
_PHONE = re.compile(r"^\+?[1-9][0-9]{6,14}$")
_REGION = re.compile(r"^[A-Z]{2}$")
_UID = re.compile(r"^[A-Za-z0-9-]+$")
_MAX_UID_CHARS = 128
_DEFAULT_QR_SECONDS = (60.0, 20.0, 20.0, 20.0, 20.0, 20.0)
T = TypeVar("T", int, float)


@dataclass(frozen=True)
class Timings:
    """Every duration the session waits for, in seconds."""

    lease_ttl: float = 15.0
    checkpoint_interval: float = 300.0
    checkpoint_debounce: float = 5.0
    reconnect_base: float = 1.0
    reconnect_max: float = 60.0
    shutdown_timeout: float = 20.0
    simulator_qr: tuple[float, ...] = _DEFAULT_QR_SECONDS
    simulator_receipt_delay: float = 1.0
    timelock: float = 24 * 3600.0  # a 463 timelock's assumed length (docs/delivery.md)


@dataclass(frozen=True)
class Config:
    """Everything the session pod needs to run one tenant."""

    tenant: str
    redis_url: str
    auth_key: bytes = b""
    transport: str = "simulator"
    pairing_method: str = "QR"
    pairing_phone: str | None = None
    pairing_max_windows: int = 3
    data_dir: Path = Path("/data")
    health_port: int = 8080
    max_start_failures: int = 5
    log_format: str = "auto"
    pod_name: str = ""
    owner_uid: str | None = None  # the WhatsAppSession's uid, checked against the owner key
    auto_reply_text: str | None = None  # replied once a day to each sender (docs/inbound.md)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    timings: Timings = field(default_factory=Timings)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(name, "is required but not set")
    return value


def _number(
    env: Mapping[str, str], name: str, kind: Callable[[str], T], default: T, minimum: T
) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = {"int": "an integer"}.get(kind.__name__, "a number")
        raise ConfigError(name, f"must be {noun}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = env.get(name, "").strip() or default
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def tenant_from(env: Mapping[str, str]) -> str:
    """The tenant id, validated as a DNS-1123 label."""
    tenant = _required(env, contract.ENV_TENANT)
    if not _TENANT.match(tenant):
        raise ConfigError(contract.ENV_TENANT, f"must be a DNS-1123 label, got {tenant!r}")
    return tenant


def _secret(env: Mapping[str, str], name: str, file_name: str) -> tuple[str, str]:
    """A secret from ``name`` or from the file ``file_name`` names; (value, variable used)."""
    plain = env.get(name, "").strip()
    path = env.get(file_name, "").strip()
    if plain and path:
        raise ConfigError(name, f"is set and so is {file_name}: set only one of them")
    if plain:
        return plain, name
    if not path:
        raise ConfigError(name, f"is required but not set (nor {file_name})")
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
        raise ConfigError(file_name, f"cannot read {path}: {why}") from None
    if not value:
        raise ConfigError(file_name, f"the file {path} is empty")
    return value, file_name


def redis_url_from(env: Mapping[str, str]) -> str:
    """The Redis URL (plain or from its file), checked for a redis scheme."""
    url, variable = _secret(env, contract.ENV_REDIS_URL, contract.ENV_REDIS_URL_FILE)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(variable, "must start with redis://, rediss:// or unix://")
    return url


def _auth_key(env: Mapping[str, str]) -> bytes:
    raw, variable = _secret(env, contract.ENV_AUTH_KEY, contract.ENV_AUTH_KEY_FILE)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(variable, "is not valid base64") from None
    if len(key) != 32:  # noqa: PLR2004 - AES-256
        raise ConfigError(variable, f"must be base64 of 32 bytes, got {len(key)} bytes")
    return key


def owner_uid_from(env: Mapping[str, str]) -> str | None:
    """The uid of the WhatsAppSession this pod runs for (set by the operator), if any."""
    uid = env.get(contract.ENV_OWNER_UID, "").strip()
    if not uid:
        return None
    if len(uid) > _MAX_UID_CHARS or not _UID.match(uid):
        raise ConfigError(
            contract.ENV_OWNER_UID, "must be a Kubernetes uid (letters, digits and '-')"
        )
    return uid


def _pairing_phone(env: Mapping[str, str], method: str) -> str | None:
    raw = env.get(contract.ENV_PAIRING_PHONE, "").strip().replace(" ", "")
    if not raw:
        if method == "PairingCode":
            raise ConfigError(contract.ENV_PAIRING_PHONE, "is required for PairingCode pairing")
        return None
    if not _PHONE.match(raw):
        raise ConfigError(contract.ENV_PAIRING_PHONE, f"must be an E.164 number, got {raw!r}")
    return raw.lstrip("+")


def _port(env: Mapping[str, str]) -> int:
    port = _number(env, contract.ENV_HEALTH_PORT, int, 8080, 0)
    if port > 65535:  # noqa: PLR2004 - the largest TCP port
        raise ConfigError(contract.ENV_HEALTH_PORT, f"must be a TCP port, got {port}")
    return port


def _qr_seconds(env: Mapping[str, str]) -> tuple[float, ...]:
    raw = env.get(contract.ENV_SIMULATOR_QR_SECONDS, "").strip()
    if not raw:
        return _DEFAULT_QR_SECONDS
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        values = ()
    if not values or any(value <= 0 for value in values):
        raise ConfigError(
            contract.ENV_SIMULATOR_QR_SECONDS,
            f"must be positive seconds separated by commas, got {raw!r}",
        )
    return values


def _auto_reply_text(env: Mapping[str, str]) -> str | None:
    text = env.get(contract.ENV_AUTO_REPLY_TEXT, "")
    if not text.strip():
        return None
    if len(text) > contract.AUTO_REPLY_MAX_CHARS:
        raise ConfigError(
            contract.ENV_AUTO_REPLY_TEXT,
            f"must be at most {contract.AUTO_REPLY_MAX_CHARS} characters, got {len(text)}",
        )
    return text


def _delivery(env: Mapping[str, str]) -> DeliverySettings:
    defaults = DeliverySettings()
    region = env.get(contract.ENV_DEFAULT_REGION, "").strip() or defaults.default_region
    if not _REGION.match(region):
        raise ConfigError(
            contract.ENV_DEFAULT_REGION, f"must be a two-letter region code, got {region!r}"
        )
    template = env.get(contract.ENV_MESSAGE_TEMPLATE) or defaults.message_template
    try:
        validate_template(template)
    except InvalidTemplateError as error:
        one_line = "\\n".join(str(error).splitlines())  # a field name may hold a newline
        raise ConfigError(contract.ENV_MESSAGE_TEMPLATE, one_line) from None
    return DeliverySettings(
        default_region=region,
        message_template=template,
        ttl_seconds=_number(env, contract.ENV_TTL_SECONDS, int, defaults.ttl_seconds, 1),
        retry_attempts=_number(env, contract.ENV_RETRY_ATTEMPTS, int, defaults.retry_attempts, 1),
        retry_backoff_seconds=_number(
            env, contract.ENV_RETRY_BACKOFF_SECONDS, float, defaults.retry_backoff_seconds, 0.0
        ),
        rate_per_minute=_number(
            env, contract.ENV_RATE_PER_MINUTE, int, defaults.rate_per_minute, 1
        ),
    )


def _timings(env: Mapping[str, str]) -> Timings:
    d = Timings()
    timings = Timings(
        lease_ttl=_number(env, contract.ENV_LEASE_TTL_SECONDS, float, d.lease_ttl, 1.0),
        checkpoint_interval=_number(
            env, contract.ENV_CHECKPOINT_INTERVAL_SECONDS, float, d.checkpoint_interval, 1.0
        ),
        checkpoint_debounce=_number(
            env, contract.ENV_CHECKPOINT_DEBOUNCE_SECONDS, float, d.checkpoint_debounce, 0.0
        ),
        reconnect_base=_number(
            env, contract.ENV_RECONNECT_BASE_SECONDS, float, d.reconnect_base, 0.01
        ),
        reconnect_max=_number(
            env, contract.ENV_RECONNECT_MAX_SECONDS, float, d.reconnect_max, 0.01
        ),
        shutdown_timeout=_number(
            env, contract.ENV_SHUTDOWN_TIMEOUT_SECONDS, float, d.shutdown_timeout, 1.0
        ),
        simulator_qr=_qr_seconds(env),
        simulator_receipt_delay=_number(
            env,
            contract.ENV_SIMULATOR_RECEIPT_DELAY_SECONDS,
            float,
            d.simulator_receipt_delay,
            0.0,
        ),
        timelock=_number(env, contract.ENV_TIMELOCK_SECONDS, float, d.timelock, 1.0),
    )
    if timings.reconnect_max < timings.reconnect_base:
        raise ConfigError(
            contract.ENV_RECONNECT_MAX_SECONDS,
            f"must not be below {contract.ENV_RECONNECT_BASE_SECONDS}",
        )
    return timings


def load_config(env: Mapping[str, str]) -> Config:
    """Read and check every variable; raise ``ConfigError`` at the first bad one."""
    tenant = tenant_from(env)
    redis_url = redis_url_from(env)
    auth_key = _auth_key(env)
    transport = _choice(env, contract.ENV_TRANSPORT, contract.TRANSPORTS, "neonize")
    method = _choice(env, contract.ENV_PAIRING_METHOD, contract.PAIRING_METHODS, "QR")
    data_dir = Path(env.get(contract.ENV_DATA_DIR, "").strip() or "/data")
    if not data_dir.is_absolute():
        raise ConfigError(contract.ENV_DATA_DIR, f"must be an absolute path, got {data_dir}")
    return Config(
        tenant=tenant,
        redis_url=redis_url,
        auth_key=auth_key,
        transport=transport,
        pairing_method=method,
        pairing_phone=_pairing_phone(env, method),
        pairing_max_windows=_number(env, contract.ENV_PAIRING_MAX_WINDOWS, int, 3, 1),
        data_dir=data_dir,
        health_port=_port(env),
        max_start_failures=_number(env, contract.ENV_MAX_START_FAILURES, int, 5, 1),
        log_format=_choice(env, contract.ENV_LOG_FORMAT, contract.LOG_FORMATS, "auto"),
        pod_name=env.get(contract.ENV_POD_NAME, "").strip() or socket.gethostname(),
        owner_uid=owner_uid_from(env),
        auto_reply_text=_auto_reply_text(env),
        delivery=_delivery(env),
        timings=_timings(env),
    )
