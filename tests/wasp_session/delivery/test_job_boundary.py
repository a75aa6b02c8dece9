"""Jobs are data, never code: hostile jobs against a real ``wasp-session`` process.

One session process (simulator transport, real redis-server, real RQ) serves
the module. Hostile jobs are written as an attacker with access to the
tenant's queue would write them: with RQ itself, or as raw job hashes. Each
payload would leave a marker file if anything ran it: a shell command
(``os.system("touch ...")``) or a module on the pod's ``PYTHONPATH`` that
touches a file when imported and when called. After each, a good OTP must
still be delivered (the simulator's outbox shows it).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue
from rq.callbacks import Callback
from rq.job import Job

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, session_env
from wasp import WaspClient, contract, queueing
from wasp.messages import MessageStatus
from wasp_session.delivery.admission import RQ_JOB_FIELDS

pytestmark = pytest.mark.isolation

TENANT = "acme"
PHONE = "+4915112345678"
PAYLOAD_MODULE = "wasp_marker_payload"  # on the pod's PYTHONPATH: importing it leaves a marker
FAST = {contract.ENV_RATE_PER_MINUTE: "10000000", contract.ENV_CHECKPOINT_DEBOUNCE_SECONDS: "10"}


class ShellPayload:
    """Unpickling this runs ``touch <marker>`` in a shell."""

    def __init__(self, marker: Path) -> None:
        """Touch ``marker`` when unpickled."""
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        """What pickle calls to rebuild it: ``os.system`` with a command."""
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Boundary:
    """The running session and what a test uses against it."""

    pod: SessionProcess
    raw: redis.Redis  # bytes, as RQ needs
    client: WaspClient
    markers: Path
    codes: Iterator[int]

    @property
    def queue(self) -> Queue:
        """The tenant's queue, JSON, as the client library makes it."""
        return queueing.otp_queue(self.raw, TENANT)

    def marker(self, name: str) -> Path:
        """A marker file a payload would create."""
        return self.markers / name

    def otp_kwargs(self, message_id: str, code: str = "424242") -> dict[str, Any]:
        """Good OTP job arguments."""
        return {"phone": PHONE, "code": code, "message_id": message_id, "ttl_seconds": 60}

    def job_fields(self, message_id: str, **options: Any) -> dict[bytes, bytes]:  # noqa: ANN401
        """The hash RQ writes for a good OTP job (JSON), not yet on the queue."""
        job = Job.create(
            contract.OTP_JOB_FUNCTION,
            kwargs=self.otp_kwargs(message_id),
            id=contract.job_id(TENANT, message_id),
            connection=self.raw,
            serializer=queueing.JOB_SERIALIZER,
            origin=contract.delivery_queue(TENANT),
            **options,
        )
        job._status = "queued"  # type: ignore[assignment]  # noqa: SLF001 - as enqueue sets it
        return {
            key.encode(): value if isinstance(value, bytes) else str(value).encode()
            for key, value in job.to_dict().items()
        }

    def push_raw(self, job_id: str, fields: dict[bytes, bytes]) -> None:
        """Write ``fields`` as the job hash of ``job_id`` and put the id on the queue."""
        key = f"rq:job:{job_id}"
        with self.raw.pipeline() as pipe:
            pipe.delete(key)
            if fields:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.rpush(self.queue.key, job_id)
            pipe.execute()

    def wait(self, message_id: str) -> MessageStatus:
        """The message once sent, or failed."""
        return self.client.wait_for(message_id, "sent", timeout=30)

    def assert_refused(self, message_id: str, says: str) -> MessageStatus:
        """The message ended failed/invalid_job with ``says`` in its error."""
        status = self.wait(message_id)
        assert (status.state, status.reason) == ("failed", "invalid_job"), status
        assert status.error is not None
        assert says in status.error, status.error
        return status

    def outbox_texts(self) -> list[str]:
        """What the simulated WhatsApp received."""
        key = contract.simulator_outbox_key(TENANT)
        return [json.loads(item)["text"] for item in self.raw.lrange(key, 0, -1)]

    def assert_good_job_delivered(self) -> None:
        """The worker goes on: a good OTP enqueued now is sent."""
        code = f"{next(self.codes):06d}"
        message_id = self.client.send_otp(PHONE, code)
        assert self.wait(message_id).state in ("sent", "delivered", "read")
        assert f"Your code is {code}. It expires in 5 minutes." in self.outbox_texts()
        assert self.pod.process.alive()

    def assert_nothing_ran(self) -> None:
        """No payload left a marker: nothing was run, imported or unpickled."""
        assert sorted(path.name for path in self.markers.iterdir()) == []


def payload_module(root: Path) -> tuple[Path, Path]:
    """A directory with the marker module (for ``PYTHONPATH``), and the markers' directory."""
    markers = root / "markers"
    markers.mkdir()
    payload = root / "payload"
    payload.mkdir()
    (payload / f"{PAYLOAD_MODULE}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(markers / 'imported')!r}).touch()\n\n\n"
        "def touch(*args, **kwargs):\n"
        f"    pathlib.Path({str(markers / 'called')!r}).touch()\n",
        encoding="utf-8",
    )
    return payload, markers


@contextlib.contextmanager
def running_boundary(
    root: Path, plant: Callable[[Boundary], None] | None = None
) -> Iterator[Boundary]:
    """A paired session process with the marker module importable; ``plant`` runs before it."""
    payload, markers = payload_module(root)
    server = RedisServer(root / "redis")
    raw = redis.Redis.from_url(server.url)
    env = session_env(TENANT, server.url, root / "pod", PYTHONPATH=str(payload), **FAST)
    client = WaspClient(server.client(), TENANT)
    codes = iter(range(100_000, 999_999))
    pod: SessionProcess | None = None
    try:
        if plant is not None:
            plant(Boundary(None, raw, client, markers, codes))  # type: ignore[arg-type]
        pod = SessionProcess(env, root / "pod.log")
        pod.wait_for_phase("AwaitingPairing")
        pod.simulate("scan")
        pod.wait_for_phase("Connected", timeout=30)
        yield Boundary(pod, raw, client, markers, codes)
    finally:
        if pod is not None:
            pod.stop()
        raw.close()
        server.stop()


@pytest.fixture(scope="module")
def boundary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Boundary]:
    with running_boundary(tmp_path_factory.mktemp("job-boundary")) as running:
        yield running


def test_a_job_whose_function_is_os_system_runs_nothing(boundary: Boundary) -> None:
    boundary.queue.enqueue_call(
        "os.system",
        args=(f"touch {boundary.marker('os-system')}",),
        job_id=contract.job_id(TENANT, "evil-os"),
    )
    boundary.queue.enqueue_call(
        f"{PAYLOAD_MODULE}.touch",
        kwargs=boundary.otp_kwargs("evil-module"),
        job_id=contract.job_id(TENANT, "evil-module"),
    )
    boundary.assert_refused("evil-os", "'os.system' is not 'wasp_session.jobs.send_otp'")
    boundary.assert_refused("evil-module", f"'{PAYLOAD_MODULE}.touch' is not")
    boundary.assert_good_job_delivered()
    boundary.assert_nothing_ran()


def test_a_pickled_payload_is_never_unpickled(boundary: Boundary) -> None:
    marker = boundary.marker("unpickled")
    crafted = pickle.dumps(ShellPayload(marker))
    # RQ's default serializer: the job's data is a pickle.
    Queue(contract.delivery_queue(TENANT), connection=boundary.raw).enqueue_call(
        contract.OTP_JOB_FUNCTION,
        kwargs=boundary.otp_kwargs("pickled-by-rq"),
        job_id=contract.job_id(TENANT, "pickled-by-rq"),
    )
    # A crafted pickle in the data (compressed as RQ stores it, and as is) and in meta/result.
    for message_id, override in (
        ("crafted-data", {b"data": zlib.compress(crafted)}),
        ("crafted-raw", {b"data": crafted}),
        ("crafted-meta", {b"meta": crafted, b"result": crafted, b"data": crafted}),
    ):
        fields = {**boundary.job_fields(message_id), **override}
        boundary.push_raw(contract.job_id(TENANT, message_id), fields)
    for message_id in ("pickled-by-rq", "crafted-data", "crafted-raw", "crafted-meta"):
        boundary.assert_refused(message_id, "not JSON (a pickle?)")
    boundary.assert_good_job_delivered()
    boundary.assert_nothing_ran()
    assert not marker.exists()


@pytest.mark.parametrize("hook", ["on_success", "on_failure", "on_stopped"])
@pytest.mark.parametrize("target", ["os.system", f"{PAYLOAD_MODULE}.touch"])
def test_a_job_with_a_callback_runs_nothing_not_even_its_otp(
    boundary: Boundary, hook: str, target: str
) -> None:
    message_id = f"callback-{hook}-{target.split('.', maxsplit=1)[0]}".replace("_", "-")
    code = f"{next(boundary.codes):06d}"
    callback = Callback(target)
    boundary.queue.enqueue_call(
        contract.OTP_JOB_FUNCTION,
        kwargs=boundary.otp_kwargs(message_id, code),
        job_id=contract.job_id(TENANT, message_id),
        on_success=callback if hook == "on_success" else None,
        on_failure=callback if hook == "on_failure" else None,
        on_stopped=callback if hook == "on_stopped" else None,
    )
    boundary.assert_refused(message_id, "callback")
    assert f"Your code is {code}. It expires in 1 minutes." not in boundary.outbox_texts()
    boundary.assert_good_job_delivered()
    boundary.assert_nothing_ran()


def test_a_job_with_a_dependency_runs_nothing_and_dependents_are_never_enqueued(
    boundary: Boundary,
) -> None:
    fields = {
        **boundary.job_fields("with-dependency"),
        b"dependency_ids": json.dumps([contract.job_id(TENANT, "parent")]).encode(),
    }
    boundary.push_raw(contract.job_id(TENANT, "with-dependency"), fields)
    boundary.assert_refused("with-dependency", "dependencies")
    # A dependent made by RQ itself waits for a good OTP job; that job's end enqueues nothing.
    pod = boundary.pod
    pod.simulate("disconnect", seconds=2)  # the parent must still be queued when RQ looks
    pod.wait_for(lambda: pod.phase() != "Connected", "disconnected", timeout=10)
    parent = boundary.client.send_otp(PHONE, "515151")
    dependent = boundary.queue.enqueue_call(
        f"{PAYLOAD_MODULE}.touch",
        job_id=contract.job_id(TENANT, "dependent"),
        depends_on=contract.job_id(TENANT, parent),
    )
    assert dependent.get_status() == "deferred"
    pod.wait_for_phase("Connected", timeout=30)
    assert boundary.wait(parent).state in ("sent", "delivered", "read")
    boundary.assert_good_job_delivered()
    assert dependent.get_status() == "deferred"
    assert contract.job_id(TENANT, "dependent") not in boundary.queue.job_ids
    boundary.assert_nothing_ran()


def test_an_oversized_job_is_refused_unread(boundary: Boundary) -> None:
    padding = {b"description": b"x" * (contract.MAX_JOB_HASH_BYTES + 1)}
    fields = {**boundary.job_fields("oversized"), **padding}
    boundary.push_raw(contract.job_id(TENANT, "oversized"), fields)
    many = {f"field-{i}".encode(): b"1" for i in range(200)}
    boundary.push_raw(contract.job_id(TENANT, "many-fields"), many)
    status = boundary.assert_refused("oversized", "refused unread")
    assert str(contract.MAX_JOB_HASH_BYTES) in (status.error or "")
    boundary.assert_refused("many-fields", "200 fields")
    boundary.assert_good_job_delivered()


def test_the_job_id_must_carry_the_tenant_and_the_message_id(boundary: Boundary) -> None:
    boundary.queue.enqueue_call(
        contract.OTP_JOB_FUNCTION,
        kwargs=boundary.otp_kwargs("named-y"),
        job_id=contract.job_id(TENANT, "named-x"),
    )
    boundary.queue.enqueue_call(
        contract.OTP_JOB_FUNCTION, kwargs=boundary.otp_kwargs("bare"), job_id="bare"
    )
    boundary.assert_refused("named-x", "must be 'acme_named-y'")
    boundary.assert_refused("bare", "must be 'acme_bare'")
    boundary.assert_good_job_delivered()


def test_a_registry_is_no_way_around_the_boundary(boundary: Boundary) -> None:
    """Retries come back through the scheduled registry: by id only, judged like any job."""
    fields = boundary.job_fields("scheduled-evil", on_failure=Callback(f"{PAYLOAD_MODULE}.touch"))
    job_id = contract.job_id(TENANT, "scheduled-evil")
    boundary.raw.hset(f"rq:job:{job_id}", mapping=fields)  # type: ignore[arg-type]
    boundary.raw.zadd(boundary.queue.scheduled_job_registry.key, {job_id: 0})
    boundary.assert_refused("scheduled-evil", "a failure callback")
    boundary.assert_good_job_delivered()
    boundary.assert_nothing_ran()


def test_jobs_left_in_rqs_registries_are_judged_when_a_new_process_recovers_them(
    tmp_path: Path,
) -> None:
    """What a killed process left behind goes back by id; RQ never fetches or calls it."""

    def plant(planted: Boundary) -> None:
        queue = planted.queue
        evil_callback = planted.job_fields(
            "wip-evil", on_failure=Callback(f"{PAYLOAD_MODULE}.touch")
        )
        crafted = pickle.dumps(ShellPayload(planted.marker("unpickled")))
        pickled = {**planted.job_fields("failed-evil"), b"data": crafted, b"meta": crafted}
        shell = planted.job_fields("stuck-evil")
        shell[b"data"] = zlib.compress(
            json.dumps(["os.system", None, [f"touch {planted.marker('shell')}"], {}]).encode()
        )
        for message_id, fields in (
            ("wip-evil", {**evil_callback, b"status": b"started"}),
            ("failed-evil", {**pickled, b"status": b"failed"}),
            ("stuck-evil", shell),
        ):
            job_id = contract.job_id(TENANT, message_id)
            planted.raw.hset(f"rq:job:{job_id}", mapping=fields)  # type: ignore[arg-type]
            planted.client.send_otp(PHONE, "1234", message_id=message_id)  # a queued message
            queue.remove(job_id)  # only the registries below hold it
        planted.raw.zadd(
            queue.started_job_registry.key, {f"{contract.job_id(TENANT, 'wip-evil')}:x": 0}
        )
        failed_until = time.time() + 600  # as RQ scores it: until the failure expires
        planted.raw.zadd(
            queue.failed_job_registry.key, {contract.job_id(TENANT, "failed-evil"): failed_until}
        )
        planted.raw.rpush(queue.intermediate_queue_key, contract.job_id(TENANT, "stuck-evil"))

    with running_boundary(tmp_path, plant) as recovered:
        recovered.assert_refused("wip-evil", "a failure callback")
        recovered.assert_refused("failed-evil", "not JSON (a pickle?)")
        recovered.assert_refused("stuck-evil", "'os.system' is not")
        recovered.assert_good_job_delivered()
        recovered.assert_nothing_ran()


def test_no_full_phone_number_reaches_the_session_log(boundary: Boundary) -> None:
    absent = "+4915199999999"
    boundary.raw.sadd(contract.simulator_absent_key(TENANT), absent)
    missing = boundary.client.send_otp(absent, "1234")
    assert boundary.wait(missing).reason == "not_on_whatsapp"
    boundary.assert_good_job_delivered()
    log_text = boundary.pod.process.log_path.read_text(encoding="utf-8", errors="replace")
    assert "otp_sent" in log_text
    assert "otp_failed" in log_text
    for number in (PHONE, absent, "+4915100000000"):  # ours, and the simulated account's
        assert number.removeprefix("+") not in log_text


# --------------------------------------------------------------------------
# Fuzz: arbitrary job hashes on the queue never crash the worker and never
# run anything; the next good job is always delivered.
# --------------------------------------------------------------------------
FIELD_NAMES = st.one_of(
    st.sampled_from(sorted(RQ_JOB_FIELDS)).map(str.encode), st.binary(max_size=10)
)


def _values(markers: Path) -> st.SearchStrategy[bytes]:
    crafted = pickle.dumps(ShellPayload(markers / "fuzz-unpickled"))
    shell: list[object] = ["os.system", None, [f"touch {markers / 'fuzz-called'}"], {}]
    return st.one_of(
        st.binary(max_size=40),
        st.text(max_size=20).map(str.encode),
        st.sampled_from(
            [
                b"",
                b"0",
                b"-1",
                b"[]",
                b"queued",
                b"started",
                b"os.system",
                f"{PAYLOAD_MODULE}.touch".encode(),
                crafted,
                zlib.compress(crafted),
                zlib.compress(json.dumps(shell).encode()),
                b'[{"url": "http://127.0.0.1:1/"}]',
                zlib.compress(b"[" * 20_000),
            ]
        ),
    )


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzzed_job_hashes_never_crash_the_worker_or_run_anything(
    boundary: Boundary, data: st.DataObject
) -> None:
    number = next(boundary.codes)
    message_id = f"fuzz-{number}"
    job_id = data.draw(
        st.sampled_from([contract.job_id(TENANT, message_id), f"other_{message_id}", message_id])
    )
    base = data.draw(st.sampled_from(["good", "empty"]))
    fields = boundary.job_fields(message_id) if base == "good" else {}
    overrides = data.draw(st.dictionaries(FIELD_NAMES, _values(boundary.markers), max_size=5))
    boundary.push_raw(job_id, {**fields, **overrides})
    boundary.assert_good_job_delivered()
    boundary.assert_nothing_ran()


def test_after_everything_the_worker_still_serves_the_queue(boundary: Boundary) -> None:
    for _ in range(3):
        boundary.assert_good_job_delivered()
    assert boundary.raw.llen(boundary.queue.intermediate_queue_key) == 0
    boundary.assert_nothing_ran()
