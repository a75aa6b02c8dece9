"""What ``kubectl wasp`` reads from the API server, as the kubeconfig's user.

Owns loading the kubeconfig as kubectl does (``--kubeconfig``, else
``$KUBECONFIG``, else ``~/.kube/config``; ``--context``; the namespace from
``-n``, else from the context, else ``default``), and reading one
WhatsAppSession, the Secret its ``status.apiCredentials`` names (the
tenant API's own least-privilege Redis URL, never the admin's), the
resource's recent Events, and a Service's ready pod for ``tunnel``.

Every API error becomes one ``PluginError`` sentence that says what to do
(no such session, no access, the API server unreachable). Must not talk to
Redis: ``cli`` and ``tunnel`` do.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from wasp import contract
from wasp.errors import WaspError

__all__ = ["Backend", "Cluster", "PluginError", "SessionResource", "connect"]

_NOT_FOUND: Final = 404
_FORBIDDEN: Final = 403
_UNAUTHORIZED: Final = 401
EVENTS_SHOWN: Final = 10
_REQUEST_TIMEOUT_SECONDS: Final = 15


class PluginError(WaspError):
    """A failure of ``kubectl wasp``, worded as what the user should do next."""


@dataclass(frozen=True)
class SessionResource:
    """One WhatsAppSession as the API server returned it."""

    name: str
    namespace: str
    uid: str
    tenant: str
    spec: dict[str, Any]
    status: dict[str, Any]

    @property
    def api_secret_name(self) -> str | None:
        """The Secret with the tenant API's Redis URL, once the operator made it."""
        credentials = self.status.get("apiCredentials") or {}
        name = credentials.get("secretName")
        return str(name) if name else None


@dataclass(frozen=True)
class Backend:
    """A ready pod behind a Service, and the pod's port for the Service's port."""

    pod: str
    namespace: str
    port: int


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    """The cluster of ``context`` in ``kubeconfig`` (kubectl's defaults for each ``None``)."""
    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as error:
        where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
        msg = f"cannot use the kubeconfig ({where}): {error}; pass --kubeconfig or --context"
        raise PluginError(msg) from error
    chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
    default_namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
    return Cluster(api, namespace or default_namespace)


class Cluster:
    """The API server, as one kubeconfig user, in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        """Talk to ``api`` about objects in ``namespace``."""
        self.api = api
        self.namespace = namespace
        self.server = str(api.configuration.host)
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._discovery = client.DiscoveryV1Api(api)

    def close(self) -> None:
        """Close the connections to the API server."""
        self.api.close()  # type: ignore[no-untyped-call]

    def session(self, name: str) -> SessionResource:
        """The WhatsAppSession ``name`` of this namespace."""
        try:
            body = self._custom.get_namespaced_custom_object(
                contract.GROUP,
                contract.VERSION,
                self.namespace,
                contract.PLURAL,
                name,
                _request_timeout=_REQUEST_TIMEOUT_SECONDS,
            )
        except ApiException as error:
            raise self._refused(error, f"WhatsAppSession {name!r}", "whatsappsessions") from error
        except urllib3.exceptions.HTTPError as error:
            raise self._unreachable(error) from error
        if not isinstance(body, dict):
            msg = f"the API server answered no object for WhatsAppSession {name!r}"
            raise PluginError(msg)
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        tenant = status.get("tenantId") or spec.get("tenantId") or name
        return SessionResource(
            name=name,
            namespace=self.namespace,
            uid=str(body["metadata"]["uid"]),
            tenant=str(tenant),
            spec=spec,
            status=status,
        )

    def api_redis_url(self, session: SessionResource) -> str:
        """The tenant API's Redis URL, from the Secret ``status.apiCredentials`` names."""
        secret_name = session.api_secret_name
        if secret_name is None:
            msg = (
                f"WhatsAppSession {session.name!r} has no API credential yet "
                "(status.apiCredentials is empty): check that the wasp operator runs "
                f"(kubectl wasp status {session.name} shows its Events)"
            )
            raise PluginError(msg)
        try:
            secret = self._core.read_namespaced_secret(
                secret_name, self.namespace, _request_timeout=_REQUEST_TIMEOUT_SECONDS
            )
        except ApiException as error:
            raise self._refused(error, f"Secret {secret_name!r}", "secrets") from error
        except urllib3.exceptions.HTTPError as error:
            raise self._unreachable(error) from error
        encoded = (secret.data or {}).get(contract.REDIS_SECRET_URL_KEY)
        if not encoded:
            msg = (
                f"Secret {secret_name!r} has no {contract.REDIS_SECRET_URL_KEY!r} key: "
                "the operator writes it again within one resync; try again in a minute"
            )
            raise PluginError(msg)
        return base64.b64decode(encoded).decode()

    def recent_events(self, session: SessionResource) -> list[dict[str, str]]:
        """The resource's last Events (oldest first): time, type, reason, message."""
        selector = f"involvedObject.uid={session.uid}"
        try:
            listed = self._core.list_namespaced_event(
                self.namespace, field_selector=selector, _request_timeout=_REQUEST_TIMEOUT_SECONDS
            )
        except ApiException as error:
            raise self._refused(error, "Events", "events") from error
        except urllib3.exceptions.HTTPError as error:
            raise self._unreachable(error) from error
        events = [
            {
                "time": _event_time(event),
                "type": str(event.type or ""),
                "reason": str(event.reason or ""),
                "message": str(event.message or "").strip(),
            }
            for event in listed.items
        ]
        events.sort(key=lambda event: event["time"])
        return events[-EVENTS_SHOWN:]

    def service_backend(self, service: str, namespace: str, port: int) -> Backend:
        """A ready pod behind ``service``'s ``port``, found through its EndpointSlices."""
        try:
            found = self._core.read_namespaced_service(
                service, namespace, _request_timeout=_REQUEST_TIMEOUT_SECONDS
            )
            slices = self._discovery.list_namespaced_endpoint_slice(
                namespace,
                label_selector=f"kubernetes.io/service-name={service}",
                _request_timeout=_REQUEST_TIMEOUT_SECONDS,
            ).items
        except ApiException as error:
            what = f"Service {service!r}"
            raise self._refused(error, what, "services and endpointslices", namespace) from error
        except urllib3.exceptions.HTTPError as error:
            raise self._unreachable(error) from error
        ports = (found.spec.ports if found.spec else None) or []
        port_name = next((p.name for p in ports if p.port == port), None)
        if not any(p.port == port for p in ports):
            msg = (
                f"Service {service!r} in namespace {namespace!r} has no port {port}: "
                "pass --redis-url"
            )
            raise PluginError(msg)
        for endpoint_slice in slices:
            target = next((p.port for p in endpoint_slice.ports or () if p.name == port_name), None)
            for endpoint in endpoint_slice.endpoints or ():
                ref = endpoint.target_ref
                ready = endpoint.conditions is None or endpoint.conditions.ready is not False
                if target and ready and ref is not None and ref.kind == "Pod":
                    return Backend(pod=str(ref.name), namespace=namespace, port=int(target))
        msg = (
            f"Service {service!r} in namespace {namespace!r} has no ready pod: "
            f"check it with `kubectl get endpointslices -n {namespace} "
            f"-l kubernetes.io/service-name={service}`"
        )
        raise PluginError(msg)

    # ------------------------------------------------------------ errors
    def _refused(
        self, error: ApiException, what: str, resource: str, namespace: str | None = None
    ) -> PluginError:
        namespace = namespace or self.namespace
        if error.status == _NOT_FOUND and resource == "whatsappsessions":
            if _type_missing(str(error.body or "")):
                msg = (
                    "the WhatsAppSession resource type is not installed in this cluster: "
                    "install wasp's chart (helm install wasp charts/wasp) or pick another --context"
                )
                return PluginError(msg)
            msg = (
                f"no {what} in namespace {namespace!r}: list them with "
                f"`kubectl get whatsappsessions -n {namespace}`, or pass -n NAMESPACE"
            )
            return PluginError(msg)
        if error.status == _NOT_FOUND:
            hint = (
                ": the wasp operator makes it again; check that it runs"
                if resource == "secrets"
                else ""
            )
            msg = f"there is no {what} in namespace {namespace!r}{hint}"
            return PluginError(msg)
        if error.status == _FORBIDDEN:
            verb = "list" if resource in ("events", "services and endpointslices") else "get"
            msg = (
                f"no access to {what} in namespace {namespace!r}: your kubeconfig user may not "
                f"{verb} {resource} there; check with `kubectl auth can-i {verb} {resource} "
                f"-n {namespace}` and ask your cluster admin for a Role that allows it"
            )
            return PluginError(msg)
        if error.status == _UNAUTHORIZED:
            msg = (
                f"the API server at {self.server} refused your credentials: log in again or "
                "pick another --context"
            )
            return PluginError(msg)
        msg = f"the API server at {self.server} answered {error.status} {error.reason} for {what}"
        return PluginError(msg)

    def _unreachable(self, error: Exception) -> PluginError:
        msg = (
            f"cannot reach the API server at {self.server} ({type(error).__name__}): check "
            "your network, or pick another --context / --kubeconfig"
        )
        return PluginError(msg)


def _event_time(event: Any) -> str:  # noqa: ANN401 - the client's CoreV1Event model
    """When an Event last happened, as RFC 3339 UTC (events.k8s.io or core fields)."""
    for moment in (event.last_timestamp, event.event_time, event.metadata.creation_timestamp):
        if isinstance(moment, datetime):
            return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ""


def _type_missing(body: str) -> bool:
    """Whether a 404's body says the resource type, not the object, is unknown."""
    return "page not found" in body or "could not find the requested resource" in body
