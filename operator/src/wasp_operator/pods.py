"""The session pod and its auth-key Secret, built as plain dicts by pure functions.

Owns every setting of the pod: its security (non-root, read-only root
filesystem, no capabilities, seccomp, no service-account token), its probes,
its default resources, its network (the pod network, or the node's with a
health port of its own: ``host_port_of``), its environment (names from
``wasp.contract``; no secret at all: the pod's two Secrets, its auth key and
its own Redis credential, are read-only files), which images it may run (the
operator's allowlist), and the spec hash that tells a pod built for an older
spec.
It never talks to the API server: ``reconcile.py`` decides, ``kube.py`` acts.

The hash covers what the session asks for (its ``Session`` fields, its own
image override and the Redis Secret), not the operator's own code, version,
default session image or default resources, nor how the pod is laid out
(env, volumes, network, health port): upgrading the operator (whose chart
moves the default image with it, or puts session pods on the node's
network) restarts no tenant. A pod created later (a spec change, a lost
pod) gets the new default image and layout; a changed spec or
``podTemplate.image`` replaces the pod at once. What the session container
must be given to run at all (how its secrets arrive) is versioned apart
(``contract.POD_CONTRACT_VERSION``, an annotation): changing it replaces
every pod once.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from wasp import contract
from wasp_operator.config import OperatorConfig
from wasp_operator.errors import OperatorError
from wasp_operator.sessions import SecretRef, Session

RUN_AS_USER = 65532  # "nonroot" of distroless images
TERMINATION_GRACE_SECONDS = 60  # time for a clean checkpoint of the auth state on SIGTERM
HEALTH_PORT_NAME = "health"
LOOPBACK = "127.0.0.1"  # where the kubelet probes a pod on the node's network
DATA_VOLUME = "data"
TMP_VOLUME = "tmp"
AUTH_VOLUME = "auth-key"
REDIS_VOLUME = "redis-credential"
WEBHOOK_VOLUME = "webhook-secret"  # optional: a missing Secret or key is the session's to report
# Owner-read only. The kubelet makes the files root-owned and, with the pod's
# fsGroup, group-readable (0440): the session's user reads them through its group.
SECRET_FILE_MODE = 0o400
HASH_LENGTH = 16
# The session container's resources when its podTemplate names none. Sized for
# one session: Python, the RQ worker and neonize (whatsmeow, a Go library:
# ~70 MiB once imported) with its SQLite store, plus the short-lived child
# process that snapshots the store. The CPU limit leaves a start (decrypting
# and restoring the store) unthrottled and caps a runaway or hostile pod.
DEFAULT_RESOURCES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "requests": MappingProxyType({"cpu": "50m", "memory": "128Mi"}),
        "limits": MappingProxyType({"cpu": "1", "memory": "512Mi"}),
    }
)
# Fields of a Session that say which resource it is, or what its deletion does, not what its
# pod runs: changing one never replaces the pod.
IDENTITY_FIELDS = frozenset(
    {"name", "namespace", "uid", "generation", "suspend", "deleting", "unlink_on_delete"}
)
# Settings added since pods were first hashed: hashed only when set, so the pod of a
# session that does not use one keeps its hash (an upgrade restarts no tenant).
ADDED_OPTIONAL_FIELDS = frozenset({"auto_reply_text", "webhook"})


def redis_secret_of(session: Session, config: OperatorConfig) -> SecretRef:
    """The Secret with the session's Redis URL: its own, else the operator's default."""
    return session.redis_secret or SecretRef(config.redis_secret, config.redis_secret_key)


def image_of(session: Session, config: OperatorConfig) -> str:
    """The session container's image: the resource's override, else the operator's."""
    return session.image or config.session_image


def image_refusal(session: Session, config: OperatorConfig) -> str | None:
    """Why the session's ``podTemplate.image`` may not run, or None when it may.

    Allowed: no override, or an override spelled exactly as one of the
    operator's allowed images (its default session image always is one).
    The reason is one sentence naming the image (cut, it is the resource's
    input) and every allowed image.
    """
    if session.image is None or session.image in config.allowed_images:
        return None
    allowed = ", ".join(config.allowed_images)
    return (
        f"spec.podTemplate.image {_echo(session.image)} is not in the operator's "
        f"allowed session images ({allowed}); use one of them, or have the platform "
        f"add it to {contract.ENV_OPERATOR_SESSION_IMAGES}."
    )


def _echo(text: str) -> str:
    """Input quoted in a message: cut to ``MAX_ECHOED_INPUT_CHARS``, on one line."""
    limit = contract.MAX_ECHOED_INPUT_CHARS
    cut = text if len(text) <= limit else text[:limit] + "..."
    return repr(cut)


def spec_hash(session: Session, config: OperatorConfig) -> str:
    """A short digest of everything the session's pod is built from."""
    inputs = {
        key: value
        for key, value in dataclasses.asdict(session).items()
        if key not in IDENTITY_FIELDS and not (key in ADDED_OPTIONAL_FIELDS and value is None)
    }
    inputs["image"] = session.image  # the override only: the default moves with upgrades
    inputs["redis_secret"] = dataclasses.asdict(redis_secret_of(session, config))
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def labels_of(session: Session) -> dict[str, str]:
    """The labels of every object the operator makes for a session."""
    return {
        contract.LABEL_NAME: contract.APP_NAME,
        contract.LABEL_COMPONENT: contract.SESSION_COMPONENT,
        contract.LABEL_MANAGED_BY: contract.OPERATOR_NAME,
        contract.LABEL_TENANT: session.tenant,
        contract.LABEL_SESSION: session.name,
    }


def owner_reference(session: Session) -> dict[str, Any]:
    """A controller reference to the WhatsAppSession (garbage collection follows it)."""
    return {
        "apiVersion": f"{contract.GROUP}/{contract.VERSION}",
        "kind": contract.KIND,
        "name": session.name,
        "uid": session.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _value(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


# The pod's Secrets: (volume, Secret name of a session, data key, mount directory).
def secret_files(session: Session) -> tuple[tuple[str, str, str, str], ...]:
    """The Secrets mounted into the session's pod, and only these.

    Its auth key, its Redis URL, and the key its webhook signs with (when
    ``spec.webhook`` is set: the tenant's own Secret, in its namespace).
    """
    webhook: tuple[tuple[str, str, str, str], ...] = ()
    if session.webhook is not None:
        ref = session.webhook.secret
        webhook = ((WEBHOOK_VOLUME, ref.name, ref.key, contract.SESSION_WEBHOOK_SECRET_DIR),)
    return (
        (
            AUTH_VOLUME,
            session.auth_secret_name,
            contract.AUTH_SECRET_KEY,
            contract.SESSION_AUTH_SECRET_DIR,
        ),
        (
            REDIS_VOLUME,
            contract.session_redis_secret_name(session.name),
            contract.REDIS_SECRET_URL_KEY,
            contract.SESSION_REDIS_SECRET_DIR,
        ),
        *webhook,
    )


def host_port_of(key: str, ports: tuple[int, int], taken: Collection[int]) -> int:
    """A port of ``ports`` (first, last) for ``key`` (``namespace/name``), not in ``taken``.

    Each key starts at its own place in the range (its SHA-256 modulo the
    range's size) and takes the first port from there, wrapping, that no
    other session pod holds: the same key gets the same port while that one
    is free, and many keys spread over the range.
    """
    first, last = ports
    count = last - first + 1
    start = int(hashlib.sha256(key.encode()).hexdigest(), 16) % count
    used = frozenset(taken)
    for step in range(count):
        port = first + (start + step) % count
        if port not in used:
            return port
    msg = (
        f"every session host port from {first} to {last} is taken by another session pod: "
        f"widen {contract.ENV_OPERATOR_SESSION_HOST_PORTS} (the chart's "
        "sessionPods.healthPortRange) or run fewer sessions"
    )
    raise OperatorError(msg)


def health_port_of(session: Session, config: OperatorConfig, taken: Collection[int] = ()) -> int:
    """The session container's health port: 8080 on the pod network, else its own host port."""
    if config.session_host_ports is None:
        return contract.SESSION_HEALTH_PORT
    return host_port_of(f"{session.namespace}/{session.name}", config.session_host_ports, taken)


def host_ports_in(pod: Mapping[str, Any]) -> tuple[int, ...]:
    """Every host port a pod body's containers hold on their node (none on the pod network)."""
    spec = pod.get("spec") or {}
    return tuple(
        int(port["hostPort"])
        for each in spec.get("containers") or ()
        for port in each.get("ports") or ()
        if port.get("hostPort")
    )


def environment(
    session: Session,
    config: OperatorConfig,
    health_port: int = contract.SESSION_HEALTH_PORT,
) -> list[dict[str, Any]]:
    """The session container's env: settings by value, secrets only as paths to their files."""
    env = [
        _value(contract.ENV_TENANT, session.tenant),
        {
            "name": contract.ENV_POD_NAME,
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        },
        _value(contract.ENV_OWNER_UID, session.uid),
        _value(
            contract.ENV_REDIS_URL_FILE,
            f"{contract.SESSION_REDIS_SECRET_DIR}/{contract.REDIS_SECRET_URL_KEY}",
        ),
        _value(
            contract.ENV_AUTH_KEY_FILE,
            f"{contract.SESSION_AUTH_SECRET_DIR}/{contract.AUTH_SECRET_KEY}",
        ),
        _value(contract.ENV_TRANSPORT, session.transport),
        _value(contract.ENV_PAIRING_METHOD, session.pairing_method),
        _value(contract.ENV_PAIRING_MAX_WINDOWS, session.max_windows),
        _value(contract.ENV_MESSAGE_TEMPLATE, session.message_template),
        _value(contract.ENV_TTL_SECONDS, session.ttl_seconds),
        _value(contract.ENV_RETRY_ATTEMPTS, session.retry_attempts),
        _value(contract.ENV_RETRY_BACKOFF_SECONDS, session.retry_backoff_seconds),
        _value(contract.ENV_RATE_PER_MINUTE, session.rate_per_minute),
        _value(contract.ENV_DATA_DIR, contract.SESSION_DATA_DIR),
        _value(contract.ENV_HEALTH_PORT, health_port),
        _value(contract.ENV_LOG_FORMAT, "json"),
    ]
    if session.phone_number:
        env.append(_value(contract.ENV_PAIRING_PHONE, session.phone_number))
    if session.default_region:
        env.append(_value(contract.ENV_DEFAULT_REGION, session.default_region))
    if session.webhook is not None:
        env.extend(webhook_environment(session, config))
    if session.auto_reply_text:
        env.append(_value(contract.ENV_AUTO_REPLY_TEXT, session.auto_reply_text))
    return env


def webhook_environment(session: Session, config: OperatorConfig) -> list[dict[str, Any]]:
    """The webhook's env: its URL, its key's file, the private networks it may reach."""
    assert session.webhook is not None  # noqa: S101 - the caller checked
    ref = session.webhook.secret
    env = [
        _value(contract.ENV_WEBHOOK_URL, session.webhook.url),
        _value(
            contract.ENV_WEBHOOK_SECRET_FILE, f"{contract.SESSION_WEBHOOK_SECRET_DIR}/{ref.key}"
        ),
        _value(contract.ENV_WEBHOOK_SECRET_REF, f"{ref.name}/{ref.key}"),
    ]
    if config.webhook_allowed_networks:
        networks = ",".join(config.webhook_allowed_networks)
        env.append(_value(contract.ENV_WEBHOOK_ALLOWED_NETWORKS, networks))
    return env


def _probe(path: str, period: int, failures: int, *, on_node_network: bool) -> dict[str, Any]:
    """An HTTP probe of the health port; on the node's network, asked on 127.0.0.1.

    A host-network pod shares the kubelet's network, so the kubelet reaches it
    on the loopback address: the probe never leaves the node, whatever the
    node's own address is.
    """
    http_get: dict[str, Any] = {"path": path, "port": HEALTH_PORT_NAME}
    if on_node_network:
        http_get["host"] = LOOPBACK
    return {
        "httpGet": http_get,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def container(
    session: Session, config: OperatorConfig, health_port: int = contract.SESSION_HEALTH_PORT
) -> dict[str, Any]:
    """The session container: locked down, probed, configured by env.

    On the node's network (``config.session_host_ports``), its health port is
    also its host port: the scheduler then never puts two pods holding the
    same port on one node.
    """
    on_node = config.session_host_ports is not None
    port: dict[str, Any] = {"name": HEALTH_PORT_NAME, "containerPort": health_port}
    if on_node:
        port["hostPort"] = health_port
    port["protocol"] = "TCP"
    spec: dict[str, Any] = {
        "name": contract.SESSION_CONTAINER,
        "image": image_of(session, config),
        "imagePullPolicy": "IfNotPresent",
        "command": [contract.SESSION_COMMAND],
        "env": environment(session, config, health_port),
        "ports": [port],
        # Restoring the auth state and connecting can take a while: the startup
        # probe holds the liveness probe off until the process first answers.
        "startupProbe": _probe(contract.HEALTH_LIVE_PATH, 2, 60, on_node_network=on_node),
        "livenessProbe": _probe(contract.HEALTH_LIVE_PATH, 10, 3, on_node_network=on_node),
        "readinessProbe": _probe(contract.HEALTH_READY_PATH, 5, 1, on_node_network=on_node),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": contract.SESSION_DATA_DIR},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 - the container's own tmpfs
            *(
                {"name": volume, "mountPath": directory, "readOnly": True}
                for volume, _, _, directory in secret_files(session)
            ),
        ],
        "resources": resources_of(session),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return spec


def resources_of(session: Session) -> dict[str, Any]:
    """The container's resources: the podTemplate's, whole, else ``DEFAULT_RESOURCES``."""
    chosen = session.resources or DEFAULT_RESOURCES
    return {kind: dict(quantities) for kind, quantities in chosen.items()}


def secret_volumes(session: Session) -> list[dict[str, Any]]:
    """One read-only Secret volume per Secret of the pod, limited to the one key it needs.

    The webhook's is optional: a missing Secret or key must not keep the pod
    (and its OTPs) from starting; the session says what is missing instead.
    """
    return [
        {
            "name": volume,
            "secret": {
                "secretName": secret,
                "defaultMode": SECRET_FILE_MODE,
                "items": [{"key": key, "path": key}],
                **({"optional": True} if volume == WEBHOOK_VOLUME else {}),
            },
        }
        for volume, secret, key, _ in secret_files(session)
    ]


def build_pod(
    session: Session, config: OperatorConfig, taken_ports: Collection[int] = ()
) -> dict[str, Any]:
    """The one pod of a session, owned by its WhatsAppSession.

    ``taken_ports``: the host ports the operator's other session pods hold,
    which this one's health port avoids (only on the node's network).
    """
    health_port = health_port_of(session, config, taken_ports)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(session, config, health_port)],
        "volumes": [
            {"name": DATA_VOLUME, "emptyDir": {}},
            {"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            *secret_volumes(session),
        ],
    }
    if config.session_host_ports is not None:
        # The node's network: no pod network needed. DNS still resolves the cluster's names.
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if session.node_selector:
        pod_spec["nodeSelector"] = dict(session.node_selector)
    if session.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in session.tolerations]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": session.pod_name,
            "namespace": session.namespace,
            "labels": labels_of(session),
            "annotations": {
                contract.ANNOTATION_SPEC_HASH: spec_hash(session, config),
                contract.ANNOTATION_POD_CONTRACT: contract.POD_CONTRACT_VERSION,
            },
            "ownerReferences": [owner_reference(session)],
        },
        "spec": pod_spec,
    }


def new_auth_key() -> str:
    """A fresh auth key: 32 random bytes, base64."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def build_auth_secret(session: Session, key: str) -> dict[str, Any]:
    """The Secret with the session's auth key, owned by its WhatsAppSession."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": session.auth_secret_name,
            "namespace": session.namespace,
            "labels": labels_of(session),
            "ownerReferences": [owner_reference(session)],
        },
        "stringData": {contract.AUTH_SECRET_KEY: key},
    }
