"""The operator's configuration: what the chart sets through env vars or flags.

Owns the settings' names, defaults and parsing from the environment; the
command line (``cli.py``) layers flags over it. Holds no Kubernetes or Redis
client and decides nothing about sessions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wasp import contract

DEFAULT_SESSION_IMAGE = "ghcr.io/wasp-dev/wasp:latest"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class OperatorConfig:
    """How this operator runs and what it puts into session pods."""

    namespace: str | None = None  # None: every namespace
    session_image: str = DEFAULT_SESSION_IMAGE
    redis_secret: str = contract.DEFAULT_REDIS_SECRET
    redis_secret_key: str = contract.DEFAULT_REDIS_SECRET_KEY
    standalone: bool = False
    liveness_endpoint: str | None = None
    metrics_port: int | None = None  # None: no /metrics endpoint
    resync_seconds: float = 30.0  # how often each session is compared with the world anyway


def config_from_env(environ: Mapping[str, str]) -> OperatorConfig:
    """The configuration given by the operator's environment variables."""
    secret = environ.get(contract.ENV_OPERATOR_REDIS_SECRET, "").strip()
    name, key = parse_secret_ref(secret) if secret else (None, None)
    return OperatorConfig(
        namespace=environ.get(contract.ENV_OPERATOR_NAMESPACE, "").strip() or None,
        session_image=environ.get(contract.ENV_OPERATOR_SESSION_IMAGE, "").strip()
        or DEFAULT_SESSION_IMAGE,
        redis_secret=name or contract.DEFAULT_REDIS_SECRET,
        redis_secret_key=key or contract.DEFAULT_REDIS_SECRET_KEY,
        standalone=environ.get(contract.ENV_OPERATOR_STANDALONE, "").strip().lower() in TRUE_WORDS,
        liveness_endpoint=environ.get(contract.ENV_OPERATOR_LIVENESS, "").strip() or None,
        metrics_port=parse_port(environ.get(contract.ENV_OPERATOR_METRICS_PORT, "")),
    )


def parse_port(text: str) -> int | None:
    """A TCP port, or None for an empty string."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:  # noqa: PLR2004 - the port range
        msg = f"a port must be a number from 1 to 65535, got {text!r}"
        raise ValueError(msg)
    return int(text)


def parse_secret_ref(text: str) -> tuple[str, str]:
    """``NAME`` or ``NAME:KEY`` as (name, key); the key defaults to ``url``."""
    name, _, key = text.partition(":")
    if not name:
        msg = f"a Secret reference needs a name (NAME or NAME:KEY), got {text!r}"
        raise ValueError(msg)
    return name, key or contract.DEFAULT_REDIS_SECRET_KEY
