"""Fixtures of the chart's tests: the real helm binary, and the chart rendered by it.

helm is found like the control plane's binaries (``harness.assets``:
``TEST_ASSET_HELM``, ``KUBEBUILDER_ASSETS``, else the cache) and runs with
its own config, cache and data folders, so the tests never read or write the
user's helm repositories or plugins.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import assets

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wasp"

Helm = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """``helm(*args, check=True)``: run the real helm; a failure shows its stderr."""
    binary = str(assets.ensure()["helm"])
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)  # installs name their cluster with --kubeconfig

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        if check and result.returncode != 0:
            msg = f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            raise AssertionError(msg)
        return result

    return run


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    """``render("key=value", ..., namespace="wasp-system")``: the chart's objects, parsed.

    Each argument is passed to ``helm template`` as ``--set``; the release is
    named ``wasp`` in ``namespace``.
    """

    def run(*settings: str, namespace: str = "wasp-system") -> list[dict[str, Any]]:
        args = ["template", "wasp", str(CHART), "--namespace", namespace]
        for setting in settings:
            args += ["--set", setting]
        documents = yaml.safe_load_all(helm(*args).stdout)
        return [document for document in documents if document]

    return run
