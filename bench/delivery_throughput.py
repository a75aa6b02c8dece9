"""OTP delivery throughput and latency, against bare RQ in the same run.

Starts a private redis-server and a real ``wasp-session`` process with the
simulator transport (the harness under ``tests/``), then measures:

1. bare RQ: ``SimpleWorker`` running no-op jobs (``os.getpid``), jobs/s;
2. wasp: OTP jobs through the session's worker into the simulator's outbox,
   jobs/s (first to last outbox timestamp), and the ratio to bare RQ;
3. latency: OTPs enqueued at a fixed rate, p50/p99 from the job's creation
   to WhatsApp's acknowledgement (the message's ``sent_at``).

Run: ``.venv/bin/python bench/delivery_throughput.py [--jobs 3000] [--rate 20]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue, SimpleWorker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, session_env
from wasp import contract
from wasp.timestamps import parse_timestamp

TENANT = "bench"
PHONE = "+4915112345678"


def bare_rq(server: RedisServer, jobs: int) -> float:
    """Jobs per second of RQ's SimpleWorker on no-op jobs."""
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
    return jobs / elapsed


def enqueue(queue: Queue, message_id: str, code: str) -> None:
    """One OTP job, as an API enqueues it with plain RQ."""
    queue.enqueue_call(
        contract.OTP_JOB_FUNCTION,
        kwargs={"phone": PHONE, "code": code, "message_id": message_id, "ttl_seconds": 3600},
        job_id=message_id,
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
    queue = Queue(contract.delivery_queue(TENANT), connection=connection)
    with connection.pipeline() as pipe:
        for i in range(jobs):
            queue.enqueue_call(
                contract.OTP_JOB_FUNCTION,
                kwargs={
                    "phone": PHONE,
                    "code": f"{i:06d}",
                    "message_id": f"tp-{i}",
                    "ttl_seconds": 3600,
                },
                job_id=f"tp-{i}",
                pipeline=pipe,
            )
        pipe.execute()
    sent = wait_outbox(connection, jobs, timeout=600)
    times = sorted(float(str(m["at"])) for m in sent)
    return (len(times) - 1) / (times[-1] - times[0])


def latency(connection: redis.Redis, rate: float, seconds: float) -> tuple[float, float, int]:
    """p50 and p99 (seconds) from a job's creation to sent, enqueued at ``rate`` a second."""
    connection.delete(contract.simulator_outbox_key(TENANT))
    queue = Queue(contract.delivery_queue(TENANT), connection=connection)
    count = int(rate * seconds)
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        enqueue(queue, f"lat-{i}", f"{i:06d}")
    wait_outbox(connection, count, timeout=120)
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


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs for the throughput runs")
    parser.add_argument("--rate", type=float, default=20.0, help="OTPs a second for latency")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasp-bench-") as tmp:
        directory = Path(tmp)
        server = RedisServer(directory / "redis")
        try:
            baseline = bare_rq(server, args.jobs)
            env = session_env(
                TENANT,
                server.url,
                directory / "pod",
                **{
                    contract.ENV_RATE_PER_MINUTE: "10000000",
                    contract.ENV_LOG_FORMAT: "json",
                    contract.ENV_CHECKPOINT_DEBOUNCE_SECONDS: "10",
                },
            )
            with SessionProcess(env, directory / "pod.log") as pod:
                pod.wait_for_phase("AwaitingPairing")
                pod.simulate("scan")
                pod.wait_for_phase("Connected", timeout=30)
                connection = redis.Redis.from_url(server.url)
                otp = otp_throughput(connection, args.jobs)
                p50, p99, count = latency(connection, args.rate, args.seconds)
                connection.close()
        finally:
            server.stop()
    print(f"bare RQ SimpleWorker, no-op jobs: {baseline:8.1f} jobs/s")
    print(f"wasp OTP jobs (simulator):        {otp:8.1f} jobs/s")
    print(f"ratio wasp / bare RQ:             {otp / baseline:8.2f}")
    print(
        f"enqueue->sent latency at {args.rate:g}/s ({count} OTPs): "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
