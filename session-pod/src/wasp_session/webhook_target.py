"""Where a webhook may go, and one POST to it: the guard against a tenant's URL as a weapon.

Owns the webhook URL's parsing, the address check and the request itself.
A tenant chooses the URL, so the URL is hostile: it may name the API
server, the cloud's metadata endpoint (169.254.169.254), another tenant's
pod, or a host name that resolves to one of those. So each request

- resolves the host once, keeps only the addresses that are global
  (``ipaddress``'s ``is_global``: no private, shared, loopback, link-local,
  reserved or multicast range) or inside a network the operator allows
  (``contract.ENV_WEBHOOK_ALLOWED_NETWORKS``, default none), and refuses the
  request when none is left;
- connects to that checked address itself (the host name is never resolved
  again, so a DNS answer that changes between check and connect, "DNS
  rebinding", cannot slip through), sending the host name in ``Host`` and,
  for ``https``, verifying the server's certificate for the host name;
- follows no redirect (a 3xx is a failure like any non-2xx: a redirect
  could point anywhere), and gives up after ``CONNECT_TIMEOUT`` to connect
  and ``READ_TIMEOUT`` for each read.

Must not sign, retry or read the stream: ``webhooks`` does.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

CONNECT_TIMEOUT: Final = 5.0
READ_TIMEOUT: Final = 10.0
MAX_RESPONSE_BYTES: Final = (
    4096  # read (and dropped) from each answer, so the socket closes cleanly
)
MAX_URL_CHARS: Final = 2048
# What went wrong (``WebhookTargetError.kind``), for the metric's ``result``.
REFUSED: Final = "refused"  # the URL's address is not one webhooks may reach
NETWORK: Final = "network"  # DNS, connect, TLS or a timeout
HTTP: Final = "http"  # an answer other than 2xx
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookTargetError(Exception):
    """A webhook request that could not be made or was not answered with a 2xx.

    ``kind`` says which: ``REFUSED``, ``NETWORK`` or ``HTTP``.
    """

    def __init__(self, kind: str, message: str) -> None:
        """One sentence ``message`` for the status, and the metric's ``kind``."""
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL."""

    scheme: str  # "http" or "https"
    host: str  # without brackets for IPv6
    port: int
    path: str  # path and query, at least "/"


def parse_target(url: str) -> Target:
    """The webhook URL as a ``Target``; ``ValueError`` with one sentence when it is not one."""
    if len(url) > MAX_URL_CHARS:
        msg = f"the webhook URL is longer than {MAX_URL_CHARS} characters"
        raise ValueError(msg)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        msg = "the webhook URL is not a valid URL (check its host and port)"
        raise ValueError(msg) from None
    if parts.scheme not in {"http", "https"}:
        msg = "the webhook URL must start with http:// or https://"
        raise ValueError(msg)
    if not parts.hostname:
        msg = "the webhook URL names no host"
        raise ValueError(msg)
    if parts.username is not None or parts.password is not None:
        msg = "the webhook URL may not carry credentials (user:password@): requests are signed"
        raise ValueError(msg)
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):  # noqa: PLR2004 - controls
        msg = "the webhook URL holds spaces or control characters"
        raise ValueError(msg)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default, path)


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (``10.0.0.0/8,127.0.0.1/32``); ``ValueError`` naming a bad one."""
    networks: list[Network] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            msg = f"{item[:64]!r} is not a network (CIDR, e.g. 10.0.0.0/8)"
            raise ValueError(msg) from None
    return tuple(networks)


NAT64: Final = ipaddress.ip_network("64:ff9b::/96")  # IPv6 that a gateway turns into IPv4


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:  # ::ffff:10.0.0.1 is 10.0.0.1
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def allowed(address: Address, networks: tuple[Network, ...]) -> bool:
    """Whether a webhook may connect to ``address``: global, or in an allowed network.

    An IPv6 address that stands for an IPv4 one (mapped, NAT64, 6to4) is
    judged as that IPv4 address too: both must pass.
    """
    if any(address in network for network in networks):
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
        if any(address in network for network in networks):
            return True
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        return inner is None or allowed(inner, networks)
    return True


def checked_address(target: Target, networks: tuple[Network, ...]) -> str:
    """The first address of the target's host that a webhook may reach; else ``refused``."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        msg = f"cannot resolve {target.host[:64]!r}: {error}"
        raise WebhookTargetError(NETWORK, msg) from None
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 scope is not part of the address
        if allowed(ipaddress.ip_address(text), networks):
            return text
        seen.append(text)
    msg = (
        f"{target.host[:64]!r} resolves only to addresses webhooks may not reach "
        f"({', '.join(dict.fromkeys(seen))}): private, loopback and link-local networks are "
        "refused unless the platform allows them (webhooks.allowedNetworks)"
    )
    raise WebhookTargetError(REFUSED, msg)


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to a checked address, with the host name in ``Host``."""

    def __init__(self, target: Target, address: str) -> None:
        super().__init__(target.host, target.port, timeout=READ_TIMEOUT)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT)
        self.sock.settimeout(READ_TIMEOUT)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address, the certificate verified for the host name."""

    def __init__(self, target: Target, address: str) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=READ_TIMEOUT, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), CONNECT_TIMEOUT)
        raw.settimeout(READ_TIMEOUT)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def post(
    target: Target, networks: tuple[Network, ...], body: bytes, headers: dict[str, str]
) -> int:
    """POST ``body`` to the target's checked address; return the 2xx status, else raise."""
    address = checked_address(target, networks)
    connection: http.client.HTTPConnection = (
        _PinnedHTTPS(target, address) if target.scheme == "https" else _PinnedHTTP(target, address)
    )
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        status = response.status
    except (OSError, http.client.HTTPException) as error:
        detail = str(error) or type(error).__name__
        msg = f"POST to {target.host[:64]} failed: {detail[:200]}"
        raise WebhookTargetError(NETWORK, msg) from None
    finally:
        connection.close()
    if not 200 <= status < 300:  # noqa: PLR2004 - the 2xx range
        hint = " (redirects are not followed)" if 300 <= status < 400 else ""  # noqa: PLR2004
        msg = f"the receiver answered HTTP {status}{hint}"
        raise WebhookTargetError(HTTP, msg)
    return status
