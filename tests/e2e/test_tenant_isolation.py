"""Tenant isolation end to end: two tenants on one locked Redis, each with its own identity.

The Redis here is locked as in production (the ``default`` user needs the
admin password, which only the operator has); the operator makes each
tenant's Redis users and Secrets; everything a tenant does below goes
through the credential the operator gave it, read from its Secret as a
tenant's API would. The simulator stands in for WhatsApp; the admin client
plays WhatsApp's side (scans, receipts) and the platform team's.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.controlplane import ControlPlane
from harness.failure_logs import logs_of
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.redis_server import RedisServer
from harness.session_reports import status_of
from wasp import contract
from wasp.client import WaspClient

pytestmark = [pytest.mark.controlplane, pytest.mark.isolation]

ADMIN_PASSWORD = "platform-admin-only"
RESYNC_SECONDS = 3
PHONE = "+4915112345678"
# A key suffix anything may put after a tenant's prefix (no whitespace: it is a key).
SUFFIXES = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="*?[]\\"), max_size=24
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """This module's Redis is locked: without the admin password nobody gets in as default."""
    server = RedisServer(tmp_path / "redis", password=ADMIN_PASSWORD)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def wasp_operator(
    control_plane: ControlPlane,
    wasp_crd: str,  # noqa: ARG001 - requested for its effect: the CRD is installed
    namespace: str,
    redis_secret: str,  # noqa: ARG001 - requested for its effect: the admin Secret exists
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    """The operator with a short resync, so "within one resync" is quick to prove."""
    operator = OperatorProcess(
        control_plane.kubeconfig,
        tmp_path / "operator",
        namespace=namespace,
        resync_seconds=RESYNC_SECONDS,
    )
    try:
        yield operator
    finally:
        operator.stop_in_background()


def secret_url(plane: ControlPlane, namespace: str, name: str) -> str:
    """The Redis URL in a Secret, read as the tenant's API would read it."""
    secret = get(plane, namespace, "secret", name)
    assert secret is not None, f"no Secret {name}"
    return base64.b64decode(secret["data"][contract.REDIS_SECRET_URL_KEY]).decode()


def is_refused(call: Callable[[], object]) -> bool:
    """Whether Redis refuses the call for lack of permission (and only for that)."""
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def pair(
    admin: redis.Redis, plane: ControlPlane, namespace: str, tenant: str, logs: Callable[[], str]
) -> dict[str, Any]:
    """Wait for the QR, scan it in the simulator, wait for Connected; the status then."""
    eventually(
        lambda: status_of(plane, namespace, tenant).get("phase") == "AwaitingPairing",
        f"{tenant} awaits pairing",
        timeout=90,
        log=logs,
    )
    admin.rpush(contract.simulator_commands_key(tenant), json.dumps({"command": "scan"}))

    def connected() -> dict[str, Any] | None:
        status = status_of(plane, namespace, tenant)
        return (
            status if status.get("phase") == "Connected" and status.get("apiCredentials") else None
        )

    return eventually(
        connected,
        f"{tenant} is Connected, with its API credentials named in the status",
        timeout=90,
        log=logs,
    )


def test_each_tenant_reaches_only_its_own_keys_and_runs_its_otps_with_its_own_credential(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_server: RedisServer,
) -> None:
    logs = partial(logs_of, wasp_operator, session_kubelet)

    admin = redis_server.client()
    try:
        for tenant in ("acme", "globex"):
            apply(control_plane, namespace, session_body(tenant, transport="simulator"))
        acme = pair(admin, control_plane, namespace, "acme", logs)
        globex = pair(admin, control_plane, namespace, "globex", logs)
        assert globex["apiCredentials"]["secretName"] == contract.api_redis_secret_name("globex")
        assert globex["apiCredentials"]["username"] == contract.api_redis_user("globex")
        assert acme["apiCredentials"]["secretName"] == contract.api_redis_secret_name("acme")

        # The session pod's spec holds no secret in its environment.
        pod = get(control_plane, namespace, "pod", contract.session_pod_name("globex"))
        assert pod is not None
        for variable in pod["spec"]["containers"][0]["env"]:
            assert "secretKeyRef" not in variable.get("valueFrom", {}), variable

        globex_api_url = secret_url(
            control_plane, namespace, contract.api_redis_secret_name("globex")
        )
        globex_session_url = secret_url(
            control_plane, namespace, contract.session_redis_secret_name("globex")
        )
        assert ADMIN_PASSWORD not in globex_api_url
        assert ADMIN_PASSWORD not in globex_session_url

        # globex's own whole OTP flow, with nothing but its API credential.
        with WaspClient.from_url(globex_api_url, "globex") as client:
            assert client.session_status().phase == "Connected"
            message_id = client.send_otp(PHONE, "493817")
            assert client.wait_for(message_id, "read", timeout=60).state == "read"
        outbox = admin.lrange(contract.simulator_outbox_key("globex"), 0, -1)
        assert any("493817" in entry for entry in outbox)

        # With globex's credentials, acme's keys, queue and channels are out of reach.
        raw_admin = redis.Redis.from_url(redis_server.url)  # the auth blob is binary
        try:
            acme_auth = raw_admin.get(contract.auth_key("acme"))
            assert acme_auth, "acme has auth state to protect"
            assert_confined_to_globex(globex_api_url, globex_session_url)
            assert raw_admin.get(contract.auth_key("acme")) == acme_auth
        finally:
            raw_admin.close()

        # acme still delivers with its own credential.
        acme_api_url = secret_url(control_plane, namespace, contract.api_redis_secret_name("acme"))
        with WaspClient.from_url(acme_api_url, "acme") as client:
            message_id = client.send_otp(PHONE, "112233")
            assert client.wait_for(message_id, "read", timeout=60).state == "read"
    finally:
        admin.close()


def assert_confined_to_globex(api_url: str, session_url: str) -> None:
    """The two globex credentials reach none of acme's keys; the API not even globex's auth."""
    globex_api = redis.Redis.from_url(api_url, decode_responses=True)
    globex_session = redis.Redis.from_url(session_url)  # the auth blob is binary
    try:
        assert_no_reach_into_acme(globex_api)
        assert_no_reach_into_acme(globex_session)
        # The API's credential cannot read its own tenant's auth state either.
        assert is_refused(lambda: globex_api.get(contract.auth_key("globex")))
        assert is_refused(lambda: globex_api.get(contract.lease_key("globex")))
        assert is_refused(lambda: globex_api.get(contract.owner_key("globex")))
        assert is_refused(lambda: globex_api.delete(contract.account_key("globex")))
        # ... nor reach beyond keys: no key listing, no server admin.
        assert is_refused(lambda: globex_api.keys("*"))
        assert is_refused(lambda: globex_api.scan(0))
        assert is_refused(globex_api.flushall)
        assert is_refused(lambda: globex_api.execute_command("ACL", "LIST"))  # type: ignore[no-untyped-call]
        assert is_refused(lambda: globex_session.config_get("*"))
        # The session's credential may read its own auth state, never acme's.
        assert globex_session.get(contract.auth_key("globex"))
    finally:
        globex_api.close()
        globex_session.close()


def assert_no_reach_into_acme(client: redis.Redis) -> None:
    """Every read and write of acme's keys, RQ keys and channels is refused (NOPERM)."""

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(suffix=SUFFIXES)
    def no_reach(suffix: str) -> None:
        for key in (
            f"wasp:acme:{suffix}",
            contract.message_key("acme", suffix),
            f"rq:job:{contract.job_id('acme', suffix)}",
            f"rq:results:{contract.job_id('acme', suffix)}",
        ):
            assert is_refused(partial(client.get, key)), key
            assert is_refused(partial(client.set, key, "x")), key
            assert is_refused(partial(client.hgetall, key)), key
            assert is_refused(partial(client.delete, key)), key
        assert is_refused(lambda: client.publish(f"wasp:acme:{suffix}", "forged"))

    no_reach()
    queue = f"rq:queue:{contract.delivery_queue('acme')}"
    assert is_refused(lambda: client.rpush(queue, contract.job_id("acme", "m1")))
    assert is_refused(lambda: client.lrange(queue, 0, -1))
    assert is_refused(lambda: client.hgetall(contract.status_key("acme")))
    assert is_refused(lambda: client.get(contract.auth_key("acme")))
    for channel in (
        contract.events_channel("acme"),
        contract.qr_channel("acme"),
        contract.receipts_channel("acme"),
    ):
        assert is_refused(partial(client.publish, channel, "{}"))
        assert is_refused(partial(subscribe_and_listen, client, channel)), channel


def subscribe_and_listen(client: redis.Redis, channel: str) -> None:
    """Subscribe to ``channel`` and read the server's answer (a refusal raises here)."""
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(channel)
        pubsub.get_message(timeout=2)
    finally:
        pubsub.close()


def test_a_redis_restarted_without_its_acls_serves_every_tenant_again_within_one_resync(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_server: RedisServer,
) -> None:
    logs = partial(logs_of, wasp_operator, session_kubelet)

    admin = redis_server.client()
    try:
        apply(control_plane, namespace, session_body("acme", transport="simulator"))
        pair(admin, control_plane, namespace, "acme", logs)
        api_url = secret_url(control_plane, namespace, contract.api_redis_secret_name("acme"))
        with WaspClient.from_url(api_url, "acme") as client:
            first = client.send_otp(PHONE, "493817")
            assert client.wait_for(first, "read", timeout=60).state == "read"
        admin.close()

        redis_server.restart()  # the data is back; the tenant's users are not
        admin = redis_server.client()

        # Nobody does anything by hand: the operator re-makes the users within
        # one resync (the lost subscription wakes every session at once), the
        # session reconnects with its unchanged credential, OTPs flow again.
        eventually(
            lambda: (
                {contract.api_redis_user("acme"), contract.session_redis_user("acme")}
                <= set(admin.acl_users())
            ),
            "the tenant's Redis users are made again",
            timeout=RESYNC_SECONDS + 10,
            log=logs,
        )

        def delivered_again() -> bool:
            try:
                with WaspClient.from_url(api_url, "acme") as client:
                    message_id = client.send_otp(PHONE, "778899")
                    return client.wait_for(message_id, "read", timeout=10).state == "read"
            except (redis.exceptions.RedisError, TimeoutError):
                return False

        eventually(delivered_again, "an OTP is delivered again after the restart", 90, logs)
        eventually(
            lambda: status_of(control_plane, namespace, "acme").get("phase") == "Connected",
            "the resource shows Connected again",
            log=logs,
        )
    finally:
        admin.close()
