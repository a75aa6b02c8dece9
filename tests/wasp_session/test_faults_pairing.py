"""Faults: a session pod restarted during a QR storm or a halt forgets nothing of either.

Each test runs real ``wasp-session`` processes against a real redis-server,
kills them with SIGKILL (a node lost, a crash loop) and starts the tenant's
pod again, as the kubelet does. What a user notices is checked: the window
number in the status hash, the QR codes published, the phase, and that only
`wasp pair` (with the tenant API's credential too) re-arms a halted session,
while that credential can never write the pairing record itself.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import Channels, SessionProcess, new_auth_key
from harness.session_restarts import killed, pairing_record, restarted
from wasp import contract, redis_acl
from wasp_session.errors import LeaseLostError
from wasp_session.lease import Lease
from wasp_session.pairing_record import Pairing, PairingRecord

pytestmark = pytest.mark.faults

StartSession = Callable[..., SessionProcess]
TENANT = "acme"


def run_wasp(*args: str) -> subprocess.CompletedProcess[str]:
    kubectl_wasp = Path(sys.executable).with_name("kubectl-wasp")  # the plugin, as users run it
    return subprocess.run(
        [str(kubectl_wasp), *args], capture_output=True, text=True, timeout=30, check=False
    )


def api_url(redis_client: redis.Redis, server: RedisServer) -> str:
    """A Redis URL of the tenant API's ACL user, made with the operator's rules."""
    user = contract.api_redis_user(TENANT)
    arguments = redis_acl.setuser_arguments(redis_acl.api_user_rules(TENANT), "pw")
    redis_client.execute_command("ACL", "SETUSER", user, *arguments)  # type: ignore[no-untyped-call]
    return f"redis://{user}:pw@127.0.0.1:{server.port}/0"


def test_a_pod_restarted_during_a_pairing_storm_goes_on_counting_and_stays_expired(
    start_session: StartSession,
    channels: Channels,
    redis_server: RedisServer,
    redis_client: redis.Redis,
) -> None:
    limit = {contract.ENV_PAIRING_MAX_WINDOWS: "3"}
    pod = start_session(**limit)
    pod.wait_for_status(contract.STATUS_PAIRING_WINDOW, "1")
    pod.simulate("expire_qr")
    pod.wait_for_status(contract.STATUS_PAIRING_WINDOW, "2")
    assert pairing_record(redis_client, TENANT)["windows"] == "2"

    pod = restarted(start_session, killed(pod), **limit)
    status = pod.wait_for_status(contract.STATUS_PAIRING_WINDOW, "3")  # not 1 again
    assert status[contract.STATUS_PHASE] == "AwaitingPairing"
    pod.simulate("expire_qr")
    status = pod.wait_for_phase("PairingExpired")
    assert status[contract.STATUS_REASON] == "PairingWindowsExhausted"
    assert status[contract.STATUS_MESSAGE].startswith("3 pairing windows ended unscanned")
    assert pairing_record(redis_client, TENANT)["halt"] == "PairingExpired"

    pod = restarted(start_session, killed(pod), **limit)
    status = pod.wait_for_phase("PairingExpired")
    assert status[contract.STATUS_REASON] == "PairingWindowsExhausted"
    codes = len(channels.published_codes())
    time.sleep(2.0)  # a restarted pod that paired again would show a QR within 0.1 s
    status = pod.status()
    assert status[contract.STATUS_PHASE] == "PairingExpired"
    assert contract.STATUS_QR not in status
    assert len(channels.published_codes()) == codes
    assert pod.health("/readyz") == 503
    assert pod.process.alive()

    # The tenant's API credential cannot clear, forge or even read the record ...
    url = api_url(redis_client, redis_server)
    with redis.Redis.from_url(url, decode_responses=True) as api:
        for command in (
            ("DEL", contract.pairing_key(TENANT)),
            ("HSET", contract.pairing_key(TENANT), "windows", "0"),
            ("HGETALL", contract.pairing_key(TENANT)),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                api.execute_command(*command)
    assert pairing_record(redis_client, TENANT)["halt"] == "PairingExpired"
    assert pod.phase() == "PairingExpired"

    # ... but it may ask for pairing: the pod (the lease holder) clears the record.
    asked = run_wasp("pair", TENANT, "--redis-url", url)
    assert asked.returncode == 0, asked.stderr
    status = pod.wait_for_status(contract.STATUS_PAIRING_WINDOW, "1")
    assert status[contract.STATUS_PHASE] == "AwaitingPairing"
    assert pairing_record(redis_client, TENANT)["windows"] == "1"
    assert "halt" not in pairing_record(redis_client, TENANT)
    pod.simulate("scan")
    pod.wait_for_phase("Connected")
    assert pairing_record(redis_client, TENANT) == {}


def test_a_conflict_halt_survives_a_restart_until_pair(
    start_session: StartSession, channels: Channels, redis_client: redis.Redis
) -> None:
    key = new_auth_key()
    pod = start_session(auth_key=key)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected")
    pod.wait_for(lambda: redis_client.exists(contract.auth_key(TENANT)), "auth checkpoint")
    pod.simulate("stream_replaced")
    pod.wait_for_phase("Conflict")
    assert pairing_record(redis_client, TENANT)["halt"] == "Conflict"

    pod = restarted(start_session, killed(pod), auth_key=key)
    status = pod.wait_for_phase("Conflict")
    assert status[contract.STATUS_REASON] == "StreamReplaced"
    time.sleep(2.0)  # a restarted pod that reconnected would be Connected within a second
    assert pod.phase() == "Conflict"
    assert pod.health("/readyz") == 503
    assert channels.phases()[-1] == "Conflict"

    pod.control(contract.CONTROL_PAIR)
    pod.wait_for_phase("Connected")  # the stored device, no new scan
    assert pairing_record(redis_client, TENANT) == {}


def test_only_the_lease_holder_writes_the_pairing_record(redis_client: redis.Redis) -> None:
    mine = Lease(redis_client, TENANT, "pod-a", 5)
    theirs = Lease(redis_client, TENANT, "pod-b", 5)
    assert theirs.try_acquire()
    with pytest.raises(LeaseLostError):
        PairingRecord(redis_client, TENANT, mine).save(Pairing(2))
    with pytest.raises(LeaseLostError):
        PairingRecord(redis_client, TENANT, mine).clear()
    assert pairing_record(redis_client, TENANT) == {}

    PairingRecord(redis_client, TENANT, theirs).save(Pairing(3, "PairingExpired", "R", "M"))
    assert PairingRecord(redis_client, TENANT, mine).read() == Pairing(
        3, "PairingExpired", "R", "M"
    )
