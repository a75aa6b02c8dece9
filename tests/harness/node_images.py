"""The node's sandbox ("pause") image, made locally: no registry serves images here.

Kubernetes' own ``build/pause/linux/pause.c``, from the ``k8s.io/kubernetes``
module the control plane is built from (so its version follows the single
pin in ``tests/controlplane/kubernetes/go.mod``), compiled statically with gcc
once per machine into the binary cache, and packed as a one-layer image in
``docker save``'s archive format, which ``ctr images import`` reads.

This module only makes the archive; ``harness.node`` imports it.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from harness import assets

# The tag kubelet 1.34 and containerd's CRI look for as the sandbox image.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def _kubernetes() -> assets.Component:
    return next(c for c in assets.COMPONENTS if c.wrapper == "kubernetes")


def pause_binary() -> Path:
    """The static pause binary, compiled once per Kubernetes version and cached."""
    kubernetes = _kubernetes()
    directory = assets.cache_root() / "node" / f"pause-{kubernetes.version()}"
    binary = directory / "pause"
    if binary.is_file():
        return binary
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary
        go, gcc = shutil.which("go"), shutil.which("gcc")
        if go is None or gcc is None:
            msg = "building the pause image needs `go` (for the module's source) and `gcc`"
            raise RuntimeError(msg)
        module = json.loads(
            subprocess.run(
                [go, "mod", "download", "-json", f"{kubernetes.module}@{kubernetes.version()}"],
                cwd=assets.WRAPPERS / kubernetes.wrapper,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout
        )
        staging = directory / ".pause.building"
        subprocess.run(
            [
                gcc,
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                f"-DVERSION={kubernetes.version()}-wasp",
                "-o",
                str(staging),
                str(Path(module["Dir"]) / "build" / "pause" / "linux" / "pause.c"),
            ],
            check=True,
            timeout=120,
        )
        subprocess.run(["strip", str(staging)], check=True, timeout=60)
        staging.rename(binary)
    return binary


def _tar(members: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar archive of ``name -> (content, mode)``, owned by root, reproducible."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, (content, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, 0
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def pause_archive() -> bytes:
    """The pause image as a ``docker save`` archive tagged ``PAUSE_IMAGE``."""
    layer = _tar({"pause": (pause_binary().read_bytes(), 0o755)})
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": ARCHITECTURES.get(os.uname().machine, os.uname().machine),
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        },
        sort_keys=True,
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [
            {
                "Config": config_name,
                "RepoTags": [PAUSE_IMAGE],
                "Layers": [f"{layer_digest}/layer.tar"],
            }
        ]
    ).encode()
    return _tar(
        {
            config_name: (config, 0o644),
            f"{layer_digest}/layer.tar": (layer, 0o644),
            "manifest.json": (manifest, 0o644),
        }
    )


def pause_pod(name: str, node: str | None = None) -> dict[str, object]:
    """A minimal pod running only the pause image: host network, never pulled, no probes.

    ``node`` binds it to one Node by name, skipping the scheduler.
    """
    spec: dict[str, object] = {
        "hostNetwork": True,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
    }
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
