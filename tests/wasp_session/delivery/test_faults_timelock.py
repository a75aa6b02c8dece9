"""WhatsApp's 463 reach-out timelock: a real ``wasp-session`` process, the simulator as WhatsApp.

The simulator's ``timelock`` fault refuses (463) sends to numbers the account
never wrote to, as WhatsApp does: that one message fails ``timelocked``, codes
to known contacts keep reaching ``read``, and the worker goes on. The session
records the timelock (status ``timelocked``/``timelocked_until``, the gauge
``wasp_session_timelocked``) until WhatsApp clears it (``clear_timelock``) or
``WASP_TIMELOCK_SECONDS`` pass after the last 463, across a restart too.
Outcomes are read as a user sees them: message states and reasons through the
client library, the status hash, ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from harness.session_process import SessionProcess, new_auth_key
from wasp import WaspClient, contract

pytestmark = pytest.mark.faults

TENANT = "acme"
KNOWN = "+4915112345678"  # written to before the timelock
NEW = "+4915187654321"  # never written to
TIMELOCKED = contract.STATUS_TIMELOCKED
UNTIL = contract.STATUS_TIMELOCKED_UNTIL

StartSession = Callable[..., SessionProcess]


def _paired(start_session: StartSession, auth_key: str, **env: str) -> SessionProcess:
    pod = start_session(tenant=TENANT, auth_key=auth_key, **env)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected", timeout=30)
    return pod


def _gauge(pod: SessionProcess) -> str:
    lines = [x for x in pod.metrics().splitlines() if x.startswith("wasp_session_timelocked ")]
    return lines[0].split()[1] if lines else ""


def _outcome(client: WaspClient, message_id: str) -> tuple[str, str | None]:
    status = client.wait_for(message_id, "read", timeout=30)
    return status.state, status.reason


def _timelocked(pod: SessionProcess, client: WaspClient) -> None:
    """Write to KNOWN, then the account is timelocked."""
    assert _outcome(client, client.send_otp(KNOWN, "100000", ttl_seconds=300)) == ("read", None)
    pod.simulate("timelock")
    pod.wait_for_status(TIMELOCKED, "1")


def test_a_463_fails_only_that_recipient_and_clears_when_whatsapp_says_so(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    pod = _paired(start_session, new_auth_key())
    client = WaspClient(redis_client, TENANT)
    _timelocked(pod, client)
    assert pod.status()[UNTIL].endswith("Z")
    assert _gauge(pod) == "1.0"

    before = client.send_otp(KNOWN, "200000", ttl_seconds=300)
    refused = client.send_otp(NEW, "300000", ttl_seconds=300)
    after = client.send_otp(KNOWN, "400000", ttl_seconds=300)
    assert _outcome(client, before) == ("read", None)
    status = client.wait_for(refused, "read", timeout=30)
    assert (status.state, status.reason) == ("failed", "timelocked")
    assert "463" in (status.error or "")
    assert _outcome(client, after) == ("read", None)  # the worker went on
    assert pod.phase() == "Connected"

    pod.simulate("clear_timelock")
    pod.wait_for_status(TIMELOCKED, None)
    assert UNTIL not in pod.status()
    assert _gauge(pod) == "0.0"
    assert _outcome(client, client.send_otp(NEW, "500000", ttl_seconds=300)) == ("read", None)


def test_without_a_clear_the_timelock_ends_after_its_bound(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    pod = _paired(start_session, new_auth_key(), **{contract.ENV_TIMELOCK_SECONDS: "3"})
    client = WaspClient(redis_client, TENANT)
    _timelocked(pod, client)
    pod.wait_for_status(TIMELOCKED, None, timeout=15)  # 3 s after the 463, no clear event
    assert UNTIL not in pod.status()
    assert _gauge(pod) == "0.0"

    # WhatsApp still holds it here: the next 463 records it again, for that recipient only.
    status = client.wait_for(client.send_otp(NEW, "300000", ttl_seconds=300), "read", timeout=30)
    assert (status.state, status.reason) == ("failed", "timelocked")
    pod.wait_for_status(TIMELOCKED, "1")
    assert _outcome(client, client.send_otp(KNOWN, "400000", ttl_seconds=300)) == ("read", None)


def test_the_timelock_survives_a_restart_and_still_ends_after_its_bound(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    auth_key = new_auth_key()
    env = {contract.ENV_TIMELOCK_SECONDS: "20"}
    pod = _paired(start_session, auth_key, **env)
    _timelocked(pod, WaspClient(redis_client, TENANT))
    until = pod.status()[UNTIL]
    pod.stop()

    again = start_session(tenant=TENANT, name="pod-b", auth_key=auth_key, **env)
    again.wait_for(
        lambda: (again.phase(), again.status().get(contract.STATUS_POD)) == ("Connected", "pod-b"),
        "pod-b Connected",
        timeout=30,
    )
    assert (again.status()[TIMELOCKED], again.status()[UNTIL]) == ("1", until)
    assert _gauge(again) == "1.0"
    again.wait_for_status(TIMELOCKED, None, timeout=30)
    assert _gauge(again) == "0.0"
