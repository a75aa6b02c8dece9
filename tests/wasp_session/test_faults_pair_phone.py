"""Faults: WhatsApp refuses the pairing-code request (PairPhone), and the session says so.

whatsmeow's ``PairPhone`` fails on a number WhatsApp refuses, a rate limit
or the network. The simulator's ``fail_pair_phone`` fault makes the real
``wasp-session`` process's request fail the same way. What a user notices
is checked: the phase and reason (``Reconnecting`` / ``PairPhoneFailed``
while it retries with backoff, a pairing code once WhatsApp answers, or
``Failed`` / ``PairPhoneFailed`` at the start-failure limit), the status's
last error, the exit code, and the metric; never a process that dies
without a status. Whatever neonize's own ``PairPhone`` raises reaches the
session as a ``TransportError`` (checked in a child process with neonize's
real exception classes, as ``test_neonize`` drives the transport).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from harness.session_process import Channels, SessionProcess
from wasp import contract

pytestmark = pytest.mark.faults

StartSession = Callable[..., SessionProcess]
TENANT = "acme"
BY_CODE = {contract.ENV_PAIRING_METHOD: "PairingCode", contract.ENV_PAIRING_PHONE: "+4915112345678"}


def refuse_pair_phone(client: redis.Redis, count: int, reason: str | None = None) -> None:
    """Queue the fault before the pod starts: its first requests are refused."""
    command: dict[str, object] = {"command": "fail_pair_phone", "count": count}
    if reason is not None:
        command["reason"] = reason
    client.rpush(contract.simulator_commands_key(TENANT), json.dumps(command))


def test_a_refused_code_request_is_retried_and_then_the_code_shows(
    start_session: StartSession, channels: Channels, redis_client: redis.Redis
) -> None:
    refuse_pair_phone(redis_client, 2)
    pod = start_session(**BY_CODE)
    pod.wait_for(lambda: contract.STATUS_PAIRING_CODE in pod.status(), "pairing code")
    status = pod.status()
    assert status[contract.STATUS_PHASE] == "AwaitingPairing"
    assert status[contract.STATUS_PAIRING_WINDOW] == "1"  # the refused requests showed no window
    assert status[contract.STATUS_LAST_ERROR_REASON] == "PairPhoneFailed"
    assert "rate-overlimit" in status[contract.STATUS_LAST_ERROR_MESSAGE]
    assert channels.phases()[:3] == ["Starting", "Reconnecting", "AwaitingPairing"]
    refused = [line for line in pod.log_lines() if line.get("event") == "pair_phone_failed"]
    assert len(refused) == 2
    assert pod.metric("wasp_session_pair_phone_failures_total") == 2
    pod.simulate("scan")
    pod.wait_for_phase("Connected")


def test_a_code_request_refused_every_time_fails_the_session_with_the_reason(
    start_session: StartSession, channels: Channels, redis_client: redis.Redis
) -> None:
    refuse_pair_phone(redis_client, 9, "phone number is not registered on WhatsApp")
    pod = start_session(**BY_CODE, **{contract.ENV_MAX_START_FAILURES: "2"})
    assert pod.wait_exit() == 1
    status = pod.status()
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == "PairPhoneFailed"
    assert "not registered on WhatsApp" in status[contract.STATUS_MESSAGE]
    assert contract.STATUS_PAIRING_CODE not in status
    assert channels.phases() == ["Starting", "Reconnecting", "Failed"]


# A child that gives NeonizeTransport a client whose PairPhone fails as neonize's
# does (its own PairPhoneError, carrying whatsmeow's words), and one with no client.
_PAIR_PHONE_REFUSED = """
import json, sys
from pathlib import Path
from neonize.exc import PairPhoneError
from wasp_session.transport.base import TransportError
from wasp_session.transport.whatsmeow import NeonizeTransport

class Client:
    def PairPhone(self, phone, show_push_notification, client_name):
        raise PairPhoneError("info query returned status 429: rate-overlimit")

seen = {}
transport = NeonizeTransport(Path(sys.argv[1]))
for name, client in (("refused", Client()), ("unconnected", None)):
    transport._client = client
    try:
        transport.pair_phone("4915112345678")
    except TransportError as error:
        seen[name] = str(error)
print(json.dumps(seen))
"""


def test_whatever_neonize_pair_phone_raises_reaches_the_session_as_a_transport_error(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PAIR_PHONE_REFUSED, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["refused"] == "PairPhone failed: info query returned status 429: rate-overlimit"
    assert seen["unconnected"] == "not connected"
