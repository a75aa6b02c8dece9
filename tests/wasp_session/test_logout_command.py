"""The `logout` control command (`kubectl wasp logout`): the device leaves, the session stays."""

from __future__ import annotations

from collections.abc import Callable

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess
from wasp import contract, redis_acl
from wasp.client import WaspClient


def test_logout_from_the_tenant_api_unlinks_the_device_and_pairing_starts_again(
    start_session: Callable[..., SessionProcess], redis_server: RedisServer
) -> None:
    pod = start_session()
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    connected = pod.wait_for_phase("Connected")
    assert connected.get(contract.STATUS_ACCOUNT_JID)

    admin = pod.redis
    user = contract.api_redis_user(pod.tenant)
    rules = redis_acl.setuser_arguments(redis_acl.api_user_rules(pod.tenant), "pw")
    admin.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
    api_url = f"redis://{user}:pw@127.0.0.1:{redis_server.port}/0"
    with WaspClient.from_url(api_url, pod.tenant) as api:  # the tenant API's own rights suffice
        api.request_logout()

    pod.wait_for(
        lambda: (
            pod.phase() in ("LoggedOut", "AwaitingPairing")
            and contract.STATUS_ACCOUNT_JID not in pod.status()
        ),
        "the device is unlinked",
    )
    assert "logged out by this device" in pod.status()[contract.STATUS_LAST_ERROR_MESSAGE]
    assert admin.exists(contract.auth_key(pod.tenant)) == 0, "its auth state is gone"
    pod.wait_for_phase("AwaitingPairing")  # a new pairing window, the same pod
