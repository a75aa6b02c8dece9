"""The few Kubernetes API calls the operator makes itself, beside kopf's own.

Owns the Kubernetes client: loading its configuration (in-cluster, else the
kubeconfig), and turning the client's exceptions into the operator's errors.
Every call is synchronous (the client is); async callers run them in a
thread. It decides nothing: the bodies come from ``pods.py``.
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from wasp import contract
from wasp_operator.errors import KubernetesUnavailableError, SecretMissingError
from wasp_operator.pods import build_auth_secret, new_auth_key
from wasp_operator.sessions import SecretRef, Session

# Calls in flight at once: the threads async callers run them in, and the client's
# connection pool. The defaults (6 threads and 10 connections on 2 cores) queue a
# thousand sessions' cycles behind six calls at a time (bench/sessions_scale.py).
API_CONCURRENCY = 32


def api_executor() -> ThreadPoolExecutor:
    """The thread pool for the operator's API calls (the event loop's default executor)."""
    return ThreadPoolExecutor(API_CONCURRENCY, thread_name_prefix="wasp-api")


def load_configuration() -> None:
    """Configure the client: the pod's service account in a cluster, else the kubeconfig."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def _failed(error: ApiException, verb: str, kind: str, name: str) -> KubernetesUnavailableError:
    message = f"{verb} {kind} {name}: {error.status} {error.reason}"
    return KubernetesUnavailableError(message)


class Kube:
    """The operator's own calls: pods, Secrets (auth key, Redis credentials) and the status."""

    def __init__(self) -> None:
        """Use the configuration loaded by ``load_configuration``."""
        configuration = kubernetes.client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = API_CONCURRENCY
        client = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    def create_pod(self, body: dict[str, Any]) -> bool:
        """Create a pod; False if one of that name exists already.

        Bodies are plain dicts (``pods.py``): the client serializes them as they are.
        """
        meta = body["metadata"]
        try:
            self.core.create_namespaced_pod(meta["namespace"], body)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status == HTTPStatus.CONFLICT:
                return False
            raise _failed(error, "create", "pod", meta["name"]) from error
        return True

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a pod gracefully (its own grace period), only the one with ``uid`` if given."""
        options = kubernetes.client.V1DeleteOptions(
            propagation_policy="Background",
            preconditions=kubernetes.client.V1Preconditions(uid=uid) if uid else None,
        )
        try:
            self.core.delete_namespaced_pod(name, namespace, body=options)
        except ApiException as error:
            if error.status in {HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT}:
                return  # gone already, or replaced by another pod of that name
            raise _failed(error, "delete", "pod", name) from error

    def pod_exists(self, namespace: str, name: str) -> bool:
        """Whether a pod object of that name exists (terminating ones included)."""
        try:
            self.core.read_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                return False
            raise _failed(error, "read", "pod", name) from error
        return True

    def ensure_auth_secret(self, session: Session) -> bool:
        """Create the session's auth-key Secret unless it exists; True if created."""
        try:
            self.core.read_namespaced_secret(session.auth_secret_name, session.namespace)
        except ApiException as error:
            if error.status != HTTPStatus.NOT_FOUND:
                raise _failed(error, "read", "secret", session.auth_secret_name) from error
        else:
            return False
        try:
            self.core.create_namespaced_secret(
                session.namespace,
                build_auth_secret(session, new_auth_key()),  # type: ignore[arg-type]
            )
        except ApiException as error:
            if error.status == HTTPStatus.CONFLICT:
                return False
            raise _failed(error, "create", "secret", session.auth_secret_name) from error
        return True

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's decoded data, or None if it does not exist."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                return None
            raise _failed(error, "read", "secret", name) from error
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}

    def create_secret(self, body: dict[str, Any]) -> bool:
        """Create a Secret; False if one of that name exists already."""
        meta = body["metadata"]
        try:
            self.core.create_namespaced_secret(meta["namespace"], body)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status == HTTPStatus.CONFLICT:
                return False
            raise _failed(error, "create", "secret", meta["name"]) from error
        return True

    def patch_secret(self, namespace: str, name: str, string_data: dict[str, str]) -> None:
        """Merge new values into a Secret's data (``stringData``: the API server encodes them)."""
        try:
            self.core.patch_namespaced_secret(name, namespace, {"stringData": string_data})
        except ApiException as error:
            raise _failed(error, "patch", "secret", name) from error

    def secret_value(self, namespace: str, ref: SecretRef) -> str:
        """The decoded value of a key in a Secret."""
        try:
            secret = self.core.read_namespaced_secret(ref.name, namespace)
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                msg = f"Secret {namespace}/{ref.name} does not exist"
                raise SecretMissingError(msg) from error
            raise _failed(error, "read", "secret", ref.name) from error
        data = secret.data or {}
        if ref.key not in data:
            msg = f"Secret {namespace}/{ref.name} has no key {ref.key!r}"
            raise SecretMissingError(msg)
        return base64.b64decode(data[ref.key]).decode()

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the status subresource of a WhatsAppSession."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                contract.GROUP,
                contract.VERSION,
                namespace,
                contract.PLURAL,
                name,
                {"status": patch},
            )
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                return  # deleted meanwhile: nothing to report on
            raise _failed(error, "patch", "status of", name) from error

    def apply_network_policy(self, body: dict[str, Any]) -> bool:
        """Create a NetworkPolicy, or replace one whose spec, labels or owner differ.

        True when it wrote; False when the live one already matches (a resync
        writes nothing) or another writer got there first (the next call looks
        again). Bodies come from ``network_policy.py``.
        """
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        networking = kubernetes.client.NetworkingV1Api(self.core.api_client)
        try:
            live = networking.read_namespaced_network_policy(name, namespace)
        except ApiException as error:
            if error.status != HTTPStatus.NOT_FOUND:
                raise _failed(error, "read", "networkpolicy", name) from error
            live = None
        try:
            if live is None:
                networking.create_namespaced_network_policy(namespace, body)  # type: ignore[arg-type]
                return True
            seen = networking.api_client.sanitize_for_serialization(live)
            wanted = ("labels", "ownerReferences")
            if seen.get("spec") == body["spec"] and all(
                seen["metadata"].get(key) == meta.get(key) for key in wanted
            ):
                return False
            replacement = {
                **body,
                "metadata": {**meta, "resourceVersion": seen["metadata"].get("resourceVersion")},
            }
            try:
                networking.replace_namespaced_network_policy(name, namespace, replacement)  # type: ignore[arg-type]
            except ApiException as error:
                if error.status != HTTPStatus.NOT_FOUND:
                    raise
                # Gone meanwhile (the garbage collector removes it when its
                # previous owner went): make it anew.
                networking.create_namespaced_network_policy(namespace, body)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status == HTTPStatus.CONFLICT:
                return False
            raise _failed(error, "write", "networkpolicy", name) from error
        return True
