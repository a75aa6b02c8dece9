"""A session pod's reports, played by a test, and the status the operator makes of them.

The operator's tests run idle stand-ins for session pods and write to Redis
what a real pod would: the tenant's status hash and its announcement on the
events channel. ``write_status`` does it as any writer could (a forger too);
``report`` as the pod holding the tenant's lease does. ``status_of``,
``status_when`` and ``events_of`` read back what the operator made of it: the
WhatsAppSession's status and Events. This module plays the pod's side only;
it never acts for the operator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from harness.controlplane import ControlPlane
from harness.operator_process import eventually, get
from wasp import contract


def write_status(
    client: redis.Redis, tenant: str, fields: dict[str, str], *, publish: bool = True
) -> None:
    """Replace the tenant's status hash and announce it (unless ``publish`` is false)."""
    key = contract.status_key(tenant)
    client.delete(key)
    client.hset(key, mapping=dict[Any, Any](fields))
    if publish:
        client.publish(contract.events_channel(tenant), json.dumps(fields))


def report(
    client: redis.Redis, tenant: str, fields: dict[str, str], *, publish: bool = True
) -> None:
    """Write the status hash and announce it, as the session pod holding the lease does.

    The pod is ``fields``' ``contract.STATUS_POD``, the tenant's session pod if
    it names none. It holds the lease under the tenant's fencing token (drawn
    if there is none yet) and signs the status with that token.
    """
    token = str(client.get(contract.lease_fence_key(tenant)) or "")
    token = token or str(client.incr(contract.lease_fence_key(tenant)))
    pod = fields.get(contract.STATUS_POD, contract.session_pod_name(tenant))
    client.set(contract.lease_key(tenant), f"{token} {pod}")
    signed = {contract.STATUS_POD: pod, **fields, contract.STATUS_LEASE_TOKEN: token}
    write_status(client, tenant, signed, publish=publish)


def status_of(plane: ControlPlane, namespace: str, name: str = "acme") -> dict[str, Any]:
    """The status of WhatsAppSession ``name`` (empty while it has none or is gone)."""
    found = get(plane, namespace, "was", name) or {}
    status: dict[str, Any] = found.get("status") or {}
    return status


def status_when(  # noqa: PLR0913 - what to wait for, what to say if it never comes
    plane: ControlPlane,
    namespace: str,
    holds: Callable[[dict[str, Any]], bool],
    what: str,
    log: Callable[[], str] = str,
    *,
    name: str = "acme",
) -> dict[str, Any]:
    """Wait until session ``name``'s status ``holds``; return it (or fail saying ``what``)."""

    def probe() -> dict[str, Any] | None:
        status = status_of(plane, namespace, name)
        return status if holds(status) else None

    found: dict[str, Any] = eventually(probe, what, log=log)
    return found


def events_of(plane: ControlPlane, namespace: str, name: str = "acme") -> list[dict[str, Any]]:
    """The Events about WhatsAppSession ``name`` (they outlive the resource)."""
    listed = plane.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    ).stdout
    events: list[dict[str, Any]] = json.loads(listed)["items"]
    return events
