"""The account pin's value, how it is shown, and who may remove it (real Redis ACL users)."""

from __future__ import annotations

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from harness.redis_server import RedisServer
from wasp import contract, redis_acl
from wasp.accounts import PinNotRemovableError, account_of_jid, forget_account, mask_account


@pytest.mark.parametrize(
    ("jid", "account"),
    [
        ("4915112345678@s.whatsapp.net", "4915112345678"),
        ("4915112345678:12@s.whatsapp.net", "4915112345678"),  # a device of the account
        ("4915112345678.0:3@s.whatsapp.net", "4915112345678"),  # with agent and device
        ("12025550123@c.us", "12025550123"),
        ("4915112345678", "4915112345678"),
        ("", ""),
        ("98765432101234@lid", ""),  # a LID is not a phone number
        ("120363025246125486@g.us", ""),  # a group
        ("abc@s.whatsapp.net", ""),
        ("0151123456@s.whatsapp.net", ""),  # not international
        ("١٢٣٤٥٦٧٨@s.whatsapp.net", ""),  # digits, but not ASCII ones
    ],
)
def test_the_account_of_a_jid_is_its_phone_digits(jid: str, account: str) -> None:
    assert account_of_jid(jid) == account


@given(st.text(max_size=80))
def test_any_jid_gives_digits_or_nothing(jid: str) -> None:
    account = account_of_jid(jid)
    assert account == "" or (account.isascii() and account.isdigit() and len(account) <= 15)


@pytest.mark.parametrize(
    ("digits", "shown"),
    [("4915112345678", "+49…78"), ("12025550123", "+1…23"), ("380501234567", "+380…67")],
)
def test_a_masked_account_keeps_the_country_code_and_the_last_two_digits(
    digits: str, shown: str
) -> None:
    assert mask_account(digits) == shown
    assert mask_account(f"+{digits}") == shown


@given(st.text(alphabet="0123456789", min_size=7, max_size=15))
def test_a_masked_account_never_shows_the_middle(digits: str) -> None:
    shown = mask_account(digits)
    assert sum(ch.isdigit() for ch in shown) <= 5  # a country code (1 to 3) and two digits


def make_user(admin: redis.Redis, name: str, rules: tuple[str, ...], server: RedisServer) -> str:
    arguments = redis_acl.setuser_arguments(rules, "pw-" + name)
    admin.execute_command("ACL", "SETUSER", name, *arguments)  # type: ignore[no-untyped-call]
    return f"redis://{name}:pw-{name}@127.0.0.1:{server.port}/0"


@pytest.mark.isolation
def test_the_tenant_api_cannot_remove_the_pin_but_the_session_can(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.set(contract.account_key("acme"), "4915112345678")
    api_url = make_user(
        redis_client,
        contract.api_redis_user("acme"),
        redis_acl.api_user_rules("acme"),
        redis_server,
    )
    session_url = make_user(
        redis_client,
        contract.session_redis_user("acme"),
        redis_acl.session_user_rules("acme"),
        redis_server,
    )
    with redis.Redis.from_url(api_url) as api, pytest.raises(PinNotRemovableError) as caught:
        forget_account(api, "acme")
    assert "tenant API's credential cannot do this" in str(caught.value)
    assert redis_client.get(contract.account_key("acme")) == "4915112345678"
    assert redis_client.llen(contract.control_key("acme")) == 0  # all or nothing

    with redis.Redis.from_url(session_url) as session:
        assert forget_account(session, "acme") == "4915112345678"
    assert redis_client.get(contract.account_key("acme")) is None
    assert redis_client.lrange(contract.control_key("acme"), 0, -1) == [contract.CONTROL_PAIR]
    assert forget_account(redis_client, "acme") is None  # nothing pinned: still re-arms
