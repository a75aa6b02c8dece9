"""OTP delivery throughput and latency, against bare RQ and with tenant ACLs, in one run.

Starts private redis-servers and real ``wasp-session`` processes with the
simulator transport (the harness under ``tests/``), then measures:

1. bare RQ: ``SimpleWorker`` running no-op jobs (``os.getpid``), jobs/s,
   once a round (the median is the baseline: on a shared machine the load
   moves from one minute to the next);
2. wasp: OTP jobs (JSON, job ids ``<tenant>_<message id>``) through the
   session's worker into the simulator's outbox, jobs/s (first to last outbox
   timestamp), and the ratio to bare RQ;
3. latency: OTPs enqueued at a fixed rate, p50/p99 from the job's creation
   to WhatsApp's acknowledgement (the message's ``sent_at``), once the
   simulator has played the receipts of the throughput run's burst (a
   steady stream, not its backlog);

4. Redis commands per OTP the session sends (``MONITOR``, on its own
   server after the rest: a script is one command, its inner calls uncounted);

and 2 and 3 twice, each time on a fresh redis-server: once with everyone
on the admin connection ("no ACLs"), once as in a cluster ("ACLs"): the
server has a password, and the session pod and the API use the tenant's own
Redis users made with ``wasp.redis_acl`` (``ACL SETUSER`` from the admin
connection, as the operator does). The ratio ACLs / no ACLs is what
isolation costs. ``--rounds`` repeats both, alternating.

Run: ``.venv/bin/python bench/delivery_throughput.py [--jobs 3000] [--rate 20]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from rq import Queue, SimpleWorker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, session_env
from wasp import contract, queueing, redis_acl
from wasp.timestamps import parse_timestamp

TENANT = "bench"
BENCH_CLIENT = "wasp-bench"  # the bench's own connections: not counted
PHONE = "+4915112345678"
SESSION_ENV = {
    contract.ENV_RATE_PER_MINUTE: "10000000",
    contract.ENV_LOG_FORMAT: "json",
    contract.ENV_CHECKPOINT_DEBOUNCE_SECONDS: "10",
}


@dataclass(frozen=True)
class Figures:
    """One measured configuration."""

    throughput: float  # OTP jobs/s
    p50: float  # seconds
    p99: float  # seconds
    count: int  # OTPs in the latency run


def bare_rq(directory: Path, jobs: int) -> float:
    """Jobs per second of RQ's SimpleWorker on no-op jobs."""
    server = RedisServer(directory / "redis-bare")
    try:
        connection = redis.Redis.from_url(server.url)
        queue = Queue("bare-rq", connection=connection)
        with connection.pipeline() as pipe:
            for _ in range(jobs):
                queue.enqueue_call("os.getpid", pipeline=pipe)
            pipe.execute()
        worker = SimpleWorker([queue], connection=connection)
        start = time.perf_counter()
        worker.work(burst=True, logging_level="WARNING")
        elapsed = time.perf_counter() - start
        connection.close()
    finally:
        server.stop()
    return jobs / elapsed


def enqueue(queue: Queue, message_id: str, code: str, pipe: redis.client.Pipeline | None) -> None:
    """One OTP job, as an API enqueues it with plain RQ."""
    queue.enqueue_call(
        contract.OTP_JOB_FUNCTION,
        kwargs={"phone": PHONE, "code": code, "message_id": message_id, "ttl_seconds": 3600},
        job_id=contract.job_id(TENANT, message_id),
        pipeline=pipe,
        **queueing.job_lifetimes(3600),
    )


def wait_outbox(connection: redis.Redis, count: int, timeout: float) -> list[dict[str, object]]:
    """The outbox once it holds ``count`` messages."""
    key = contract.simulator_outbox_key(TENANT)
    deadline = time.monotonic() + timeout
    while connection.llen(key) < count:
        if time.monotonic() > deadline:
            msg = f"only {connection.llen(key)} of {count} sent in {timeout} s"
            raise TimeoutError(msg)
        time.sleep(0.1)
    return [json.loads(x) for x in connection.lrange(key, 0, -1)]


def otp_throughput(connection: redis.Redis, jobs: int) -> float:
    """OTP jobs per second through the session's worker (outbox timestamps)."""
    queue = queueing.otp_queue(connection, TENANT)
    with connection.pipeline() as pipe:
        for i in range(jobs):
            enqueue(queue, f"tp-{i}", f"{i:06d}", pipe)
        pipe.execute()
    sent = wait_outbox(connection, jobs, timeout=600)
    times = sorted(float(str(m["at"])) for m in sent)
    return (len(times) - 1) / (times[-1] - times[0])


def receipts_played(admin: redis.Redis, timeout: float = 120.0) -> None:
    """Until the simulator has played every pending receipt (delivered, read) of the burst before.

    The throughput run's last sends get their receipts up to two receipt
    delays later: a latency run started at once would measure that backlog
    too, not a steady stream at its rate.
    """
    deadline = time.monotonic() + timeout
    while admin.zcard(contract.simulator_receipts_key(TENANT)):
        if time.monotonic() > deadline:
            msg = f"receipts still pending after {timeout} s"
            raise TimeoutError(msg)
        time.sleep(0.2)
    time.sleep(1.0)  # the last ones' state writes


def latency(connection: redis.Redis, rate: float, seconds: float) -> tuple[float, float, int]:
    """p50 and p99 (seconds) from a job's creation to sent, enqueued at ``rate`` a second."""
    already = connection.llen(contract.simulator_outbox_key(TENANT))
    queue = queueing.otp_queue(connection, TENANT)
    count = int(rate * seconds)
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        enqueue(queue, f"lat-{i}", f"{i:06d}", None)
    wait_outbox(connection, already + count, timeout=120)
    delays = []
    for i in range(count):
        key = contract.message_key(TENANT, f"lat-{i}")
        created_at, sent_at = connection.hmget(
            key, [contract.MESSAGE_CREATED_AT, contract.message_state_at_field("sent")]
        )
        assert isinstance(created_at, bytes)  # noqa: S101 - a bench, not a check
        assert isinstance(sent_at, bytes)  # noqa: S101
        created = parse_timestamp(created_at.decode())
        sent = parse_timestamp(sent_at.decode())
        delays.append((sent - created).total_seconds())
    quantiles = statistics.quantiles(delays, n=100)
    return quantiles[49], quantiles[98], count


@contextlib.contextmanager
def connected_session(server_url: str, directory: Path) -> Iterator[SessionProcess]:
    """A ``wasp-session`` on ``server_url``, paired and Connected, stopped on exit."""
    env = session_env(TENANT, server_url, directory / "pod", **SESSION_ENV)
    with SessionProcess(env, directory / "pod.log") as pod:
        pod.wait_for_phase("AwaitingPairing")
        pod.simulate("scan")
        pod.wait_for_phase("Connected", timeout=30)
        yield pod


def commands_per_otp(directory: Path, otps: int) -> float:
    """Redis commands the session sends per OTP, its receipts included (``MONITOR``).

    Commands run inside Lua scripts are not counted (each script is one call),
    nor the bench's own; the session's idle polling, measured for a second
    first, is taken off. Redis 7.0 counts no commands per client, and its
    ``INFO`` counters include the scripts' inner calls, so ``MONITOR`` it is.
    """
    server = RedisServer(directory / "redis")
    try:
        with connected_session(server.url, directory):
            api = redis.Redis.from_url(server.url, client_name=BENCH_CLIENT)
            with api.monitor() as monitor:  # type: ignore[no-untyped-call]
                api.echo("idle-start")
                time.sleep(1.0)
                api.echo("idle-end")
                queue = queueing.otp_queue(api, TENANT)
                with api.pipeline() as pipe:
                    for i in range(otps):
                        enqueue(queue, f"count-{i}", f"{i:06d}", pipe)
                    pipe.execute()
                start = time.monotonic()
                wait_outbox(api, otps, timeout=600)
                time.sleep(1.0)  # the last receipts (delivered, read) come after the send
                elapsed = time.monotonic() - start
                api.echo("end")
                own = {
                    str(client["addr"])
                    for client in api.client_list()
                    if client.get("name") == BENCH_CLIENT
                }
                counts = {"idle-start": 0, "idle-end": 0, "end": 0}
                total = 0
                while True:
                    seen = monitor.next_command()
                    address = f"{seen['client_address']}:{seen['client_port']}"
                    if address in own:
                        mark = seen["command"].removeprefix("ECHO ")
                        if mark in counts:
                            counts[mark] = total
                            if mark == "end":
                                break
                    elif seen["client_type"] != "lua":
                        total += 1
            api.close()
    finally:
        server.stop()
    idle_per_second = counts["idle-end"] - counts["idle-start"]  # over one second
    return float(counts["end"] - counts["idle-end"] - idle_per_second * elapsed) / otps


def tenant_urls(server: RedisServer) -> tuple[str, str]:
    """The session's and the API's Redis URLs as the tenant's own ACL users (made here)."""
    admin = redis.Redis.from_url(server.url)
    urls = []
    for user, rules in (
        (contract.session_redis_user(TENANT), redis_acl.session_user_rules(TENANT)),
        (contract.api_redis_user(TENANT), redis_acl.api_user_rules(TENANT)),
    ):
        password = secrets.token_hex(16)
        admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", user, *redis_acl.setuser_arguments(rules, password)
        )
        urls.append(f"redis://{user}:{password}@127.0.0.1:{server.port}/0")
    admin.close()
    return urls[0], urls[1]


def measure(directory: Path, args: argparse.Namespace, *, acls: bool) -> Figures:
    """Throughput and latency through a fresh session on a fresh redis-server."""
    server = RedisServer(directory / "redis", password=secrets.token_hex(16) if acls else None)
    try:
        session_url, api_url = tenant_urls(server) if acls else (server.url, server.url)
        with connected_session(session_url, directory):
            api = redis.Redis.from_url(api_url)
            throughput = otp_throughput(api, args.jobs)
            admin = redis.Redis.from_url(server.url)
            receipts_played(admin)
            admin.close()
            p50, p99, count = latency(api, args.rate, args.seconds)
            api.close()
    finally:
        server.stop()
    return Figures(throughput, p50, p99, count)


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs for the throughput runs")
    parser.add_argument("--rate", type=float, default=20.0, help="OTPs a second for latency")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency run")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each configuration")
    parser.add_argument(
        "--count", type=int, default=200, help="OTPs for the command count (0: skip it)"
    )
    args = parser.parse_args()
    runs: dict[bool, list[Figures]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="wasp-bench-") as tmp:
        directory = Path(tmp)
        baselines = []
        for round_number in range(args.rounds):
            baselines.append(bare_rq(directory / f"round-{round_number}-bare", args.jobs))
            order = (False, True) if round_number % 2 == 0 else (True, False)
            for acls in order:
                run = directory / f"round-{round_number}-{'acl' if acls else 'open'}"
                runs[acls].append(measure(run, args, acls=acls))
        commands = commands_per_otp(directory / "count", args.count) if args.count else None
    baseline = statistics.median(baselines)

    def median(acls: bool, field: str) -> float:  # noqa: FBT001 - a local helper, by position
        return float(statistics.median(getattr(figures, field) for figures in runs[acls]))

    print(f"bare RQ SimpleWorker, no-op jobs:        {baseline:8.1f} jobs/s")
    for acls, label in ((False, "no ACLs"), (True, "ACLs (tenant users)")):
        otp = median(acls, "throughput")
        print(
            f"wasp OTP jobs, {label + ':':21s}   {otp:8.1f} jobs/s"
            f"   ratio to bare RQ {otp / baseline:5.2f}"
        )
    ratio = median(True, "throughput") / median(False, "throughput")  # noqa: FBT003
    print(f"ratio ACLs / no ACLs (throughput):       {ratio:8.2f}")
    count = runs[False][0].count
    for acls, label in ((False, "no ACLs"), (True, "ACLs")):
        print(
            f"enqueue->sent latency at {args.rate:g}/s ({count} OTPs), {label + ':':8s} "
            f"p50 {median(acls, 'p50') * 1000:6.1f} ms, p99 {median(acls, 'p99') * 1000:6.1f} ms"
        )
    if commands is not None:
        print(
            f"Redis commands per OTP from the session:  {commands:8.1f}"
            f"   (MONITOR, {args.count} OTPs; inside Lua scripts not counted)"
        )
    if args.rounds > 1:
        each = ", ".join(f"{figure:.1f}" for figure in baselines)
        print(f"bare RQ of each round: {each} jobs/s")
        for acls, label in ((False, "no ACLs"), (True, "ACLs")):
            each = ", ".join(f"{figures.throughput:.1f}" for figures in runs[acls])
            print(f"throughput of each round, {label}: {each} jobs/s")


if __name__ == "__main__":
    main()
