"""What a failed wait in the operator's tests prints: the operator's and the pods' latest output.

Only for failure messages (``harness.operator_process.eventually``'s ``log``);
nothing is asserted on it.
"""

from __future__ import annotations

from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess


def logs_of(operator: OperatorProcess, kubelet: Kubelet, *pods: str) -> str:
    """The operator's latest output, then each of ``pods``' (every pod running if none named)."""
    named = pods or tuple(kubelet.running())
    outputs = "".join(f"\n--- {pod}:\n{kubelet.log_of(pod)}" for pod in named)
    return f"{operator.log()[-4000:]}{outputs}"
