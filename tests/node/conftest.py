"""The real-node suite's cluster: wasp installed by its chart on a real node.

``wasp_cluster`` is one ``harness.wasp_cluster.WaspCluster`` per test module
(its own control plane, node and admin Redis), with the chart installed: the
operator runs as the chart's Deployment from the image ``wasp:test``, and
every session pod it makes runs on the node. Tests of a module share it and
each uses tenants of its own names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.wasp_cluster import WaspCluster


@pytest.fixture(scope="module")
def wasp_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WaspCluster]:
    """A cluster with a real node and wasp installed (chart defaults, host networking)."""
    cluster = WaspCluster(tmp_path_factory.mktemp("wasp-cluster"))
    try:
        cluster.install()
        yield cluster
    finally:
        cluster.stop()
