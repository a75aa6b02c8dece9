"""Redis commands per second of idle, Connected sessions: what a quiet tenant costs Redis.

Starts a private redis-server and N real ``wasp-session`` processes (the
simulator transport, the production timings: lease TTL, checkpoint interval,
everything but the simulator's short QR window), each its own tenant as its
own Redis ACL user (``wasp.redis_acl``, as the operator makes them), pairs
each, waits until all are Connected and have sent nothing, lets them settle,
then counts what redis-server processed over ``--seconds`` (the longest
period, the scheduler's 30 s look, should fit in it twice): the delta of
``INFO stats`` ``total_commands_processed`` and of ``INFO commandstats``
per command, in total and per session. The benchmark's own ``INFO`` calls
are subtracted. ``MONITOR`` over the same window tells each command's key
(tenant names shown as ``<tenant>``), so every source can be named, and
counts the calls clients made apart from the commands Lua scripts ran
(``INFO`` counts both). Runs N = 1 and N = ``--sessions``.

Run: ``.venv/bin/python bench/idle_redis.py [--sessions 10] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.redis_server import RedisServer
from harness.session_process import FAST_TIMINGS, SessionProcess, session_env
from wasp import contract, redis_acl

# The production timings: every fast test timing removed but the QR window.
PRODUCTION_TIMINGS = dict.fromkeys(FAST_TIMINGS, "") | {
    contract.ENV_SIMULATOR_QR_SECONDS: FAST_TIMINGS[contract.ENV_SIMULATOR_QR_SECONDS],
}
SETTLE_SECONDS = 5.0
SIMULATOR_KEYS = contract.simulator_commands_key("<tenant>").rsplit(":", 1)[0] + ":"


def tenant_url(admin: redis.Redis, port: int, tenant: str) -> str:
    """The session's Redis URL as ``tenant``'s own ACL user (made here, as the operator does)."""
    user = contract.session_redis_user(tenant)
    password = secrets.token_hex(16)
    rules = redis_acl.session_user_rules(tenant)
    admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", user, *redis_acl.setuser_arguments(rules, password)
    )
    return f"redis://{user}:{password}@127.0.0.1:{port}/0"


def command_counts(admin: redis.Redis) -> tuple[int, dict[str, int]]:
    """``total_commands_processed`` and the calls of each command so far."""
    stats = admin.info("stats")
    commands = admin.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commands.items()}
    return int(stats["total_commands_processed"]), calls


def describe(command: str, tenants: list[str]) -> str:
    """A command as ``VERB key``, its tenant shown as ``<tenant>``."""
    words = command.split()
    verb = words[0].upper() if words else "?"
    at = 3 if verb in ("EVAL", "EVALSHA") else 1
    key = words[at] if len(words) > at else ""
    for tenant in sorted(tenants, key=len, reverse=True):  # idle10 before idle1
        key = key.replace(f"{tenant}_", "<tenant>_").replace(f":{tenant}", ":<tenant>")
    key = re.sub(r"<tenant>\.[0-9a-f]+", "<tenant>.<worker>", key)  # RQ's worker names
    return f"{verb} {key}".strip()


class Monitor:
    """``MONITOR`` on a thread: what each command was, counted until ``stop``."""

    def __init__(self, url: str, tenants: list[str]) -> None:
        """Watch the server at ``url``; name keys of ``tenants`` generically."""
        self._url = url
        self._client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        self._tenants = tenants
        self._stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _watch(self) -> None:
        with self._client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            while not self._stop.is_set():
                line = monitor.next_command()
                verb = str(line["command"]).split(" ", 1)[0].upper()
                if verb in ("INFO", "MONITOR", "PING"):
                    continue  # the benchmark's own
                where = "lua " if line["client_type"] == "lua" else ""
                self.counts[where + describe(str(line["command"]), self._tenants)] += 1

    def stop(self) -> None:
        """Stop counting (at the next command the server runs)."""
        self._stop.set()
        with redis.Redis.from_url(self._url) as nudge:
            nudge.ping()  # a command for MONITOR to see, so it looks at ``_stop``
        self._thread.join(timeout=60)
        self._client.close()


def measure(directory: Path, sessions: int, seconds: float) -> None:
    """Start ``sessions`` idle sessions, count Redis commands over ``seconds``, print them."""
    server = RedisServer(directory / "redis", password=secrets.token_hex(16))
    pods: list[SessionProcess] = []
    try:
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        for index in range(sessions):
            tenant = f"idle{index}"
            url = tenant_url(admin, server.port, tenant)
            env = session_env(tenant, url, directory / tenant, **PRODUCTION_TIMINGS)
            pods.append(SessionProcess(env, directory / f"{tenant}.log"))
        for pod in pods:
            pod.wait_for_phase("AwaitingPairing", timeout=60)
            pod.simulate("scan")
        for pod in pods:
            pod.wait_for_phase("Connected", timeout=60)
        time.sleep(SETTLE_SECONDS)
        monitor = Monitor(server.url, [f"idle{index}" for index in range(sessions)])
        total_before, calls_before = command_counts(admin)
        start = time.monotonic()
        time.sleep(seconds)
        total_after, calls_after = command_counts(admin)
        elapsed = time.monotonic() - start
        monitor.stop()
        own = {"info": 2}  # the second pair of INFO calls (stats, commandstats)
        delta = {
            name: calls_after[name] - calls_before.get(name, 0) - own.get(name, 0)
            for name in calls_after
        }
        delta = {name: count for name, count in delta.items() if count > 0}
        total = total_after - total_before - sum(own.values())
        print(f"\n{sessions} idle Connected session(s), {elapsed:.1f} s:")
        print(f"  Redis commands/s, total:        {total / elapsed:8.2f}")
        print(f"  Redis commands/s, per session:  {total / elapsed / sessions:8.2f}")
        client_calls = sum(n for name, n in monitor.counts.items() if not name.startswith("lua "))
        print(f"  client calls/s, per session:    {client_calls / elapsed / sessions:8.2f}")
        simulator = {name: n for name, n in monitor.counts.items() if SIMULATOR_KEYS in name}
        wasp_commands = sum(monitor.counts.values()) - sum(simulator.values())
        wasp_calls = client_calls - sum(simulator.values())
        print("  without the simulator's own keys (WhatsApp's stand-in: the real transport")
        print("  calls no Redis), per session:")
        print(f"    Redis commands/s:             {wasp_commands / elapsed / sessions:8.2f}")
        print(f"    client calls/s:               {wasp_calls / elapsed / sessions:8.2f}")
        print("  per command (INFO commandstats, calls/s per session):")
        for name, count in sorted(delta.items(), key=lambda item: -item[1]):
            print(f"    {name:<24} {count / elapsed / sessions:8.3f}")
        print("  per command and key (MONITOR, calls/s per session; lua: inside a script):")
        for name, count in monitor.counts.most_common():
            print(f"    {name:<60} {count / elapsed / sessions:8.3f}")
        admin.close()
    finally:
        for pod in pods:
            pod.stop()
        server.stop()


def main() -> None:
    """Measure one idle session, then ``--sessions`` of them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10, help="sessions in the larger run")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasp-bench-") as tmp:
        for count in sorted({1, args.sessions}):
            measure(Path(tmp) / f"n{count}", count, args.seconds)


if __name__ == "__main__":
    main()
