"""``/healthz`` of a real ``wasp-session``: it fails when a loop stops making progress.

The session runs as a process (simulator transport, ``start_session``) and is
asked over real HTTP on 127.0.0.1. A ``hang`` wedges its event loop: ``/healthz``
turns 503 naming the loop within the configured bound, and 200 again when the
hang ends. A stopped process (SIGSTOP) does not answer at all, as a probe sees
a frozen container; SIGCONT brings it back. Waits are generous multiples of
the configured bounds; nothing is timed more tightly.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from harness.session_process import SessionProcess
from wasp import contract
from wasp_session.errors import EXIT_CONFIG, EXIT_SHUTDOWN_TIMED_OUT, ConfigError
from wasp_session.health import Heartbeats, bounds, stall_from

STALL = 2.0  # seconds of silence before a loop is stuck, in these tests
LIFECYCLE_BOUND = bounds(STALL, 3.0, 300)[contract.LOOP_LIFECYCLE]  # lease TTL 3 s (FAST_TIMINGS)
PROBE_TIMEOUT = 2.0  # seconds, as a kubelet probe's timeoutSeconds


def _healthz(pod: SessionProcess) -> tuple[int, str]:
    """Status and body of ``/healthz``; (0, reason) if it does not answer in time."""
    url = f"http://127.0.0.1:{pod.env[contract.ENV_HEALTH_PORT]}{contract.HEALTH_LIVE_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def _connected(start_session: Callable[..., SessionProcess], **env: str) -> SessionProcess:
    pod = start_session(**{contract.ENV_LIVENESS_STALL_SECONDS: str(STALL), **env})
    pod.simulate("scan")
    pod.wait_for_phase("Connected")
    pod.wait_for(lambda: pod.health(contract.HEALTH_READY_PATH) == 200, "/readyz 200")
    return pod


def test_healthz_fails_naming_the_hung_loop_and_recovers(
    start_session: Callable[..., SessionProcess],
) -> None:
    pod = _connected(start_session)
    deadline = time.monotonic() + 3 * LIFECYCLE_BOUND  # healthy for longer than any bound
    while time.monotonic() < deadline:
        code, body = _healthz(pod)
        assert code == 200, body
        time.sleep(0.2)

    pod.simulate("hang", seconds=600)  # ended below, long before it runs out
    seen: dict[str, object] = {}

    def stuck() -> bool:
        code, body = _healthz(pod)
        if code == 503:
            seen.update(json.loads(body))
        return code == 503

    pod.wait_for(stuck, "/healthz 503", timeout=LIFECYCLE_BOUND + 15)
    assert seen["loop"] == contract.LOOP_LIFECYCLE
    assert seen["status"] == "stuck"
    assert float(str(seen["silent_seconds"])) >= float(str(seen["bound_seconds"]))
    assert pod.process.alive()
    metrics = pod.metrics()  # the last beat per loop is exported
    assert 'wasp_session_loop_last_beat_timestamp_seconds{loop="lifecycle"}' in metrics
    assert 'wasp_session_loop_last_beat_timestamp_seconds{loop="lease"}' in metrics
    assert 'wasp_session_loop_last_beat_timestamp_seconds{loop="delivery"}' in metrics

    pod.simulate("hang", seconds=0)  # the wedge clears before anyone restarted the pod
    pod.wait_for(lambda: _healthz(pod)[0] == 200, "/healthz 200 again", timeout=15)
    assert pod.phase() == "Connected"
    assert pod.health(contract.HEALTH_READY_PATH) == 200
    pod.terminate()
    assert pod.wait_exit() == 0


def test_a_wedged_session_told_to_stop_exits_in_time_saying_so(
    start_session: Callable[..., SessionProcess],
) -> None:
    # What the kubelet does after failed liveness probes: SIGTERM a wedged session.
    pod = _connected(start_session, **{contract.ENV_SHUTDOWN_TIMEOUT_SECONDS: "3"})
    pod.simulate("hang", seconds=600)
    pod.wait_for(lambda: _healthz(pod)[0] == 503, "/healthz 503", timeout=LIFECYCLE_BOUND + 15)
    pod.terminate()
    # Not 1 ("Failed, needs a human"): a restart restores the last checkpoint.
    assert pod.wait_exit(timeout=20) == EXIT_SHUTDOWN_TIMED_OUT
    assert any(line.get("event") == "shutdown_timed_out" for line in pod.log_lines())


def test_a_stopped_process_does_not_answer_until_continued(
    start_session: Callable[..., SessionProcess],
) -> None:
    # A long lease, so the pause does not cost it; a stall longer than the pause.
    pod = _connected(
        start_session,
        **{contract.ENV_LEASE_TTL_SECONDS: "30", contract.ENV_LIVENESS_STALL_SECONDS: "20"},
    )
    assert _healthz(pod)[0] == 200
    os.killpg(pod.process.pid, signal.SIGSTOP)
    try:
        code, reason = _healthz(pod)
        assert code == 0, reason  # the probe times out: it fails
    finally:
        os.killpg(pod.process.pid, signal.SIGCONT)
    pod.wait_for(lambda: _healthz(pod)[0] == 200, "/healthz 200 after SIGCONT", timeout=15)
    assert pod.phase() == "Connected"


# ---------------------------------------------------------------- the pieces
def test_a_loop_is_stuck_only_past_its_bound_and_not_once_retired() -> None:
    now = [100.0]
    beats = Heartbeats(bounds(5.0, 15.0, 300), clock=lambda: now[0])
    beats.expect(contract.LOOP_LIFECYCLE)
    beats.expect(contract.LOOP_LEASE)
    assert beats.report() is None
    now[0] += 5.0 + 1.0  # exactly the lifecycle's bound: not yet
    assert beats.report() is None
    now[0] += 0.5
    report = json.loads(str(beats.report()))
    assert report["loop"] == contract.LOOP_LIFECYCLE
    assert report["stuck"] == [contract.LOOP_LIFECYCLE]
    beats.beat(contract.LOOP_LIFECYCLE)
    assert beats.report() is None
    now[0] += 11.0  # the lease's bound is 5 + 15/3
    assert [s.loop for s in beats.stuck()] == [contract.LOOP_LEASE, contract.LOOP_LIFECYCLE]
    beats.retire(contract.LOOP_LEASE)
    beats.retire(contract.LOOP_LIFECYCLE)
    assert beats.report() is None


def test_the_stall_comes_from_the_environment_or_the_lease_ttl() -> None:
    assert stall_from({}, 15.0) == 15.0
    assert stall_from({contract.ENV_LIVENESS_STALL_SECONDS: " 2.5 "}, 15.0) == 2.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(ConfigError):
            stall_from({contract.ENV_LIVENESS_STALL_SECONDS: bad}, 15.0)


def test_a_bad_stall_stops_the_program_with_one_line(
    start_session: Callable[..., SessionProcess],
) -> None:
    pod = start_session(**{contract.ENV_LIVENESS_STALL_SECONDS: "never"})
    assert pod.wait_exit() == EXIT_CONFIG
    assert any(line.get("event") == "configuration_invalid" for line in pod.log_lines())
