"""A tenant's Redis users: URLs that carry only their own credential, users kept level-based."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import parse_url as parse_redis_url

from harness.redis_server import RedisServer
from wasp import contract, redis_acl
from wasp_operator.config import OperatorConfig
from wasp_operator.errors import RedisURLInvalidError
from wasp_operator.redis_users import (
    USER_LIST_MAX_AGE_SECONDS,
    Credential,
    Identity,
    RedisUsers,
    admin_secret_of,
    build_credential_secret,
    checked_admin_url,
    credential_for,
    has_password,
    identities_of,
    new_password,
    redacted,
    user_url,
)
from wasp_operator.sessions import SecretRef, session_from_body

pytestmark = pytest.mark.isolation

ADMIN_MARK = "ADMIN!pw"  # every admin password below contains it; no tenant URL may
SESSION = session_from_body(
    {
        "metadata": {"name": "acme", "namespace": "tenants", "uid": "u-1"},
        "spec": {"tenantId": "acme"},
    }
)

hosts = st.one_of(
    st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
)
secrets_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
options = st.lists(
    st.sampled_from(
        ["socket_timeout=5", "health_check_interval=10", "ssl_cert_reqs=none", "protocol=3"]
    ),
    unique=True,
    max_size=3,
)


def admin_urls() -> st.SearchStrategy[tuple[str, str]]:
    """(admin URL, admin password): any scheme, host, port, db, userinfo and options."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, str]:
        scheme = draw(st.sampled_from(["redis", "rediss"]))
        host = draw(hosts)
        port = draw(st.none() | st.integers(1, 65535))
        database = draw(st.none() | st.integers(0, 15))
        admin_user = draw(st.none() | st.sampled_from(["default", "admin", "ops"]))
        password = ADMIN_MARK + draw(secrets_text)
        in_query = draw(st.booleans())
        userinfo = "" if in_query else f"{admin_user or ''}:{quote(password, safe='')}@"
        query = draw(options)
        if in_query:
            query = [*query, f"password={quote(password, safe='')}"]
            if admin_user:
                query.append(f"username={admin_user}")
        url = f"{scheme}://{userinfo}{host}{f':{port}' if port else ''}"
        url += f"/{database}" if database is not None else ""
        url += f"?{'&'.join(query)}" if query else ""
        return url, password

    return build()


def parse_url(url: str) -> dict[str, Any]:
    """What redis-py itself makes of a URL (its connection keyword arguments)."""
    parsed: dict[str, Any] = parse_redis_url(url)  # type: ignore[no-untyped-call]
    return parsed


def where(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a parsed URL says about the server, not about who connects."""
    return {k: v for k, v in kwargs.items() if k not in {"username", "password"}}


@given(admin=admin_urls(), password=secrets_text)
def test_a_users_url_is_the_admin_url_with_only_that_users_credential(
    admin: tuple[str, str], password: str
) -> None:
    admin_url, admin_password = admin
    url = user_url(admin_url, "wasp-api-acme", password)
    parsed, original = parse_url(url), parse_url(admin_url)
    assert parsed["username"] == "wasp-api-acme"
    assert parsed["password"] == password
    assert where(parsed) == where(original)  # host, port, db, TLS and every option
    assert url.split("://")[0] == admin_url.split("://")[0]
    for spelling in (admin_password, quote(admin_password, safe=""), quote(ADMIN_MARK, safe="")):
        assert spelling not in url
        assert spelling not in redacted(admin_url)
    assert where(parse_url(redacted(url))) == where(original)
    assert not {"username", "password"} & set(parse_url(redacted(url)))


def test_a_url_whose_path_is_not_a_database_is_refused() -> None:
    with pytest.raises(ValueError, match="database number"):
        user_url("redis://:pw@host:6379/not-a-db", "u", "p")
    assert user_url("unix:///run/redis.sock?db=2", "u", "p") == "unix://u:p@/run/redis.sock?db=2"


def test_passwords_are_long_random_and_need_no_quoting() -> None:
    passwords = {new_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) >= 40
        assert quote(password, safe="") == password


def test_a_stored_password_is_kept_and_the_url_follows_the_admin_url() -> None:
    session_identity, api_identity = identities_of(SESSION)
    assert session_identity.username == contract.session_redis_user("acme")
    assert api_identity.secret_name == contract.api_redis_secret_name("acme")
    assert api_identity.rules == redis_acl.api_user_rules("acme")

    first, stale = credential_for(api_identity, "redis://:admin@redis:6379/0", None)
    assert stale
    stored = first.data()
    again, stale = credential_for(api_identity, "redis://:admin@redis:6379/0", stored)
    assert (again, stale) == (first, False)
    moved, stale = credential_for(api_identity, "rediss://:admin@redis-2:6380/1", stored)
    assert stale
    assert moved.password == first.password
    assert moved.url.startswith("rediss://")
    assert "redis-2:6380/1" in moved.url
    broken = stored | {contract.REDIS_SECRET_PASSWORD_KEY: "has space"}
    renewed, stale = credential_for(api_identity, "redis://:admin@redis:6379/0", broken)
    assert stale
    assert renewed.password != "has space"
    assert first.password not in repr(first)


def test_the_credential_secret_is_owned_by_the_resource_and_labelled() -> None:
    _, api = identities_of(SESSION)
    credential = Credential(api.username, "pw", "redis://wasp-api-acme:pw@redis:6379/0")
    secret = build_credential_secret(SESSION, api, credential)
    assert secret["metadata"]["name"] == contract.api_redis_secret_name("acme")
    assert secret["metadata"]["namespace"] == "tenants"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert secret["metadata"]["labels"][contract.LABEL_TENANT] == "acme"
    assert secret["stringData"] == {
        contract.REDIS_SECRET_URL_KEY: credential.url,
        contract.REDIS_SECRET_USERNAME_KEY: "wasp-api-acme",
        contract.REDIS_SECRET_PASSWORD_KEY: "pw",
    }


def test_the_admin_secret_is_the_sessions_own_else_the_operators_default() -> None:
    config = OperatorConfig()
    assert admin_secret_of(SESSION, config) == ("tenants", SecretRef("wasp-redis", "url"))
    elsewhere = OperatorConfig(redis_secret_namespace="wasp-system")
    assert admin_secret_of(SESSION, elsewhere) == ("wasp-system", SecretRef("wasp-redis", "url"))
    own = session_from_body(
        {
            "metadata": {"name": "acme", "namespace": "tenants"},
            "spec": {"redis": {"secretRef": {"name": "byo", "key": "dsn"}}},
        }
    )
    assert admin_secret_of(own, elsewhere) == ("tenants", SecretRef("byo", "dsn"))


def test_a_user_has_a_password_only_if_enabled_with_exactly_that_one() -> None:
    digest = hashlib.sha256(b"pw").hexdigest()
    assert has_password({"flags": ["on"], "passwords": [digest]}, "pw")
    assert not has_password({"flags": ["off"], "passwords": [digest]}, "pw")
    assert not has_password({"flags": ["on"], "passwords": [digest, "x"]}, "pw")
    assert not has_password(None, "pw")


def test_users_are_made_when_missing_changed_or_not_yet_made_since_the_start(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    _, api = identities_of(SESSION)
    credential, _ = credential_for(api, redis_server.url, None)

    async def ensure(users: RedisUsers, password: str = credential.password) -> str | None:
        async with aioredis.Redis.from_url(redis_server.url, decode_responses=True) as client:
            made = Credential(api.username, password, credential.url)
            return await users.ensure(client, redis_server.url, api, made)

    users = RedisUsers()
    assert asyncio.run(ensure(users)) == "missing"
    assert asyncio.run(ensure(users)) is None
    redis_client.acl_deluser(api.username)  # what a restart without an ACL file does
    time.sleep(USER_LIST_MAX_AGE_SECONDS)  # the users are listed at most this often
    assert asyncio.run(ensure(users)) == "missing"
    assert asyncio.run(ensure(RedisUsers())) == "started", "a new operator re-applies the rules"
    assert asyncio.run(ensure(users, "another-password")) == "changed"
    assert asyncio.run(ensure(users)) == "changed"

    user = redis_client.acl_getuser(api.username)
    assert user is not None
    keys: list[str] = user["keys"]  # type: ignore[assignment]
    assert set(keys) >= {rule for rule in api.rules if rule.startswith(("~", "%"))}
    with redis.Redis.from_url(credential.url, decode_responses=True) as tenant:
        assert tenant.acl_whoami() == api.username
        with pytest.raises(redis.exceptions.NoPermissionError):
            tenant.get(contract.auth_key("acme"))


def test_an_unusable_admin_url_is_refused_without_quoting_it() -> None:
    for url in ("http://:s3cret@redis:6379/0", "redis://:s3cret@redis:6379/zero"):
        with pytest.raises(RedisURLInvalidError) as refused:
            checked_admin_url(url, "Secret tenants/wasp-redis (key url)")
        assert "s3cret" not in str(refused.value)
        assert "tenants/wasp-redis" in str(refused.value)
    assert (
        checked_admin_url("rediss://:s3cret@redis:6380/1", "x") == "rediss://:s3cret@redis:6380/1"
    )


def tenants_users(url: str, tenants: int) -> list[tuple[Identity, Credential]]:
    """The two users (identity, credential) of each of ``tenants`` tenants t0, t1, ..."""
    sessions = [
        session_from_body(
            {
                "metadata": {"name": f"t{i}", "namespace": "tenants", "uid": f"u-{i}"},
                "spec": {"tenantId": f"t{i}"},
            }
        )
        for i in range(tenants)
    ]
    return [
        (identity, credential_for(identity, url, None)[0])
        for session in sessions
        for identity in identities_of(session)
    ]


def test_a_kept_user_costs_one_user_list_per_redis_not_a_full_read_per_tenant(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    kept = tenants_users(redis_server.url, 5)

    async def cycle(users: RedisUsers) -> list[str | None]:
        async with aioredis.Redis.from_url(redis_server.url, decode_responses=True) as client:
            return [await users.ensure(client, redis_server.url, i, c) for i, c in kept]

    users = RedisUsers()
    assert set(asyncio.run(cycle(users))) == {"missing"}
    before = redis_client.info("commandstats")
    assert set(asyncio.run(cycle(users))) == {None}, "kept as they are"
    after = redis_client.info("commandstats")

    def calls(name: str) -> int:
        return int(after.get(name, {}).get("calls", 0)) - int(before.get(name, {}).get("calls", 0))

    assert calls("cmdstat_acl|getuser") == 0
    assert calls("cmdstat_acl|users") < len(kept) // 2  # one list serves many tenants' cycles


def test_cycles_that_check_at_once_share_one_user_list(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """A resync of thousands of tenants runs hundreds of checks at once: one ACL USERS for all.

    At 5,000 tenants each list has 10,000 names; reading it once per check
    in flight was a quarter of the operator's CPU.
    """
    kept = tenants_users(redis_server.url, 100)

    async def cycle_at_once(users: RedisUsers) -> list[str | None]:
        pool = aioredis.BlockingConnectionPool.from_url(  # as the operator's relay makes it
            redis_server.url, decode_responses=True, max_connections=16
        )
        async with aioredis.Redis.from_pool(pool) as client:
            return list(
                await asyncio.gather(
                    *(users.ensure(client, redis_server.url, i, c) for i, c in kept)
                )
            )

    users = RedisUsers()
    assert set(asyncio.run(cycle_at_once(users))) == {"missing"}
    before = redis_client.info("commandstats")
    assert set(asyncio.run(cycle_at_once(users))) == {None}, "kept as they are"
    after = redis_client.info("commandstats")
    listed = int(after["cmdstat_acl|users"]["calls"]) - int(
        before.get("cmdstat_acl|users", {}).get("calls", 0)
    )
    assert listed == 1
