"""Deleting a session logs its device out of the account, unless told to keep it linked.

Everything is real but the kubelet (``harness.kubelet`` runs the pod's own
``wasp-session``) and WhatsApp: the simulator keeps the phones' Linked
devices in ``contract.simulator_linked_key``, a record that, like a real
phone's list, outlives the session. A device still listed after the
session is gone is the dead device this feature removes.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from typing import Any

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.failure_logs import logs_of
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.qr_channel import QrChannel
from harness.session_reports import events_of, status_of
from wasp import contract

pytestmark = pytest.mark.controlplane

TENANT = "acme"
POD = contract.session_pod_name(TENANT)
ACCOUNT = "+4915112345678"
JID = "4915112345678@s.whatsapp.net"
MASKED = "+49…78"  # how the Event names the account (as the logs do)
DEVICE_REASONS = {"DeviceUnlinked", "DeviceNotUnlinked", "DeviceKeptLinked"}


def device_events(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """The resource's Events about its device (they stay after the resource is gone)."""
    return [e for e in events_of(plane, namespace, TENANT) if e["reason"] in DEVICE_REASONS]


def device_events_once_there(
    plane: ControlPlane, namespace: str, logs: Callable[[], str]
) -> list[dict[str, Any]]:
    """Wait for the resource's first Event about its device; its Events about it then."""
    return eventually(
        lambda: device_events(plane, namespace), "an Event about the device", log=logs
    )


def health_status(url: str | None) -> int | None:
    """The HTTP status ``url`` answers with (None: no answer, or no URL)."""
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - 127.0.0.1
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


def linked_devices(client: redis.Redis) -> set[str]:
    """The simulated phones' Linked devices."""
    return {str(jid) for jid in client.smembers(contract.simulator_linked_key(TENANT))}


def pair(plane: ControlPlane, namespace: str, client: redis.Redis, logs: Callable[[], str]) -> None:
    """Wait for the QR, scan it as ``ACCOUNT``'s phone, wait for Connected."""
    eventually(
        lambda: status_of(plane, namespace, TENANT).get("phase") == "AwaitingPairing",
        "the session waits for a scan",
        log=logs,
    )
    scan = {"command": "scan", "phone": ACCOUNT}
    client.rpush(contract.simulator_commands_key(TENANT), json.dumps(scan))
    eventually(
        lambda: status_of(plane, namespace, TENANT).get("phase") == "Connected",
        "the session is Connected",
        log=logs,
    )


def delete_and_wait(plane: ControlPlane, namespace: str, logs: Callable[[], str]) -> float:
    """``kubectl delete was``; the seconds until the resource is gone."""
    started = time.monotonic()
    plane.kubectl("delete", "was", TENANT, "-n", namespace, "--wait=false")
    eventually(
        lambda: get(plane, namespace, "was", TENANT) is None,
        "the resource is gone",
        timeout=90,
        log=logs,
    )
    return time.monotonic() - started


def counted(outcome: str) -> str:
    """The metric line of one deletion with ``outcome``."""
    return f'wasp_operator_device_unlinks_total{{outcome="{outcome}"}} 1.0'


def test_deleting_a_linked_session_logs_its_device_out_and_says_so(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_client: redis.Redis,
) -> None:
    logs = partial(logs_of, wasp_operator, session_kubelet, POD)

    apply(control_plane, namespace, session_body(TENANT, transport="simulator"))
    pair(control_plane, namespace, redis_client, logs)
    assert linked_devices(redis_client) == {JID}
    assert redis_client.exists(contract.auth_key(TENANT)) == 1
    qr = QrChannel(redis_client, TENANT)  # from here on, no QR may show

    took = delete_and_wait(control_plane, namespace, logs)

    assert linked_devices(redis_client) == set(), "the phone still lists the deleted session"
    events = device_events_once_there(control_plane, namespace, logs)
    assert [(e["type"], e["reason"]) for e in events] == [("Normal", "DeviceUnlinked")]
    assert events[0]["message"] == (
        f"Logged out the linked device of {MASKED} before deleting the session."
    )
    assert qr.drain() == [], "the logged-out pod opened a pairing window while deleted"
    qr.close()
    assert redis_client.exists(contract.auth_key(TENANT), contract.status_key(TENANT)) == 0
    assert get(control_plane, namespace, "pod", POD) is None
    assert took < 60, f"deletion took {took:.1f} s"
    assert counted("unlinked") in wasp_operator.metrics()


def test_a_session_kept_linked_on_delete_leaves_its_device_on_the_phone(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_client: redis.Redis,
) -> None:
    logs = partial(logs_of, wasp_operator, session_kubelet, POD)

    body = session_body(TENANT, transport="simulator", unlinkOnDelete=False)
    apply(control_plane, namespace, body)
    pair(control_plane, namespace, redis_client, logs)

    delete_and_wait(control_plane, namespace, logs)

    assert linked_devices(redis_client) == {JID}
    events = device_events_once_there(control_plane, namespace, logs)
    assert [(e["type"], e["reason"]) for e in events] == [("Normal", "DeviceKeptLinked")]
    assert MASKED in events[0]["message"]
    assert "spec.unlinkOnDelete is false" in events[0]["message"]
    assert redis_client.exists(contract.auth_key(TENANT)) == 0  # wasp forgets it all the same
    assert counted("kept") in wasp_operator.metrics()


def test_a_linked_session_without_a_running_pod_is_deleted_with_a_warning(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_client: redis.Redis,
) -> None:
    logs = partial(logs_of, wasp_operator, session_kubelet, POD)

    apply(control_plane, namespace, session_body(TENANT, transport="simulator"))
    pair(control_plane, namespace, redis_client, logs)
    apply(control_plane, namespace, session_body(TENANT, transport="simulator", suspend=True))
    eventually(
        lambda: (
            status_of(control_plane, namespace, TENANT).get("phase") == "Suspended"
            and get(control_plane, namespace, "pod", POD) is None
        ),
        "the session is Suspended, its pod gone",
        log=logs,
    )

    took = delete_and_wait(control_plane, namespace, logs)

    assert linked_devices(redis_client) == {JID}  # nobody could log it out
    events = device_events_once_there(control_plane, namespace, logs)
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "DeviceNotUnlinked")]
    message = events[0]["message"]
    assert "no pod holds the session's lease" in message
    assert "remove the device in the phone's Linked devices" in message
    assert took < 30, f"deletion took {took:.1f} s"  # no wait for a pod that is not there
    assert counted("failed") in wasp_operator.metrics()


def test_a_session_never_paired_is_deleted_without_an_unlink(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_client: redis.Redis,
) -> None:
    logs = partial(logs_of, wasp_operator, session_kubelet, POD)

    apply(control_plane, namespace, session_body(TENANT, transport="simulator"))
    eventually(
        lambda: status_of(control_plane, namespace, TENANT).get("phase") == "AwaitingPairing",
        "the session waits for a scan",
        log=logs,
    )

    took = delete_and_wait(control_plane, namespace, logs)

    assert device_events(control_plane, namespace) == []
    assert linked_devices(redis_client) == set()
    assert took < 30, f"deletion took {took:.1f} s"
    assert counted("not_linked") in wasp_operator.metrics()


@pytest.mark.faults
def test_a_wedged_session_that_never_logs_out_delays_its_deletion_twenty_seconds_at_most(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_client: redis.Redis,
) -> None:
    logs = partial(logs_of, wasp_operator, session_kubelet, POD)

    apply(control_plane, namespace, session_body(TENANT, transport="simulator"))
    pair(control_plane, namespace, redis_client, logs)
    # The session's loop wedges (as on a stuck whatsmeow call): it keeps its lease
    # and reports Connected, but acts on no command.
    hang = {"command": "hang", "seconds": 120}
    redis_client.rpush(contract.simulator_commands_key(TENANT), json.dumps(hang))
    eventually(
        lambda: redis_client.llen(contract.simulator_commands_key(TENANT)) == 0,
        "the simulator took the hang",
        log=logs,
    )
    # Taken is not yet wedged: the loop blocks at its next read of the transport's events,
    # and a command that comes first is still served (an unlink 84 ms after the hang was).
    eventually(
        lambda: health_status(session_kubelet.health_url(POD)) == HTTPStatus.SERVICE_UNAVAILABLE,
        "the session's loop is wedged (/healthz 503)",
        log=logs,
    )

    took = delete_and_wait(control_plane, namespace, logs)

    events = device_events_once_there(control_plane, namespace, logs)
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "DeviceNotUnlinked")]
    assert "the session reported no LoggedOut within 20 s" in events[0]["message"]
    assert linked_devices(redis_client) == {JID}
    # 20 s for the logout, then the pod's own shutdown bound (10 s here), then cleanup.
    assert 20 <= took < 60, f"deletion took {took:.1f} s"
    assert counted("failed") in wasp_operator.metrics()
