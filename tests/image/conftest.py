"""The image under test: built (or found in the cache) by the code `make image` runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.image import TEST_CONTAINER_LABEL, docker, ensure_image


@pytest.fixture(scope="session")
def image() -> str:
    """The wasp image of the working tree (``wasp:<hash>``), built once if missing."""
    return ensure_image().tag


def labelled_containers() -> list[str]:
    """Ids of the containers the image tests started, running or not."""
    listed = docker("ps", "--all", "--quiet", "--filter", f"label={TEST_CONTAINER_LABEL}")
    return listed.stdout.split()


@pytest.fixture(autouse=True)
def no_container_left() -> Iterator[None]:
    """Remove the test's containers (and their anonymous volumes) whatever happens."""
    yield
    leftovers = labelled_containers()
    if leftovers:
        docker("rm", "--force", "--volumes", *leftovers)
