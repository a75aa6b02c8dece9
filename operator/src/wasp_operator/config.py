"""The operator's configuration: what the chart sets through env vars or flags.

Owns the settings' names, defaults and parsing from the environment; the
command line (``cli.py``) layers flags over it. Holds no Kubernetes or Redis
client and decides nothing about sessions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from wasp import contract

DEFAULT_SESSION_IMAGE = "ghcr.io/wasp-dev/wasp:latest"
DEFAULT_RESYNC_SECONDS = 30.0
# Resyncs per second over every session: ~2.4 ms of operator CPU each (measured at 5,000
# sessions), so at most 50/s (about 43/s on average) is about a tenth of a core.
DEFAULT_MAX_RESYNCS_PER_SECOND = 50.0
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
LOWEST_HOST_PORT = 1024  # below: privileged ports, which a non-root session may not bind
HIGHEST_PORT = 65535
PORT_RANGE = re.compile(r"(?P<first>[0-9]{1,5}) *- *(?P<last>[0-9]{1,5})")


@dataclass(frozen=True)
class OperatorConfig:
    """How this operator runs and what it puts into session pods."""

    namespaces: tuple[str, ...] = ()  # the namespaces watched; none: every namespace
    session_image: str = DEFAULT_SESSION_IMAGE
    # Images a WhatsAppSession's podTemplate.image may name, besides session_image.
    allowed_session_images: tuple[str, ...] = ()
    # Who may reach a session pod's health port (its /metrics): pods with these
    # labels in these namespaces. No namespaces: nobody (probes need no rule).
    scraper_namespaces: tuple[str, ...] = ()
    scraper_labels: tuple[tuple[str, str], ...] = ()
    redis_secret: str = contract.DEFAULT_REDIS_SECRET
    redis_secret_key: str = contract.DEFAULT_REDIS_SECRET_KEY
    redis_secret_namespace: str | None = None  # None: each session's own namespace
    standalone: bool = False
    liveness_endpoint: str | None = None
    metrics_port: int | None = None  # None: no /metrics endpoint
    # How often each session is compared with the world anyway (and its users re-made).
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    # ... but at most this many resyncs per second over every session: with
    # more than 0.75 x resync_seconds x this many sessions, each resyncs less often.
    max_resyncs_per_second: float = DEFAULT_MAX_RESYNCS_PER_SECOND
    # Session pods on the node's network, each with its own health port from
    # this range (first, last), inclusive. None: the pod network, port 8080.
    session_host_ports: tuple[int, int] | None = None
    # Private networks (CIDRs) session webhooks may reach besides public addresses; none: none.
    webhook_allowed_networks: tuple[str, ...] = ()

    @property
    def allowed_images(self) -> tuple[str, ...]:
        """Every image a session pod may run: the default one first, then the allowlist."""
        return tuple(dict.fromkeys((self.session_image, *self.allowed_session_images)))


def config_from_env(environ: Mapping[str, str]) -> OperatorConfig:
    """The configuration given by the operator's environment variables."""
    secret = environ.get(contract.ENV_OPERATOR_REDIS_SECRET, "").strip()
    name, key = parse_secret_ref(secret) if secret else (None, None)
    return OperatorConfig(
        namespaces=parse_list(environ.get(contract.ENV_OPERATOR_NAMESPACE, "")),
        session_image=environ.get(contract.ENV_OPERATOR_SESSION_IMAGE, "").strip()
        or DEFAULT_SESSION_IMAGE,
        allowed_session_images=parse_list(environ.get(contract.ENV_OPERATOR_SESSION_IMAGES, "")),
        scraper_namespaces=parse_list(environ.get(contract.ENV_OPERATOR_SCRAPER_NAMESPACES, "")),
        scraper_labels=parse_labels(environ.get(contract.ENV_OPERATOR_SCRAPER_LABELS, "")),
        redis_secret=name or contract.DEFAULT_REDIS_SECRET,
        redis_secret_key=key or contract.DEFAULT_REDIS_SECRET_KEY,
        redis_secret_namespace=(
            environ.get(contract.ENV_OPERATOR_REDIS_SECRET_NAMESPACE, "").strip() or None
        ),
        standalone=environ.get(contract.ENV_OPERATOR_STANDALONE, "").strip().lower() in TRUE_WORDS,
        liveness_endpoint=environ.get(contract.ENV_OPERATOR_LIVENESS, "").strip() or None,
        metrics_port=parse_port(environ.get(contract.ENV_OPERATOR_METRICS_PORT, "")),
        resync_seconds=parse_seconds(environ.get(contract.ENV_OPERATOR_RESYNC_SECONDS, ""))
        or DEFAULT_RESYNC_SECONDS,
        max_resyncs_per_second=parse_rate(
            environ.get(contract.ENV_OPERATOR_MAX_RESYNCS_PER_SECOND, "")
        )
        or DEFAULT_MAX_RESYNCS_PER_SECOND,
        session_host_ports=parse_port_range(
            environ.get(contract.ENV_OPERATOR_SESSION_HOST_PORTS, "")
        ),
        webhook_allowed_networks=parse_networks(
            environ.get(contract.ENV_OPERATOR_WEBHOOK_ALLOWED_NETWORKS, "")
        ),
    )


def parse_list(text: str) -> tuple[str, ...]:
    """A comma-separated list, items stripped, empty ones and repeats dropped."""
    return tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))


def parse_networks(text: str) -> tuple[str, ...]:
    """Comma-separated CIDRs (``10.20.0.0/16,fd00::/8``), each normalized; empty when empty."""
    networks: list[str] = []
    for item in parse_list(text):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            msg = f"networks are CIDRs separated by commas (e.g. 10.20.0.0/16), got {item!r}"
            raise ValueError(msg) from None
    return tuple(dict.fromkeys(networks))


def parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key2=value2`` as sorted (key, value) pairs; empty for an empty string."""
    labels: dict[str, str] = {}
    for item in parse_list(text):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            msg = f"labels are key=value pairs separated by commas, got {item!r}"
            raise ValueError(msg)
        labels[key.strip()] = value.strip()
    return tuple(sorted(labels.items()))


def parse_port(text: str) -> int | None:
    """A TCP port, or None for an empty string."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:  # noqa: PLR2004 - the port range
        msg = f"a port must be a number from 1 to 65535, got {text!r}"
        raise ValueError(msg)
    return int(text)


def parse_port_range(text: str) -> tuple[int, int] | None:
    """``FIRST-LAST`` (1024 <= FIRST <= LAST <= 65535) as (first, last); None when empty."""
    text = text.strip()
    if not text:
        return None
    if (match := PORT_RANGE.fullmatch(text)) is not None:
        first, last = int(match["first"]), int(match["last"])
        if LOWEST_HOST_PORT <= first <= last <= HIGHEST_PORT:
            return first, last
    msg = (
        f"a port range is FIRST-LAST with {LOWEST_HOST_PORT} <= FIRST <= LAST <= "
        f"{HIGHEST_PORT} (e.g. 20000-20999), got {text!r}"
    )
    raise ValueError(msg)


def parse_seconds(text: str) -> float | None:
    """A positive number of seconds, or None for an empty string."""
    return _positive_number(text, "a duration must be a positive number of seconds")


def parse_rate(text: str) -> float | None:
    """A positive number per second, or None for an empty string."""
    return _positive_number(text, "a rate must be a positive number per second")


def _positive_number(text: str, requirement: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        msg = f"{requirement}, got {text!r}"
        raise ValueError(msg)
    return number


def parse_secret_ref(text: str) -> tuple[str, str]:
    """``NAME`` or ``NAME:KEY`` as (name, key); the key defaults to ``url``."""
    name, _, key = text.partition(":")
    if not name:
        msg = f"a Secret reference needs a name (NAME or NAME:KEY), got {text!r}"
        raise ValueError(msg)
    return name, key or contract.DEFAULT_REDIS_SECRET_KEY
