"""The few Kubernetes API calls the operator makes itself, beside kopf's own.

Owns the Kubernetes client: loading its configuration (in-cluster, else the
kubeconfig), its calls (as JSON, see ``Kube``), and turning the API server's
refusals into the operator's errors.
Every call is synchronous (the client is); async callers run them in a
thread. It decides nothing: the bodies come from ``pods.py``.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from wasp import contract
from wasp_operator import network_policy
from wasp_operator.errors import KubernetesUnavailableError, SecretMissingError
from wasp_operator.pods import build_auth_secret, new_auth_key
from wasp_operator.sessions import SecretRef, Session

# Calls in flight at once: the threads async callers run them in, and the client's
# connection pool. The defaults (6 threads and 10 connections on 2 cores) queue a
# thousand sessions' cycles behind six calls at a time (bench/sessions_scale.py).
API_CONCURRENCY = 32
MERGE_PATCH = "application/merge-patch+json"


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
    """The operator's own calls: pods, Secrets (auth key, Redis credentials) and the status.

    Bodies go out and come back as plain JSON: the client's typed methods
    would validate each outgoing dict into its model and each answer into
    another (a pod costs about 4 ms of CPU that way, 2 ms as JSON: measured
    against the harness's API server), for objects wasp builds as dicts
    (``pods.py``, ``network_policy.py``) and mostly does not read back. The
    client still does what it is for: the configuration, authentication,
    TLS and the connection pool.
    """

    def __init__(self) -> None:
        """Use the configuration loaded by ``load_configuration``."""
        configuration = kubernetes.client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = API_CONCURRENCY
        self.api_client = kubernetes.client.ApiClient(configuration)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,  # noqa: ANN401 - any JSON
        *,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; its JSON answer. Raises ``ApiException`` (with the status) unless 2xx."""
        request = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request)
        data = response.read()  # type: ignore[no-untyped-call]
        if not HTTPStatus.OK <= response.status < HTTPStatus.MULTIPLE_CHOICES:
            raise ApiException(status=response.status, reason=response.reason)
        answer: dict[str, Any] = json.loads(data) if data else {}
        return answer

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create a pod: the pod as created; None if one of that name exists already."""
        meta = body["metadata"]
        try:
            return self._create_unless_exists(f"/api/v1/namespaces/{meta['namespace']}/pods", body)
        except ApiException as error:
            raise _failed(error, "create", "pod", meta["name"]) from error

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a pod gracefully (its own grace period), only the one with ``uid`` if given."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            self._call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", options)
        except ApiException as error:
            if error.status in {HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT}:
                return  # gone already, or replaced by another pod of that name
            raise _failed(error, "delete", "pod", name) from error

    def pod_exists(self, namespace: str, name: str) -> bool:
        """Whether a pod object of that name exists (terminating ones included)."""
        try:
            self._call("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                return False
            raise _failed(error, "read", "pod", name) from error
        return True

    def ensure_auth_secret(self, session: Session) -> bool:
        """Create the session's auth-key Secret unless it exists; True if created.

        One call either way: a create, refused (a conflict) when it exists.
        An existing Secret is never replaced: its key encrypts the auth state.
        """
        body = build_auth_secret(session, new_auth_key())
        return self.create_secret(body)

    def _read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret as JSON, or None if it does not exist."""
        try:
            return self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                return None
            raise _failed(error, "read", "secret", name) from error

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's decoded data, or None if it does not exist."""
        secret = self._read_secret(namespace, name)
        if secret is None:
            return None
        data: dict[str, str] = secret.get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def create_secret(self, body: dict[str, Any]) -> bool:
        """Create a Secret; False if one of that name exists already."""
        meta = body["metadata"]
        secrets = f"/api/v1/namespaces/{meta['namespace']}/secrets"
        try:
            return self._create_unless_exists(secrets, body) is not None
        except ApiException as error:
            raise _failed(error, "create", "secret", meta["name"]) from error

    def patch_secret(self, namespace: str, name: str, string_data: dict[str, str]) -> None:
        """Merge new values into a Secret's data (``stringData``: the API server encodes them)."""
        try:
            self._call(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/secrets/{name}",
                {"stringData": string_data},
                content_type=MERGE_PATCH,
            )
        except ApiException as error:
            raise _failed(error, "patch", "secret", name) from error

    def secret_value(self, namespace: str, ref: SecretRef) -> str:
        """The decoded value of a key in a Secret."""
        secret = self._read_secret(namespace, ref.name)
        if secret is None:
            msg = f"Secret {namespace}/{ref.name} does not exist"
            raise SecretMissingError(msg)
        data = secret.get("data") or {}
        if ref.key not in data:
            msg = f"Secret {namespace}/{ref.name} has no key {ref.key!r}"
            raise SecretMissingError(msg)
        return base64.b64decode(data[ref.key]).decode()

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the status subresource of a WhatsAppSession."""
        path = (
            f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{namespace}"
            f"/{contract.PLURAL}/{name}/status"
        )
        try:
            self._call("PATCH", path, {"status": patch}, content_type=MERGE_PATCH)
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                return  # deleted meanwhile: nothing to report on
            raise _failed(error, "patch", "status of", name) from error

    def apply_network_policy(self, body: dict[str, Any], *, absent: bool = False) -> bool:
        """Create a NetworkPolicy, or replace one whose spec, labels or owner differ.

        True when it wrote; False when the live one already matches (a resync
        writes nothing) or another writer got there first (the next call looks
        again). ``absent``: none is known to exist (create first, read only on
        a conflict). Bodies come from ``network_policy.py``.
        """
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        policies = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
        try:
            if absent and self._create_unless_exists(policies, body) is not None:
                return True
            try:
                live = self._call("GET", f"{policies}/{name}")
            except ApiException as error:
                if error.status != HTTPStatus.NOT_FOUND:
                    raise
                self._call("POST", policies, body)
                return True
            if network_policy.matches(live, body):
                return False
            replacement = {
                **body,
                "metadata": {**meta, "resourceVersion": live["metadata"].get("resourceVersion")},
            }
            try:
                self._call("PUT", f"{policies}/{name}", replacement)
            except ApiException as error:
                if error.status != HTTPStatus.NOT_FOUND:
                    raise
                # Gone meanwhile (the garbage collector removes it when its
                # previous owner went): make it anew.
                self._call("POST", policies, body)
        except ApiException as error:
            if error.status == HTTPStatus.CONFLICT:
                return False
            raise _failed(error, "write", "networkpolicy", name) from error
        return True

    def _create_unless_exists(self, collection: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create it: the object as created; None if one of that name exists already."""
        try:
            return self._call("POST", collection, body)
        except ApiException as error:
            if error.status == HTTPStatus.CONFLICT:
                return None
            raise
