"""OTP latency while the tenant's webhook receiver is healthy, failing or hung, in one run.

Webhooks must never delay an OTP (docs/webhooks.md): the sender is a thread
with a Redis connection of its own. This measures it. For each receiver, a
fresh redis-server and a real ``wasp-session`` (simulator transport, the
harness under ``tests/``) with ``WASP_WEBHOOK_URL`` pointing at it:

- ``none``: no webhook at all (the baseline);
- ``healthy``: a receiver on 127.0.0.1 answering 200 to every signed POST;
- ``failing``: the same answering 500 (the sender retries with backoff);
- ``hung``: a port that accepts connections and never answers (each try
  waits out the sender's read timeout);

then enqueues OTPs at a fixed rate and prints p50/p99 from each job's
creation to WhatsApp's acknowledgement (``sent_at``), and each p50/p99 as a
ratio to the baseline's. ``--rounds`` repeats all four, in turn.

Run: ``.venv/bin/python bench/webhook_latency.py [--rate 20] [--seconds 15] [--rounds 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import socket
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from delivery_throughput import SESSION_ENV, TENANT, latency

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, session_env
from harness.webhook_receiver import WebhookReceiver
from wasp import contract

RECEIVERS = ("none", "healthy", "failing", "hung")


@contextlib.contextmanager
def receiver_url(kind: str, secret: bytes) -> Iterator[str | None]:
    """The URL of a receiver of ``kind`` on 127.0.0.1 (``None`` for no webhook)."""
    if kind == "none":
        yield None
    elif kind == "hung":
        with socket.socket() as listener:  # accepts (the kernel does), never answers
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            yield f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"
    else:
        with WebhookReceiver(secret) as receiver:
            receiver.failing = kind == "failing"
            yield receiver.url


def measure(directory: Path, kind: str, rate: float, seconds: float) -> tuple[float, float]:
    """p50 and p99 (seconds) of enqueue→sent with a receiver of ``kind``."""
    secret = secrets.token_bytes(32)
    secret_file = directory / "webhook-secret"
    directory.mkdir(parents=True)
    secret_file.write_bytes(secret)
    server = RedisServer(directory / "redis")
    try:
        with receiver_url(kind, secret) as url:
            webhook = (
                {
                    contract.ENV_WEBHOOK_URL: url,
                    contract.ENV_WEBHOOK_SECRET_FILE: str(secret_file),
                    contract.ENV_WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8",
                }
                if url
                else {}
            )
            env = session_env(TENANT, server.url, directory / "pod", **SESSION_ENV, **webhook)
            with SessionProcess(env, directory / "pod.log") as pod:
                pod.wait_for_phase("AwaitingPairing")
                pod.simulate("scan")
                pod.wait_for_phase("Connected", timeout=30)
                api = redis.Redis.from_url(server.url)
                try:
                    p50, p99, _ = latency(api, rate, seconds)
                finally:
                    api.close()
    finally:
        server.stop()
    return p50, p99


def main() -> None:
    """Run every receiver, print the figures and the ratios to no webhook."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0, help="OTPs a second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each receiver")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in RECEIVERS}
    with tempfile.TemporaryDirectory(prefix="wasp-bench-") as tmp:
        for round_number in range(args.rounds):
            for kind in RECEIVERS:
                run = Path(tmp) / f"round-{round_number}-{kind}"
                runs[kind].append(measure(run, kind, args.rate, args.seconds))

    def median(kind: str, which: int) -> float:
        return float(statistics.median(figures[which] for figures in runs[kind]))

    base50, base99 = median("none", 0), median("none", 1)
    count = int(args.rate * args.seconds)
    print(f"enqueue->sent at {args.rate:g}/s, {count} OTPs a run, median of {args.rounds} round(s)")
    for kind in RECEIVERS:
        p50, p99 = median(kind, 0), median(kind, 1)
        print(
            f"webhook {kind + ':':9s} p50 {p50 * 1000:6.1f} ms, p99 {p99 * 1000:6.1f} ms"
            f"   ratio to none: p50 {p50 / base50:5.2f}, p99 {p99 / base99:5.2f}"
        )


if __name__ == "__main__":
    main()
