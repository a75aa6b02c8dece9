"""Binaries come from the envtest locations when given, and then nothing is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import assets

TESTS = Path(__file__).resolve().parent.parent


def run_lookup(env: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "harness.assets"],
        env={**env, "PYTHONPATH": str(TESTS)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "building" not in result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines())


def kubebuilder_assets_dir(tmp_path: Path) -> Path:
    """A folder laid out as setup-envtest leaves it, holding every binary."""
    directory = tmp_path / "assets"
    directory.mkdir()
    for name, path in assets.ensure().items():
        (directory / name).symlink_to(path)
    return directory


def test_kubebuilder_assets_are_used_without_any_go_build(tmp_path: Path) -> None:
    kubebuilder_assets = kubebuilder_assets_dir(tmp_path)
    no_go = tmp_path / "bin"
    no_go.mkdir()
    (no_go / "go").write_text("#!/bin/sh\necho go must not run >&2\nexit 99\n", encoding="utf-8")
    (no_go / "go").chmod(0o755)
    env = {
        **os.environ,
        "KUBEBUILDER_ASSETS": str(kubebuilder_assets),
        "WASP_CACHE_DIR": str(tmp_path / "empty-cache"),  # nothing cached, so only the assets count
        "PATH": f"{no_go}:{os.environ['PATH']}",
    }

    found = run_lookup(env)

    assert found == {name: str(kubebuilder_assets / name) for name in assets.BINARY_NAMES}
    assert not (tmp_path / "empty-cache").exists()


def test_test_asset_variable_wins_over_kubebuilder_assets(tmp_path: Path) -> None:
    kubebuilder_assets = kubebuilder_assets_dir(tmp_path)
    own_kubectl = tmp_path / "my-kubectl"
    own_kubectl.symlink_to(assets.ensure()["kubectl"])
    env = {
        **os.environ,
        "KUBEBUILDER_ASSETS": str(kubebuilder_assets),
        "TEST_ASSET_KUBECTL": str(own_kubectl),
        "WASP_CACHE_DIR": str(tmp_path / "empty-cache"),
    }
    env.pop("TEST_ASSET_KUBE_APISERVER", None)

    found = run_lookup(env)

    assert found["kubectl"] == str(own_kubectl)
    assert found["kube-apiserver"] == str(kubebuilder_assets / "kube-apiserver")
    assert not (tmp_path / "empty-cache").exists()


def test_cached_binaries_carry_their_pinned_versions() -> None:
    cached = assets.ensure()
    versions = {component.wrapper: component.version() for component in assets.COMPONENTS}

    def output(name: str, *args: str) -> str:
        return subprocess.run(
            [str(cached[name]), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout

    assert versions["kubernetes"] in output("kube-apiserver", "--version")
    assert versions["kubernetes"] in output("kubectl", "version", "--client")
    assert versions["etcd"].lstrip("v") in output("etcd", "--version")
    assert versions["helm"] in output("helm", "version", "--short")
