"""Starting the operator: kopf's settings for wasp, and kopf run programmatically.

Owns how kopf is set up (wasp's finalizer and annotation prefix for its
bookkeeping, peering, liveness, which namespaces) and the lifetime of the
objects the handlers share (Kubernetes client, Redis relay, supervisor).
The behaviour itself lives in ``handlers.py`` and ``supervisor.py``.

Also owns what kopf's health endpoint (``--liveness``, the Deployment's
liveness and readiness probes) means beyond "kopf's tasks run": the
``kubernetes_api`` probe handler lists WhatsAppSessions where the operator
watches them, with its own credentials, so the endpoint fails (HTTP 500)
while the API server cannot be reached or no longer lets the operator list
what it watches. kopf keeps a probe's result for 10 s.

With more than one replica they peer (kopf's peering); the priorities each
announces, and the guard against a tie, are ``peering.py``'s. How the C
allocator holds memory (glibc's arenas, trims) is ``malloc_tuning.py``'s.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import types
from typing import Any, cast

import kopf
import kubernetes

from wasp import contract
from wasp_operator import (
    handlers,  # importing it registers kopf's handlers
    metrics,
    peering,
)
from wasp_operator.config import OperatorConfig
from wasp_operator.diffbase import NoDiffBase
from wasp_operator.event_pacer import EventPacer
from wasp_operator.kube import Kube, api_executor, load_configuration
from wasp_operator.malloc_tuning import glibc, limit_malloc_arenas, trim_malloc
from wasp_operator.relay import StatusRelay
from wasp_operator.supervisor import Supervisor

logger = logging.getLogger(__name__)
WATCH_SERVER_TIMEOUT = 120  # re-list now and then: a silently broken watch heals
WATCH_CLIENT_TIMEOUT = 150.0
PROBE_ID = "kubernetes_api"  # its result's key in the health endpoint's JSON
PROBE_REQUEST_TIMEOUT = (1.0, 3.0)  # connect, read: inside the probes' timeoutSeconds (5)


class ApiProbe:
    """Whether the API server answers the query the operator's watch of sessions makes."""

    def __init__(
        self, namespaces: tuple[str, ...], api: kubernetes.client.CustomObjectsApi | None = None
    ) -> None:
        """Ask in ``namespaces`` (none: cluster-wide), as the watch does; ``api``: a client."""
        self._namespaces = namespaces
        self._api = api

    def check(self) -> dict[str, str]:
        """List one WhatsAppSession per watched scope; raise if the API server does not answer.

        Returns each scope's resourceVersion (``*``: cluster-wide).
        """
        if self._api is None:
            self._api = kubernetes.client.CustomObjectsApi()
        found: dict[str, str] = {}
        for namespace in self._namespaces or (None,):
            if namespace is None:
                answer = self._api.list_cluster_custom_object(
                    contract.GROUP,
                    contract.VERSION,
                    contract.PLURAL,
                    limit=1,
                    _request_timeout=PROBE_REQUEST_TIMEOUT,
                )
            else:
                answer = self._api.list_namespaced_custom_object(
                    contract.GROUP,
                    contract.VERSION,
                    namespace,
                    contract.PLURAL,
                    limit=1,
                    _request_timeout=PROBE_REQUEST_TIMEOUT,
                )
            listed = cast("dict[str, Any]", answer)
            found[namespace or "*"] = str(listed.get("metadata", {}).get("resourceVersion", ""))
        return found


@kopf.on.probe(id=PROBE_ID, errors=kopf.ErrorsMode.PERMANENT)
def kubernetes_api(memo: kopf.Memo, **_: object) -> dict[str, str]:
    """The health endpoint fails (500) unless the watched sessions can be listed now."""
    probe: ApiProbe = memo.api_probe
    return probe.check()


def operator_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    """The settings kopf runs with: wasp's finalizer and annotations, quiet Events."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = contract.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=contract.ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = NoDiffBase()  # no handler of wasp needs one
    settings.posting.reporting_component = contract.OPERATOR_NAME
    settings.posting.level = logging.WARNING  # Events for phases and problems, not every handler
    settings.peering.name = contract.PEERING_NAME
    settings.peering.clusterwide = not config.namespaces
    settings.peering.standalone = config.standalone
    settings.peering.mandatory = not config.standalone
    settings.peering.priority = peering.own_priority()
    settings.peering.lifetime = peering.PEERING_LIFETIME_SECONDS
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    # kopf filters a handler's ``labels=`` in the operator, after it has listed,
    # watched and decoded every pod and NetworkPolicy of the namespaces (the
    # cluster's, all-namespaces): the API server sends wasp's alone.
    selector = ",".join(f"{key}={value}" for key, value in handlers.WASP_PODS.items())
    for resource in (handlers.PODS, handlers.NETWORK_POLICIES):
        settings.watching.label_selectors[resource] = selector
    return settings


def kopf_arguments(config: OperatorConfig) -> dict[str, Any]:
    """What kopf is told about namespaces, peering and liveness."""
    arguments: dict[str, Any] = {
        "clusterwide": not config.namespaces,
        "namespaces": list(config.namespaces),
        "standalone": config.standalone,
        "liveness_endpoint": config.liveness_endpoint,
    }
    if not config.standalone:
        arguments["peering_name"] = contract.PEERING_NAME  # and peering is mandatory
    return arguments


def own_identity(environ: dict[str, str] | None = None) -> str:
    """This replica's name among its peers: ``POD_ID`` (the pod's name), else host/pid/random.

    Spelled here, not by kopf, whose default asks the user database for the
    process's user name: a container running as a uid without an entry in
    the image's ``/etc/passwd`` (the chart's 65532, or any uid a platform
    assigns) would crash at start.
    """
    environment = os.environ if environ is None else environ
    pod = environment.get(contract.ENV_OPERATOR_POD_ID, "").strip()
    if pod:
        return pod
    return f"{contract.OPERATOR_NAME}@{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


async def serve(config: OperatorConfig, stop_flag: asyncio.Event | None = None) -> None:
    """Run the operator until stopped (SIGTERM/SIGINT, or ``stop_flag``)."""
    libc = glibc()
    if libc is not None:
        limit_malloc_arenas(libc)
    load_configuration()
    asyncio.get_running_loop().set_default_executor(api_executor())
    if config.metrics_port is not None:
        metrics.serve(config.metrics_port)
    relay = StatusRelay()
    events = EventPacer()
    supervisor = Supervisor(config, Kube(), relay, events.post)
    settings, identity = operator_settings(config), own_identity()
    guard = None if config.standalone else _join_peering(config, settings, identity)
    trimmer = None if libc is None else asyncio.create_task(trim_malloc(libc), name="malloc trim")
    try:
        await kopf.operator(
            settings=settings,
            memo=kopf.Memo(
                supervisor=supervisor, events=events, api_probe=ApiProbe(config.namespaces)
            ),
            stop_flag=stop_flag,
            identity=cast("Any", identity),  # kopf's Identity (a NewType of str) is private
            **kopf_arguments(config),
        )
    finally:
        tasks = [task for task in (guard, trimmer) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await relay.close()


def _join_peering(
    config: OperatorConfig, settings: kopf.OperatorSettings, identity: str
) -> asyncio.Task[None]:
    """Say whom this replica peers as, with what priority; guard that priority against a tie."""
    logger.info(
        "peering_joined: %s as %s, priority %d (the highest live one is active)",
        contract.PEERING_NAME,
        identity,
        settings.peering.priority,
    )
    read = functools.partial(peering.peering_records, config.namespaces)
    guard = peering.TieGuard(settings, identity, read)
    return asyncio.create_task(guard.run(), name="peering tie guard")


def run(config: OperatorConfig, *, verbose: bool = False) -> None:
    """Run the operator in a fresh event loop (the command line's entry)."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON, log_refkey="object")
    # The probes ask /healthz every few seconds: no log line per request unless verbose.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        logging.getLogger("kopf.objects").addFilter(drop_watch_handler_successes)
    asyncio.run(serve(config))


# The handlers kopf calls for every watch event (their names are kopf's handler ids): that
# one succeeded is no news.
WATCH_HANDLERS = frozenset(
    cast("types.FunctionType", handler).__name__
    for handler in (handlers.session_changed, handlers.pod_changed, handlers.network_policy_changed)
)


def drop_watch_handler_successes(record: logging.LogRecord) -> bool:
    """False (drop it) for kopf's "Handler 'pod_changed' succeeded." of a watch event.

    kopf logs one such line per handler and watch event: thousands of lines
    (and a JSON formatting each) when a thousand sessions change, with
    nothing to tell. Failures, and every other handler's lines, still show.
    """
    if record.levelno != logging.INFO or not isinstance(record.msg, str):
        return True
    message = record.msg
    return not (
        message.startswith("Handler '")
        and message.endswith("' succeeded.")
        and message[len("Handler '") : -len("' succeeded.")] in WATCH_HANDLERS
    )
