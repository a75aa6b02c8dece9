"""The Dockerfile builds the image the chart runs (read, not built: no engine here).

These checks catch the drift a build would only show later: a package root
the image leaves out, an extra it does not install, a program it lacks.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from wasp import contract

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
DOCKERIGNORE = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
INSTRUCTIONS = [
    line.split(maxsplit=1) for line in DOCKERFILE.splitlines() if re.match(r"^[A-Z]+ ", line)
]


def test_image_holds_every_package_of_the_wheel() -> None:
    copied = {
        args.split()[0] for name, args in INSTRUCTIONS if name == "COPY" and "--from" not in args
    }
    for package in PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        root = package.rsplit("/", 1)[0] + "/"
        assert root in copied, f"the Dockerfile does not COPY {root}"
        assert f"!{root}" in DOCKERIGNORE, f".dockerignore leaves {root} out of the build context"
    for needed in ("pyproject.toml", "uv.lock", "README.md"):
        assert f"!{needed}" in DOCKERIGNORE


def test_image_installs_both_programs_from_the_lock() -> None:
    installs = [args for name, args in INSTRUCTIONS if name == "RUN" and "uv sync" in args]
    assert installs
    for args in installs:
        assert "--frozen" in args
        assert "--no-dev" in args
        for extra in PYPROJECT["project"]["optional-dependencies"]:
            assert f"--extra {extra}" in args
    scripts = PYPROJECT["project"]["scripts"]
    assert {contract.OPERATOR_NAME, contract.SESSION_COMMAND} <= set(scripts)


def test_image_runs_as_non_root_without_entrypoint() -> None:
    names = [name for name, _ in INSTRUCTIONS]
    assert "ENTRYPOINT" not in names
    users = [args for name, args in INSTRUCTIONS if name == "USER"]
    assert users == ["65532:65532"]
    assert [args for name, args in INSTRUCTIONS if name == "FROM"][-1] == "${PYTHON_IMAGE}"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE
