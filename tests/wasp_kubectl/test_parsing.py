"""What ``kubectl wasp`` makes of what a user types: hosts in Redis URLs, flags, limits."""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasp_kubectl.cli import MAX_MESSAGES, build_parser
from wasp_kubectl.tunnel import ServiceAddress, service_address

LETTERS = string.ascii_lowercase
labels = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(LETTERS),
    st.text(alphabet=LETTERS + string.digits + "-", max_size=20),
    st.sampled_from(LETTERS + string.digits),
)


@given(name=labels, namespace=labels, suffix=st.sampled_from([".svc", ".svc.cluster.local", ""]))
def test_a_service_cluster_name_names_its_service_and_namespace(
    name: str, namespace: str, suffix: str
) -> None:
    address = service_address(f"{name}.{namespace}{suffix}", "elsewhere")
    assert address == ServiceAddress(name, namespace)


@given(name=labels)
def test_a_bare_service_name_is_in_the_sessions_namespace(name: str) -> None:
    assert service_address(name, "tenants") == ServiceAddress(name, "tenants")


@given(address=st.ip_addresses())
def test_an_ip_address_names_no_service(address: ipaddress.IPv4Address) -> None:
    assert service_address(str(address), "tenants") is None


@given(host=st.text(max_size=80))
def test_any_host_either_names_a_valid_service_or_none(host: str) -> None:
    address = service_address(host, "tenants")
    if address is not None:
        for label in (address.service, address.namespace):
            assert label
            assert label[0] in LETTERS
            assert set(label) <= set(LETTERS + string.digits + "-")


def test_public_host_names_are_not_taken_for_services() -> None:
    assert service_address("redis.example.com", "tenants") is None
    assert service_address("Wasp-Redis.tenants.svc", "tenants") == ServiceAddress(
        "wasp-redis", "tenants"
    )


@given(
    before=st.one_of(st.none(), labels),
    after=st.one_of(st.none(), labels),
    command=st.sampled_from(["status", "qr", "watch", "pair", "logout", "messages"]),
)
def test_namespace_and_context_count_before_or_after_the_command(
    before: str | None, after: str | None, command: str
) -> None:
    argv = [*(["-n", before, "--context", before] if before else []), command, "acme"]
    argv += ["--namespace", after, "--context", after] if after else []
    args = build_parser().parse_args(argv)
    assert args.namespace == (after or before)
    assert args.context == (after or before)
    assert args.session == "acme"


@given(limit=st.integers(min_value=1, max_value=MAX_MESSAGES))
def test_messages_takes_a_limit_in_range(limit: int) -> None:
    args = build_parser().parse_args(["messages", "acme", "--limit", str(limit)])
    assert args.limit == limit


@given(limit=st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_MESSAGES + 1)))
def test_messages_refuses_a_limit_out_of_range(limit: int) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["messages", "acme", "--limit", str(limit)])
    assert exit_.value.code == 2
