"""The operator at 1,000 (or 5,000) sessions: creation, relay latency, restart, idle Redis.

Starts the harness's real control plane (etcd, kube-apiserver,
kube-controller-manager), a private redis-server and one real
``wasp-operator`` process watching one namespace, then:

1. **create**: applies N ``WhatsAppSession`` resources (16 client threads,
   as fast as the API server takes them) and times the last apply → every
   session pod object exists (a watch of the pods, not a list of them all);
2. **stand-ins for the pods**: a real session process costs about 35-50 MiB,
   so N of them do not fit one machine. In their place the benchmark plays
   what a kubelet and a session pod would write: it patches each pod's status
   to Running and Ready (the kubelet's part) and writes each tenant's lease,
   fencing counter and status hash into Redis exactly as a session pod
   holding the lease does, then publishes on the tenant's events channel;
3. **relay**: every tenant changes phase at once (AwaitingPairing →
   Connected, one pipeline); a watch on the resources records when each
   status shows it: latency p50/p99/max from the publish;
4. **baseline** for 3: the same N status changes written straight to the API
   server by the benchmark (16 threads) on N resources of a namespace no
   operator watches, timed the same way (a watch): what this API server,
   machine and client can do without wasp; the relay's ratio to it. It (and
   the relay) starts only once the operator's Events of the step before are
   all posted (they follow the status patches), and the relay's line says
   when its last Event was;
5. **idle**: Redis commands per second from the operator with every session
   idle (``INFO stats``), in total and per session, and the operator's CPU
   (its resyncs) over the same window;
6. **restart**: the operator is stopped (SIGTERM), every tenant changes
   phase while it is down (no one hears the events), and a new operator
   process starts: the time from its start until every status shows the new
   phase, and how many pods it recreated or deleted (uids before and after);
7. with ``--create-baseline``, at the end, the operator stopped: the same N
   applies, each followed by the writes the operator makes for a new session
   (the bodies of its own builders: kopf's finalizer, two credential
   Secrets, the NetworkPolicy, the auth key, the pod, the first status, two
   Events), made straight by the benchmark on its 16 threads: what this API
   server and client take for that work with no operator in the way, and
   the operator's first apply → every pod against it;

and the operator's peak RSS (``VmHWM``) after each step.

The watches go on after the API server ends them (a reader that falls
behind is cut off); ``--create-only`` stops after step 1 and measures idle
once its Events are posted (pods not running).

Run: ``.venv/bin/python bench/sessions_scale.py [--sessions 1000] [--create-only]
[--create-baseline]`` (root not needed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import kubernetes
import redis
import urllib3
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.controlplane import ControlPlane
from harness.operator_process import OperatorProcess
from harness.redis_server import RedisServer
from wasp import contract
from wasp.timestamps import format_timestamp, utc_now
from wasp_operator import network_policy, pods, redis_users
from wasp_operator.config import OperatorConfig
from wasp_operator.sessions import session_from_body

NAMESPACE = "scale"
BASELINE_NAMESPACE = "baseline"  # no operator watches it
CREATE_BASELINE_NAMESPACE = "baseline-create"  # nor this one
GROUP, VERSION, PLURAL = "wasp.dev", "v1alpha1", "whatsappsessions"
WASP_PODS = "app.kubernetes.io/managed-by=wasp-operator"
THREADS = 16
CRDS = Path(__file__).resolve().parents[1] / "crds"


def tenant_name(index: int) -> str:
    """The ``index``-th resource's name (also its tenant id)."""
    return f"t{index:05d}"


def peak_rss_mib(pid: int) -> float:
    """``VmHWM`` of a live process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_parallel(work: Callable[[str], object], names: Iterable[str]) -> None:
    """Run ``work`` for every name on the benchmark's client threads."""
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(work, names):
            pass


class Cluster:
    """The control plane, Redis and the API clients the benchmark drives."""

    def __init__(self, directory: Path) -> None:
        """Start the control plane and Redis, install the CRDs, make the namespace."""
        self.directory = directory
        self.plane = ControlPlane(directory / "controlplane")
        self.redis_server = RedisServer(directory / "redis")
        self.redis = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
        for path in (CRDS / "whatsappsessions.wasp.dev.yaml", CRDS / "kopf-peering.yaml"):
            self.plane.kubectl("apply", "-f", str(path))
        self.plane.kubectl(
            "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s"
        )
        self.plane.kubectl("create", "namespace", NAMESPACE)
        self.plane.kubectl(
            "create",
            "secret",
            "generic",
            contract.DEFAULT_REDIS_SECRET,
            "-n",
            NAMESPACE,
            f"--from-literal={contract.DEFAULT_REDIS_SECRET_KEY}={self.redis_server.url}",
        )
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            str(self.plane.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = THREADS * 2
        self.api = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.operator: OperatorProcess | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any,  # noqa: ANN401 - any JSON
        content_type: str = "application/json",
    ) -> Any:  # noqa: ANN401 - any JSON
        """One request as JSON (no typed models: what the operator's ``kube.py`` does)."""
        request = self.api.param_serialize(
            method=method,
            resource_path=path,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:  # noqa: PLR2004 - 2xx
            raise ApiException(status=response.status, reason=response.reason)
        return json.loads(data) if data else None

    def start_operator(self, name: str) -> OperatorProcess:
        """A real ``wasp-operator`` watching the namespace."""
        self.operator = OperatorProcess(
            self.plane.kubeconfig, self.directory / name, namespace=NAMESPACE
        )
        return self.operator

    def pods(self) -> dict[str, str]:
        """The session pods: name → uid."""
        listed = self.core.list_namespaced_pod(NAMESPACE, label_selector=WASP_PODS)
        return {
            str(pod.metadata.name): str(pod.metadata.uid)
            for pod in listed.items
            if pod.metadata is not None
        }

    def create_session(self, name: str, namespace: str = NAMESPACE) -> None:
        """Apply one sandbox tenant."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WhatsAppSession",
            "metadata": {"name": name},
            "spec": {"transport": "simulator"},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def patch_phase(self, name: str, phase: str, namespace: str) -> None:
        """Write a phase into one resource's status, as the operator's status step would."""
        patch = {"status": {"phase": phase, "tenantId": name}}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, patch
        )

    def run_pod(self, pod: str) -> None:
        """What a kubelet writes for a started, ready pod."""
        now = format_timestamp(utc_now())
        status = {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                ],
                "startTime": now,
            }
        }
        for _ in range(5):
            try:
                self.core.patch_namespaced_pod_status(pod, NAMESPACE, status)
            except ApiException as error:
                if error.status != 409:  # noqa: PLR2004 - Conflict: the operator wrote meanwhile
                    raise
            else:
                return

    def report(self, tenants: list[str], phase: str, *, publish: bool = True) -> float:
        """Every tenant's session reports ``phase``, as the lease holder does; the publish time."""
        now = format_timestamp(utc_now())
        with self.redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.get(contract.lease_fence_key(tenant))
            tokens = pipe.execute()
        with self.redis.pipeline(transaction=False) as pipe:
            for tenant, token in zip(tenants, tokens, strict=True):
                fence = token or "1"
                pod = contract.session_pod_name(tenant)
                pipe.set(contract.lease_fence_key(tenant), fence)
                pipe.set(contract.lease_key(tenant), f"{fence} {pod}")
                fields = {
                    contract.STATUS_PHASE: phase,
                    contract.STATUS_POD: pod,
                    contract.STATUS_LEASE_TOKEN: fence,
                    contract.STATUS_UPDATED_AT: now,
                }
                if phase == "Connected":
                    fields[contract.STATUS_ACCOUNT_JID] = "4915112345678@s.whatsapp.net"
                pipe.delete(contract.status_key(tenant))
                pipe.hset(contract.status_key(tenant), mapping=dict[Any, Any](fields))
            pipe.execute()
        published = time.monotonic()
        if publish:
            with self.redis.pipeline(transaction=False) as pipe:
                for tenant in tenants:
                    pipe.publish(contract.events_channel(tenant), json.dumps({"phase": phase}))
                pipe.execute()
        return published

    def stop(self) -> None:
        """Stop everything this benchmark started."""
        if self.operator is not None:
            self.operator.stop()
        self.api.close()  # type: ignore[no-untyped-call]
        self.redis.close()
        self.redis_server.stop()
        self.plane.stop()


class FirstSeen:
    """When each object first matched, by a watch that outlives the API server ending it.

    An API server ends a watch whose reader falls behind (thousands of
    events at once, a benchmark busy writing): the watch goes on from the
    last version it saw, or, when that is too old (410 Gone), from a new
    list (objects found matching there count as seen then; ``relists``
    says how often that happened).
    """

    def __init__(
        self,
        list_call: Callable[..., Any],
        arguments: tuple[Any, ...],
        expected: int,
        **options: str,
    ) -> None:
        """List now, then watch from that list's version on a thread."""
        self.expected = expected
        self.seen: dict[str, float] = {}
        self.done = threading.Event()
        self.relists = 0
        self._list_call = list_call
        self._arguments = arguments
        self._options = options
        self._stopped = False
        self._watch = kubernetes.watch.Watch(return_type="object")  # type: ignore[no-untyped-call]
        self._version = self._list()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Whether this object counts (every one, unless a subclass says otherwise)."""
        del item
        return True

    def _see(self, item: Mapping[str, Any]) -> None:
        name = item["metadata"]["name"]
        if name not in self.seen and self.matches(item):
            self.seen[name] = time.monotonic()
            if len(self.seen) >= self.expected:
                self.done.set()

    def _list(self) -> str:
        response = self._list_call(*self._arguments, **self._options, _preload_content=False)
        listed = cast("dict[str, Any]", json.loads(response.data))
        for item in listed["items"]:
            self._see(item)
        return str(listed["metadata"]["resourceVersion"])

    def _run(self) -> None:
        while not self.done.is_set() and not self._stopped:
            try:
                stream = self._watch.stream(  # type: ignore[no-untyped-call]
                    self._list_call,
                    *self._arguments,
                    **self._options,
                    resource_version=self._version,
                )
                for event in stream:
                    item: dict[str, Any] = event["raw_object"]
                    self._version = item["metadata"].get("resourceVersion", self._version)
                    self._see(item)
                    if self.done.is_set():
                        self._watch.stop()  # type: ignore[no-untyped-call]
            except ApiException as error:
                if error.status != 410:  # noqa: PLR2004 - Gone: too old a version to go on from
                    raise
                self.relists += 1
                self._version = self._list()
            except urllib3.exceptions.HTTPError:  # cut off mid-stream: go on from the last one
                time.sleep(0.5)

    def wait(self, timeout: float, what: str) -> float:
        """Until every object matched: the time the last one did; else fail saying how many."""
        if len(self.seen) < self.expected and not self.done.wait(timeout):
            self._stopped = True
            self._watch.stop()  # type: ignore[no-untyped-call]
            msg = f"only {len(self.seen)} of {self.expected} {what} in {timeout} s"
            raise TimeoutError(msg)
        return max(self.seen.values())


class PhaseWatch(FirstSeen):
    """When each resource's status first shows a phase."""

    def __init__(
        self, cluster: Cluster, phase: str, expected: int, namespace: str = NAMESPACE
    ) -> None:
        """Start watching now."""
        self.phase = phase
        list_call = cluster.custom.list_namespaced_custom_object
        super().__init__(list_call, (GROUP, VERSION, namespace, PLURAL), expected)

    def matches(self, item: Mapping[str, Any]) -> bool:
        """The resource shows the phase."""
        return bool((item.get("status") or {}).get("phase") == self.phase)


class PodWatch(FirstSeen):
    """When each session pod object first appears."""

    def __init__(self, cluster: Cluster, expected: int) -> None:
        """Start watching now (before the first apply)."""
        list_call = cluster.core.list_namespaced_pod
        super().__init__(list_call, (NAMESPACE,), expected, label_selector=WASP_PODS)


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float, interval: float = 0.25
) -> float:
    """Poll until ``condition`` (every ``interval`` s); the monotonic time it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = f"not within {timeout} s: {what}"
            raise TimeoutError(msg)
        time.sleep(interval)
    return time.monotonic()


def events_posted(cluster: Cluster, reason: str) -> int:
    """How many sessions have an Event with ``reason`` (a phase the operator posts on entry)."""
    listed = cluster.core.list_namespaced_event(NAMESPACE, field_selector=f"reason={reason}")
    return len({event.involved_object.name for event in listed.items})


def quantiles(delays: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max of ``delays``."""
    cuts = statistics.quantiles(delays, n=100)
    return cuts[49], cuts[98], max(delays)


def redis_commands_per_second(client: redis.Redis, seconds: float) -> float:
    """Commands the server processed per second over ``seconds``, minus our own two INFO calls."""
    before = int(client.info("stats")["total_commands_processed"])
    time.sleep(seconds)
    after = int(client.info("stats")["total_commands_processed"])
    return (after - before - 1) / seconds


def baseline(cluster: Cluster, names: list[str]) -> tuple[float, float, float]:
    """p50/p99/max of N status writes made straight to the API server, seen by a watch."""
    cluster.plane.kubectl("create", "namespace", BASELINE_NAMESPACE)
    in_parallel(lambda name: cluster.create_session(name, BASELINE_NAMESPACE), names)
    watch = PhaseWatch(cluster, "Connected", len(names), BASELINE_NAMESPACE)
    started = time.monotonic()
    in_parallel(lambda name: cluster.patch_phase(name, "Connected", BASELINE_NAMESPACE), names)
    watch.wait(600, "showed Connected")
    return quantiles([seen - started for seen in watch.seen.values()])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_create(cluster: Cluster, names: list[str]) -> tuple[OperatorProcess, float]:
    """Apply every resource at once; the time until every pod exists, the operator's RSS.

    Returns the operator and the time from the first apply to the last pod.
    """
    operator = cluster.start_operator("operator-1")
    pod_watch = PodWatch(cluster, len(names))
    started = time.monotonic()
    in_parallel(cluster.create_session, names)
    applied = time.monotonic()
    all_pods = pod_watch.wait(900, "pods")
    print(f"create: {len(names)} applied in {applied - started:.1f} s; ", end="")
    print(f"last apply → every pod exists: {all_pods - applied:.1f} s")
    if pod_watch.relists:  # the times are those of the list that found them: a little late
        print(f"(the pod watch fell behind and listed the pods again {pod_watch.relists}x)")
    print(f"operator peak RSS after create: {peak_rss_mib(operator.process.pid):.0f} MiB")
    return operator, all_pods - started


def measure_relay(cluster: Cluster, operator: OperatorProcess, names: list[str]) -> None:
    """Every tenant's phase changes at once: the relay's latency, then the bare baseline."""
    sessions = len(names)
    pairing = PhaseWatch(cluster, "AwaitingPairing", sessions)
    cluster.report(names, "AwaitingPairing")
    pairing.wait(600, "showed AwaitingPairing")
    # The operator's Events follow its status patches: none left over from the
    # pairing may weigh on the relay measured next.
    wait_for(lambda: events_posted(cluster, "AwaitingPairing") >= sessions, "Events", 900, 2.0)

    connected = PhaseWatch(cluster, "Connected", sessions)
    published = cluster.report(names, "Connected")
    connected.wait(600, "showed Connected")
    p50, p99, worst = quantiles([seen - published for seen in connected.seen.values()])
    print(
        f"relay, every tenant changes phase at once: p50 {p50:.2f} s, "
        f"p99 {p99:.2f} s, max {worst:.2f} s"
    )
    posted = wait_for(lambda: events_posted(cluster, "Connected") >= sessions, "Events", 900, 2.0)
    print(f"relay: every Connected Event posted {posted - published:.1f} s after the publish")
    print(f"operator peak RSS after relay: {peak_rss_mib(operator.process.pid):.0f} MiB")
    base50, base99, base_worst = baseline(cluster, names)
    print(
        f"baseline, the same {sessions} status writes straight to the API server: "
        f"p50 {base50:.2f} s, p99 {base99:.2f} s, max {base_worst:.2f} s; "
        f"relay p99 / baseline p99: {p99 / base99:.1f}"
    )


def measure_idle(
    cluster: Cluster, operator: OperatorProcess, sessions: int, seconds: float
) -> None:
    """Redis commands and operator CPU while every session is idle."""
    time.sleep(10)  # the status writes of the relay step and their echoes settle
    cpu_before = cpu_seconds(operator.process.pid)
    per_second = redis_commands_per_second(cluster.redis, seconds)
    cpu = (cpu_seconds(operator.process.pid) - cpu_before) / seconds
    print(
        f"idle: Redis commands/s from the operator: {per_second:.1f} "
        f"({per_second / sessions:.3f} per session, over {seconds:.0f} s); "
        f"operator CPU {cpu * 100:.1f} % of a core"
    )


def measure_restart(
    cluster: Cluster, operator: OperatorProcess, names: list[str]
) -> OperatorProcess:
    """Stop the operator, change every report unannounced, start another (returned): its resync."""
    pods = cluster.pods()
    operator.stop()
    cluster.operator = None
    cluster.report(names, "Reconnecting", publish=False)
    resynced = PhaseWatch(cluster, "Reconnecting", len(names))
    restarted = time.monotonic()
    operator = cluster.start_operator("operator-2")
    last = resynced.wait(600, "showed Reconnecting")
    after = cluster.pods()
    recreated = sum(1 for name, uid in pods.items() if after.get(name) not in (None, uid))
    missing = sum(1 for name in pods if name not in after)
    print(
        f"restart: new operator started → every status resynced: {last - restarted:.1f} s; "
        f"pods recreated: {recreated}, deleted: {missing}"
    )
    print(f"operator peak RSS (restarted one): {peak_rss_mib(operator.process.pid):.0f} MiB")
    return operator


def writes_for(cluster: Cluster, body: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """The writes the operator makes for a new session, in its order: (method, path, body, type).

    kopf's finalizer, the two credential Secrets, the NetworkPolicy, the auth
    key, the pod (the bodies of ``wasp_operator``'s own builders), the first
    status, and two Events (its phase, ``PodCreated``).
    """
    session = session_from_body(body)
    namespace, name = session.namespace, session.name
    resource = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
    config = OperatorConfig(namespaces=(namespace,))
    merge = "application/merge-patch+json"
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    writes: list[tuple[str, str, Any, str]] = [
        ("PATCH", resource, {"metadata": {"finalizers": [contract.FINALIZER]}}, merge)
    ]
    for identity in redis_users.identities_of(session):
        credential, _ = redis_users.credential_for(identity, cluster.redis_server.url, None)
        secret = redis_users.build_credential_secret(session, identity, credential)
        writes.append(("POST", secrets, secret, "application/json"))
    policies = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    policy = network_policy.build_network_policy(session, config)
    writes.append(("POST", policies, policy, "application/json"))
    auth = pods.build_auth_secret(session, pods.new_auth_key())
    writes.append(("POST", secrets, auth, "application/json"))
    pod = pods.build_pod(session, config)
    writes.append(("POST", f"/api/v1/namespaces/{namespace}/pods", pod, "application/json"))
    now = format_timestamp(utc_now())
    condition = {"type": "Ready", "status": "False", "reason": "Pending", "message": "starting"}
    first_status = {
        "phase": "Pending",
        "tenantId": session.tenant,
        "observedGeneration": session.generation,
        "podName": session.pod_name,
        "conditions": [condition | {"lastTransitionTime": now}],
    }
    writes.append(("PATCH", f"{resource}/status", {"status": first_status}, merge))
    about = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WhatsAppSession", "name": name}
    for reason in ("Pending", "PodCreated"):
        event = {
            "metadata": {"generateName": f"{name}."},
            "involvedObject": about | {"namespace": namespace, "uid": session.uid},
            "reason": reason,
            "message": reason,
            "type": "Normal",
            "source": {"component": contract.OPERATOR_NAME},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        writes.append(("POST", f"/api/v1/namespaces/{namespace}/events", event, "application/json"))
    return writes


def baseline_create(cluster: Cluster, names: list[str], operator_seconds: float) -> None:
    """The same applies, and the writes the operator makes for them, straight from here.

    Per session, on the benchmark's 16 threads: apply it, then write what the
    operator writes for it (``writes_for``). No operator, no watch: what this
    API server and client do for N sessions with nothing else in the way;
    the operator's first apply → every pod beside it.
    """
    cluster.plane.kubectl("create", "namespace", CREATE_BASELINE_NAMESPACE)
    collection = f"/apis/{GROUP}/{VERSION}/namespaces/{CREATE_BASELINE_NAMESPACE}/{PLURAL}"

    def start(name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WhatsAppSession",
            "metadata": {"name": name},
            "spec": {"transport": "simulator"},
        }
        created = cluster.call("POST", collection, body)
        for method, path, payload, content_type in writes_for(cluster, created):
            cluster.call(method, path, payload, content_type)

    started = time.monotonic()
    in_parallel(start, names)
    took = time.monotonic() - started
    writes = len(writes_for(cluster, {"metadata": {"name": "t", "namespace": "n", "uid": "u"}}))
    print(
        f"baseline, the same {len(names)} applies and the {writes} writes the operator makes "
        f"for each, straight to the API server: {took:.1f} s; operator's first apply → every "
        f"pod: {operator_seconds:.1f} s; ratio {operator_seconds / took:.1f}"
    )


def run(
    directory: Path,
    sessions: int,
    idle_seconds: float,
    *,
    create_only: bool,
    create_baseline: bool,
) -> None:
    """Measure one cluster of ``sessions`` tenants and print the figures."""
    names = [tenant_name(i) for i in range(sessions)]
    print(f"sessions: {sessions}")
    cluster = Cluster(directory)
    try:
        operator, create_seconds = measure_create(cluster, names)
        if create_only:
            # Idle once the operator's Events of the create (paced) are posted too.
            wait_for(lambda: events_posted(cluster, "PodCreated") >= sessions, "Events", 900, 2.0)
            measure_idle(cluster, operator, sessions, idle_seconds)
        else:
            in_parallel(cluster.run_pod, list(cluster.pods()))
            measure_relay(cluster, operator, names)
            measure_idle(cluster, operator, sessions, idle_seconds)
            operator = measure_restart(cluster, operator, names)
        if create_baseline:
            operator.stop()
            cluster.operator = None
            baseline_create(cluster, names, create_seconds)
    finally:
        cluster.stop()


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000, help="resources to apply")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=60.0,
        help="length of the idle measurement (at least two resyncs: 30 s each by default)",
    )
    parser.add_argument(
        "--create-only",
        action="store_true",
        help="measure the create step and the idle one after it (pods not running), nothing else",
    )
    parser.add_argument(
        "--create-baseline",
        action="store_true",
        help="at the end, with the operator stopped: the same applies and the writes the "
        "operator makes for them, straight from the benchmark (what this API server can do)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasp-scale-") as directory:
        run(
            Path(directory),
            args.sessions,
            args.idle_seconds,
            create_only=args.create_only,
            create_baseline=args.create_baseline,
        )


if __name__ == "__main__":
    main()
