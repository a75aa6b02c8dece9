"""kopf's handlers for wasp: thin, and the only place kopf errors are raised.

Each handler hands its work to the ``Supervisor`` (kept in kopf's memo) and
translates the operator's errors into ``kopf.TemporaryError`` or
``kopf.PermanentError``. Registering them is importing this module. Every
handler is a coroutine, even those that never wait: kopf runs a plain
function in a thread of its executor, a hand-off per watch event (measured
at 5,000 sessions: about a tenth of the operator's time while they were made).

- an index of wasp's pods, by (namespace, session name), and one of the host
  ports they hold (session pods on the node's network avoid each other's);
- an index of wasp's NetworkPolicies' fingerprints (what a cycle compares
  with the one it would build: no read while they match), and their watch events: one
  changed or deleted by someone else is applied again at once;
- a daemon per WhatsAppSession: the session's loop (``supervisor.py``);
- watch events of sessions and of wasp's pods wake that loop;
- deletion (under wasp's finalizer) logs the device out (unless
  ``spec.unlinkOnDelete`` is false), stops the pod and, for the tenant's owner
  only, removes its Redis users and keys.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import kopf

from wasp import contract
from wasp_operator import network_policy
from wasp_operator.errors import OperatorError
from wasp_operator.event_pacer import EventPacer
from wasp_operator.pods import host_ports_in
from wasp_operator.sessions import Session, session_from_body
from wasp_operator.status import PodView, pod_view
from wasp_operator.supervisor import Look, Supervisor

CR = (contract.GROUP, contract.VERSION, contract.PLURAL)
PODS = ("v1", "pods")
NETWORK_POLICIES = ("networking.k8s.io", "v1", "networkpolicies")
WASP_PODS = {contract.LABEL_MANAGED_BY: contract.OPERATOR_NAME}  # and wasp's NetworkPolicies
POD_GONE_POLL_SECONDS = 2.0
# A pod may take its whole grace period (60 s) to checkpoint; a Redis Secret
# deleted with the namespace may never come back: give up after this long.
CLEANUP_TIMEOUT_SECONDS = 15 * 60


def supervisor_of(memo: Any) -> Supervisor:  # noqa: ANN401 - kopf's memo is untyped
    """The supervisor that ``runner.py`` put into kopf's memo."""
    supervisor: Supervisor = memo.supervisor
    return supervisor


@kopf.index(*PODS, labels=WASP_PODS)
async def session_pods(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: object
) -> dict[tuple[str, str], PodView] | None:
    """Index the pods of wasp by (namespace, session name)."""
    session = labels.get(contract.LABEL_SESSION)
    if not namespace or not session:
        return None
    return {(namespace, session): pod_view(body)}


@kopf.index(*PODS, labels=WASP_PODS)
async def session_host_ports(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: object
) -> dict[tuple[str, str], tuple[int, ...]] | None:
    """Index the host ports of wasp's pods by (namespace, session name); none: not indexed."""
    session = labels.get(contract.LABEL_SESSION)
    ports = host_ports_in(body)
    if not namespace or not session or not ports:
        return None
    return {(namespace, session): ports}


@kopf.index(*NETWORK_POLICIES, labels=WASP_PODS)
async def session_network_policies(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: object
) -> dict[tuple[str, str], str] | None:
    """Index wasp's NetworkPolicies by (namespace, session name): their fingerprints."""
    session = labels.get(contract.LABEL_SESSION)
    if not namespace or not session:
        return None
    return {(namespace, session): network_policy.fingerprint(body)}


@kopf.on.event(*NETWORK_POLICIES, labels=WASP_PODS)
async def network_policy_changed(
    type: str | None,  # noqa: A002 - kopf's name for the watch event's type
    namespace: str | None,
    labels: Mapping[str, str],
    body: kopf.Body,
    memo: kopf.Memo,
    **_: object,
) -> None:
    """A session's NetworkPolicy changed or went: its loop applies it again unless it matches."""
    live = None if type == "DELETED" else network_policy.fingerprint(body)
    supervisor_of(memo).policy_changed(namespace, labels.get(contract.LABEL_SESSION), live)


@kopf.on.event(*PODS, labels=WASP_PODS)
async def pod_changed(
    namespace: str | None, labels: Mapping[str, str], memo: kopf.Memo, **_: object
) -> None:
    """A pod of a session changed or went: its session steps the pod and writes the status."""
    supervisor_of(memo).wake(namespace, labels.get(contract.LABEL_SESSION), Look.POD)


@kopf.on.event(*CR)
async def session_changed(
    namespace: str | None, name: str | None, body: kopf.Body, memo: kopf.Memo, **_: object
) -> None:
    """A session changed (spec, suspend, deletion, or only its status): its loop looks again.

    The loop runs its full cycle only if the spec's generation moved; the
    echo of its own status patch wakes it not at all (``Supervisor.changed``).
    """
    supervisor_of(memo).changed(namespace, name, body)


@kopf.daemon(*CR, cancellation_timeout=10.0)
async def run_session(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,  # noqa: ANN401 - kopf's daemon protocol passes every kwarg
) -> None:
    """The session's loop, for as long as the resource exists (resumed on restarts)."""
    session_pods: kopf.Index[tuple[str, str], PodView] = kwargs["session_pods"]
    host_ports: kopf.Index[tuple[str, str], tuple[int, ...]] = kwargs["session_host_ports"]
    policies: kopf.Index[tuple[str, str], str] = kwargs["session_network_policies"]

    def pod_of(session: Session) -> PodView | None:
        for pod in session_pods.get((session.namespace, session.name), []):
            if pod.name == session.pod_name:
                return pod
        return None

    def ports_in_use(session: Session) -> Collection[int]:
        """The host ports of every other session's pod this operator sees."""
        own = (session.namespace, session.name)
        return {
            port
            for key, store in host_ports.items()
            if key != own
            for ports in store
            for port in ports
        }

    def policy_of(session: Session) -> str | None:
        """The fingerprint of the session pod's live NetworkPolicy (None: none is known)."""
        for policy in policies.get((session.namespace, session.name), []):
            return policy
        return None

    await supervisor_of(memo).run(body, pod_of, logger, ports_in_use, policy_of)


@kopf.on.delete(*CR, timeout=CLEANUP_TIMEOUT_SECONDS, backoff=POD_GONE_POLL_SECONDS)
async def clean_up(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: object) -> None:
    """Log the device out, stop the pod; as the owner, delete its users and keys; let it go."""
    session = session_from_body(body)
    try:
        done = await supervisor_of(memo).clean_up(session, body)
    except OperatorError as error:
        raise kopf.TemporaryError(str(error), delay=POD_GONE_POLL_SECONDS) from error
    if not done:
        msg = f"waiting for pod {session.pod_name} to stop"
        raise kopf.TemporaryError(msg, delay=POD_GONE_POLL_SECONDS)
    logger.info(f"session_cleaned_up: tenant {session.tenant}")  # noqa: G004


@kopf.on.cleanup()
async def close_up(memo: kopf.Memo, **_: object) -> None:
    """The operator stops: close its Redis subscriptions and its Event pacer now.

    kopf waits for tasks still running at its exit (5 s) before it returns;
    the relay's subscriptions would be those, so a stop (a rollout, a drain,
    a failover by SIGTERM) took 5 s longer than it needs.
    """
    await supervisor_of(memo).relay.close()
    events: EventPacer | None = getattr(memo, "events", None)
    if events is not None:
        await events.close()


__all__ = ["clean_up", "close_up", "pod_changed", "run_session", "session_changed"]
