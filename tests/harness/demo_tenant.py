"""The tenant's part of ``make demo``: what a tenant's team does on the demo's cluster.

``up`` plays it once the supervisor's cluster is ready: apply a
``WhatsAppSession`` in sandbox mode (the simulator transport), show its QR
code, have the simulated phone scan it, wait for ``Connected``, send an OTP
with the tenant API's own credential (``status.apiCredentials``) and wait
until it is ``read``; then say what to try next. Everything goes through the
real ``kubectl`` and the tenant's Redis URL, as a user's would; only the
simulated phone's ``scan`` uses the admin Redis.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import segno

from harness.demo_folder import State, log
from harness.wasp_cluster import ROOT, TENANTS_NAMESPACE
from wasp import contract
from wasp.client import WaspClient

TENANT = "demo"
SANDBOX_PHONE = "+4915112345678"  # the OTP's recipient: any number is on WhatsApp in the sandbox
DEMO_ACCOUNT = "+4915100000000"  # the WhatsApp account the simulated phone links
TENANT_TIMEOUT = 180.0


class Kubectl:
    """The real kubectl, on the demo's cluster."""

    def __init__(self, state: State) -> None:
        """Use the binary and kubeconfig the supervisor named."""
        self.binary = state.kubectl
        self.env = {**os.environ, "KUBECONFIG": state.kubeconfig}

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        """Run kubectl; return its output; fail with its error."""
        result = subprocess.run(
            [self.binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            msg = f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            raise RuntimeError(msg)
        return result.stdout

    def status(self, name: str) -> dict[str, Any]:
        """A WhatsAppSession's status ({} before the operator writes one)."""
        found = json.loads(
            self("get", contract.PLURAL, name, "-n", TENANTS_NAMESPACE, "-o", "json")
        )
        status: dict[str, Any] = found.get("status") or {}
        return status

    def secret_value(self, name: str, key: str) -> str:
        """One key of a Secret in the tenants' namespace."""
        encoded = self(
            "get", "secret", name, "-n", TENANTS_NAMESPACE, "-o", f"jsonpath={{.data.{key}}}"
        )
        return base64.b64decode(encoded).decode()


def apply_session(kubectl: Kubectl) -> None:
    """``kubectl apply`` the tenant's WhatsAppSession, sandbox mode; print kubectl's answer."""
    log(f"kubectl apply: WhatsAppSession {TENANT} in {TENANTS_NAMESPACE}, transport simulator")
    body = {
        "apiVersion": f"{contract.GROUP}/{contract.VERSION}",
        "kind": contract.KIND,
        "metadata": {"name": TENANT, "namespace": TENANTS_NAMESPACE},
        "spec": {"transport": "simulator"},
    }
    sys.stdout.write(kubectl("apply", "-f", "-", stdin=json.dumps(body)))


def watch_status(
    kubectl: Kubectl, until: Callable[[dict[str, Any]], bool], what: str, *, quiet: bool = False
) -> dict[str, Any]:
    """Poll the tenant's status, printing each new phase (unless quiet), until ``until(status)``."""
    started = time.monotonic()
    seen = None
    while time.monotonic() - started < TENANT_TIMEOUT:
        status = kubectl.status(TENANT)
        phase = status.get("phase", "(no status yet)")
        if phase != seen and not quiet:
            log(f"  {time.monotonic() - started:5.1f} s  phase {phase}")
            seen = phase
        if until(status):
            return status
        time.sleep(0.5)
    msg = f"{what}: not within {TENANT_TIMEOUT:.0f} s (status: {kubectl.status(TENANT)})"
    raise RuntimeError(msg)


def pair(kubectl: Kubectl, state: State) -> None:
    """Wait for the QR code, show it, and have the simulated phone scan it."""
    status = watch_status(
        kubectl,
        lambda s: s.get("phase") == "Connected" or bool((s.get("pairing") or {}).get("qrCode")),
        "a QR code in the status",
    )
    if status.get("phase") == "Connected":
        log("already paired: the account is linked (its auth state is in Redis)")
        return
    log(f"the QR code (status.pairing.qrCode, window {status['pairing'].get('window', 1)}):")
    segno.make(status["pairing"]["qrCode"], error="l").terminal(out=sys.stdout, compact=True)
    tenant = status.get("tenantId", TENANT)
    with redis.Redis.from_url(state.admin_redis_url) as admin:
        scan = {"command": "scan", "phone": DEMO_ACCOUNT}
        admin.rpush(contract.simulator_commands_key(tenant), json.dumps(scan))
    log(f"the simulated phone of {DEMO_ACCOUNT} scans it (simulator command `scan`)")
    watch_status(kubectl, lambda s: s.get("phase") == "Connected", "phase Connected")


def send_otp(kubectl: Kubectl) -> str:
    """Send an OTP as the tenant's API does, wait until it is read; return the timeline."""
    status = watch_status(
        kubectl, lambda s: bool(s.get("apiCredentials")), "status.apiCredentials", quiet=True
    )
    secret = status["apiCredentials"]["secretName"]
    url = kubectl.secret_value(secret, "url")
    code = f"{secrets.randbelow(10**6):06d}"
    with WaspClient.from_url(url, status.get("tenantId", TENANT)) as client:
        message_id = client.send_otp(SANDBOX_PHONE, code)
        log(f"OTP {code} to {SANDBOX_PHONE} enqueued (message {message_id}), waiting for `read`")
        message = client.wait_for(message_id, "read", timeout=TENANT_TIMEOUT)
    if message.state != "read":
        msg = f"message {message_id} ended {message.state}: {message.reason} {message.error}"
        raise RuntimeError(msg)
    created = message.created_at or min(message.timestamps.values())
    lines = [f"message {message_id} (credential of Secret {secret}):"]
    for state_name, moment in sorted(message.timestamps.items(), key=lambda item: item[1]):
        offset = (moment - created).total_seconds()
        lines.append(
            f"  {state_name:<10} {moment.isoformat(timespec='milliseconds')}  +{offset:.2f} s"
        )
    return "\n".join(lines)


def next_steps(state: State, kubectl: Kubectl) -> str:
    """What to try next, with this demo's paths."""
    status = kubectl.status(TENANT)
    secret = status.get("apiCredentials", {}).get("secretName", "SECRET")
    pod = contract.session_pod_name(TENANT)
    kubectl_dir = str(Path(state.kubectl).parent)
    path_line = (
        "" if shutil.which("kubectl") == state.kubectl else f"export PATH={kubectl_dir}:$PATH\n"
    )
    wasp = ROOT / ".venv" / "bin" / "wasp"
    return (
        f"The demo keeps running. Kubeconfig: {state.kubeconfig}\n"
        "Try:\n"
        f"  export KUBECONFIG={state.kubeconfig}\n"
        + (f"  {path_line}" if path_line else "")
        + f"  kubectl get {contract.SHORT_NAME} -n {TENANTS_NAMESPACE}\n"
        f"  kubectl describe {contract.SHORT_NAME} {TENANT} -n {TENANTS_NAMESPACE}\n"
        f"  kubectl logs {pod} -n {TENANTS_NAMESPACE}\n"
        f"  kubectl get pods -A -o wide\n"
        f"  URL=$(kubectl get secret {secret} -n {TENANTS_NAMESPACE} "
        "-o jsonpath='{.data.url}' | base64 -d)\n"
        f'  {wasp} send {TENANT} {SANDBOX_PHONE} 123456 --wait read --redis-url "$URL"\n'
        f'  {wasp} status {TENANT} --redis-url "$URL"\n'
        "  make demo         # again: the tenant's part on the running cluster\n"
        "  make demo-down    # stop it and remove everything\n"
    )
