"""A session pod killed and started again, as a lost node and the kubelet do, and what it keeps.

The session pod's fault tests SIGKILL a real ``wasp-session`` process and
start the tenant's pod again; what must survive lives in Redis, in the
tenant's pairing record. These helpers do the restart and read the record;
what the restarted pod must do is for each test to assert.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from harness.session_process import SessionProcess
from wasp import contract


def pairing_record(client: redis.Redis, tenant: str) -> dict[str, str]:
    """The tenant's pairing record (windows used, a halt, a ban's end): empty if none."""
    fields: dict[str, str] = client.hgetall(contract.pairing_key(tenant))  # type: ignore[assignment]
    return fields


def killed(pod: SessionProcess) -> str:
    """SIGKILL ``pod``; return the lease token of the status it left."""
    token = pod.status()[contract.STATUS_LEASE_TOKEN]
    pod.kill()
    assert pod.wait_exit() == -9
    return token


def restarted(
    start_session: Callable[..., SessionProcess], old_token: str, **env: str
) -> SessionProcess:
    """The tenant's pod started again (``start_session(**env)``); once it wrote its own status."""
    pod = start_session(**env)
    pod.wait_for(
        lambda: pod.status().get(contract.STATUS_LEASE_TOKEN, old_token) != old_token,
        "the restarted pod's own status",
    )
    return pod
