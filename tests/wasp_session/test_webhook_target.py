"""Where a webhook may go, what it sends, how it backs off: pure parts, fuzzed."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import certificates
from wasp import contract
from wasp.event_stream import StreamEvent
from wasp_session.webhook_target import (
    NETWORK,
    REFUSED,
    WebhookTargetError,
    allowed,
    checked_address,
    parse_networks,
    parse_target,
    post,
)
from wasp_session.webhooks import MAX_BODY_BYTES, backoff_delay, payload

CLUSTER_INSIDES = [
    "127.0.0.1",  # the pod itself
    "10.96.0.1",  # a Service (the API server's)
    "169.254.169.254",  # the cloud's metadata endpoint
    "100.64.0.10",  # shared address space (some clouds' pod networks)
    "172.16.5.4",
    "192.168.1.1",
    "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
    "::1",
    "fe80::1",
    "fd00::1",
    "::ffff:10.0.0.1",  # an IPv4-mapped private address
    "::ffff:169.254.169.254",
    "224.0.0.1",
    "64:ff9b::a00:1",  # NAT64 for 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 for 169.254.169.254
    "2002:a00:1::1",  # 6to4 for 10.0.0.1
]


@pytest.mark.parametrize("address", CLUSTER_INSIDES)
def test_the_clusters_insides_are_refused_by_default(address: str) -> None:
    assert not allowed(ipaddress.ip_address(address), ())


def test_a_network_the_platform_allows_is_reachable_and_only_it() -> None:
    networks = parse_networks("127.0.0.1/32, 10.1.0.0/16")
    assert allowed(ipaddress.ip_address("127.0.0.1"), networks)
    assert allowed(ipaddress.ip_address("10.1.2.3"), networks)
    assert not allowed(ipaddress.ip_address("10.2.0.1"), networks)
    assert not allowed(ipaddress.ip_address("169.254.169.254"), networks)
    assert allowed(ipaddress.ip_address("8.8.8.8"), ())


@given(st.ip_addresses())
def test_an_address_is_reachable_only_when_global_or_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    judged: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):  # the IPv4 address it stands for, too
        if address.ipv4_mapped is not None:
            judged = [address.ipv4_mapped]
        elif address in ipaddress.ip_network("64:ff9b::/96"):
            judged.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        elif address.sixtofour is not None:
            judged.append(address.sixtofour)
    assert allowed(address, ()) == all(a.is_global and not a.is_multicast for a in judged)
    assert allowed(address, (ipaddress.ip_network(f"{address}/{address.max_prefixlen}"),))


def test_a_host_name_resolving_to_the_loopback_is_refused() -> None:
    with pytest.raises(WebhookTargetError, match="may not reach") as caught:
        checked_address(parse_target("http://localhost:9/x"), ())
    assert caught.value.kind == REFUSED


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/", "http"),
        ("https:///path", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com:99999/", "valid URL"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com/" + "a" * 2048, "longer"),
    ],
)
def test_a_bad_url_is_one_clear_sentence(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_target(url)


@given(st.text(max_size=300))
def test_any_url_text_parses_or_says_why(text: str) -> None:
    try:
        target = parse_target(text)
    except ValueError as error:
        problem = str(error)
        assert problem.startswith("the webhook URL")
        return
    assert target.scheme in {"http", "https"}
    assert target.host
    assert 0 < target.port < 65536
    assert target.path.startswith("/")


@given(st.text(max_size=100))
def test_any_networks_text_parses_or_names_the_bad_item(text: str) -> None:
    try:
        parse_networks(text)
    except ValueError as error:
        problem = str(error)
        assert "is not a network" in problem


fields = st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=20)


@given(entry_id=st.text(max_size=30), kind=st.text(max_size=30), values=fields)
def test_any_entry_becomes_json_with_its_id_kind_and_fields(
    entry_id: str, kind: str, values: dict[str, str]
) -> None:
    body = payload("acme", StreamEvent(entry_id, kind, values))
    document = json.loads(body)
    assert document["id"] == entry_id
    assert document["tenant"] == "acme"
    assert document["kind"] == kind
    assert document["at"] == values.get(contract.EVENT_AT, "")
    expected = {
        k: v for k, v in values.items() if k not in {contract.EVENT_KIND, contract.EVENT_AT}
    }
    assert document["fields"] == expected


def test_a_huge_entry_is_sent_without_its_fields() -> None:
    body = payload("acme", StreamEvent("1-0", "inbound", {"text": "x" * 10 * MAX_BODY_BYTES}))
    assert len(body) <= MAX_BODY_BYTES
    assert json.loads(body) == {
        "id": "1-0",
        "tenant": "acme",
        "kind": "inbound",
        "at": "",
        "fields": {},
        "truncated": True,
    }


@given(attempt=st.integers(0, 10_000), cap=st.floats(1, 600), rand=st.floats(0, 1))
def test_backoff_doubles_from_a_second_and_never_passes_the_cap(
    attempt: int, cap: float, rand: float
) -> None:
    delay = backoff_delay(attempt, cap, lambda: rand)
    ceiling = min(cap, 2.0 ** min(attempt, 32))
    assert ceiling / 2 <= delay <= ceiling


class _Redirect(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        del format, args


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_redirect_is_a_failure_never_followed(redirecting: str) -> None:
    with pytest.raises(WebhookTargetError, match="HTTP 302 \\(redirects are not followed\\)"):
        post(parse_target(redirecting), parse_networks("127.0.0.1/32"), b"{}", {})


def test_a_closed_port_is_a_network_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WebhookTargetError) as caught:
        post(parse_target(f"http://127.0.0.1:{port}/"), parse_networks("127.0.0.1/32"), b"{}", {})
    assert caught.value.kind == NETWORK


class _Accept(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        del format, args


def test_an_https_receiver_whose_certificate_no_trusted_ca_signed_is_refused(
    tmp_path: Path,
) -> None:
    pki = certificates.create(tmp_path)  # a certificate for 127.0.0.1 from a private CA
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki.serving_cert, pki.serving_key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/"
        with pytest.raises(WebhookTargetError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            post(parse_target(url), parse_networks("127.0.0.1/32"), b"{}", {})
        assert caught.value.kind == NETWORK
    finally:
        server.shutdown()
        server.server_close()
