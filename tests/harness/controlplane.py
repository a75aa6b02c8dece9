"""A real Kubernetes control plane for tests.

etcd, kube-apiserver and kube-controller-manager on free ports, with a
kubeconfig for kubectl and clients.

The API server runs with envtest's flags (RBAC, service-account keys,
client-certificate authentication); the controller-manager runs so that
garbage collection and namespace deletion happen as in a cluster. There is no
kubelet and no scheduler: nothing runs a Pod's containers unless a
``harness.node.Node`` joins it.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from harness import assets, certificates
from harness.processes import ManagedProcess, free_port, wait_until

START_TIMEOUT = 120.0


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, and a kubeconfig."""

    def __init__(
        self,
        directory: Path,
        binaries: dict[str, Path] | None = None,
        *,
        service_accounts: bool = False,
    ) -> None:
        """Start the three servers in ``directory``; stop them with ``stop()``.

        ``service_accounts`` turns on the ServiceAccount admission plugin, as in
        a real cluster: every pod then names an existing ServiceAccount and gets
        its token mounted unless it opts out. Off by default, like envtest: the
        kubelet stand-in's tests make pods in namespaces just created, before
        the controller-manager has made their ``default`` ServiceAccount.
        """
        self.directory = directory
        self.service_accounts = service_accounts
        self.binaries = binaries if binaries is not None else assets.ensure()
        self.processes: list[ManagedProcess] = []
        self.pki = certificates.create(directory / "pki")
        try:
            self._start_etcd()
            self._start_apiserver()
            self.kubeconfig = self._write_kubeconfig()
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise

    # -- servers -------------------------------------------------------------
    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        etcd = ManagedProcess(
            "etcd",
            [
                str(self.binaries["etcd"]),
                "--data-dir",
                str(self.directory / "etcd"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            self.directory / "etcd.log",
        )
        self.processes.append(etcd)
        wait_until(lambda: _http_ok(f"{self.etcd_url}/health"), "healthy", etcd, START_TIMEOUT)

    def _start_apiserver(self) -> None:
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        pki = self.pki
        apiserver = ManagedProcess(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                "--etcd-servers",
                self.etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(self.port),
                "--cert-dir",
                str(self.directory / "apiserver-certs"),
                "--tls-cert-file",
                str(pki.serving_cert),
                "--tls-private-key-file",
                str(pki.serving_key),
                "--client-ca-file",
                str(pki.ca_cert),
                "--authorization-mode",
                "RBAC",
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                str(pki.service_account_public),
                "--service-account-signing-key-file",
                str(pki.service_account_key),
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--allow-privileged=true",
                # For a real node (harness.node): the API server reaches the kubelet
                # (logs, exec) by the Node's hostname, authenticated by the test CA.
                "--kubelet-preferred-address-types",
                "Hostname",
                "--kubelet-client-certificate",
                str(pki.admin_cert),
                "--kubelet-client-key",
                str(pki.admin_key),
                *(
                    []
                    if self.service_accounts
                    else ["--disable-admission-plugins", "ServiceAccount"]
                ),
                "--v",
                "1",
            ],
            self.directory / "kube-apiserver.log",
        )
        self.processes.append(apiserver)
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        wait_until(
            lambda: _http_ok(f"{self.server}/readyz", context), "ready", apiserver, START_TIMEOUT
        )

    def _start_controller_manager(self) -> None:
        manager = ManagedProcess(
            "kube-controller-manager",
            [
                str(self.binaries["kube-controller-manager"]),
                "--kubeconfig",
                str(self.kubeconfig),
                "--authentication-kubeconfig",
                str(self.kubeconfig),
                "--authorization-kubeconfig",
                str(self.kubeconfig),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(free_port()),
                "--cert-dir",
                str(self.directory / "controller-manager-certs"),
                "--leader-elect=false",
                "--service-account-private-key-file",
                str(self.pki.service_account_key),
                "--root-ca-file",
                str(self.pki.ca_cert),
                "--use-service-account-credentials=false",
                "--concurrent-gc-syncs",
                "5",
                "--v",
                "1",
            ],
            self.directory / "kube-controller-manager.log",
        )
        self.processes.append(manager)
        self.controller_manager = manager

    def _write_kubeconfig(self) -> Path:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "wasp-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(self.pki.admin_cert),
                        "client-key-data": b64(self.pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "wasp-test", "context": {"cluster": "wasp-test", "user": "admin"}}
            ],
            "current-context": "wasp-test",
        }
        path = self.directory / "kubeconfig"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        path.chmod(0o600)
        return path

    # -- clients ---------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment for kubectl, helm and clients: this cluster's kubeconfig."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane."""
        result = subprocess.run(
            [str(self.binaries["kubectl"]), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            msg = f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            raise AssertionError(msg)
        return result

    def stop(self) -> None:
        """Stop every server, the last started first."""
        for process in reversed(self.processes):
            process.stop()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
