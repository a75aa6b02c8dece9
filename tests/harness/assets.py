"""The control-plane and node binaries: found where the user keeps them, or built once.

Lookup follows controller-runtime's envtest convention, so a user with
``setup-envtest`` builds nothing: ``TEST_ASSET_<NAME>`` first, then
``$KUBEBUILDER_ASSETS/<name>``. Anything not found there comes from a
per-version cache outside the repository (``$WASP_CACHE_DIR``, default
``~/.cache/wasp``), and what is not cached yet is built from the Go module
proxy through the wrapper modules beside this package (``tests/controlplane``),
whose ``go.mod`` files are the single place the versions are pinned.

Run as ``python -m harness.assets`` to build what is missing and print where
each binary is.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

WRAPPERS = Path(__file__).resolve().parent.parent / "controlplane"


@dataclass(frozen=True)
class Component:
    """One Go wrapper module and the binaries it builds."""

    wrapper: str
    module: str
    binaries: dict[str, str]  # binary name -> Go package

    def version(self) -> str:
        """The version the wrapper's go.mod requires (the single pin)."""
        go_mod = (WRAPPERS / self.wrapper / "go.mod").read_text(encoding="utf-8")
        match = re.search(
            rf"^\s*(?:require\s+)?{re.escape(self.module)} (v\S+)", go_mod, re.MULTILINE
        )
        if match is None:
            msg = f"{self.wrapper}/go.mod does not require {self.module}"
            raise RuntimeError(msg)
        return match.group(1)

    def ldflags(self) -> str:
        """Linker flags that stamp the version in, as the upstream release does."""
        version = self.version()
        if self.wrapper == "kubernetes":
            major, minor = version.lstrip("v").split(".")[:2]
            base = "k8s.io/component-base/version"
            return (
                f"-X {base}.gitVersion={version} -X {base}.gitMajor={major} "
                f"-X {base}.gitMinor={minor} -X {base}.gitTreeState=clean"
            )
        if self.wrapper == "helm":
            return f"-X helm.sh/helm/v3/internal/version.version={version}"
        return ""


COMPONENTS = (
    Component(
        wrapper="etcd",
        module="go.etcd.io/etcd/server/v3",
        binaries={"etcd": "go.etcd.io/etcd/server/v3"},
    ),
    Component(
        wrapper="kubernetes",
        module="k8s.io/kubernetes",
        binaries={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            # The real node (harness.node): same module, same version stamp.
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
        },
    ),
    Component(
        wrapper="helm",
        module="helm.sh/helm/v3",
        binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
    ),
)

BINARY_NAMES = tuple(name for component in COMPONENTS for name in component.binaries)


def cache_root() -> Path:
    """Where built binaries are kept, per version, outside the repository."""
    configured = os.environ.get("WASP_CACHE_DIR")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "wasp"


def cache_dir(component: Component) -> Path:
    """The cache folder of one component at its pinned version."""
    return cache_root() / "controlplane" / f"{component.wrapper}-{component.version()}"


def user_provided(name: str) -> Path | None:
    """A binary named by ``TEST_ASSET_<NAME>`` or found in ``KUBEBUILDER_ASSETS``."""
    explicit = os.environ.get("TEST_ASSET_" + name.upper().replace("-", "_"))
    if explicit and Path(explicit).is_file():
        return Path(explicit)
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / name).is_file():
        return Path(assets) / name
    return None


def build(component: Component, destination: Path, names: list[str]) -> None:
    """Build ``names`` of a component's binaries with Go into ``destination``.

    Each binary is built beside its final path and renamed into place, so a
    cache folder only ever holds complete binaries, and one made before a
    binary joined the component gains it without the others being rebuilt.
    """
    go = shutil.which("go")
    if go is None:
        msg = (
            f"{', '.join(names)} not found in TEST_ASSET_<NAME>, "
            "KUBEBUILDER_ASSETS or the cache, and no `go` on PATH to build them"
        )
        raise RuntimeError(msg)
    destination.mkdir(parents=True, exist_ok=True)
    print(  # noqa: T201 - a build of several minutes says what it is doing
        f"building {', '.join(names)} {component.version()} (once per machine)",
        file=sys.stderr,
        flush=True,
    )
    for name in names:
        staging = destination / f".{name}.building"
        subprocess.run(
            [
                go,
                "build",
                "-trimpath",
                "-o",
                str(staging),
                "-ldflags",
                component.ldflags(),
                component.binaries[name],
            ],
            cwd=WRAPPERS / component.wrapper,
            check=True,
        )
        staging.rename(destination / name)


def ensure() -> dict[str, Path]:
    """Return every binary's path, building only what is missing."""
    found: dict[str, Path] = {}
    for component in COMPONENTS:
        missing = []
        for name in component.binaries:
            path = user_provided(name)
            if path is None:
                missing.append(name)
            else:
                found[name] = path
        if not missing:
            continue
        directory = cache_dir(component)
        if not all((directory / name).is_file() for name in missing):
            directory.parent.mkdir(parents=True, exist_ok=True)
            with (directory.parent / f".{directory.name}.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one build per machine at a time
                unbuilt = [name for name in missing if not (directory / name).is_file()]
                if unbuilt:
                    build(component, directory, unbuilt)
        for name in missing:
            found[name] = directory / name
    return found


def main() -> None:
    """Build what is missing and print ``name path`` per binary."""
    for name, path in ensure().items():
        print(f"{name} {path}")  # noqa: T201 - this is the command's output


if __name__ == "__main__":
    main()
