"""The API server sends the operator wasp's pods and NetworkPolicies only.

kopf applies a handler's ``labels=`` in the operator, after listing, watching
and decoding every pod and NetworkPolicy of the watched namespaces (of the
cluster, with ``--all-namespaces``); the operator's settings ask the API
server for wasp's alone (``labelSelector`` on kopf's lists and watches).
"""

from __future__ import annotations

import pytest
from kopf._cogs.structs.references import Resource

from wasp import contract
from wasp_operator.config import OperatorConfig
from wasp_operator.runner import operator_settings

WASP_ONLY = f"{contract.LABEL_MANAGED_BY}={contract.OPERATOR_NAME}"


@pytest.mark.parametrize(
    "resource",
    [
        Resource("", "v1", "pods", kind="Pod", singular="pod", namespaced=True),
        Resource(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            kind="NetworkPolicy",
            singular="networkpolicy",
            namespaced=True,
        ),
    ],
)
def test_pods_and_network_policies_are_listed_and_watched_with_wasps_label(
    resource: Resource,
) -> None:
    selectors = operator_settings(OperatorConfig()).watching.label_selectors
    assert selectors.collect(resource) == [WASP_ONLY]


def test_sessions_are_all_watched() -> None:
    sessions = Resource(contract.GROUP, contract.VERSION, contract.PLURAL, namespaced=True)
    assert operator_settings(OperatorConfig()).watching.label_selectors.collect(sessions) == []
