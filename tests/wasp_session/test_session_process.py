"""The session program as Kubernetes runs it: one pod per tenant, SIGTERM, bad configuration."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, new_auth_key, session_env, with_secret_files
from wasp import contract

StartSession = Callable[..., SessionProcess]


def auth_header(server: RedisServer) -> dict[str, object]:
    """The readable header of the auth blob (its first line)."""
    with redis.Redis.from_url(server.url) as client:
        blob = client.get(contract.auth_key("acme"))
    assert isinstance(blob, bytes)
    header: dict[str, object] = json.loads(blob.partition(b"\n")[0])
    return header


def test_second_pod_waits_then_takes_over_without_a_new_scan(
    start_session: StartSession, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    key = new_auth_key()
    first = start_session(name="pod-a", auth_key=key)
    first.wait_for_phase("AwaitingPairing")
    first.simulate("scan", jid="4915112345678@s.whatsapp.net")
    first.wait_for_phase("Connected")
    first.wait_for(lambda: redis_client.exists(contract.auth_key("acme")), "auth checkpoint")
    first_token = int(str(redis_client.get(contract.lease_key("acme"))).split()[0])

    second = start_session(name="pod-b", auth_key=key)
    status = second.wait_for_status(contract.STATUS_STANDBY_POD, "pod-b")
    assert status[contract.STATUS_PHASE] == "Connected"
    assert status[contract.STATUS_POD] == "pod-a"
    assert second.health("/readyz") == 503
    assert auth_header(redis_server)["fence"] == first_token

    first.kill()
    second.wait_for_status(contract.STATUS_POD, "pod-b", timeout=15)
    status = second.wait_for_phase("Connected", timeout=15)
    assert status[contract.STATUS_ACCOUNT_JID] == "4915112345678@s.whatsapp.net"
    assert contract.STATUS_STANDBY_POD not in status
    second.wait_for(lambda: auth_header(redis_server)["fence"] != first_token, "own checkpoint")
    assert int(str(auth_header(redis_server)["fence"])) > first_token
    events = [line["event"] for line in second.log_lines()]
    assert "pairing_code_issued" not in events
    assert "auth_restored" in events
    # Until it held the lease, the second pod wrote no auth state.
    assert events.index("lease_acquired") < events.index("checkpoint_written")


def test_sigterm_checkpoints_releases_the_lease_and_exits_zero(
    start_session: StartSession, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    pod = start_session()
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected")
    pod.wait_for(lambda: redis_client.exists(contract.auth_key("acme")), "auth checkpoint")
    generation = int(str(auth_header(redis_server)["generation"]))
    pod.simulate("disconnect", seconds=0.3)
    pod.simulate("keepalive_timeout")
    pod.terminate()
    assert pod.wait_exit() == 0
    assert not redis_client.exists(contract.lease_key("acme"))
    assert int(str(auth_header(redis_server)["generation"])) > generation
    assert pod.status()[contract.STATUS_LEASE_HELD] == "0"
    events = [line["event"] for line in pod.log_lines()]
    assert events.index("session_stopping") < events.index("session_stopped")


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask, from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_a_sigterm_while_the_session_is_still_loading_stops_it_cleanly(
    start_session: StartSession,
) -> None:
    pod = start_session()
    # As soon as the entry point can hear SIGTERM (long before the session is
    # wired: neonize and RQ are still loading), the kubelet's SIGTERM arrives.
    deadline = time.monotonic() + 20
    while not catches(pod.process.pid, signal.SIGTERM):
        assert pod.process.alive()
        assert time.monotonic() < deadline, "no SIGTERM handler within 20 s"
        time.sleep(0.002)
    os.kill(pod.process.pid, signal.SIGTERM)
    assert pod.wait_exit() == 0  # not killed by the signal, not left to a SIGKILL
    events = [line["event"] for line in pod.log_lines()]
    assert "signal_received_while_loading" in events
    assert "session_connected" not in events


def test_a_restarted_pod_restores_the_account(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    key = new_auth_key()
    pod = start_session(name="pod-a", auth_key=key)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", jid="4915112345678@s.whatsapp.net")
    pod.wait_for_phase("Connected")
    pod.terminate()
    assert pod.wait_exit() == 0
    again = start_session(name="pod-c", auth_key=key)  # a fresh data dir, as on a new node
    again.wait_for(lambda: again.status().get(contract.STATUS_POD) == "pod-c", "its own status")
    again.wait_for_phase("Connected")
    assert "pairing_code_issued" not in [line["event"] for line in again.log_lines()]
    assert redis_client.exists(contract.auth_key("acme"))


def test_a_wrong_auth_key_fails_instead_of_pairing_again(
    start_session: StartSession,
) -> None:
    pod = start_session(name="pod-a")
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected")
    pod.terminate()
    assert pod.wait_exit() == 0
    other = start_session(name="pod-b")  # another key
    assert other.wait_exit() == 1
    status = other.status()
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == "AuthRestoreFailed"


BAD_CONFIGS = [
    ({contract.ENV_AUTH_KEY: ""}, contract.ENV_AUTH_KEY, "required"),
    ({contract.ENV_AUTH_KEY: "not base64!"}, contract.ENV_AUTH_KEY, "base64"),
    ({contract.ENV_AUTH_KEY: "c2hvcnQ="}, contract.ENV_AUTH_KEY, "32 bytes"),
    ({contract.ENV_TRANSPORT: "carrier-pigeon"}, contract.ENV_TRANSPORT, "one of"),
    ({contract.ENV_PAIRING_METHOD: "PairingCode"}, contract.ENV_PAIRING_PHONE, "required"),
    ({contract.ENV_PAIRING_PHONE: "12"}, contract.ENV_PAIRING_PHONE, "E.164"),
    ({contract.ENV_MAX_START_FAILURES: "many"}, contract.ENV_MAX_START_FAILURES, "integer"),
    ({contract.ENV_LEASE_TTL_SECONDS: "0"}, contract.ENV_LEASE_TTL_SECONDS, "at least"),
    ({contract.ENV_HEALTH_PORT: "70000"}, contract.ENV_HEALTH_PORT, "TCP port"),
    ({contract.ENV_SIMULATOR_QR_SECONDS: "60,x"}, contract.ENV_SIMULATOR_QR_SECONDS, "seconds"),
    ({contract.ENV_MESSAGE_TEMPLATE: "no code"}, contract.ENV_MESSAGE_TEMPLATE, "{code}"),
    (
        {contract.ENV_MESSAGE_TEMPLATE: "{code.__class__}"},
        contract.ENV_MESSAGE_TEMPLATE,
        "{code.__class__}",
    ),
    ({contract.ENV_MESSAGE_TEMPLATE: "Code {0} {code}"}, contract.ENV_MESSAGE_TEMPLATE, "{0}"),
    (
        {contract.ENV_MESSAGE_TEMPLATE: "{code} {minutes!r}"},
        contract.ENV_MESSAGE_TEMPLATE,
        "{minutes!r}",
    ),
    ({contract.ENV_MESSAGE_TEMPLATE: "Code {code"}, contract.ENV_MESSAGE_TEMPLATE, "expected '}'"),
    ({contract.ENV_MESSAGE_TEMPLATE: "Code } {code}"}, contract.ENV_MESSAGE_TEMPLATE, "Single '}'"),
    ({contract.ENV_LOG_FORMAT: "xml"}, contract.ENV_LOG_FORMAT, "one of"),
]


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[1] + ":" + c[2] for c in BAD_CONFIGS])
def test_bad_configuration_stops_with_one_line_and_a_failed_status(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
    case: tuple[dict[str, str], str, str],
) -> None:
    overrides, variable, words = case
    env = session_env("acme", redis_server.url, tmp_path / "data", **overrides)
    with SessionProcess(env, tmp_path / "pod.log") as pod:
        assert pod.wait_exit() == 2
        lines = pod.process.log_path.read_text().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["event"] == "configuration_invalid"
    assert record["variable"] == variable
    assert words in record["error"]
    status = redis_client.hgetall(contract.status_key("acme"))
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == "InvalidConfiguration"
    assert variable in status[contract.STATUS_MESSAGE]


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({contract.ENV_TENANT: ""}, contract.ENV_TENANT),
        ({contract.ENV_TENANT: "Not_A_Label"}, contract.ENV_TENANT),
        ({contract.ENV_REDIS_URL: "http://example"}, contract.ENV_REDIS_URL),
    ],
)
def test_without_tenant_or_redis_the_reason_is_only_logged(
    redis_server: RedisServer, tmp_path: Path, overrides: dict[str, str], variable: str
) -> None:
    env = session_env("acme", redis_server.url, tmp_path / "data", **overrides)
    if contract.ENV_REDIS_URL in overrides:
        env[contract.ENV_REDIS_URL] = overrides[contract.ENV_REDIS_URL]
    with SessionProcess(
        {**env, contract.ENV_REDIS_URL: env[contract.ENV_REDIS_URL]}, tmp_path / "pod.log"
    ) as pod:
        assert pod.wait_exit() == 2
        lines = pod.process.log_path.read_text().splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["variable"] == variable


# ---------------------------------------------------------------- secrets as files (a pod's way)
def test_a_pod_given_its_secrets_as_files_pairs_and_restores(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    key = new_auth_key()
    env = with_secret_files(
        session_env("acme", redis_server.url, tmp_path / "a", auth_key=key, pod_name="pod-a"),
        tmp_path / "secrets",
    )
    assert contract.ENV_REDIS_URL not in env
    assert contract.ENV_AUTH_KEY not in env
    with SessionProcess(env, tmp_path / "a.log") as pod:
        pod.wait_for_phase("AwaitingPairing")
        pod.simulate("scan")
        pod.wait_for_phase("Connected")
        pod.terminate()
        assert pod.wait_exit() == 0
    fresh = {**env, contract.ENV_DATA_DIR: str(tmp_path / "b"), contract.ENV_POD_NAME: "pod-b"}
    with SessionProcess(fresh, tmp_path / "b.log") as again:  # the key from the file opens it
        again.wait_for_status(contract.STATUS_POD, "pod-b")
        again.wait_for_phase("Connected")
        assert "auth_restored" in [line["event"] for line in again.log_lines()]
    assert redis_client.exists(contract.auth_key("acme"))


def test_a_missing_secret_file_stops_with_its_variable_and_path_in_a_relayable_status(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = with_secret_files(
        session_env("acme", redis_server.url, tmp_path / "a"), tmp_path / "secrets"
    )
    env[contract.ENV_AUTH_KEY_FILE] = str(tmp_path / "secrets" / "missing")
    with SessionProcess(env, tmp_path / "pod.log") as pod:
        assert pod.wait_exit() == 2
        lines = pod.process.log_path.read_text().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["variable"] == contract.ENV_AUTH_KEY_FILE
    assert str(tmp_path / "secrets" / "missing") in record["error"]
    status = redis_client.hgetall(contract.status_key("acme"))
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == "InvalidConfiguration"
    assert contract.ENV_AUTH_KEY_FILE in status[contract.STATUS_MESSAGE]
    # Written under the lease, so the operator relays it; the lease is given back.
    assert status[contract.STATUS_LEASE_TOKEN] == redis_client.get(contract.lease_fence_key("acme"))
    assert not redis_client.exists(contract.lease_key("acme"))


def test_a_secret_given_both_ways_stops_the_pod(redis_server: RedisServer, tmp_path: Path) -> None:
    env = with_secret_files(
        session_env("acme", redis_server.url, tmp_path / "a"), tmp_path / "secrets"
    )
    env[contract.ENV_REDIS_URL] = redis_server.url
    with SessionProcess(env, tmp_path / "pod.log") as pod:
        assert pod.wait_exit() == 2
        record = json.loads(pod.process.log_path.read_text().splitlines()[0])
    assert record["variable"] == contract.ENV_REDIS_URL
    assert contract.ENV_REDIS_URL_FILE in record["error"]
