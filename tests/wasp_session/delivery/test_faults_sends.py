"""Faults in the middle of a send: a real ``wasp-session`` process, the simulator as WhatsApp.

A send that reached WhatsApp and then timed out is not sent again: its
message fails ``uncertain``. A job whose send kills the process (a real
SIGKILL of the process group while the send waits for WhatsApp's
acknowledgement) is resent once by the restarted process, and when that kills
it too, the next process fails it ``uncertain`` without sending and goes on
with the other jobs. What WhatsApp received is read from the simulator's
outbox; the message states and reasons through the client library.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest
import redis

from harness.session_process import SessionProcess, new_auth_key
from wasp import WaspClient, contract

pytestmark = pytest.mark.faults

TENANT = "acme"
PHONE = "+4915112345678"
# Retries come quickly here: a resend of the uncertain send would show within the wait.
ENV = {contract.ENV_RETRY_BACKOFF_SECONDS: "1", contract.ENV_RETRY_ATTEMPTS: "3"}
LOST_ACK_FAULT = "send_timeout_after_delivery"

StartSession = Callable[..., SessionProcess]


def _outbox_texts(client: redis.Redis) -> list[str]:
    entries = client.lrange(contract.simulator_outbox_key(TENANT), 0, -1)
    return [json.loads(entry)["text"] for entry in entries]


def _text(code: str) -> str:
    return f"Your code is {code}. It expires in 5 minutes."


def _play(pod: SessionProcess, command: str, **arguments: object) -> None:
    """Push a simulator command and wait until the pod has played it."""

    def played() -> int:
        lines = pod.log_lines()
        return sum(
            1
            for line in lines
            if line.get("event") == "simulator_command" and line.get("command") == command
        )

    before = played()
    pod.simulate(command, **arguments)
    pod.wait_for(lambda: played() > before, f"simulator command {command} played")


def _paired(start_session: StartSession, auth_key: str) -> SessionProcess:
    pod = start_session(tenant=TENANT, auth_key=auth_key, **ENV)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected", timeout=30)
    return pod


def _metric(pod: SessionProcess, line_start: str) -> str:
    lines = [line for line in pod.metrics().splitlines() if line.startswith(line_start)]
    return lines[0] if lines else ""


def test_a_send_that_times_out_after_reaching_whatsapp_fails_uncertain_and_is_not_sent_again(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    pod = _paired(start_session, new_auth_key())
    client = WaspClient(redis_client, TENANT)
    _play(pod, LOST_ACK_FAULT, count=1)

    lost = client.send_otp(PHONE, "111111", ttl_seconds=300)
    status = client.wait_for(lost, "sent", timeout=30)
    assert (status.state, status.reason) == ("failed", "uncertain")
    assert "may have reached WhatsApp" in (status.error or "")
    assert _outbox_texts(redis_client) == [_text("111111")]  # it did reach WhatsApp

    time.sleep(4)  # past every retry the backoff would have scheduled (1 s, 2 s)
    assert _outbox_texts(redis_client) == [_text("111111")]  # and went once
    assert client.message_status(lost).state == "failed"

    after = client.send_otp(PHONE, "222222", ttl_seconds=300)
    assert client.wait_for(after, "read", timeout=30).state == "read"
    assert _outbox_texts(redis_client) == [_text("111111"), _text("222222")]
    failed = f'wasp_otp_messages_total{{reason="uncertain",state="failed",tenant="{TENANT}"}}'
    assert _metric(pod, failed) == f"{failed} 1.0"


def _message_state(client: redis.Redis, message_id: str) -> object:
    return client.hget(contract.message_key(TENANT, message_id), contract.MESSAGE_STATE)


def test_a_job_that_kills_the_process_every_time_is_resent_once_then_fails_uncertain(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    auth_key = new_auth_key()
    pod = _paired(start_session, auth_key)
    client = WaspClient(redis_client, TENANT)
    commands = contract.simulator_commands_key(TENANT)
    # Every send of this job reaches WhatsApp and then hangs waiting for the
    # acknowledgement; the test SIGKILLs the process right then, as a send that
    # crashes the process would. The restarted process plays the fault queued
    # before it starts, so its resend hangs (and dies) the same way.
    _play(pod, LOST_ACK_FAULT, seconds=120)
    poison = client.send_otp(PHONE, "666666", ttl_seconds=300)
    duplicates = f'wasp_otp_possible_duplicates_total{{tenant="{TENANT}"}}'
    for sends in (1, 2):
        pod.wait_for(
            lambda n=sends: len(_outbox_texts(redis_client)) == n,
            f"send {sends} reached WhatsApp",
            timeout=60,
        )
        assert _message_state(redis_client, poison) == "sending"
        if sends == 2:  # the restarted process took the job over: one possible duplicate
            assert _metric(pod, duplicates) == f"{duplicates} 1.0"
        pod.kill()
        assert pod.wait_exit() == -signal.SIGKILL
        if sends == 1:
            redis_client.rpush(commands, json.dumps({"command": LOST_ACK_FAULT, "seconds": 120}))
        pod = start_session(tenant=TENANT, auth_key=auth_key, **ENV)  # the kubelet's restart

    other = client.send_otp(PHONE, "777777", ttl_seconds=300)
    status = client.wait_for(poison, "sent", timeout=60)
    assert (status.state, status.reason) == ("failed", "uncertain")
    assert "died while sending it, and again while resending it" in (status.error or "")
    assert client.wait_for(other, "read", timeout=60).state == "read"  # the session serves on
    time.sleep(2)
    assert _outbox_texts(redis_client) == [_text("666666"), _text("666666"), _text("777777")]
    assert client.message_status(poison).state == "failed"
    failed = f'wasp_otp_messages_total{{reason="uncertain",state="failed",tenant="{TENANT}"}}'
    assert _metric(pod, failed) == f"{failed} 1.0"
    assert pod.phase() == "Connected"
