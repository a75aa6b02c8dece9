"""Faults: a ban and a refused account survive a SIGKILLed session pod.

Both used to live only in the process: a pod restarted while banned
connected at once (before the ban ended, which may deepen it), and one
restarted after refusing an account forgot it and paired again. Each test
runs real ``wasp-session`` processes against a real redis-server, injects
the fault with the simulator's fault command, kills the pod with SIGKILL
and starts the tenant's pod again, as the kubelet does. What a user notices
is checked: the phase and reason, ``banned_until``, ``/readyz``, the
metric, the OTPs sent (none while banned, each at most once), and the
moment the session connects again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import redis

from harness.session_process import Channels, SessionProcess, new_auth_key
from harness.session_restarts import killed, pairing_record, restarted
from wasp import WaspClient, contract

pytestmark = pytest.mark.faults

StartSession = Callable[..., SessionProcess]
TENANT = "acme"
PINNED = "+4915187654312"
OTHER = "+4915112345678"
BAN_SECONDS = 12


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def outbox_texts(client: redis.Redis) -> list[str]:
    entries = client.lrange(contract.simulator_outbox_key(TENANT), 0, -1)
    return [json.loads(entry)["text"] for entry in entries]


def connected(start_session: StartSession, key: str, phone: str = PINNED) -> SessionProcess:
    pod = start_session(auth_key=key)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", phone=phone)
    pod.wait_for_phase("Connected")
    pod.wait_for(lambda: pod.redis.exists(contract.auth_key(TENANT)), "auth checkpoint")
    return pod


def test_a_pod_restarted_while_banned_waits_out_the_rest_of_the_ban(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    key = new_auth_key()
    pod = connected(start_session, key)
    pod.simulate("ban", seconds=BAN_SECONDS, code=101)
    status = pod.wait_for_phase("Banned")
    assert status[contract.STATUS_REASON] == "TemporaryBan"
    banned_until = status[contract.STATUS_BANNED_UNTIL]
    ends = float(pairing_record(redis_client, TENANT)["banned_until"])  # Redis's clock
    assert pairing_record(redis_client, TENANT)["halt"] == "Banned"
    assert BAN_SECONDS - 3 < ends - redis_now(redis_client) <= BAN_SECONDS
    assert pod.metric("wasp_session_bans_total") == 1

    client = WaspClient(redis_client, TENANT)
    kept = client.send_otp(OTHER, "111111", ttl_seconds=120)  # outlives the ban: sent after it
    lapsed = client.send_otp(OTHER, "222222", ttl_seconds=2)  # ends within the ban: expires

    pod = restarted(start_session, killed(pod), auth_key=key)
    status = pod.wait_for_phase("Banned")
    assert status[contract.STATUS_REASON] == "TemporaryBan"
    assert status[contract.STATUS_BANNED_UNTIL] == banned_until  # the rest, not a new ban
    time.sleep(2.0)  # a pod that reconnected at once would be Connected within a second
    assert pod.phase() == "Banned"
    assert pod.health("/readyz") == 503
    assert outbox_texts(redis_client) == []

    pod.wait_for_phase("Connected", timeout=BAN_SECONDS + 10)
    assert redis_now(redis_client) >= ends  # not before the ban ended
    assert contract.STATUS_BANNED_UNTIL not in pod.status()
    assert pairing_record(redis_client, TENANT) == {}
    pod.wait_for(lambda: client.message_status(kept).state == "read", "the kept OTP read")
    pod.wait_for(lambda: client.message_status(lapsed).state == "failed", "the lapsed OTP failed")
    assert client.message_status(lapsed).reason == "expired"
    texts = outbox_texts(redis_client)
    assert len(texts) == 1, texts
    assert "111111" in texts[0]


def test_a_ban_that_ended_while_no_pod_ran_reconnects_at_once(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    key = new_auth_key()
    pod = connected(start_session, key)
    pod.simulate("ban", seconds=2, code=101)
    pod.wait_for_phase("Banned")
    token = pod.status()[contract.STATUS_LEASE_TOKEN]
    pod.kill()
    assert pod.wait_exit() == -9
    ends = float(pairing_record(redis_client, TENANT)["banned_until"])
    while redis_now(redis_client) < ends:
        time.sleep(0.2)

    pod = start_session(auth_key=key)
    pod.wait_for(
        lambda: (
            pod.status().get(contract.STATUS_LEASE_TOKEN, token) != token
            and pod.phase() == "Connected"
        ),
        "the restarted pod connected",
    )
    assert pairing_record(redis_client, TENANT) == {}


def test_a_refused_account_stays_refused_after_a_restart_until_pair(
    start_session: StartSession, channels: Channels, redis_client: redis.Redis
) -> None:
    key = new_auth_key()
    pod = connected(start_session, key, PINNED)
    pod.simulate("logout")  # the phone unlinks the device; pairing again
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", phone=OTHER)
    status = pod.wait_for_phase("Failed")
    assert status[contract.STATUS_REASON] == "AccountMismatch"
    message = status[contract.STATUS_MESSAGE]
    assert pairing_record(redis_client, TENANT)["halt"] == "Failed"
    assert pod.metric("wasp_session_accounts_refused_total") == 1
    client = WaspClient(redis_client, TENANT)
    waiting = client.send_otp(OTHER, "333333", ttl_seconds=120)

    pod = restarted(start_session, killed(pod), auth_key=key)
    status = pod.wait_for_phase("Failed")
    assert status[contract.STATUS_REASON] == "AccountMismatch"
    assert status[contract.STATUS_MESSAGE] == message
    codes = len(channels.published_codes())
    time.sleep(2.0)  # a pod that forgot the refusal would show a QR within a second
    status = pod.status()
    assert status[contract.STATUS_PHASE] == "Failed"
    assert contract.STATUS_QR not in status
    assert len(channels.published_codes()) == codes
    assert pod.health("/readyz") == 503
    assert pod.process.alive()
    assert outbox_texts(redis_client) == []

    pod.control(contract.CONTROL_PAIR)  # re-arm: the pinned account scans again
    pod.wait_for_status(contract.STATUS_PAIRING_WINDOW, "1")
    assert "halt" not in pairing_record(redis_client, TENANT)
    pod.simulate("scan", phone=PINNED)
    pod.wait_for_phase("Connected")
    assert pairing_record(redis_client, TENANT) == {}
    pod.wait_for(lambda: client.message_status(waiting).state == "read", "the waiting OTP read")
    assert len(outbox_texts(redis_client)) == 1


def test_the_simulated_timelock_holds_for_a_pod_restarted_after_a_sigkill(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    key = new_auth_key()
    pod = connected(start_session, key)
    client = WaspClient(redis_client, TENANT)
    known = client.wait_for(client.send_otp(OTHER, "100000", ttl_seconds=300), "read", timeout=30)
    assert known.state == "read"
    pod.simulate("timelock")
    pod.wait_for_status(contract.STATUS_TIMELOCKED, "1")

    pod = restarted(start_session, killed(pod), auth_key=key)
    pod.wait_for_phase("Connected")
    assert pod.status()[contract.STATUS_TIMELOCKED] == "1"
    # WhatsApp still holds it: a new contact is refused (463), a known one still gets its code.
    new = client.wait_for(client.send_otp(PINNED, "200000", ttl_seconds=300), "read", timeout=30)
    assert (new.state, new.reason) == ("failed", "timelocked")
    again = client.wait_for(client.send_otp(OTHER, "300000", ttl_seconds=300), "read", timeout=30)
    assert (again.state, again.reason) == ("read", None)
    assert len(outbox_texts(redis_client)) == 2
