"""The redis-server fixture is the real server, and private to each test."""

from __future__ import annotations

import threading
from pathlib import Path

import redis

from harness.redis_server import RedisServer


def test_data_round_trips_through_the_real_server(redis_client: redis.Redis) -> None:
    redis_client.hset("wasp:acme:status", mapping={"phase": "Connected", "jid": "49151@s"})
    redis_client.set("wasp:acme:lease", "token-1", px=5000)

    assert redis_client.hgetall("wasp:acme:status") == {"phase": "Connected", "jid": "49151@s"}
    assert redis_client.get("wasp:acme:lease") == "token-1"
    assert 0 < redis_client.pttl("wasp:acme:lease") <= 5000
    assert str(redis_client.info("server")["redis_version"]).split(".")[0].isdigit()


def test_published_messages_reach_a_pattern_subscriber(redis_client: redis.Redis) -> None:
    pubsub = redis_client.pubsub()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    pubsub.psubscribe("wasp:*:events")
    confirmation = pubsub.get_message(timeout=5)
    assert confirmation is not None
    assert confirmation["type"] == "psubscribe"

    received: list[dict[str, str]] = []
    done = threading.Event()

    def listen() -> None:
        while len(received) < 2:
            message = pubsub.get_message(timeout=5)
            if message and message["type"] == "pmessage":
                received.append(message)
        done.set()

    listener = threading.Thread(target=listen)
    listener.start()
    assert redis_client.publish("wasp:acme:events", '{"phase": "Starting"}') == 1
    assert redis_client.publish("wasp:globex:events", '{"phase": "Connected"}') == 1
    assert redis_client.publish("wasp:acme:other", "not matched") == 0
    assert done.wait(10)
    listener.join()
    pubsub.close()

    assert [(m["channel"], m["data"]) for m in received] == [
        ("wasp:acme:events", '{"phase": "Starting"}'),
        ("wasp:globex:events", '{"phase": "Connected"}'),
    ]


def test_each_test_gets_its_own_empty_server(redis_server: RedisServer, tmp_path: Path) -> None:
    other = RedisServer(tmp_path / "other")
    try:
        with redis_server.client() as mine, other.client() as theirs:
            assert mine.dbsize() == 0
            mine.set("only-here", "1")
            assert theirs.get("only-here") is None
            assert other.port != redis_server.port
    finally:
        other.stop()
    assert not other.process.alive()


def test_a_locked_server_refuses_the_default_user_without_its_password(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "locked", password="s3cret")
    try:
        anonymous = redis.Redis(port=server.port)
        try:
            anonymous.ping()
        except redis.AuthenticationError:
            refused = True
        else:
            refused = False
        finally:
            anonymous.close()
        assert refused
        with server.client() as admin:
            assert admin.ping()
    finally:
        server.stop()


def test_a_restart_keeps_the_data_and_drops_runtime_acl_users(redis_server: RedisServer) -> None:
    with redis_server.client() as admin:
        admin.set("wasp:acme:auth", "blob")
        admin.execute_command("ACL", "SETUSER", "wasp-api-acme", "on", ">pw", "~wasp:acme:*")
        assert "wasp-api-acme" in admin.acl_users()
    port = redis_server.port

    redis_server.restart()

    assert redis_server.port == port
    with redis_server.client() as admin:
        assert admin.get("wasp:acme:auth") == "blob"
        assert "wasp-api-acme" not in admin.acl_users()
