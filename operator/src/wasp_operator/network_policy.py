"""The NetworkPolicy of a session pod, built as a plain dict by a pure function.

Owns what may reach a session pod and what it may reach, and nothing else:

- ingress: only its health port (``/healthz``, ``/readyz``, ``/metrics``),
  and only from the metrics scraper the operator is configured with (pods
  with ``scraper_labels`` in ``scraper_namespaces``); none when no scraper is
  configured. Probes need no rule: NetworkPolicy never blocks a pod's own
  node, where the kubelet probes from. With session pods on the node's
  network (``config.session_host_ports``) each has its own health port: the
  rule names the port by its name, ``health``. NetworkPolicies do not apply
  to host-network pods at all (network plugins enforce them on the pod
  network only); the policy is still made, for a plugin that would.
- egress: DNS (53, UDP and TCP), Redis (its port, from the Redis URL) and
  WhatsApp (TCP 443 and 5222 to any public address). WhatsApp's servers are
  behind Meta's edge, whose addresses change without notice and which a
  NetworkPolicy cannot name (it selects addresses, never host names), so the
  WhatsApp rule stays "any public address"; private, shared, link-local and
  loopback ranges are excepted, so a pod cannot reach the cluster's own
  services (the API server, other tenants' pods) on those ports.
- egress for a webhook (``spec.webhook``): its URL's port to public
  addresses (unless WhatsApp's rule opens it already), and to the private
  networks the operator allows webhooks (``webhook_allowed_networks``).

The policy selects exactly one session's pod by its labels and is owned by
the WhatsAppSession (garbage collection removes it with the resource). It
never talks to the API server: ``kube.py`` applies it, and the operator
watches the live ones (``handlers.py``'s index of their ``fingerprint``), so a
resync writes (and reads) nothing while one is as built.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from wasp import contract
from wasp_operator.config import OperatorConfig
from wasp_operator.pods import HEALTH_PORT_NAME, labels_of, owner_reference
from wasp_operator.sessions import Session

DNS_PORT: Final = 53
DEFAULT_REDIS_PORT: Final = 6379
WHATSAPP_PORTS: Final = (443, 5222)  # HTTPS/WebSocket, and XMPP-style chat
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"  # set by the API server
# Never WhatsApp: private (RFC 1918), shared (RFC 6598: some clouds' pod
# networks), link-local (cloud metadata endpoints) and loopback addresses.
NOT_THE_INTERNET_V4: Final = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
)
NOT_THE_INTERNET_V6: Final = ("fc00::/7", "fe80::/10", "::1/128")


def redis_port_of(url: str) -> int:
    """The TCP port of a Redis URL (``redis://`` or ``rediss://``); 6379 when it names none."""
    try:
        port = urlsplit(url).port
    except ValueError:  # a malformed port: the session will say so, the policy stays usable
        port = None
    return port or DEFAULT_REDIS_PORT


def pod_selector(session: Session) -> dict[str, Any]:
    """The labels that select the session's one pod and no other wasp pod."""
    return {
        "matchLabels": {
            contract.LABEL_NAME: contract.APP_NAME,
            contract.LABEL_COMPONENT: contract.SESSION_COMPONENT,
            contract.LABEL_SESSION: session.name,
        }
    }


def _ports(*ports: int | str, protocols: tuple[str, ...] = ("TCP",)) -> list[dict[str, Any]]:
    return [{"protocol": protocol, "port": port} for port in ports for protocol in protocols]


def ingress_rules(config: OperatorConfig) -> list[dict[str, Any]]:
    """Only the scraper, only to the health port; nothing when no scraper is configured."""
    if not config.scraper_namespaces:
        return []
    namespaces = {
        "matchExpressions": [
            {
                "key": NAMESPACE_NAME_LABEL,
                "operator": "In",
                "values": list(config.scraper_namespaces),
            }
        ]
    }
    pods = {"matchLabels": dict(config.scraper_labels)} if config.scraper_labels else {}
    # On the node's network each pod has its own health port: name it, not its number.
    health: int | str = (
        HEALTH_PORT_NAME if config.session_host_ports is not None else contract.SESSION_HEALTH_PORT
    )
    return [
        {
            "from": [{"namespaceSelector": namespaces, "podSelector": pods}],
            "ports": _ports(health),
        }
    ]


def _internet() -> list[dict[str, Any]]:
    return [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NOT_THE_INTERNET_V4)}},
        {"ipBlock": {"cidr": "::/0", "except": list(NOT_THE_INTERNET_V6)}},
    ]


def egress_rules(redis_port: int) -> list[dict[str, Any]]:
    """DNS and Redis anywhere (Redis may be in or out of the cluster); WhatsApp on the internet."""
    return [
        {"ports": _ports(DNS_PORT, protocols=("UDP", "TCP"))},
        {"ports": _ports(redis_port)},
        {"to": _internet(), "ports": _ports(*WHATSAPP_PORTS)},
    ]


def webhook_port_of(url: str) -> int | None:
    """The TCP port a webhook URL names (443 for https, 80 for http); None when malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    return port or {"https": 443, "http": 80}.get(parts.scheme)


def webhook_rules(session: Session, config: OperatorConfig) -> list[dict[str, Any]]:
    """The webhook's port to public addresses (unless WhatsApp's opens it) and allowed networks.

    The session checks every address itself (``wasp_session.webhook_target``);
    the policy is the second fence, for the same rule.
    """
    port = None if session.webhook is None else webhook_port_of(session.webhook.url)
    if port is None:
        return []
    rules: list[dict[str, Any]] = []
    if port not in WHATSAPP_PORTS:
        rules.append({"to": _internet(), "ports": _ports(port)})
    if config.webhook_allowed_networks:
        allowed = [{"ipBlock": {"cidr": cidr}} for cidr in config.webhook_allowed_networks]
        rules.append({"to": allowed, "ports": _ports(port)})
    return rules


def build_network_policy(
    session: Session, config: OperatorConfig, redis_port: int = DEFAULT_REDIS_PORT
) -> dict[str, Any]:
    """The session pod's NetworkPolicy (named like the pod), owned by its WhatsAppSession.

    ``redis_port`` is the port of the session's Redis (``redis_port_of`` its URL).
    """
    spec: dict[str, Any] = {
        "podSelector": pod_selector(session),
        "policyTypes": ["Ingress", "Egress"],
        "egress": egress_rules(redis_port) + webhook_rules(session, config),
    }
    if ingress := ingress_rules(config):  # none: "Ingress" in policyTypes denies everything
        spec["ingress"] = ingress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": session.pod_name,
            "namespace": session.namespace,
            "labels": labels_of(session),
            "ownerReferences": [owner_reference(session)],
        },
        "spec": spec,
    }


# What ``fingerprint`` covers: the spec, and these of the metadata.
COMPARED_METADATA: Final = ("labels", "ownerReferences")


def fingerprint(policy: Mapping[str, Any]) -> str:
    """A digest of what wasp keeps of a NetworkPolicy: its spec, labels and owner.

    The same for a live one (the API server's JSON, defaults filled in) and
    the one ``build_network_policy`` makes when they match: the operator's
    index keeps this (32 characters), not the policy, for every session.
    """
    meta: Mapping[str, Any] = policy.get("metadata") or {}
    compared = {
        "spec": policy.get("spec"),
        "metadata": {key: meta.get(key) for key in COMPARED_METADATA},
    }
    text = json.dumps(compared, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def matches(live: Mapping[str, Any], built: Mapping[str, Any]) -> bool:
    """Whether a live NetworkPolicy is the one ``built`` describes."""
    return fingerprint(live) == fingerprint(built)
