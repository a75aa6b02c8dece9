"""The OTP job's arguments, fuzzed: whatever a tenant's API enqueues, every job ends.

Hypothesis draws batches of OTP job keyword arguments of any JSON shape
(missing and extra keys, wrong types, huge or odd strings and unicode,
numbers as strings, nested objects, negative or huge TTLs, bad templates,
message ids of odd shapes) and enqueues them as a tenant's API can: with
plain RQ and ``JSONSerializer`` as the README's recipe does, and, when RQ
itself refuses the job id (a message id RQ would not put in one), as the
raw job hash RQ would write under that id (raw hashes also carry odd
creation times). A real ``wasp-session`` process
(simulator transport, Connected) serves them. Every job must end:

- a job whose id names a message (``<tenant>_<message id>``, a valid id)
  leaves that message ``sent``/``delivered``/``read``, or ``failed`` with a
  documented reason and an error sentence, within a bound;
- any other job (no message id can be read: no message hash can exist) ends
  ``failed`` in RQ's failed registry with its error text;
- nothing stays ``queued`` or ``sending``, nothing is left on the queue or
  RQ's intermediate queue, and a good OTP enqueued after each batch is
  ``read``: the worker keeps serving.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rq.job import Job
from rq.serializers import JSONSerializer

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess
from wasp import WaspClient, contract, queueing
from wasp.messages import MessageStatus, MessageStore
from wasp_session.delivery.arguments import MESSAGE_ID_PATTERN

pytestmark = pytest.mark.faults

TENANT = "acme"
PHONE = "+4915112345678"
ABSENT = "+4915199999999"  # a number the simulated WhatsApp has no account for
BATCH = 30
ENDS_WITHIN_SECONDS = 45.0
ENV = {
    contract.ENV_RATE_PER_MINUTE: "10000000",
    contract.ENV_RETRY_BACKOFF_SECONDS: "1",
    contract.ENV_RETRY_ATTEMPTS: "2",
}
EXPLORE = "WASP_FUZZ_EXAMPLES"  # set to explore: that many random batches instead of CI's
NOT_PENDING = frozenset({"sent", "delivered", "read", "failed"})

StartSession = Callable[..., SessionProcess]

# ----------------------------------------------------------------- strategies
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\n",
        "\ud800",  # a lone surrogate: valid JSON, not encodable as UTF-8
        "\U0001f600" * 4,
        "١٢٣٤٥٦",  # Arabic-Indic digits
        "x" * 5000,
        "9" * 300,
        "{code}" * 300,
    ]
)
PHONES = st.one_of(
    st.sampled_from(
        [
            PHONE,
            ABSENT,
            "015112345678",
            "4915112345678",
            "+49 151 1234 5678",
            "0049 151 12345678",
            "+1",
            "+",
            "+4915112345678\n",
            "+٤٩١٥١١٢٣٤٥٦٧٨",
            "+49151123456789999",
        ]
    ),
    ODD_TEXT,
    st.text(max_size=20),
    JSON_VALUES,
)
CODES = st.one_of(
    st.sampled_from(["424242", "1234", "A1b2C3d4E5", "123", "12345678901", "12 34", "١٢٣٤"]),
    ODD_TEXT,
    st.text(max_size=12),
    JSON_VALUES,
)
TTLS = st.one_of(
    st.sampled_from([60, 1, 86400, 86401, 0, -1, 10**12, 10**15, 10**30, -(10**30)]),
    st.sampled_from(["60", "1e3", 60.0, 60.5, True, False, None, float("inf"), float("nan")]),
    st.integers(),
    JSON_VALUES,
)
TEMPLATES = st.one_of(
    st.sampled_from(
        [
            "Code {code}, {minutes} min",
            "{code}",
            "{minutes}",
            "{code.__class__}",
            "{code[0]}",
            "{code!r}",
            "{code:>9}",
            "{0}",
            "{}",
            "{",
            "}",
            "{{code}}",
            "{code}{",
            "{code:{minutes}}",
            "{code}" + "x" * 1000,
        ]
    ),
    ODD_TEXT,
    st.text(max_size=20),
    JSON_VALUES,
)
ODD_MESSAGE_IDS = st.one_of(
    st.sampled_from(["", " ", "a b", "x" * 129, "ü", "a:b", "../x", "\ud800", "a\x00"]),
    st.text(max_size=10),
    JSON_VALUES,
)


# A job's creation time (it dates the message) as a raw hash may carry it.
CREATION_TIMES = st.sampled_from(
    [
        b"9999-12-31T23:59:59.999999Z",
        b"0001-01-01T00:00:00.000000Z",
        b"1970-01-01T00:00:00.000000Z",
        b"2026-13-01T00:00:00.000000Z",
        b"yesterday",
        b"",
    ]
)


@dataclass(frozen=True)
class Drawn:
    """One job as drawn: its keyword arguments and, for RQ, its job id."""

    kwargs: dict[str, Any]
    job_id: str
    created_at: bytes | None = None  # written into the raw hash in place of RQ's, when set


@st.composite
def otp_jobs(draw: st.DrawFn, numbers: Iterator[int]) -> Drawn:
    """Keyword arguments of one OTP job, each argument good or odd, some missing, some extra."""
    serial = next(numbers)
    message_id: object = draw(
        st.one_of(
            st.just(f"fz{serial}"),
            st.text(alphabet="abc-_XYZ09", min_size=1, max_size=8).map(lambda s: f"fz{serial}{s}"),
            ODD_MESSAGE_IDS,
        )
    )
    kwargs: dict[str, Any] = {
        "phone": draw(st.one_of(st.just(PHONE), PHONES)),
        "code": draw(st.one_of(st.just(f"{serial % 1_000_000:06d}"), CODES)),
        "message_id": message_id,
        "ttl_seconds": draw(st.one_of(st.just(60), TTLS)),
    }
    if draw(st.booleans()):
        kwargs["template"] = draw(TEMPLATES)
    for name in draw(st.sets(st.sampled_from(sorted(kwargs)), max_size=2)):
        if draw(st.integers(0, 3)) == 0:
            del kwargs[name]
    kwargs.update(draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2)))
    # As the README's recipe: the job id is ``<tenant>_<message id>``, whatever the id is.
    shown = message_id if isinstance(message_id, str) else json.dumps(message_id)
    created_at = draw(st.one_of(st.none(), st.none(), CREATION_TIMES))
    return Drawn(kwargs=kwargs, job_id=contract.job_id(TENANT, shown), created_at=created_at)


# ----------------------------------------------------------------- the session
@dataclass
class Served:
    """The running session, its Redis (bytes, as RQ needs) and the client library."""

    pod: SessionProcess
    raw: redis.Redis
    client: WaspClient
    codes: Iterator[int]

    def enqueue(self, drawn: Drawn) -> bytes:
        """Enqueue as a tenant's API would; return the job id as Redis holds it."""
        queue = queueing.otp_queue(self.raw, TENANT)
        if drawn.created_at is not None:
            return self._push_raw(drawn)
        try:
            queue.enqueue_call(
                contract.OTP_JOB_FUNCTION, kwargs=drawn.kwargs, job_id=drawn.job_id, ttl=600
            )
        except (ValueError, TypeError):  # RQ refuses the id: write what RQ would write under it
            return self._push_raw(drawn)
        return drawn.job_id.encode()

    def _push_raw(self, drawn: Drawn) -> bytes:
        job = Job.create(
            contract.OTP_JOB_FUNCTION,
            kwargs=drawn.kwargs,
            id="placeholder",
            connection=self.raw,
            serializer=JSONSerializer,
            origin=contract.delivery_queue(TENANT),
        )
        fields = {
            name.encode(): value if isinstance(value, bytes) else str(value).encode()
            for name, value in job.to_dict().items()
        }
        fields[b"status"] = b"queued"
        if drawn.created_at is not None:
            fields[b"created_at"] = drawn.created_at
        job_id = drawn.job_id.encode("utf-8", errors="surrogatepass")
        with self.raw.pipeline() as pipe:
            pipe.delete(b"rq:job:" + job_id)
            pipe.hset(b"rq:job:" + job_id, mapping=fields)
            pipe.rpush(queue_key(), job_id)
            pipe.execute()
        return job_id

    def outcome(self, job_id: bytes) -> str | None:
        """How the job ended, if it did; None while it has not."""
        try:
            text = job_id.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        message_id = contract.message_id_of_job(TENANT, text) if text is not None else None
        if message_id is not None and MESSAGE_ID_PATTERN.fullmatch(message_id):
            status = MessageStore(self.raw, TENANT).get(message_id)  # as stored, not inferred
            return None if status is None else _message_outcome(status)
        return self._rq_outcome(job_id, registered=text is not None)

    def _rq_outcome(self, job_id: bytes, *, registered: bool) -> str | None:
        """A job without a message: failed in RQ, with its error, in the failed registry.

        Not registered when its id is not UTF-8: RQ's registries decode their ids.
        """
        key = b"rq:job:" + job_id
        status, exc_info = self.raw.hmget(key, [b"status", b"exc_info"])
        failed_key = queueing.otp_queue(self.raw, TENANT).failed_job_registry.key
        if status != b"failed":
            return None
        if registered and self.raw.zscore(failed_key, job_id) is None:
            return None
        assert isinstance(exc_info, bytes), f"job {job_id!r} failed without an error"
        error = zlib.decompress(exc_info).decode("utf-8", errors="replace")
        assert error.strip(), job_id
        return f"rq-failed: {error[:60]}"

    def assert_serving(self) -> None:
        """A good OTP enqueued now is read: the worker goes on."""
        code = f"{next(self.codes):06d}"
        message_id = self.client.send_otp(PHONE, code)
        status = self.client.wait_for(message_id, "read", timeout=30)
        assert status.state == "read", status
        assert self.pod.process.alive()


def queue_key() -> str:
    return f"rq:queue:{contract.delivery_queue(TENANT)}"


def _message_outcome(status: MessageStatus) -> str | None:
    if status.state not in NOT_PENDING:
        return None
    if status.state == "failed":
        assert status.reason in contract.FAILURE_REASONS, status
        assert status.error, status
        return f"failed/{status.reason}"
    return status.state


@pytest.fixture
def served(start_session: StartSession, redis_server: RedisServer) -> Iterator[Served]:
    pod = start_session(**ENV)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected", timeout=30)
    raw = redis.Redis.from_url(redis_server.url)
    raw.sadd(contract.simulator_absent_key(TENANT), ABSENT)
    client = WaspClient(redis_server.client(), TENANT)
    try:
        yield Served(pod, raw, client, iter(range(100_000, 999_999)))
    finally:
        raw.close()


NUMBERS = itertools.count()


@settings(
    max_examples=int(os.environ.get(EXPLORE, "20")),
    deadline=None,
    database=None,
    derandomize=EXPLORE not in os.environ,  # the same batches in CI; fresh ones when exploring
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a live batch
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(batch=st.lists(otp_jobs(NUMBERS), min_size=BATCH, max_size=BATCH))
def test_every_job_ends_whatever_its_arguments_and_the_worker_keeps_serving(
    served: Served, batch: list[Drawn]
) -> None:
    job_ids = [served.enqueue(drawn) for drawn in batch]
    deadline = time.monotonic() + ENDS_WITHIN_SECONDS
    outcomes: dict[bytes, str | None] = dict.fromkeys(job_ids)
    intermediate = queueing.otp_queue(served.raw, TENANT).intermediate_queue_key
    while time.monotonic() < deadline:
        for job_id in job_ids:
            if outcomes[job_id] is None:
                outcomes[job_id] = served.outcome(job_id)
        # A job naming a message an earlier job ended shows that outcome at once, while it
        # may still wait in a queue: done only once both queues are empty too.
        if all(outcomes.values()) and not served.raw.llen(queue_key()) + served.raw.llen(
            intermediate
        ):
            break
        time.sleep(0.2)
    stuck = [
        (job_id, drawn.kwargs)
        for job_id, drawn in zip(job_ids, batch, strict=True)
        if outcomes[job_id] is None
    ]
    assert not stuck, f"jobs that never ended: {stuck!r}"
    assert served.raw.llen(queue_key()) == 0
    assert served.raw.llen(intermediate) == 0
    pending = [
        key
        for key in served.raw.scan_iter(match=contract.message_key(TENANT, "*"))
        if served.raw.hget(key, contract.MESSAGE_STATE) in (b"queued", b"sending")
    ]
    assert not pending, pending
    served.assert_serving()
