"""`kubectl-wasp` as a program: it explains itself, and says what to install when it cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

KUBECTL_WASP = str(Path(sys.executable).with_name("kubectl-wasp"))


def test_help_names_every_command_and_kubectls_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wasp_kubectl", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kubectl wasp")
    for word in ("status", "qr", "send", "watch", "pair", "logout", "messages"):
        assert word in result.stdout
    for flag in ("--kubeconfig", "--context", "--namespace"):
        assert flag in result.stdout


def test_without_the_kubernetes_client_it_says_what_to_install() -> None:
    # As on a machine where `pip install wasp` left out the `kubectl` extra.
    hide = "import sys; sys.modules['kubernetes'] = None; from wasp_kubectl import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", hide, "status", "acme"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "kubectl wasp: kubernetes is not installed: "
        "install the plugin with `pip install 'wasp[kubectl]'`\n"
    )


def test_the_installed_plugin_reads_no_redis_url_from_the_environment(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WASP_REDIS_URL": "redis://x:1/0"}
    result = subprocess.run(
        [KUBECTL_WASP, "status", "acme", "--kubeconfig", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("kubectl wasp: cannot use the kubeconfig")
    assert result.stderr.count("\n") == 1
