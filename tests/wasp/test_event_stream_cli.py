"""``wasp events``: the durable event stream as JSON lines, going on where it stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from wasp import WaspClient, contract

TENANT = "acme"
PHONE = "+4915112345678"
WASP = str(Path(sys.executable).with_name("wasp"))


def events(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WASP, "events", TENANT, "--group", "audit", "--timeout", "0.5", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", contract.ENV_REDIS_URL: url},
        timeout=30,
        check=False,
    )


def test_events_prints_each_entry_once_and_says_what_was_trimmed(
    redis_server: RedisServer, redis_client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    client = WaspClient(redis_client, TENANT)
    request.addfinalizer(client.close)
    client.send_otp(PHONE, "123456", message_id="m1")
    first = events(redis_server.url)
    assert first.returncode == 0, first.stderr
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(line["kind"], line["message_id"], line["state"]) for line in lines] == [
        ("message", "m1", "queued")
    ]
    assert lines[0]["id"]
    assert events(redis_server.url).stdout == ""  # acknowledged: not printed again

    for n in range(5):
        client.send_otp(PHONE, "123456", message_id=f"m{n + 2}")
    redis_client.xtrim(contract.event_stream_key(TENANT), maxlen=2, approximate=False)
    lost = events(redis_server.url)
    assert lost.returncode == 1
    assert "3 entries were trimmed before the group read them" in lost.stderr
    rest = events(redis_server.url)
    assert rest.returncode == 0, rest.stderr
    assert [json.loads(line)["message_id"] for line in rest.stdout.splitlines()] == ["m5", "m6"]
