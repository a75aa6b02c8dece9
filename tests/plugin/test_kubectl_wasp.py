"""``kubectl wasp`` as a user runs it: real kubectl, a kubeconfig, and nothing else.

Everything is real: the API server, the operator process, the session
process (run by the kubelet stand-in), redis-server, kubectl finding the
plugin on ``PATH``. The plugin gets no environment variable and no Redis
URL: only ``--kubeconfig`` (or a context) and a namespace other than the
kubeconfig's current one. It must find the resource, the tenant's own
credential and its Redis by itself, and say each failure in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.controlplane import ControlPlane
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.redis_server import RedisServer
from wasp import contract

pytestmark = [pytest.mark.plugin, pytest.mark.controlplane]

SESSION = "acme"
PHONE = "+4915112345678"
QR_BLOCKS = ("█", "▀", "▄")


class KubectlWasp:
    """``kubectl wasp ...`` through the real kubectl, with only a kubeconfig."""

    def __init__(self, plane: ControlPlane, home: Path, kubeconfig: Path) -> None:
        """Run as a user whose ``PATH`` has kubectl and the installed plugin, and no more."""
        home.mkdir(parents=True, exist_ok=True)
        self.kubectl = str(plane.binaries["kubectl"])
        self.kubeconfig = kubeconfig
        plugin_bin = Path(sys.executable).parent  # kubectl-wasp, installed with wasp
        self.env = {"PATH": f"{plugin_bin}:/usr/bin:/bin", "HOME": str(home)}

    def command(self, *args: str, kubeconfig: Path | None = None) -> list[str]:
        """The command line: ``kubectl wasp ARGS --kubeconfig FILE``."""
        return [self.kubectl, "wasp", *args, "--kubeconfig", str(kubeconfig or self.kubeconfig)]

    def __call__(
        self, *args: str, kubeconfig: Path | None = None, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end."""
        return subprocess.run(
            self.command(*args, kubeconfig=kubeconfig),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command's single stderr line, after checking it failed and said only that."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("kubectl wasp: ")
    return lines[0]


def resource_status(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    found = get(plane, namespace, "was", SESSION) or {}
    status: dict[str, Any] = found.get("status") or {}
    return status


def kubeconfig_with(plane: ControlPlane, path: Path, **users_and_contexts: Any) -> Path:  # noqa: ANN401
    """A copy of the cluster's kubeconfig with other users, contexts and current context."""
    config: dict[str, Any] = json.loads(plane.kubeconfig.read_text(encoding="utf-8"))
    config["users"] += users_and_contexts.get("users", [])
    config["contexts"] += users_and_contexts.get("contexts", [])
    config["current-context"] = users_and_contexts.get("current", config["current-context"])
    path.write_text(json.dumps(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def token_of_service_account(plane: ControlPlane, namespace: str, name: str) -> str:
    plane.kubectl("create", "serviceaccount", name, "-n", namespace)
    return plane.kubectl("create", "token", name, "-n", namespace).stdout.strip()


def test_kubectl_wasp_drives_a_session_with_only_a_kubeconfig(  # noqa: PLR0913, PLR0915, PLR0917 - one user's whole story, on every real part
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    admin = redis_server.client()
    pod = contract.session_pod_name(SESSION)

    def logs() -> str:
        return f"{wasp_operator.log()[-3000:]}\n--- pod:\n{session_kubelet.log_of(pod)[-3000:]}"

    # The kubeconfig's current namespace is "default": the session lives elsewhere.
    wasp = KubectlWasp(control_plane, tmp_path / "home", control_plane.kubeconfig)
    where = ("-n", namespace)
    apply(
        control_plane,
        namespace,
        session_body(SESSION, transport="simulator", pairing={"maxWindows": 2}),
    )
    eventually(
        lambda: resource_status(control_plane, namespace).get("apiCredentials"),
        "the operator made the tenant API's credential",
        log=logs,
    )
    eventually(
        lambda: resource_status(control_plane, namespace).get("phase") == "AwaitingPairing",
        "the session awaits pairing",
        log=logs,
    )

    # status: the resource, the session's own status and the resource's Events.
    shown = wasp("status", SESSION, *where)
    assert shown.returncode == 0, shown.stderr
    assert f"WhatsAppSession {SESSION} (namespace {namespace}, tenant {SESSION})" in shown.stdout
    assert "phase: AwaitingPairing" in shown.stdout or "phase: PairingExpired" in shown.stdout
    assert f"pod: {pod}" in shown.stdout
    assert "conditions: Ready=False" in shown.stdout
    assert "session.phase: " in shown.stdout  # the pod's own status, from Redis
    assert "session.heartbeat: " in shown.stdout
    assert "events:\n" in shown.stdout
    from_env = subprocess.run(  # $KUBECONFIG instead of --kubeconfig, as kubectl reads it
        [wasp.kubectl, "wasp", "status", SESSION, *where],
        capture_output=True,
        text=True,
        env={**wasp.env, "KUBECONFIG": str(control_plane.kubeconfig)},
        timeout=90,
        check=False,
    )
    assert f"WhatsAppSession {SESSION} (namespace {namespace}" in from_env.stdout, from_env.stderr
    as_json = json.loads(wasp("status", SESSION, *where, "--json").stdout)
    assert as_json["resource"]["podName"] == pod
    assert as_json["session"]["tenant"] == SESSION
    assert as_json["events"], "the resource's Events"

    # pair: once the windows ran out unscanned, it opens a new one.
    eventually(
        lambda: resource_status(control_plane, namespace).get("phase") == "PairingExpired",
        "both pairing windows ran out",
        log=logs,
    )
    paired = wasp("pair", SESSION, *where)
    assert paired.returncode == 0, paired.stderr
    assert f"kubectl wasp qr {SESSION} --namespace {namespace}" in paired.stdout
    eventually(
        lambda: resource_status(control_plane, namespace).get("phase") == "AwaitingPairing",
        "pairing re-armed by kubectl wasp pair",
        log=logs,
    )

    # qr: the live code drawn in the terminal until the (simulated) phone scans it.
    with subprocess.Popen(
        wasp.command("qr", SESSION, *where, "--timeout", "30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=wasp.env,
    ) as drawing:
        assert drawing.stdout is not None
        assert drawing.stderr is not None
        try:
            first_line = drawing.stdout.readline()  # blocks until the first QR is drawn
            assert any(block in first_line for block in QR_BLOCKS), first_line
            scan = json.dumps({"command": "scan"})
            admin.rpush(contract.simulator_commands_key(SESSION), scan)
            drawing.wait(timeout=60)
            rest, errors = drawing.stdout.read(), drawing.stderr.read()
        finally:
            drawing.kill()
    assert drawing.returncode == 0, errors
    assert "Scan with WhatsApp" in rest
    assert rest.rstrip().endswith("pairing ended: session is Connected")
    connected = eventually(
        lambda: (s := resource_status(control_plane, namespace)).get("phase") == "Connected" and s,
        "the resource is Connected",
        log=logs,
    )
    jid = connected["account"]["jid"]

    # send: the OTP goes out through the tenant's own credential and is read.
    sent = wasp("send", SESSION, PHONE, "493817", "--wait", "read", *where)
    assert sent.returncode == 0, sent.stderr
    message_id = sent.stdout.splitlines()[0]
    assert "state: read" in sent.stdout
    one = wasp("status", SESSION, message_id, *where)
    assert "state: read" in one.stdout, one.stderr

    # messages: the recent ones and their states.
    listed = wasp("messages", SESSION, *where)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(message_id)]
    assert row.split()[1] == "read"
    assert PHONE not in listed.stdout, "numbers are masked"
    (line,) = wasp("messages", SESSION, *where, "--json").stdout.splitlines()
    assert json.loads(line)["state"] == "read"

    # logout: the device leaves the account; the resource stays and pairs again.
    out = wasp("logout", SESSION, *where)
    assert out.returncode == 0, out.stderr
    assert f"{SESSION} stays" in out.stdout

    def unlinked() -> dict[str, Any] | None:
        status = resource_status(control_plane, namespace)
        phase = status.get("phase")
        return (
            status
            if phase in ("LoggedOut", "AwaitingPairing") and "account" not in status
            else None
        )

    after = eventually(unlinked, "the device is unlinked", log=logs)
    assert "logged out by this device" in after["lastError"]["message"]
    assert jid not in json.dumps(after)
    assert get(control_plane, namespace, "was", SESSION) is not None
    assert "logout_requested" in session_kubelet.log_of(pod)
    shown = wasp("status", SESSION, *where)
    assert "logged out by this device" in shown.stdout

    # --context picks the namespace from the context, as kubectl does.
    config = kubeconfig_with(
        control_plane,
        tmp_path / "contexts.json",
        contexts=[
            {
                "name": "tenants",
                "context": {"cluster": "wasp-test", "user": "admin", "namespace": namespace},
            }
        ],
    )
    in_context = wasp("status", SESSION, "--context", "tenants", kubeconfig=config)
    assert in_context.returncode == 0, in_context.stderr
    assert f"namespace {namespace}" in in_context.stdout

    # Errors: one line each, saying what to do.
    missing = one_line_error(wasp("status", "nope", *where))
    assert f"no WhatsAppSession 'nope' in namespace '{namespace}'" in missing
    assert f"kubectl get whatsappsessions -n {namespace}" in missing
    elsewhere = one_line_error(wasp("qr", SESSION))  # the current namespace: "default"
    assert "in namespace 'default'" in elsewhere
    assert "-n NAMESPACE" in elsewhere

    # A kubeconfig user without RBAC, then one that may read sessions but not Secrets.
    token = token_of_service_account(control_plane, namespace, "reader")
    reader = kubeconfig_with(
        control_plane,
        tmp_path / "reader.json",
        users=[{"name": "reader", "user": {"token": token}}],
        contexts=[{"name": "reader", "context": {"cluster": "wasp-test", "user": "reader"}}],
        current="reader",
    )
    refused = one_line_error(wasp("status", SESSION, *where, kubeconfig=reader))
    assert f"no access to WhatsAppSession '{SESSION}' in namespace '{namespace}'" in refused
    assert f"kubectl auth can-i get whatsappsessions -n {namespace}" in refused
    control_plane.kubectl(
        "create",
        "role",
        "session-reader",
        "-n",
        namespace,
        "--verb=get,list",
        f"--resource={contract.PLURAL}.{contract.GROUP},events",
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "session-reader",
        "-n",
        namespace,
        "--role=session-reader",
        f"--serviceaccount={namespace}:reader",
    )
    secret = contract.api_redis_secret_name(SESSION)

    def refused_the_secret() -> subprocess.CompletedProcess[str] | None:
        result = wasp("status", SESSION, *where, kubeconfig=reader)
        return result if f"Secret '{secret}'" in result.stderr else None

    no_secret = eventually(
        refused_the_secret, "RBAC lets the reader see the session but not its Secret"
    )
    assert f"kubectl auth can-i get secrets -n {namespace}" in one_line_error(no_secret)

    # Redis unreachable.
    redis_server.stop()
    started = time.monotonic()
    down = one_line_error(wasp("send", SESSION, PHONE, "493817", *where))
    assert "is unreachable" in down
    assert "pass --redis-url" in down
    assert time.monotonic() - started < 30
    admin.close()


def test_kubectl_wasp_without_a_kubeconfig_says_so(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    wasp = KubectlWasp(control_plane, tmp_path / "home", control_plane.kubeconfig)
    line = one_line_error(wasp("status", SESSION, kubeconfig=tmp_path / "absent"))
    assert "cannot use the kubeconfig" in line
    assert "--kubeconfig" in line
