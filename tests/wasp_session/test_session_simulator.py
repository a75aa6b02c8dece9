"""The session pod with the simulator transport: every row of the event table.

Each test runs the real ``wasp-session`` program against a real redis-server
and checks what a user sees: the status hash, the events and QR channels,
the auth blob in Redis, ``/readyz`` and the exit code.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from harness.session_process import Channels, SessionProcess
from wasp import contract

StartSession = Callable[..., SessionProcess]


def connected(start_session: StartSession, channels: Channels, **env: str) -> SessionProcess:
    pod = start_session(**env)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", push_name="Acme")
    pod.wait_for_phase("Connected")
    channels.wait_phase("Connected")
    return pod


def test_qr_is_published_and_a_scan_connects(
    start_session: StartSession, channels: Channels, redis_client: redis.Redis
) -> None:
    pod = start_session()
    status = pod.wait_for_phase("AwaitingPairing")
    assert status[contract.STATUS_QR].startswith("2@")
    assert status[contract.STATUS_PAIRING_EXPIRES_AT].endswith("Z")
    assert status[contract.STATUS_PAIRING_WINDOW] == "1"
    pod.wait_for(lambda: status[contract.STATUS_QR] in channels.published_codes(), "QR")

    pod.simulate("scan", push_name="Acme", jid="4915112345678@s.whatsapp.net")
    status = pod.wait_for_phase("Connected")
    assert status[contract.STATUS_ACCOUNT_JID] == "4915112345678@s.whatsapp.net"
    assert status[contract.STATUS_PUSH_NAME] == "Acme"
    assert contract.STATUS_QR not in status
    assert contract.STATUS_PAIRING_EXPIRES_AT not in status
    assert status[contract.STATUS_LEASE_HELD] == "1"
    pod.wait_for(lambda: pod.health("/readyz") == 200, "/readyz 200")
    assert pod.health("/healthz") == 200
    assert channels.wait_phase("Connected")[contract.STATUS_ACCOUNT_JID].startswith("4915112")
    assert channels.phases()[:3] == ["Starting", "AwaitingPairing", "Connected"]

    pod.wait_for(lambda: redis_client.exists(contract.auth_key("acme")), "auth checkpoint")
    raw = redis.Redis.from_url(pod.env[contract.ENV_REDIS_URL]).get(contract.auth_key("acme"))
    assert raw is not None
    assert b"SQLite format" not in raw
    assert b"4915112345678" not in raw
    assert b"Acme" not in raw
    metrics = pod.metrics()
    assert 'wasp_session_phase{wasp_session_phase="Connected"} 1.0' in metrics
    assert "wasp_session_checkpoints_total" in metrics


def test_disconnect_reconnects(start_session: StartSession, channels: Channels) -> None:
    pod = connected(start_session, channels)
    pod.simulate("disconnect", seconds=0.5)
    channels.wait_phase("Reconnecting")
    pod.wait_for_phase("Connected")
    assert channels.phases()[-2:] == ["Reconnecting", "Connected"]


def test_logged_out_deletes_auth_and_pairs_again(
    start_session: StartSession, channels: Channels, redis_client: redis.Redis
) -> None:
    pod = connected(start_session, channels)
    pod.wait_for(lambda: redis_client.exists(contract.auth_key("acme")), "auth checkpoint")
    pod.simulate("logout")
    logged_out = channels.wait_phase("LoggedOut")
    assert contract.STATUS_ACCOUNT_JID not in logged_out
    status = pod.wait_for_phase("AwaitingPairing")
    assert not redis_client.exists(contract.auth_key("acme"))
    assert status[contract.STATUS_LAST_ERROR_REASON] == "LoggedOut"
    assert contract.STATUS_QR in status
    pod.simulate("scan")
    pod.wait_for_phase("Connected")


def test_stream_replaced_is_a_conflict_until_pair_is_asked(
    start_session: StartSession, channels: Channels
) -> None:
    pod = connected(start_session, channels)
    pod.simulate("stream_replaced")
    status = pod.wait_for_phase("Conflict")
    assert status[contract.STATUS_REASON] == "StreamReplaced"
    assert pod.health("/readyz") == 503
    assert pod.process.alive()
    pod.control(contract.CONTROL_PAIR)
    pod.wait_for_phase("Connected")


def test_temporary_ban_waits_for_expiry_then_reconnects(
    start_session: StartSession, channels: Channels
) -> None:
    pod = connected(start_session, channels)
    pod.simulate("ban", seconds=1, code=101)
    banned = channels.wait_phase("Banned")
    assert banned[contract.STATUS_BANNED_UNTIL].endswith("Z")
    assert banned[contract.STATUS_REASON] == "TemporaryBan"
    pod.wait_for_phase("Connected")
    assert contract.STATUS_BANNED_UNTIL not in pod.status()


def test_timelock_is_a_status_condition(start_session: StartSession, channels: Channels) -> None:
    pod = connected(start_session, channels)
    pod.simulate("timelock")
    pod.wait_for_status(contract.STATUS_TIMELOCKED, "1")
    assert pod.phase() == "Connected"
    pod.simulate("clear_timelock")
    pod.wait_for_status(contract.STATUS_TIMELOCKED, None)


@pytest.mark.parametrize(
    ("command", "reason"),
    [("client_outdated", "ClientOutdated"), ("connect_failure", "ConnectFailure")],
)
def test_fatal_connect_failures_fail_the_session(
    start_session: StartSession, channels: Channels, command: str, reason: str
) -> None:
    pod = connected(start_session, channels)
    pod.simulate(command)
    assert pod.wait_exit() == 1
    status = pod.status()
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == reason
    assert status[contract.STATUS_LAST_ERROR_REASON] == reason
    assert channels.wait_phase("Failed")[contract.STATUS_REASON] == reason


def test_unexpected_end_of_the_connection_exits_non_zero(
    start_session: StartSession, channels: Channels
) -> None:
    pod = connected(start_session, channels)
    pod.simulate("crash")
    assert pod.wait_exit() == 3
    assert pod.status()[contract.STATUS_LAST_ERROR_REASON] == "TransportStopped"


def test_pairing_windows_run_out_then_kubectl_wasp_pair_rearms(
    start_session: StartSession,
) -> None:
    pod = start_session(**{contract.ENV_PAIRING_MAX_WINDOWS: "2"})
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("expire_qr")
    pod.wait_for_status(contract.STATUS_PAIRING_WINDOW, "2")
    pod.simulate("expire_qr")
    status = pod.wait_for_phase("PairingExpired")
    assert contract.STATUS_QR not in status
    assert status[contract.STATUS_REASON] == "PairingWindowsExhausted"
    kubectl_wasp = Path(sys.executable).with_name("kubectl-wasp")  # the plugin, as users run it
    subprocess.run(
        [str(kubectl_wasp), "pair", pod.tenant, "--redis-url", pod.env[contract.ENV_REDIS_URL]],
        check=True,
        timeout=30,
    )
    status = pod.wait_for_phase("AwaitingPairing")
    assert status[contract.STATUS_PAIRING_WINDOW] == "1"
    pod.simulate("scan")
    pod.wait_for_phase("Connected")


def test_qr_codes_rotate_within_a_window(start_session: StartSession, channels: Channels) -> None:
    pod = start_session(**{contract.ENV_SIMULATOR_QR_SECONDS: "0.3,0.3,0.3"})
    pod.wait_for(lambda: len(set(channels.published_codes())) >= 3, "three QR codes")
    pod.wait_for_status(contract.STATUS_PAIRING_WINDOW, "2")


def test_pairing_code_method_publishes_a_code(
    start_session: StartSession, channels: Channels
) -> None:
    pod = start_session(
        **{contract.ENV_PAIRING_METHOD: "PairingCode", contract.ENV_PAIRING_PHONE: "+4915112345678"}
    )
    status = pod.wait_for_status(contract.STATUS_QR, None)
    pod.wait_for(lambda: contract.STATUS_PAIRING_CODE in pod.status(), "pairing code")
    status = pod.status()
    code = status[contract.STATUS_PAIRING_CODE]
    assert len(code) == 9
    assert code[4] == "-"
    assert contract.STATUS_QR not in status
    pod.wait_for(lambda: code in channels.published_codes(), "code published")
    pod.simulate("scan")
    status = pod.wait_for_phase("Connected")
    assert status[contract.STATUS_ACCOUNT_JID] == "4915112345678@s.whatsapp.net"
    assert contract.STATUS_PAIRING_CODE not in status


def test_repeated_start_failures_back_off_then_fail(
    start_session: StartSession, channels: Channels, redis_client: redis.Redis
) -> None:
    redis_client.rpush(
        contract.simulator_commands_key("acme"), '{"command": "fail_starts", "count": 9}'
    )
    pod = start_session(**{contract.ENV_MAX_START_FAILURES: "3"})
    assert pod.wait_exit() == 1
    status = pod.status()
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == "StartFailed"
    assert "3 starts failed" in status[contract.STATUS_MESSAGE]
    assert channels.phases() == ["Starting", "Reconnecting", "Failed"]
