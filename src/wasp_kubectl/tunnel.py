"""Reaching a Redis inside the cluster from the user's machine, as ``kubectl port-forward`` does.

Owns deciding whether the tenant's Redis URL can be used as it is (its host
answers on its port) and, when it cannot and the host is a Service's
cluster name (``wasp-redis.wasp-system.svc``), forwarding a local port on
127.0.0.1 to a ready pod behind that Service through the API server
(``kubernetes.stream.portforward``), one forwarded stream per Redis
connection. Returns the URL to use; the rest of the URL (user, password,
database) stays as it was.

Must not read Secrets or resources (``cluster`` does) nor talk Redis.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import threading
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from kubernetes import client
from kubernetes.stream import portforward

from wasp_kubectl.cluster import Cluster, PluginError

__all__ = ["Forward", "ServiceAddress", "reachable", "redis_url_for", "service_address"]

_CONNECT_TIMEOUT_SECONDS: Final = 2.0
_CHUNK: Final = 65536
_CLUSTER_SUFFIXES: Final = (".svc.cluster.local", ".svc")
_DEFAULT_REDIS_PORT: Final = 6379
_API_MESSAGE: Final = re.compile(r'"message":\s*"([^"]{1,300})"')  # a Status object's sentence
_MAX_WHY_CHARS: Final = 200


@dataclass(frozen=True)
class ServiceAddress:
    """A Service named by its cluster DNS name."""

    service: str
    namespace: str


def service_address(host: str, default_namespace: str) -> ServiceAddress | None:
    """The Service a cluster host name names, or None if it names none.

    ``NAME.NAMESPACE.svc[.cluster.local]``, ``NAME.NAMESPACE``, or a bare
    ``NAME`` (in ``default_namespace``), as a pod's resolver reads them; an IP
    address or any other dotted name names no Service.
    """
    name = host.lower().rstrip(".")
    if name == "localhost":
        return None
    for suffix in _CLUSTER_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    labels = name.split(".")
    if not all(_dns_label(label) for label in labels):
        return None
    if len(labels) == 1:
        return ServiceAddress(labels[0], default_namespace)
    if len(labels) == 2:  # noqa: PLR2004 - NAME.NAMESPACE
        return ServiceAddress(labels[0], labels[1])
    return None


def _dns_label(label: str) -> bool:
    """Whether ``label`` is a DNS-1123 label that can name a Service (letter first)."""
    return (
        0 < len(label) <= 63  # noqa: PLR2004 - DNS-1123's limit
        and label[0].isascii()
        and label[0].isalpha()
        and label[-1].isalnum()
        and all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in label)
        and label == label.lower()
    )


def reachable(host: str, port: int, timeout: float = _CONNECT_TIMEOUT_SECONDS) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Forward:
    """127.0.0.1:``local_port`` forwarded to ``pod``:``port`` through the API server."""

    def __init__(self, api: client.ApiClient, pod: str, namespace: str, port: int) -> None:
        """Check that the API server forwards to the pod, then listen on a free local port."""
        self._core = client.CoreV1Api(api)
        self.pod = pod
        self.namespace = namespace
        self.port = port
        self._open().close()  # the first stream proves the forward works, or raises
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.local_port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="port-forward", daemon=True)
        self._thread.start()

    def _open(self) -> Any:  # noqa: ANN401 - the client's PortForward object
        forward = portforward(
            self._core.connect_get_namespaced_pod_portforward,
            self.pod,
            self.namespace,
            ports=str(self.port),
        )
        if not forward.connected:
            msg = f"the API server did not forward to pod {self.pod!r}"
            raise PluginError(msg)
        return forward

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                local, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._pump, args=(local,), daemon=True).start()

    def _pump(self, local: socket.socket) -> None:
        """Copy bytes both ways between one local connection and one forwarded stream."""
        try:
            forward = self._open()
        except Exception:  # noqa: BLE001 - the local client sees its connection close
            local.close()
            return
        remote = forward.socket(self.port)
        with selectors.DefaultSelector() as selector, local:
            selector.register(local, selectors.EVENT_READ, remote)
            selector.register(remote, selectors.EVENT_READ, local)
            try:
                while not self._closed.is_set():
                    for key, _ in selector.select(timeout=1.0):
                        data = key.fileobj.recv(_CHUNK)  # type: ignore[union-attr]
                        if not data:
                            return
                        key.data.sendall(data)
            except OSError:
                return
            finally:
                forward.close()

    def close(self) -> None:
        """Stop listening; connections still open end within a second."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()


def redis_url_for(cluster: Cluster, url: str, forwards: list[Forward]) -> str:
    """``url`` if its host answers; else the URL of a port-forward to its Service's pod.

    A forward it opens is appended to ``forwards`` (close them when done).
    """
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or _DEFAULT_REDIS_PORT
    if reachable(host, port):
        return url
    address = service_address(host, cluster.namespace)
    if address is None:
        msg = (
            f"Redis at {host}:{port} is unreachable from here and is no cluster Service "
            "to forward to: check that it runs, or pass --redis-url with an address you can reach"
        )
        raise PluginError(msg)
    try:
        backend = cluster.service_backend(address.service, address.namespace, port)
    except PluginError as error:
        msg = f"Redis at {host}:{port} is unreachable from here, and {error}"
        raise PluginError(msg) from error
    try:
        forward = Forward(cluster.api, backend.pod, backend.namespace, backend.port)
    except PluginError:
        raise
    except Exception as error:
        msg = (
            f"Redis at {host}:{port} is unreachable from here, and a port-forward to pod "
            f"{backend.pod!r} in namespace {backend.namespace!r} failed ({_why(error)}): "
            f"check `kubectl auth can-i create pods/portforward -n {backend.namespace}`, "
            "or pass --redis-url with an address you can reach"
        )
        raise PluginError(msg) from error
    forwards.append(forward)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (
        f"{userinfo}@127.0.0.1:{forward.local_port}"
        if userinfo
        else (f"127.0.0.1:{forward.local_port}")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _why(error: Exception) -> str:
    """One short line about a failed forward (the client's errors span lines, and quote JSON)."""
    text = " ".join(str(getattr(error, "reason", None) or error).split())
    said = _API_MESSAGE.search(text)
    if said:
        return said.group(1)
    return f"{type(error).__name__}: {text}"[:_MAX_WHY_CHARS]
