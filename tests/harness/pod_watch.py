"""A watch of a namespace's wasp pods: every ADDED and DELETED event, in the API server's order.

The operator must never run two pods for one session at once, not even for
a moment while it replaces one or while two replicas both act. Polling
would miss such a moment; a watch of the API server's events does not.
``PodWatch`` only records; tests judge the record (``events``,
``most_at_once``).
"""

from __future__ import annotations

import threading

import kubernetes
import urllib3

from harness.controlplane import ControlPlane
from wasp import contract


class PodWatch:
    """The ADDED/DELETED events of a namespace's wasp pods, from the moment it is made."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        """Start watching the namespace's wasp pods."""
        api = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        )
        self.events: list[tuple[str, str]] = []  # (ADDED or DELETED, pod uid)
        self.session_of: dict[str, str] = {}  # pod uid -> the session it runs
        self._stopped = False
        self._watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        self._stream = self._watch.stream(  # type: ignore[no-untyped-call]
            api.list_namespaced_pod,
            namespace,
            label_selector=f"{contract.LABEL_MANAGED_BY}={contract.OPERATOR_NAME}",
            timeout_seconds=300,
        )
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for event in self._stream:
                if event["type"] in {"ADDED", "DELETED"}:
                    pod = event["object"].metadata
                    self.session_of[pod.uid] = (pod.labels or {}).get(contract.LABEL_SESSION, "")
                    self.events.append((event["type"], pod.uid))
        except urllib3.exceptions.HTTPError:
            if not self._stopped:
                raise

    def most_at_once(self) -> dict[str, int]:
        """Session -> the most pods it had at once while watched."""
        live: dict[str, set[str]] = {}
        most: dict[str, int] = {}
        for kind, uid in list(self.events):
            session = self.session_of[uid]
            pods = live.setdefault(session, set())
            if kind == "ADDED":
                pods.add(uid)
            else:
                pods.discard(uid)
            most[session] = max(most.get(session, 0), len(pods))
        return most

    def stop(self) -> None:
        """Stop watching."""
        self._stopped = True
        self._watch.stop()  # type: ignore[no-untyped-call]
