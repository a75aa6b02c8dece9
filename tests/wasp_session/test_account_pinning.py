"""An account cannot be swapped: the session pins its account and refuses any other.

Real ``wasp-session`` processes (simulator transport) against a real
redis-server. The simulator's ``scan --phone`` picks which WhatsApp account
links; the outbox shows every message the simulated device "sent", and the
sealed auth blob in Redis is opened with the tenant's key to see which
account it holds. What a user notices: the phase and its sentence, OTPs that
stay queued instead of leaving from the wrong account, and the commands that
re-arm the session.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, new_auth_key
from wasp import WaspClient, contract, redis_acl
from wasp.accounts import account_of_jid
from wasp_session.snapshot import unseal
from wasp_session.transport.sim_device import DeviceFile

StartSession = Callable[..., SessionProcess]
PINNED = "+4915187654312"  # the tenant's own account
OTHER = "+4915112345678"  # someone else's phone, scanning the QR
RECIPIENT = "+4917612345699"
WASP = str(Path(sys.executable).with_name("wasp"))

pytestmark = pytest.mark.isolation


def digits(e164: str) -> str:
    return e164.removeprefix("+")


def pinned_account(client: redis.Redis) -> str | None:
    value = client.get(contract.account_key("acme"))
    return None if value is None else str(value)


def stored_account(server: RedisServer, auth_key: str, scratch: Path) -> str | None:
    """The account whose device the sealed auth blob holds (``None``: no blob)."""
    with redis.Redis.from_url(server.url) as client:
        blob = client.get(contract.auth_key("acme"))
    if blob is None:
        return None
    assert isinstance(blob, bytes)
    _, database = unseal(blob, base64.b64decode(auth_key))
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / f"blob-{time.monotonic_ns()}.db"
    path.write_bytes(database)
    device = DeviceFile(path).load()
    return "" if device is None else account_of_jid(device.jid)


def outbox(client: redis.Redis) -> list[str]:
    return client.lrange(contract.simulator_outbox_key("acme"), 0, -1)  # type: ignore[return-value]


def events(pod: SessionProcess) -> list[str]:
    return [str(line["event"]) for line in pod.log_lines()]


def refused(pod: SessionProcess, *, still_for: float = 2.0) -> dict[str, str]:
    """Wait for the AccountMismatch refusal; check that the pod sits still, unready, alive."""
    status = pod.wait_for_phase("Failed")
    assert status[contract.STATUS_REASON] == contract.REASON_ACCOUNT_MISMATCH
    time.sleep(still_for)  # long enough for a worker to take a job, were the gate open
    assert pod.process.alive()
    assert pod.health("/readyz") == 503
    assert pod.phase() == "Failed"
    return status


def pair_first(
    start_session: StartSession, auth_key: str, phone: str, **env: str
) -> SessionProcess:
    pod = start_session(auth_key=auth_key, **env)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", phone=phone)
    pod.wait_for_phase("Connected")
    return pod


def test_a_pairing_to_another_account_is_refused_and_nothing_is_sent_from_it(
    start_session: StartSession,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    key = new_auth_key()
    pod = pair_first(start_session, key, PINNED)
    assert pinned_account(redis_client) == digits(PINNED)
    pod.wait_for(lambda: stored_account(redis_server, key, tmp_path) == digits(PINNED), "blob")
    pod.simulate("logout")  # the phone unlinked the device: pairing again
    pod.wait_for_phase("AwaitingPairing")
    client = WaspClient(redis_client, "acme")
    message_id = client.send_otp(RECIPIENT, "493817")

    pod.simulate("scan", phone=OTHER)
    status = refused(pod)
    assert status[contract.STATUS_MESSAGE].startswith(
        "paired with +49…78 but this session is pinned to +49…12;"
    )
    assert "`wasp pair acme --new-account`" in status[contract.STATUS_MESSAGE]
    assert status[contract.STATUS_LAST_ERROR_REASON] == contract.REASON_ACCOUNT_MISMATCH
    assert contract.STATUS_ACCOUNT_JID not in status
    assert contract.STATUS_QR not in status
    assert outbox(redis_client) == []
    assert client.message_status(message_id).state == "queued"
    assert stored_account(redis_server, key, tmp_path) in (None, digits(PINNED))
    assert pinned_account(redis_client) == digits(PINNED)
    logged = events(pod)
    assert "account_refused" in logged
    assert "simulator_device_logged_out" in logged  # the refused device was unlinked
    assert digits(OTHER) not in pod.process.log_path.read_text()  # masked in every line

    pod.control(contract.CONTROL_PAIR)  # `wasp pair acme`: the pinned account scans again
    status = pod.wait_for_phase("AwaitingPairing")
    assert status[contract.STATUS_PAIRING_WINDOW] == "1"
    pod.simulate("scan", phone=PINNED)
    status = pod.wait_for_phase("Connected")
    assert status[contract.STATUS_ACCOUNT_JID] == f"{digits(PINNED)}@s.whatsapp.net"
    assert client.wait_for(message_id, "sent", timeout=30).state == "sent"
    assert len(outbox(redis_client)) == 1
    pod.wait_for(lambda: stored_account(redis_server, key, tmp_path) == digits(PINNED), "blob")


def test_the_phone_number_of_the_spec_is_pinned_before_any_scan(
    start_session: StartSession,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    key = new_auth_key()
    pod = start_session(auth_key=key, **{contract.ENV_PAIRING_PHONE: PINNED})
    pod.wait_for_phase("AwaitingPairing")
    assert pinned_account(redis_client) == digits(PINNED)
    pod.simulate("scan", phone=OTHER)
    status = refused(pod)
    assert "pinned to +49…12" in status[contract.STATUS_MESSAGE]
    assert stored_account(redis_server, key, tmp_path) is None  # never checkpointed
    assert not (tmp_path / "pod-a" / "simulator.db").exists()  # the local store is gone too


def test_new_account_rearms_for_another_account_with_a_credential_that_may_unpin(
    start_session: StartSession,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    key = new_auth_key()
    pod = start_session(auth_key=key, **{contract.ENV_PAIRING_PHONE: PINNED})
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", phone=OTHER)
    refused(pod, still_for=0.5)

    api_user = contract.api_redis_user("acme")
    arguments = redis_acl.setuser_arguments(redis_acl.api_user_rules("acme"), "pw")
    redis_client.execute_command("ACL", "SETUSER", api_user, *arguments)  # type: ignore[no-untyped-call]
    api_url = f"redis://{api_user}:pw@127.0.0.1:{redis_server.port}/0"
    denied = run_wasp("pair", "acme", "--new-account", "--redis-url", api_url)
    assert denied.returncode == 1
    assert denied.stdout == ""
    assert denied.stderr.count("\n") == 1
    assert "tenant API's credential cannot do this" in denied.stderr
    assert pinned_account(redis_client) == digits(PINNED)
    assert pod.phase() == "Failed"

    allowed = run_wasp("pair", "acme", "--new-account", "--redis-url", redis_server.url)
    assert allowed.returncode == 0, allowed.stderr
    assert "it was pinned to +49…12" in allowed.stdout
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", phone=OTHER)
    status = pod.wait_for_phase("Connected")
    assert status[contract.STATUS_ACCOUNT_JID] == f"{digits(OTHER)}@s.whatsapp.net"
    assert pinned_account(redis_client) == digits(OTHER)
    pod.wait_for(lambda: stored_account(redis_server, key, tmp_path) == digits(OTHER), "blob")


def test_a_stored_device_of_another_account_is_refused_on_reconnect(
    start_session: StartSession,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    key = new_auth_key()
    first = pair_first(start_session, key, OTHER)
    first.wait_for(lambda: stored_account(redis_server, key, tmp_path) == digits(OTHER), "blob")
    first.terminate()
    assert first.wait_exit() == 0
    redis_client.set(contract.account_key("acme"), digits(PINNED))  # e.g. a restored backup
    client = WaspClient(redis_client, "acme")
    message_id = client.send_otp(RECIPIENT, "493817")

    again = start_session(name="pod-b", auth_key=key)
    status = refused(again)
    assert status[contract.STATUS_POD] == "pod-b"
    assert status[contract.STATUS_MESSAGE].startswith(
        "the stored device belongs to +49…78 but this session is pinned to +49…12;"
    )
    assert outbox(redis_client) == []
    assert client.message_status(message_id).state == "queued"
    assert stored_account(redis_server, key, tmp_path) is None  # logged out: not kept
    assert "simulator_device_logged_out" in events(again)

    again.control(contract.CONTROL_PAIR)
    again.wait_for_phase("AwaitingPairing")
    again.simulate("scan", phone=PINNED)
    again.wait_for_phase("Connected")
    assert client.wait_for(message_id, "sent", timeout=30).state == "sent"


def run_wasp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WASP, *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=30,
        check=False,
    )
