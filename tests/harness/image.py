"""wasp's container image, built from the repository's Dockerfile without any image registry.

``make image`` runs this module (``python -m harness.image``); the image tests
call :func:`ensure_image`, so both use the same code and the same cache.

No registry serves images on the machines wasp is tested on, so the two bases
the Dockerfile names are made locally, under the very tags it pins:

* ``python:<x.y.z>-slim-bookworm``: ``debootstrap --variant=minbase bookworm``,
  the shared libraries CPython links to, and this machine's CPython (same
  ``x.y.z``, else the build stops) copied into ``/usr/local``, as the official
  image lays it out; the machine's extra CA certificates are trusted inside.
* ``ghcr.io/astral-sh/uv:<version>``: ``/uv`` and ``/uvx`` from PyPI's static
  (musl) wheel of that version.

Then ``docker build --network host`` of the Dockerfile, unchanged: anyone
with a registry builds the same file with ``docker build .``. A base that is
already there without this module's label (pulled from the real registry) is
used as it is.

Cache: every image is labelled or tagged with the hash of what goes into it
(a base: its recipe; wasp: the Dockerfile, ``.dockerignore``, ``pyproject.toml``,
``uv.lock``, ``README.md``, the three source trees and the bases' image ids).
Nothing whose hash is already there is rebuilt, so a second run takes about a
second. ``dockerd`` is started in the background when it does not answer
(log: ``$WASP_CACHE_DIR/image/dockerd.log``) and left running; its pid is
recorded (``dockerd.pid`` beside the log), so ``make demo-down`` stops only a
dockerd that wasp's tooling started.

Run as ``python -m harness.image [--measure]``: builds what is missing, prints
the tags and timings; ``--measure`` adds the size each program would need.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.assets import cache_root
from harness.processes import start_time

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

# The tags the tests use: the moving one, and one per content hash.
IMAGE_REPOSITORY = "wasp"
TEST_IMAGE = f"{IMAGE_REPOSITORY}:test"
# Every container the image tests start carries this label; none may outlive its test.
TEST_CONTAINER_LABEL = "dev.wasp.test=image"
# The label holding a stand-in base's recipe hash.
RECIPE_LABEL = "dev.wasp.recipe"

# What goes into the wasp image: must match what .dockerignore lets in.
IMAGE_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "README.md")
IMAGE_TREES = ("src", "operator/src", "session-pod/src")

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What python:3.11-slim carries besides Debian's minbase: the libraries CPython
# links to, CA certificates, netbase and tzdata.
RUNTIME_PACKAGES = (
    "ca-certificates",
    "netbase",
    "tzdata",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libreadline8",
    "libbz2-1.0",
    "liblzma5",
    "libexpat1",
    "libncursesw6",
    "libtirpc3",
    "zlib1g",
    "libuuid1",
)
# The standard library parts a slim image leaves out too.
STDLIB_EXCLUDES = (
    "python3.11/site-packages/*",
    "__pycache__",
    "python3.11/test",
    "python3.11/idlelib",
    "python3.11/tkinter",
    "python3.11/turtledemo",
    "*.a",
)
# Bump when the recipes below change in a way the hashed values do not show.
RECIPE_REVISION = "1"


def log(message: str) -> None:
    """Progress, on stderr (stdout is for the results)."""
    print(f"image: {message}", file=sys.stderr, flush=True)  # noqa: T201 - says what it builds


def image_cache() -> Path:
    """Logs and scratch space, outside the repository."""
    path = cache_root() / "image"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- docker
def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI (legacy builder: Debian's docker.io ships no buildx)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    result = subprocess.run(["docker", *args], check=False, text=True, capture_output=True, env=env)
    if check and result.returncode != 0:
        msg = f"docker {' '.join(args)[:300]} failed ({result.returncode}): {result.stderr[-2000:]}"
        raise RuntimeError(msg)
    return result


def docker_answers() -> bool:
    """Whether a Docker engine answers the CLI."""
    if shutil.which("docker") is None:
        return False
    return docker("version", "--format", "{{.Server.Version}}", check=False).returncode == 0


def dockerd_record() -> Path:
    """``pid start-time`` of the dockerd :func:`ensure_docker` started (none: not started here)."""
    return image_cache() / "dockerd.pid"


def recorded_dockerd() -> int | None:
    """The pid of the dockerd wasp's tooling started, if that very process still runs."""
    try:
        pid, started = dockerd_record().read_text(encoding="ascii").split()
    except (FileNotFoundError, ValueError):
        return None
    return int(pid) if start_time(int(pid)) == started else None


def forget_dockerd() -> None:
    """Drop the record once that dockerd is stopped."""
    dockerd_record().unlink(missing_ok=True)


#: The dockerd started here. It outlives this process on purpose (later runs
#: reuse it); holding the handle keeps Python from warning, when it is
#: collected, that the process still runs.
_STARTED_DOCKERD: list[subprocess.Popen[bytes]] = []


def ensure_docker(timeout: float = 60.0) -> None:
    """Start dockerd in the background unless an engine already answers."""
    if docker_answers():
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or shutil.which("docker") is None:
        msg = "no Docker engine: run `make image` (installs Debian's docker.io)"
        raise RuntimeError(msg)
    log_path = image_cache() / "dockerd.log"
    log(f"starting dockerd (log: {log_path})")
    with log_path.open("ab") as output:
        started = subprocess.Popen(
            [dockerd],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _STARTED_DOCKERD.append(started)
    dockerd_record().write_text(f"{started.pid} {start_time(started.pid)}\n", encoding="ascii")
    deadline = time.monotonic() + timeout
    while not docker_answers():
        if time.monotonic() > deadline:
            msg = f"dockerd did not answer within {timeout:.0f} s: see {log_path}"
            raise RuntimeError(msg)
        time.sleep(0.3)


def image_exists(reference: str) -> bool:
    """Whether the engine holds ``reference``."""
    return docker("image", "inspect", reference, check=False).returncode == 0


def image_label(reference: str, label: str) -> str | None:
    """A label of a local image, ``None`` if the image or label is missing."""
    result = docker("image", "inspect", reference, check=False)
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0]["Config"].get("Labels") or {}
    value = labels.get(label)
    return str(value) if value is not None else None


def image_id(reference: str) -> str:
    """The image id of a local image."""
    return docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def image_size(reference: str) -> int:
    """The image's size in bytes, as ``docker images`` counts it."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", reference).stdout)


def docker_import(source: Path, reference: str, changes: list[str]) -> None:
    """``tar`` a root filesystem and ``docker import`` it as ``reference``."""
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(source), "-c", "."],
        stdout=subprocess.PIPE,
    )
    args = ["docker", "import"]
    for change in changes:
        args += ["--change", change]
    subprocess.run([*args, "-", reference], stdin=tar.stdout, check=True, capture_output=True)
    if tar.stdout is not None:
        tar.stdout.close()
    if tar.wait() != 0:
        msg = f"tar of {source} failed"
        raise RuntimeError(msg)


# ---------------------------------------------------------------- the pins
@dataclass(frozen=True)
class Pins:
    """The base images the Dockerfile names (its ARG defaults: the one place they are pinned)."""

    python_image: str
    uv_version: str

    @classmethod
    def read(cls) -> Pins:
        """Read both ARGs from the Dockerfile."""
        text = DOCKERFILE.read_text(encoding="utf-8")
        values = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
        return cls(values["PYTHON_IMAGE"], values["UV_VERSION"])

    @property
    def python_version(self) -> str:
        """``3.11.7`` of ``python:3.11.7-slim-bookworm``."""
        match = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-(\w+)", self.python_image)
        if match is None:
            msg = f"PYTHON_IMAGE {self.python_image} is not python:<x.y.z>-slim-<suite>"
            raise RuntimeError(msg)
        return match.group(1)

    @property
    def uv_image(self) -> str:
        """The uv image the Dockerfile copies uv from."""
        return f"ghcr.io/astral-sh/uv:{self.uv_version}"


def digest(*parts: str | bytes) -> str:
    """A short sha256 of the parts, in order."""
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        sha.update(len(data).to_bytes(8, "big"))
        sha.update(data)
    return sha.hexdigest()[:16]


def extra_ca_certificates() -> list[Path]:
    """The CAs this machine trusts beyond Debian's (the registries may need them)."""
    return sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


# ---------------------------------------------------------------- python base
def python_base_recipe(pins: Pins) -> str:
    """The hash of everything that makes the Python base stand-in."""
    prefix = Path(sys.base_prefix)
    return digest(
        RECIPE_REVISION,
        pins.python_image,
        DEBIAN_SUITE,
        DEBIAN_MIRROR,
        *RUNTIME_PACKAGES,
        *STDLIB_EXCLUDES,
        str(prefix),
        sys.version,
        *(path.read_bytes() for path in extra_ca_certificates()),
    )


def build_python_base(pins: Pins, recipe: str) -> None:
    """Debian minbase + this machine's CPython, imported as ``pins.python_image``."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    if version != pins.python_version:
        msg = (
            f"the Dockerfile pins {pins.python_image} but this machine's Python is {version}: "
            "the stand-in base copies the machine's CPython, so they must match"
        )
        raise RuntimeError(msg)
    if shutil.which("debootstrap") is None:
        msg = "debootstrap is missing: run `make image` (installs it)"
        raise RuntimeError(msg)
    with tempfile.TemporaryDirectory(dir=image_cache(), prefix="rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        debian_rootfs(rootfs)
        install_python(rootfs)
        for leftover in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
            for child in (rootfs / leftover).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        docker_import(
            rootfs,
            pins.python_image,
            [
                "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                f"ENV PYTHON_VERSION={version}",
                "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                f"LABEL {RECIPE_LABEL}={recipe}",
                'CMD ["python3"]',
            ],
        )


def debian_rootfs(rootfs: Path) -> None:
    """Debian minbase with the libraries CPython needs and the machine's extra CAs."""
    log(f"debootstrap --variant=minbase {DEBIAN_SUITE} (about 40 s)")
    run_logged(
        ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
        "debootstrap.log",
    )
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE} main\n"
        f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE}-updates main\n"
        f"deb http://deb.debian.org/debian-security {DEBIAN_SUITE}-security main\n",
        encoding="utf-8",
    )
    install = (
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        f"--no-install-recommends {' '.join(RUNTIME_PACKAGES)} && apt-get clean"
    )
    run_logged(["chroot", str(rootfs), "/bin/sh", "-c", install], "rootfs-apt.log")
    certificates = extra_ca_certificates()
    for path in certificates:
        shutil.copy2(path, rootfs / "usr/local/share/ca-certificates" / path.name)
    if certificates:
        run_logged(["chroot", str(rootfs), "update-ca-certificates"], "rootfs-ca.log")


def install_python(rootfs: Path) -> None:
    """This machine's CPython into ``/usr/local``, laid out as the official image (no pip)."""
    prefix = Path(sys.base_prefix)
    short = f"python{sys.version_info.major}.{sys.version_info.minor}"
    local = rootfs / "usr/local"
    for folder in ("bin", "lib", "include"):
        (local / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(prefix / "bin" / short, local / "bin" / short)
    for library in prefix.joinpath("lib").glob("libpython3*.so*"):
        shutil.copy2(library, local / "lib" / library.name, follow_symlinks=False)
    shutil.copytree(prefix / "include" / short, local / "include" / short)
    excludes = [f"--exclude={pattern}" for pattern in STDLIB_EXCLUDES]
    tar = subprocess.Popen(
        ["tar", "-C", str(prefix / "lib"), "-c", *excludes, short], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-C", str(local / "lib"), "-x"], stdin=tar.stdout, check=True)
    if tar.stdout is not None:
        tar.stdout.close()
    if tar.wait() != 0:
        msg = "copying the standard library failed"
        raise RuntimeError(msg)
    for name in ("python3", "python"):
        (local / "bin" / name).symlink_to(short)
    # The binary links libpython by its old prefix's name; /usr/local/lib is on ld.so's path.
    run_logged(["chroot", str(rootfs), "/sbin/ldconfig"], "rootfs-ldconfig.log")
    check = "import ssl, sqlite3, ctypes, uuid, lzma, bz2, zlib, readline"
    run_logged(["chroot", str(rootfs), "/usr/local/bin/python3", "-c", check], "rootfs-check.log")


# ---------------------------------------------------------------- uv base
def uv_base_recipe(pins: Pins) -> str:
    """The hash of everything that makes the uv stand-in."""
    return digest(RECIPE_REVISION, pins.uv_image, "musllinux_1_1_x86_64")


def build_uv_base(pins: Pins, recipe: str) -> None:
    """``/uv`` and ``/uvx`` from PyPI's static wheel, imported as ``pins.uv_image``."""
    with tempfile.TemporaryDirectory(dir=image_cache(), prefix="uv-") as scratch:
        wheels = Path(scratch) / "wheel"
        rootfs = Path(scratch) / "rootfs"
        rootfs.mkdir()
        log(f"uv {pins.uv_version} from PyPI's musllinux wheel")
        run_logged(
            [
                str(Path(sys.base_prefix) / "bin" / "python3"),  # the machine's pip
                "-m",
                "pip",
                "download",
                f"uv=={pins.uv_version}",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                "musllinux_1_1_x86_64",
                "--disable-pip-version-check",
                "-d",
                str(wheels),
            ],
            "uv-download.log",
        )
        (wheel,) = wheels.glob("uv-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(("/scripts/uv", "/scripts/uvx")):
                    target = rootfs / name.rsplit("/", 1)[1]
                    target.write_bytes(archive.read(name))
                    target.chmod(0o755)
        docker_import(
            rootfs, pins.uv_image, [f"LABEL {RECIPE_LABEL}={recipe}", 'ENTRYPOINT ["/uv"]']
        )


def run_logged(args: list[str], log_name: str) -> None:
    """Run a build step with its output in a log file; on failure, show its tail."""
    log_path = image_cache() / log_name
    with log_path.open("w", encoding="utf-8") as output:
        result = subprocess.run(args, stdout=output, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        msg = f"{args[0]} failed ({result.returncode}); {log_path}:\n" + "\n".join(tail)
        raise RuntimeError(msg)


def ensure_base(reference: str, recipe: str, build: Callable[[], None]) -> str:
    """Build a stand-in base unless it (or a real pulled image) is there; return its id."""
    if image_exists(reference):
        label = image_label(reference, RECIPE_LABEL)
        if label is None or label == recipe:  # a real image, or our stand-in, current
            return image_id(reference)
        log(f"{reference}: recipe changed, rebuilding the stand-in")
    started = time.monotonic()
    build()
    log(f"{reference}: stand-in built in {time.monotonic() - started:.0f} s")
    return image_id(reference)


# ---------------------------------------------------------------- wasp
def source_hash(*base_ids: str) -> str:
    """The hash of the build context (what .dockerignore lets in) and the bases."""
    parts: list[str | bytes] = [*base_ids]
    for name in IMAGE_INPUTS:
        parts += [name, (ROOT / name).read_bytes()]
    for tree in IMAGE_TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            parts += [str(path.relative_to(ROOT)), path.read_bytes()]
    return digest(*parts)


@dataclass(frozen=True)
class Built:
    """The result of :func:`ensure_image`."""

    tag: str  # wasp:<hash>
    built: bool  # False: it was in the cache
    seconds: float


def ensure_image() -> Built:
    """The wasp image for the working tree, built if its hash is not there; tagged ``wasp:test``."""
    started = time.monotonic()
    ensure_docker()
    pins = Pins.read()
    python_recipe = python_base_recipe(pins)
    python_id = ensure_base(
        pins.python_image, python_recipe, lambda: build_python_base(pins, python_recipe)
    )
    uv_recipe = uv_base_recipe(pins)
    uv_id = ensure_base(pins.uv_image, uv_recipe, lambda: build_uv_base(pins, uv_recipe))
    tag = f"{IMAGE_REPOSITORY}:{source_hash(python_id, uv_id)}"
    built = not image_exists(tag)
    if built:
        dangling_before = dangling_images()
        log(f"docker build --network host -t {tag} {ROOT}")
        run_logged(
            ["docker", "build", "--network", "host", "-t", tag, str(ROOT)],
            "docker-build.log",
        )
        forget_build_stages(dangling_images() - dangling_before)
    docker("tag", tag, TEST_IMAGE)
    if built:
        forget_older(tag)
    return Built(tag, built, time.monotonic() - started)


def dangling_images() -> set[str]:
    """Ids of untagged images that no other image builds on."""
    listed = docker("image", "ls", "--quiet", "--no-trunc", "--filter", "dangling=true")
    return set(listed.stdout.split())


def forget_build_stages(new: set[str]) -> None:
    """Keep only the latest build's ``build`` stage (the legacy builder leaves it untagged).

    It is the layer cache of the next build (the locked dependencies); the
    previous one, recorded in the cache dir, is removed with whatever only it
    used, so each source change does not leave a few hundred MB behind.
    """
    record = image_cache() / "build-stages"
    if record.exists():
        for old in record.read_text(encoding="utf-8").split():
            if old not in new:
                docker("image", "rm", old, check=False)
    record.write_text("\n".join(sorted(new)) + "\n", encoding="utf-8")


def forget_older(current: str) -> None:
    """Untag the images of earlier source hashes (their layers stay as build cache if shared)."""
    tags = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPOSITORY).stdout
    for tag in tags.split():
        if tag not in (current, TEST_IMAGE):
            docker("image", "rm", tag, check=False)


# ---------------------------------------------------------------- measuring
# Run inside the image: the bytes of the installed distributions each program
# needs (the wasp wheel's requirements with that program's extra, transitively).
_CLOSURE_SCRIPT = r"""
import json, re
from importlib import metadata

def name(requirement):
    return re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")

def closure(extra):
    wanted, seen = ["wasp"], set()
    while wanted:
        try:
            dist = metadata.distribution(wanted.pop())
        except metadata.PackageNotFoundError:  # a requirement for another platform
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for requirement in dist.requires or []:
            marker = requirement.split(";", 1)[1] if ";" in requirement else ""
            wanted_extra = re.search(rf"extra == .{extra}.", marker)
            if "extra" in marker and (key != "wasp" or wanted_extra is None):
                continue
            wanted.append(name(requirement))
    return seen

def size(dist):
    return sum((dist.locate_file(f).stat().st_size) for f in dist.files or []
               if dist.locate_file(f).is_file())

sizes = {d.metadata["Name"].lower().replace("_", "-"): size(d) for d in metadata.distributions()}
print(json.dumps({
    "all": sum(sizes.values()),
    "operator": sum(sizes[n] for n in closure("operator") if n in sizes),
    "session": sum(sizes[n] for n in closure("session") if n in sizes),
}))
"""


def program_sizes(reference: str) -> dict[str, int]:
    """Image size if it held only one program's dependencies (bytes), and the one image's."""
    total = image_size(reference)
    result = docker("run", "--rm", "--network", "none", reference, "python", "-c", _CLOSURE_SCRIPT)
    installed = json.loads(result.stdout)
    return {
        "image": total,
        "operator": total - installed["all"] + installed["operator"],
        "session": total - installed["all"] + installed["session"],
        "base": image_size(Pins.read().python_image),
    }


def main() -> None:
    """Build what is missing and print the image, its size and the time taken."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="print the size per program")
    args = parser.parse_args()
    built = ensure_image()
    state = "built" if built.built else "cached"
    size = image_size(built.tag) / 1e6
    print(f"{built.tag} ({TEST_IMAGE}): {state} in {built.seconds:.1f} s, {size:.0f} MB")  # noqa: T201
    if args.measure:
        for program, value in program_sizes(built.tag).items():
            print(f"  {program:9} {value / 1e6:6.0f} MB")  # noqa: T201 - the command's output


if __name__ == "__main__":
    main()
