"""The job boundary as a pure function: which raw job hashes may run.

Hashes are made the way an API makes them (RQ's own ``Job.create`` and
``to_dict``), then bent the way an attacker would. ``admit`` reads bytes only:
a ``redis.Redis`` object is handed over for RQ's ``Job`` but never connected.
"""

from __future__ import annotations

import json
import os
import pickle
import string
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq.callbacks import Callback
from rq.job import Job
from rq.serializers import DefaultSerializer, JSONSerializer

from wasp import contract, queueing
from wasp_session.delivery.admission import RQ_JOB_FIELDS, JobRefusal, admit
from wasp_session.delivery.arguments import InvalidJobError, parse_arguments

pytestmark = pytest.mark.isolation

TENANT = "acme"
MARKER = Path("/nonexistent-wasp-marker")  # the payloads below would create it
OTP_KWARGS: dict[str, Any] = {
    "phone": "+4915112345678",
    "code": "493817",
    "message_id": "m1",
    "ttl_seconds": 300,
}
NEVER_CONNECTED = redis.Redis(host="127.0.0.1", port=1)  # RQ's Job wants one; admit never uses it


class Payload:
    """Unpickling this runs ``os.system``: what a crafted pickle in a job hash would do."""

    def __reduce__(self) -> tuple[Any, ...]:
        """What pickle calls to rebuild it: ``os.system`` with a command."""
        return (os.system, (f"touch {MARKER}",))


def job_hash(
    function: str = contract.OTP_JOB_FUNCTION,
    *,
    job_id: str = "acme_m1",
    kwargs: dict[str, Any] | None = None,
    serializer: Any = JSONSerializer,  # noqa: ANN401 - an RQ serializer
    **options: Any,  # noqa: ANN401 - Job.create's options
) -> dict[bytes, bytes]:
    """The hash RQ writes when an API enqueues ``function`` on the tenant's queue."""
    job = Job.create(
        function,
        kwargs=OTP_KWARGS if kwargs is None else kwargs,
        id=job_id,
        connection=NEVER_CONNECTED,
        serializer=serializer,
        origin=contract.delivery_queue(TENANT),
        **options,
    )
    job._status = "queued"  # type: ignore[assignment]  # noqa: SLF001 - as enqueue sets it
    return {
        key.encode(): value if isinstance(value, bytes) else str(value).encode()
        for key, value in job.to_dict().items()
    }


def refusal(fields: dict[bytes, bytes], job_id: str = "acme_m1") -> JobRefusal:
    with pytest.raises(JobRefusal) as caught:
        admit(TENANT, job_id, fields, NEVER_CONNECTED, default_ttl_seconds=300)
    return caught.value


def test_the_otp_job_as_an_api_enqueues_it_is_admitted_with_lifetimes_from_its_ttl() -> None:
    job = admit(TENANT, "acme_m1", job_hash(), NEVER_CONNECTED, default_ttl_seconds=60)
    assert (job.func_name, job.kwargs) == (contract.OTP_JOB_FUNCTION, OTP_KWARGS)
    assert job.result_ttl == job.failure_ttl == job.ttl == queueing.job_lifetime_seconds(300)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (job_hash("os.system", kwargs={"command": "touch x"}), "'os.system' is not"),
        (job_hash(serializer=DefaultSerializer), "not JSON (a pickle?)"),
        (
            {**job_hash(), b"data": zlib.compress(pickle.dumps(Payload()))},
            "not JSON (a pickle?)",
        ),
        ({**job_hash(), b"data": pickle.dumps(Payload())}, "not JSON (a pickle?)"),
        (job_hash(on_success=Callback("os.system")), "a success callback"),
        (job_hash(on_failure=Callback("os.system")), "a failure callback"),
        (job_hash(on_stopped=Callback("os.system")), "a stopped callback"),
        ({**job_hash(), b"dependency_ids": b'["acme_m0"]'}, "dependencies"),
        ({**job_hash(), b"dependency_id": b"acme_m0"}, "a dependency"),
        ({**job_hash(), b"webhooks": b'[{"url": "http://x"}]'}, "webhooks"),
        ({**job_hash(), b"meta": json.dumps({"pad": "x" * 20_000}).encode()}, "bytes"),
        ({**job_hash(), b"data": zlib.compress(b" " * 100_000)}, "inflates"),
        ({**job_hash(), b"surprise": b"1"}, "a field RQ never writes"),
        ({**job_hash(), b"origin": b"otp-delivery:other"}, "comes from queue"),
        ({**job_hash(), b"status": b"exploded"}, "RQ cannot read"),
        (job_hash(kwargs={**OTP_KWARGS, "message_id": "m2"}), "must be 'acme_m2'"),
        ({k: v for k, v in job_hash().items() if k != b"data"}, "no data"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_anything_but_the_otp_job_is_refused_with_what_is_wrong(
    fields: dict[bytes, bytes], says: str
) -> None:
    refused = refusal(fields)
    assert says in refused.error
    assert refused.message_id == "m1"  # from the job id: its message can end invalid_job
    assert not MARKER.exists()


def test_positional_arguments_and_methods_are_refused() -> None:
    data = json.dumps([contract.OTP_JOB_FUNCTION, None, ["+4915112345678"], {}]).encode()
    assert "keyword arguments only" in refusal({**job_hash(), b"data": zlib.compress(data)}).error
    data = json.dumps([contract.OTP_JOB_FUNCTION, "instance", [], OTP_KWARGS]).encode()
    assert "instance" in refusal({**job_hash(), b"data": zlib.compress(data)}).error


def test_a_job_id_that_is_not_the_tenants_names_its_message_from_the_arguments() -> None:
    refused = refusal(job_hash(job_id="other_m1"), job_id="other_m1")
    assert "must be 'acme_m1'" in refused.error
    assert (refused.message_id, refused.ttl_seconds) == ("m1", 300)


def test_a_marker_module_named_by_a_job_is_never_imported() -> None:
    refusal(job_hash("wasp_marker_never_imported.touch"))
    refusal(job_hash(on_failure=Callback("wasp_marker_never_imported.touch")))
    assert "wasp_marker_never_imported" not in sys.modules


# --------------------------------------------------------------------------
# Fuzz: whatever bytes a job hash holds, admit() refuses it or returns the
# OTP job; it never raises anything else and never runs anything.
# --------------------------------------------------------------------------
FIELD_NAMES = st.one_of(
    st.sampled_from(sorted(RQ_JOB_FIELDS)).map(str.encode), st.binary(max_size=12)
)
VALUES = st.one_of(
    st.binary(max_size=48),
    st.text(max_size=24).map(str.encode),
    st.sampled_from(
        [
            b"",
            b"0",
            b"1",
            b"-1",
            b"[]",
            b"[1]",
            b"null",
            b"queued",
            b"started",
            b"2026-11-27T10:00:00.000000Z",
            b"os.system",
            b"wasp_marker_never_imported.touch",
            pickle.dumps(Payload()),
            zlib.compress(pickle.dumps(Payload())),
            zlib.compress(json.dumps(["os.system", None, ["touch x"], {}]).encode()),
            zlib.compress(json.dumps([contract.OTP_JOB_FUNCTION, None, [], OTP_KWARGS]).encode()),
            b"[" * 5000,
            zlib.compress(b"[" * 20_000),
        ]
    ),
)
JOB_IDS = st.sampled_from(["acme_m1", "acme_", "other_m1", "m1", "acme_a b", ""])


@settings(max_examples=300, deadline=None, database=None)
@given(
    overrides=st.dictionaries(FIELD_NAMES, VALUES, max_size=6),
    removed=st.sets(st.sampled_from(sorted(RQ_JOB_FIELDS)), max_size=3),
    job_id=JOB_IDS,
)
def test_fuzzed_job_hashes_are_refused_or_the_otp_job_never_anything_else(
    overrides: dict[bytes, bytes], removed: set[str], job_id: str
) -> None:
    fields = {**job_hash(), **overrides}
    for name in removed:
        fields.pop(name.encode(), None)
    error = ""
    try:
        job = admit(TENANT, job_id, fields, NEVER_CONNECTED, default_ttl_seconds=300)
    except JobRefusal as refused:
        error = refused.error
    else:
        assert job.func_name == contract.OTP_JOB_FUNCTION
        assert job.id == contract.job_id(TENANT, job.kwargs["message_id"])
        assert not job.args
    assert len(error) < 600  # a sentence, not an echo of the input
    assert not MARKER.exists()
    assert "wasp_marker_never_imported" not in sys.modules


# --------------------------------------------------------------------------
# Errors quote at most contract.MAX_ECHOED_INPUT_CHARS of what they were given.
# --------------------------------------------------------------------------
LONG = st.text(
    alphabet=string.ascii_letters + string.digits,
    min_size=contract.MAX_ECHOED_INPUT_CHARS + 1,
    max_size=3000,
)


def assert_short_echo(given_input: str, error: str) -> None:
    window = contract.MAX_ECHOED_INPUT_CHARS + 1
    for start in range(len(given_input) - window + 1):
        assert given_input[start : start + window] not in error


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(text=LONG)
def test_long_input_never_yields_a_longer_echo_in_job_errors(text: str) -> None:
    assert_short_echo(text, refusal(job_hash(text)).error)
    assert_short_echo(text, refusal(job_hash(), job_id=text).error)
    assert_short_echo(text, refusal({**job_hash(), b"status": text.encode()}).error)
    for arguments, job_id in (
        ({**OTP_KWARGS, text: 1}, "acme_m1"),
        (OTP_KWARGS, f"acme_{text}"),
    ):
        with pytest.raises(InvalidJobError) as caught:
            parse_arguments((), arguments, job_id, TENANT)
        assert_short_echo(text, str(caught.value))
