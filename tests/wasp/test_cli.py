"""The ``wasp`` command as a user runs it: real processes against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from wasp import contract

TENANT = "acme"
WASP = str(Path(sys.executable).with_name("wasp"))
KUBECTL_WASP = str(Path(sys.executable).with_name("kubectl-wasp"))


def wasp(
    *args: str, url: str | None = None, program: str = WASP
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if url is not None:
        env[contract.ENV_REDIS_URL] = url
    return subprocess.run(
        [program, *args], capture_output=True, text=True, env=env, timeout=30, check=False
    )


def test_help_explains_every_command() -> None:
    result = wasp("--help")
    assert result.returncode == 0
    for command in ("send", "status", "qr", "watch", "pair", "WASP_REDIS_URL"):
        assert command in result.stdout
    for command in ("send", "status", "qr", "watch", "pair"):
        sub = wasp(command, "--help")
        assert sub.returncode == 0
        assert "SESSION" in sub.stdout


def test_send_prints_the_message_id_and_status_shows_it(redis_server: RedisServer) -> None:
    sent = wasp("send", TENANT, "+4915112345678", "493817", url=redis_server.url)
    assert sent.returncode == 0, sent.stderr
    message_id = sent.stdout.strip()
    shown = wasp("status", TENANT, message_id, "--json", url=redis_server.url)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["state"], status["phone"]) == ("queued", "+4915112345678")
    flag = wasp("--redis-url", redis_server.url, "status", TENANT, message_id)
    assert "state: queued" in flag.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("send", TENANT, "12", "493817", "--region", "DE"), "not a valid number"),
        (("send", TENANT, "015112345678", "493817"), "no country code"),
        (("send", TENANT, "+4915112345678", "1"), "4 to 10"),
        (("send", TENANT, "+4915112345678", "1234", "--template", "{code.__class__}"), "only"),
        (("status", TENANT), "no session status"),
        (("status", TENANT, "nope"), "no message 'nope'"),
    ],
)
def test_errors_are_one_line_on_stderr_with_a_non_zero_exit(
    redis_server: RedisServer, args: tuple[str, ...], says: str
) -> None:
    result = wasp(*args, url=redis_server.url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_no_redis_url_or_no_redis_is_one_line_too() -> None:
    missing = wasp("status", TENANT)
    assert missing.returncode == 1
    assert missing.stderr == "wasp: no Redis URL: pass --redis-url or set WASP_REDIS_URL\n"
    down = wasp("status", TENANT, url="redis://127.0.0.1:1/0")
    assert down.returncode == 1
    assert down.stderr.count("\n") == 1
    assert "Traceback" not in down.stderr


def test_kubectl_wasp_pair_rearms_pairing_of_the_named_session(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    # The plugin reads no WASP_REDIS_URL: --redis-url skips the cluster (tests/plugin: with it).
    result = wasp("pair", TENANT, "--redis-url", redis_server.url, program=KUBECTL_WASP)
    assert result.returncode == 0, result.stderr
    assert redis_client.lrange(contract.control_key(TENANT), 0, -1) == [contract.CONTROL_PAIR]


def test_status_of_a_session_and_its_qr_code(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.hset(
        contract.status_key(TENANT),
        mapping={
            contract.STATUS_PHASE: "Connected",
            contract.STATUS_ACCOUNT_JID: "49151@s.whatsapp.net",
        },
    )
    shown = wasp("status", TENANT, url=redis_server.url)
    assert "phase: Connected" in shown.stdout
    assert "account_jid: 49151@s.whatsapp.net" in shown.stdout
    # Paired already: `qr` says so and ends at once.
    qr = wasp("qr", TENANT, "--timeout", "2", url=redis_server.url)
    assert qr.returncode == 0
    assert "session is Connected" in qr.stdout


def test_qr_draws_the_live_code(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    redis_client.hset(
        contract.status_key(TENANT),
        mapping={contract.STATUS_PHASE: "AwaitingPairing", contract.STATUS_QR: "2@abc,def"},
    )
    qr = wasp("qr", TENANT, "--timeout", "1", url=redis_server.url)
    assert "Scan with WhatsApp" in qr.stdout
    assert "█" in qr.stdout or "▀" in qr.stdout
    assert qr.returncode == 1  # it timed out still pairing


def test_watch_prints_each_status_change_as_a_json_line(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    env = {"PATH": "/usr/bin:/bin", contract.ENV_REDIS_URL: redis_server.url}
    with subprocess.Popen(
        [WASP, "watch", TENANT, "--timeout", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as watcher:
        deadline = time.monotonic() + 10
        while watcher.poll() is None and time.monotonic() < deadline:
            event = {contract.STATUS_PHASE: "Reconnecting"}
            redis_client.publish(contract.events_channel(TENANT), json.dumps(event))
            time.sleep(0.2)
            if time.monotonic() > deadline - 8:
                break
        out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines
    assert all(line == {"phase": "Reconnecting"} for line in lines)
