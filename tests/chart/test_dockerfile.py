"""The Dockerfile builds the image the chart runs: checked as text here, in seconds.

These checks catch the drift a build would only show later: a package root
the image leaves out, an extra it does not install, a program it lacks, a
floating base, an apt cache left in a layer, a data dir a read-only root
cannot write. ``tests/image/`` builds and runs the image itself.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from harness.image import IMAGE_INPUTS, IMAGE_TREES, Pins
from wasp import contract

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
DOCKERIGNORE = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# One (name, arguments) per instruction, continuation lines joined.
LOGICAL_LINES = re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()
INSTRUCTIONS = [line.split(maxsplit=1) for line in LOGICAL_LINES if re.match(r"^[A-Z]+ ", line)]


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
    assert "ARG PYTHON_IMAGE=python:3.11" in DOCKERFILE


def test_bases_are_pinned_to_a_precise_version() -> None:
    pins = Pins.read()
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", pins.python_image)
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins.uv_version)
    froms = [args.split()[0] for name, args in INSTRUCTIONS if name == "FROM"]
    assert froms == ["ghcr.io/astral-sh/uv:${UV_VERSION}", "${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_apt_leaves_no_cache_in_its_layer() -> None:
    installs = [args for name, args in INSTRUCTIONS if name == "RUN" and "apt-get install" in args]
    assert installs
    for args in installs:
        assert "apt-get update" in args
        assert "--no-install-recommends" in args
        # In the same RUN, whatever the base's apt configuration (no docker-clean reliance).
        assert "apt-get clean" in args
        assert "rm -rf /var/lib/apt/lists/*" in args


def test_data_dir_is_writable_by_65532_under_a_read_only_root() -> None:
    runs = " ".join(args for name, args in INSTRUCTIONS if name == "RUN")
    assert f"install -d -o 65532 -g 65532 -m 0700 {contract.SESSION_DATA_DIR}" in runs
    volumes = [args for name, args in INSTRUCTIONS if name == "VOLUME"]
    assert volumes == [contract.SESSION_DATA_DIR]


def test_image_cache_hashes_exactly_the_build_context() -> None:
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE if line.startswith("!")}
    hashed = set(IMAGE_INPUTS) | set(IMAGE_TREES)
    # The Dockerfile and .dockerignore shape the image without being in the context.
    assert allowed == hashed - {"Dockerfile", ".dockerignore"}
