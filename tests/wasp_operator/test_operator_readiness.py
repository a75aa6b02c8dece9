"""The operator's health endpoint, which the Deployment's readiness and liveness probes ask.

It answers 200 only while kopf runs and the operator's own probe handler
(``runner.kubernetes_api``) can list the WhatsAppSessions it watches through
the real API server; its JSON names that check and the namespace it asked in.
"""

from __future__ import annotations

import json
import urllib.request

import kubernetes
import pytest

from harness.operator_process import OperatorProcess
from harness.processes import free_port
from wasp_operator.runner import PROBE_ID, ApiProbe


@pytest.mark.controlplane
def test_the_readiness_endpoint_answers_200_with_the_api_check(
    wasp_operator: OperatorProcess, namespace: str
) -> None:
    with urllib.request.urlopen(wasp_operator.liveness, timeout=5) as response:  # noqa: S310
        assert response.status == 200
        body = json.loads(response.read().decode())
    assert set(body[PROBE_ID]) == {namespace}  # it listed sessions where it watches them
    assert body[PROBE_ID][namespace]  # the API server's resourceVersion of that list


def test_the_api_check_fails_when_the_api_server_does_not_answer() -> None:
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))
    probe = ApiProbe(("acme",), api=api)
    with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever the client raises
        probe.check()
    assert "Connection refused" in str(raised.value) or "refused" in repr(raised.value)
